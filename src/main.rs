//! The `watchpost` command line. Exit codes: 0 ok, 1 invalid input, 2 runtime failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use watchpost::config::Config;
use watchpost::{App, telemetry};

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
    /// Apply pending database migrations and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
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
        Command::Migrate => runtime(|| migrate(config)),
        Command::Serve => runtime(|| serve(config, cli.config.as_deref())),
    }
}

/// Runs `f` on a multi-threaded tokio runtime.
fn runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => {
            eprintln!("watchpost: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(config: Config) -> ExitCode {
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
    db.close().await;
    match result {
        Ok(()) => {
            tracing::info!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("watchpost: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: Config, _config_path: Option<&Path>) -> ExitCode {
    telemetry::init(&config.log);
    let app = match App::start(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("watchpost: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let token = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
    app.wait().await;
    ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
