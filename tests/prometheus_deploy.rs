//! The deployment files under `deploy/`: the example `watchpost.toml` is accepted by
//! `watchpost check-config` as shipped (and equals the built-in defaults), names every
//! configuration key (all of them valid once its optional lines are uncommented), and
//! the systemd unit passes `systemd-analyze verify`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> PathBuf {
    repo().join("deploy/watchpost.toml")
}

/// `watchpost check-config [--config FILE]` in an empty folder with a clean
/// environment: (exit code, stdout, stderr).
fn check_config(config: Option<&Path>) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = command(dir.path());
    cmd.arg("check-config");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("run watchpost check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Key paths of a TOML document: `a.b` for tables, `a.b` once for arrays of tables,
/// nodes of the routing tree as `route.*`.
fn key_paths(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    let toml::Value::Table(table) = value else {
        return;
    };
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(_) => key_paths(v, &path, out),
            toml::Value::Array(items)
                if items.iter().all(|i| i.is_table()) && !items.is_empty() =>
            {
                for item in items {
                    key_paths(item, &path, out);
                }
            }
            _ => {}
        }
        out.insert(route_node_key(&path));
    }
}

/// `route.routes.routes.x` → `route.x`: every node of the routing tree has the same keys.
fn route_node_key(path: &str) -> String {
    let mut p = path.to_string();
    while p.starts_with("route.routes") {
        p = p.replacen("route.routes", "route", 1);
    }
    p
}

/// The example with every optional line (`#key = …`, `#[table]`) uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| {
            let body = line.trim_start();
            match body.strip_prefix('#') {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.starts_with(|c: char| c.is_ascii_lowercase()) =>
                {
                    rest.to_string()
                }
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_example_config_is_accepted_and_is_the_defaults() {
    let (code, shipped, stderr) = check_config(Some(&example()));
    assert_eq!(
        code, 0,
        "check-config rejected deploy/watchpost.toml:\n{stderr}"
    );
    let (code, defaults, stderr) = check_config(None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        shipped, defaults,
        "every active line of deploy/watchpost.toml must be the built-in default"
    );
    let text = std::fs::read_to_string(example()).expect("read example");
    for secret in ["bot_token", "token", "ntopng_shared_secret"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("#{secret} = "))),
            "{secret} is shown, commented out"
        );
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{secret} ="))),
            "{secret} must stay commented out in the example"
        );
    }
}

#[test]
fn example_config_names_every_key() {
    let text = std::fs::read_to_string(example()).expect("read example");
    // The example's file paths name the deployment's files; this machine has the repo's.
    let vocabulary = repo().join("src/alerts/vocabulary.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=example CA", "-keyout"])
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(made.status.success(), "openssl: {made:?}");
    let full = uncommented(&text)
        .replace(
            "/etc/watchpost/vocabulary.toml",
            &vocabulary.display().to_string(),
        )
        .replace("/etc/ssl/private-ca.pem", &ca.display().to_string());
    let file = dir.path().join("full.toml");
    std::fs::write(&file, &full).expect("write");
    let (code, effective, stderr) = check_config(Some(&file));
    assert_eq!(
        code, 0,
        "deploy/watchpost.toml with its optional lines uncommented is invalid:\n{stderr}\n{full}"
    );
    let mut in_example = BTreeSet::new();
    key_paths(
        &toml::from_str(&full).expect("example parses"),
        "",
        &mut in_example,
    );
    let mut in_config = BTreeSet::new();
    key_paths(
        &toml::from_str(&effective).expect("effective config parses"),
        "",
        &mut in_config,
    );
    let missing: Vec<&String> = in_config.difference(&in_example).collect();
    assert!(
        missing.is_empty(),
        "keys of the configuration missing from deploy/watchpost.toml: {missing:?}"
    );
    // Every optional and routing key, once set, is in the effective configuration.
    for key in [
        "external_url",
        "telegram.bot_token",
        "auth.tokens.name",
        "log.format",
        "log.level",
        "alerts.ntopng_shared_secret",
        "reports.telegram_schedule",
        "route.continue",
        "route.matchers",
        "route.repeat_interval",
        "receivers.telegram.template",
        "receivers.webhook.url",
        "inhibit_rules.equal",
        "rules.external_labels.cluster",
    ] {
        assert!(
            in_config.contains(key),
            "{key} not in effective config:\n{effective}"
        );
    }
    assert!(
        !effective.contains("AAExampleToken"),
        "secrets are redacted:\n{effective}"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze() {
    verify_unit(
        "watchpost.service",
        &[
            "ExecStart=/usr/local/bin/watchpost serve --config /etc/watchpost/watchpost.toml",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ],
    );
    verify_unit(
        "watchpost-agent.service",
        &[
            "ExecStart=/usr/local/bin/watchpost agent --config /etc/watchpost/agent.toml",
            "Restart=always",
        ],
    );
}

/// `deploy/systemd/<name>` contains `lines` and passes `systemd-analyze verify`.
fn verify_unit(name: &str, lines: &[&str]) {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("systemd-analyze not installed: skipping");
        return;
    }
    let unit =
        std::fs::read_to_string(repo().join("deploy/systemd").join(name)).expect("read unit");
    for line in lines {
        assert!(unit.contains(line), "{name}: {line}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    let binary = common::binary();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/watchpost", &binary.display().to_string()),
    )
    .expect("write unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    let findings: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
    assert!(
        findings.is_empty(),
        "systemd-analyze verify {name}:\n{text}"
    );
}
