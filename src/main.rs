//! The `watchpost` command line. Exit codes: 0 ok, 1 invalid input, 2 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use watchpost::config::Config;
use watchpost::{App, telemetry};

/// mimalloc: requests are parsed on one thread and their alerts freed on the writer's,
/// which glibc's arenas serialise on a lock (half the CPU of a busy ingest went there).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "watchpost",
    version,
    about = "Metrics, PromQL rules and alerting in one binary"
)]
struct Cli {
    /// Configuration file (TOML); default `$WATCHPOST_CONFIG`, else `./watchpost.toml` if present.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Load and validate the configuration; print it with secrets redacted.
    CheckConfig,
    /// Apply pending database migrations and exit; with `--from`, then import a
    /// SQLite history into the configured PostgreSQL (idempotent).
    Migrate {
        /// A watchpost SQLite database to import: `sqlite://PATH`.
        #[arg(long, value_name = "sqlite://PATH")]
        from: Option<String>,
    },
    /// Collect this host's metrics and stream them to a watchpost server (`[agent]`).
    Agent {
        /// The server, e.g. `http://watchpost.example:8080` (`agent.server`).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// A bearer token with the `agent` role (`agent.token`).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "WATCHPOST_AGENT_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
        /// This agent's name, its series' `instance` label (`agent.name`; default: the host name).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Check Prometheus rule files: YAML, expressions, templates. Exit 1 with
    /// `file:line: message` per problem.
    CheckRules {
        /// Rule files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckRules { files }) = &cli.command {
        return check_rules(files);
    }
    // An agent checks only its own part (`agent()`): its config file need not be a
    // valid server configuration.
    let agent_only = matches!(cli.command, Some(Command::Agent { .. }));
    let loaded = Config::load(cli.config.as_deref()).and_then(|c| {
        if agent_only {
            Ok(c)
        } else {
            watchpost::validate_config(&c).map(|()| c)
        }
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("watchpost: invalid configuration:\n{e}");
            return ExitCode::from(1);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            print!("{}", config.to_redacted_toml());
            ExitCode::SUCCESS
        }
        Command::Migrate { from } => runtime(|| migrate(config, from)),
        Command::Serve => runtime(|| serve(config)),
        Command::Agent {
            server,
            token,
            name,
        } => agent(config, server, token, name),
        Command::CheckRules { .. } => unreachable!("handled before loading the configuration"),
    }
}

/// `check-rules`: every problem of every file on stderr, a summary on stdout.
fn check_rules(files: &[PathBuf]) -> ExitCode {
    let mut problems = 0usize;
    let (mut groups, mut alerting, mut recording) = (0usize, 0usize, 0usize);
    for path in files {
        match watchpost::rules::load_file(path) {
            Ok(file) => {
                groups += file.groups.len();
                for rule in file.groups.iter().flat_map(|g| &g.rules) {
                    match rule.kind {
                        watchpost::rules::file::RuleKind::Alerting => alerting += 1,
                        watchpost::rules::file::RuleKind::Recording => recording += 1,
                    }
                }
                println!(
                    "{}: {} groups, {} rules",
                    path.display(),
                    file.groups.len(),
                    file.rule_count()
                );
            }
            Err(found) => {
                for p in &found.0 {
                    eprintln!("{p}");
                }
                problems += found.0.len();
            }
        }
    }
    if problems > 0 {
        eprintln!("FAILED: {problems} problem(s)");
        return ExitCode::from(1);
    }
    println!(
        "SUCCESS: {} files, {groups} groups, {} rules ({alerting} alerting, {recording} recording)",
        files.len(),
        alerting + recording
    );
    ExitCode::SUCCESS
}

/// Runs `f` on a multi-threaded tokio runtime.
/// Stack of each runtime thread.
const RUNTIME_STACK: usize = 32 * 1024 * 1024;

fn runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Room for deep (bounded) recursion on input: PromQL trees up to
    // `promql::MAX_DEPTH`, and dropping a long operator chain the parser built
    // before it was refused. Reserved address space; pages are used as touched.
    builder.thread_stack_size(RUNTIME_STACK);
    run_on(builder, f)
}

/// Runs `f` on the runtime `builder` makes (with every driver enabled).
fn run_on<F, Fut>(mut builder: tokio::runtime::Builder, f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("watchpost: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// Signal listeners, or the exit code when they cannot be installed.
fn install_signals() -> Result<Signals, ExitCode> {
    Signals::install().map_err(|e| {
        eprintln!("watchpost: cannot install signal handlers: {e}");
        ExitCode::from(2)
    })
}

async fn migrate(config: Config, from: Option<String>) -> ExitCode {
    telemetry::init(&config.log);
    let metrics = match watchpost::metrics::Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "metrics registry");
            return ExitCode::from(2);
        }
    };
    let db = match watchpost::store::Db::connect(&config, metrics.db).await {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to the database");
            eprintln!("watchpost: {e}");
            return ExitCode::from(2);
        }
    };
    let result = db.migrate().await;
    let code = match result {
        Ok(()) => {
            tracing::info!("migrations applied");
            match from {
                Some(from) => import(&db, &from).await,
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("watchpost: {e}");
            ExitCode::from(2)
        }
    };
    db.close().await;
    code
}

/// `migrate --from`: the import, one progress line per chunk on stderr, a summary on
/// stdout.
async fn import(db: &watchpost::store::Db, from: &str) -> ExitCode {
    use watchpost::store::import::{ImportError, import_sqlite};
    let report = |p: &watchpost::store::import::Progress| {
        eprintln!(
            "migrate: {}: {}/{} rows read, {} new",
            p.table, p.read, p.total, p.written
        );
    };
    match import_sqlite(db, from, report).await {
        Ok(done) => {
            let summary: Vec<String> = done
                .iter()
                .map(|p| format!("{} {}/{} new", p.table, p.written, p.total))
                .collect();
            println!("imported {from}: {}", summary.join(", "));
            ExitCode::SUCCESS
        }
        Err(ImportError::Usage(m)) => {
            eprintln!("watchpost: {m}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("watchpost: import failed: {e}");
            ExitCode::from(2)
        }
    }
}

/// `agent`: flags over `[agent]`, then the agent on a single-threaded runtime (its
/// whole job is one collection per second and one socket).
fn agent(
    mut config: Config,
    server: Option<String>,
    token: Option<String>,
    name: Option<String>,
) -> ExitCode {
    let c = &mut config.agent;
    if server.is_some() {
        c.server = server;
    }
    if let Some(t) = token {
        c.token = Some(watchpost::config::Secret(t));
    }
    if name.is_some() {
        c.name = name;
    }
    let host = watchpost::hostname();
    let name = c.name.clone().unwrap_or_else(|| host.clone());
    let problems = watchpost::agent::validate(&config);
    let Some(server) = config.agent.server.clone() else {
        eprintln!("watchpost: agent: no server: give --server URL or agent.server");
        return ExitCode::from(1);
    };
    if let Err(e) = watchpost::agent::protocol::check_name(&name) {
        eprintln!("watchpost: agent: --name: {e}");
        return ExitCode::from(1);
    }
    if !problems.is_empty() {
        eprintln!("watchpost: invalid configuration:\n{}", problems.join("\n"));
        return ExitCode::from(1);
    }
    let opts = watchpost::agent::AgentOptions {
        server,
        token: config.agent.token.as_ref().map(|t| t.expose().to_string()),
        name,
        host,
        interval: config.collect.interval,
        buffer: config.agent.buffer,
    };
    run_on(
        tokio::runtime::Builder::new_current_thread(),
        || async move {
            telemetry::init(&config.log);
            let signals = match install_signals() {
                Ok(s) => s,
                Err(code) => return code,
            };
            let token = tokio_util::sync::CancellationToken::new();
            let stop = token.clone();
            tokio::spawn(async move {
                signals.shutdown_requested().await;
                tracing::info!("signal received; stopping the agent");
                stop.cancel();
            });
            match watchpost::agent::run(opts, token).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "agent failed");
                    eprintln!("watchpost: agent: {e:#}");
                    ExitCode::from(2)
                }
            }
        },
    )
}

async fn serve(config: Config) -> ExitCode {
    telemetry::init(&config.log);
    // Listen for signals before anything can announce readiness, so a signal sent right
    // after `listening on` is never handled by the default (killing) disposition.
    let signals = match install_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let app = match App::start(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("watchpost: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let token = app.shutdown_token();
    #[cfg(unix)]
    match hup {
        Ok(hup) => {
            tokio::spawn(reload_on_sighup(hup, app.rules()));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload")
        }
    }
    tokio::spawn(async move {
        signals.shutdown_requested().await;
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
    app.wait().await;
    ExitCode::SUCCESS
}

/// Re-reads the rule files on every SIGHUP; a broken file is logged and changes nothing.
#[cfg(unix)]
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    rules: watchpost::rules::RuleManager,
) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading rules");
        if let Err(problems) = rules.reload().await {
            tracing::error!(problems = %problems, "rule reload failed; the previous rules keep running");
        }
    }
}

/// SIGINT and SIGTERM listeners, registered up front; SIGXFSZ is taken too, so that a
/// write past the file-size limit fails with an error the service handles (the receipt
/// journal falls back to the database) instead of killing it, as PostgreSQL does.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    _xfsz: tokio::signal::unix::Signal,
}

/// SIGXFSZ's number on Linux.
#[cfg(unix)]
const SIGXFSZ: i32 = 25;

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                _xfsz: signal(SignalKind::from_raw(SIGXFSZ))?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn shutdown_requested(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
