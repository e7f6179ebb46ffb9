//! Rule files from the outside: `watchpost check-rules` (real binary) and promtool on the
//! default rules, the default rules evaluating in the app, SIGHUP reloads.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Server, TestApp, command, eventually, sqlite_db, test_config};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `alerts/*.yml` (what the default glob matches) plus the optional Watchdog.
fn default_rule_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("alerts"))
        .expect("alerts/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "one file per concern: {files:?}");
    files.push(repo().join("alerts/optional/watchdog.yml"));
    files
}

fn check_rules(dir: &Path, files: &[PathBuf]) -> (i32, String, String) {
    let out = command(dir)
        .arg("check-rules")
        .args(files)
        .output()
        .expect("run watchpost check-rules");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// promtool, or `None` when it is not installed (a failure under `CI=true`).
fn promtool() -> Option<PathBuf> {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if found {
        return Some(PathBuf::from("promtool"));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but promtool is not installed (apt-get install prometheus)");
    }
    eprintln!("promtool not installed: skipping the promtool check");
    None
}

#[test]
fn default_rules_pass_watchpost_check_rules() {
    let files = default_rule_files();
    let (code, stdout, stderr) = check_rules(&repo(), &files);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn default_rules_pass_promtool() {
    let Some(promtool) = promtool() else {
        return;
    };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .args(default_rule_files())
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The default rules' unit tests (every `tests/fixtures/rules/*_test.yml`), run by
/// promtool over Prometheus' own engine: e.g. ClusterNodeDown fires after its `for` for
/// each dead member only, names it as `instance`, and resolves when it is back.
#[test]
fn default_rules_pass_their_promtool_unit_tests() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = repo().join("tests/fixtures/rules");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("_test.yml"))
        .collect();
    files.sort();
    for must in ["cluster_test.yml", "postgres_test.yml"] {
        assert!(files.iter().any(|f| f == must), "{must} in {files:?}");
    }
    let out = Command::new(promtool)
        .current_dir(&dir)
        .args(["test", "rules"])
        .args(&files)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn default_rules_follow_the_conventions() {
    for file in default_rule_files() {
        let parsed = watchpost::rules::load_file(&file).expect("valid");
        for group in &parsed.groups {
            for rule in &group.rules {
                let labels = rule.label_sources();
                let severity = labels.get("severity").map(String::as_str);
                let watchdog = rule.name == "Watchdog";
                let allowed: &[&str] = if watchdog {
                    &["info"]
                } else {
                    &["warning", "critical"]
                };
                assert!(
                    severity.is_some_and(|s| allowed.contains(&s)),
                    "{}: {} has severity {severity:?}",
                    file.display(),
                    rule.name
                );
                let annotations = rule.annotation_sources();
                for key in ["summary", "description"] {
                    assert!(
                        annotations.get(key).is_some_and(|v| v.len() > 10),
                        "{}: {} lacks a useful {key}",
                        file.display(),
                        rule.name
                    );
                }
            }
        }
    }
    // The Watchdog is off by default: the default glob does not match it.
    let matched: Vec<String> = glob::glob(&format!("{}/alerts/*.yml", repo().display()))
        .unwrap()
        .map(|p| p.unwrap().display().to_string())
        .collect();
    assert!(
        !matched.iter().any(|p| p.contains("watchdog")),
        "{matched:?}"
    );
}

#[test]
fn check_rules_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_template = dir.path().join("template.yml");
    std::fs::write(
        &bad_template,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      summary: ok {{ $labels.instance }}\n      description: |\n        first line\n        value {{ $value | humanise }}\n",
    )
    .unwrap();
    let bad_yaml = dir.path().join("yaml.yml");
    std::fs::write(&bad_yaml, "groups:\n- name: g\n  rules: [\n").unwrap();
    let bad_expr = dir.path().join("expr.yml");
    std::fs::write(
        &bad_expr,
        "groups:\n- name: g\n  rules:\n  - record: ok:sum\n    expr: sum(up)\n  - record: bad\n    expr: rate(up)\n    for: 5m\n",
    )
    .unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n",
    )
    .unwrap();

    let (code, stdout, stderr) = check_rules(
        dir.path(),
        &[
            bad_template.clone(),
            bad_yaml.clone(),
            bad_expr.clone(),
            good.clone(),
            dir.path().join("missing.yml"),
        ],
    );
    assert_eq!(code, 1, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let expect = |file: &Path, line: usize, fragment: &str| {
        let prefix = format!("{}:{line}: ", file.display());
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
            "expected `{prefix}…{fragment}…` in:\n{stderr}"
        );
    };
    expect(
        &bad_template,
        10,
        "annotation \"description\": template: function \"humanise\" not defined",
    );
    expect(&bad_yaml, 4, "yaml:");
    expect(&bad_expr, 7, "could not parse expression");
    expect(&bad_expr, 8, "invalid field 'for' in recording rule");
    assert!(
        stderr.contains(&format!(
            "{}: cannot read",
            dir.path().join("missing.yml").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("good.yml"), "{stderr}");

    // The same bad template fails promtool too.
    if let Some(promtool) = promtool() {
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(&bad_template)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }

    let (code, stdout, _) = check_rules(dir.path(), &[good]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("SUCCESS: 1 files, 1 groups, 1 rules"),
        "{stdout}"
    );
}

#[test]
fn check_rules_needs_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path()).arg("check-rules").output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[tokio::test]
async fn default_rules_evaluate_cleanly_in_the_app() {
    let db = sqlite_db();
    let mut config = test_config(&db.url);
    config.rules.files = vec![
        format!("{}/alerts/*.yml", repo().display()),
        format!("{}/alerts/optional/watchdog.yml", repo().display()),
    ];
    config.rules.evaluation_interval = Duration::from_millis(200);
    let app = TestApp::start(config).await;
    let body = eventually(WAIT, || async {
        let (_, body) = app.get_json("/api/v1/rules").await;
        let rules: Vec<&Value> = body["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        (rules.len() >= 16 && rules.iter().all(|r| r["health"] != "unknown"))
            .then_some(body.clone())
    })
    .await
    .expect("every default rule evaluated");
    for g in body["data"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            assert_eq!(
                r["health"], "ok",
                "{} failed: {}",
                r["name"], r["lastError"]
            );
        }
    }
    let watchdog = eventually(WAIT, || async {
        let r = app
            .client
            .get(app.url("/api/v1/query"))
            .query(&[(
                "query",
                r#"ALERTS{alertname="Watchdog",alertstate="firing"}"#,
            )])
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        let result = v["data"]["result"].as_array()?.clone();
        (!result.is_empty()).then_some(result)
    })
    .await
    .expect("Watchdog firing in ALERTS");
    assert_eq!(watchdog[0]["metric"]["severity"], "info");
    app.stop().await;
}

#[tokio::test]
async fn sighup_reloads_rules_in_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("a.yml"),
        "groups:\n- name: a\n  rules:\n  - record: a:one\n    expr: vector(1)\n",
    )
    .unwrap();
    let config = dir.path().join("watchpost.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}/w.db\"\n[rules]\nfiles = [\"{}/*.yml\"]\nevaluation_interval = \"200ms\"\n",
            dir.path().display(),
            rules.display()
        ),
    )
    .unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("serve").arg("--config").arg(&config);
    let server = Server::spawn(cmd);
    let client = common::client();
    let base = server.base();
    let groups = || {
        let client = client.clone();
        let base = base.clone();
        async move {
            let body: Value = client
                .get(format!("{base}/api/v1/rules"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let names: Vec<String> = body["data"]["groups"]
                .as_array()?
                .iter()
                .map(|g| g["name"].as_str().unwrap_or_default().to_string())
                .collect();
            Some(names)
        }
    };
    assert_eq!(groups().await.unwrap(), vec!["a"]);

    std::fs::write(
        rules.join("b.yml"),
        "groups:\n- name: b\n  rules:\n  - alert: B\n    expr: vector(1)\n",
    )
    .unwrap();
    server.signal("HUP");
    eventually(WAIT, || async {
        (groups().await? == vec!["a", "b"]).then_some(())
    })
    .await
    .expect("group b loaded on SIGHUP");

    std::fs::write(rules.join("b.yml"), "groups:\n- name: b\n  rules: [\n").unwrap();
    server.signal("HUP");
    eventually(WAIT, || async {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("watchpost_rules_last_reload_success 0")
            .then_some(())
    })
    .await
    .expect("failed reload reported in /metrics");
    assert_eq!(
        groups().await.unwrap(),
        vec!["a", "b"],
        "old rules keep running"
    );
}
