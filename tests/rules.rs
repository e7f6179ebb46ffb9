//! Rules through the real app: the state machine seen in `/api/v1/rules`, in `ALERTS`
//! through the query engine and on the rule alert channel; templates; reloads.
//!
//! Conditions are driven by a recording rule (`test:switch`) whose expression the test
//! rewrites and reloads, so nothing depends on host load or timing.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestApp, eventually, sqlite_db, test_config};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// A folder of rule files.
struct RulesDir {
    dir: tempfile::TempDir,
}

impl RulesDir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).expect("write rule file");
    }
    fn glob(&self) -> String {
        format!("{}/*.yml", self.dir.path().display())
    }
}

fn switch_file(value: f64) -> String {
    format!(
        "groups:\n- name: switch\n  interval: 200ms\n  rules:\n  - record: test:switch\n    expr: vector({value})\n    labels:\n      source: test\n"
    )
}

const ALERT_FILE: &str = r#"groups:
- name: alerting
  interval: 200ms
  rules:
  - alert: SwitchOn
    expr: test:switch > 1
    for: 2s
    labels:
      severity: warning
      origin: "from-{{ $labels.source }}"
    annotations:
      summary: "switch at {{ $value }} from {{ $labels.source }} in {{ $externalLabels.cluster }}"
      percent: "{{ $value | humanizePercentage }}"
      job: "{{ .Labels.source | toUpper }}"
  - alert: Held
    expr: test:switch > 1
    keep_firing_for: 3s
    labels:
      severity: critical
"#;

async fn start(dir: &RulesDir, db_url: &str) -> TestApp {
    let mut config = test_config(db_url);
    config.rules.files = vec![dir.glob()];
    config.rules.evaluation_interval = Duration::from_millis(200);
    config
        .rules
        .external_labels
        .insert("cluster".into(), "eu1".into());
    TestApp::start(config).await
}

async fn rules(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/api/v1/rules").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    body
}

fn find_rule<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["data"]["groups"]
        .as_array()?
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .find(|r| r["name"] == name)
}

async fn rule(app: &TestApp, name: &str) -> Value {
    let body = rules(app).await;
    find_rule(&body, name)
        .cloned()
        .unwrap_or_else(|| panic!("rule {name} missing from {body}"))
}

/// Instant query through the HTTP API; the result vector.
async fn query(app: &TestApp, q: &str) -> Vec<Value> {
    let r = app
        .client
        .get(app.url("/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .expect("query");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("query json");
    assert_eq!(status, 200, "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn reload(app: &TestApp) -> (u16, Value) {
    let r = app
        .client
        .post(app.url("/-/reload"))
        .send()
        .await
        .expect("reload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The alert the pipeline stored for rule `name` (source `watchpost`), once in `state`.
async fn stored_alert(app: &TestApp, name: &str, state: &str) -> Value {
    let path = format!("/api/v1/alerts?source=watchpost&label=alertname%3D{name}&limit=10");
    eventually(WAIT, || async {
        let (status, body) = app.get_json(&path).await;
        assert_eq!(status, 200, "{body}");
        body["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["state"] == state)
            .cloned()
    })
    .await
    .unwrap_or_else(|| panic!("no {state} alert for {name} within {WAIT:?}"))
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

#[tokio::test]
async fn alert_goes_pending_firing_and_resolves() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(5.0));
    dir.write("alert.yml", ALERT_FILE);
    let app = start(&dir, &db.url).await;
    let started = chrono::Utc::now();

    // Pending, with rendered templates.
    let pending = eventually(WAIT, || async {
        let r = rule(&app, "SwitchOn").await;
        (r["state"] == "pending").then_some(r)
    })
    .await
    .expect("SwitchOn pending");
    assert_eq!(pending["type"], "alerting");
    assert_eq!(pending["duration"], 2.0);
    assert_eq!(pending["health"], "ok");
    assert_eq!(pending["query"], "test:switch > 1");
    let alert = &pending["alerts"][0];
    assert_eq!(alert["state"], "pending");
    assert_eq!(alert["value"], "5e+00");
    assert_eq!(alert["labels"]["alertname"], "SwitchOn");
    assert_eq!(alert["labels"]["origin"], "from-test");
    assert_eq!(alert["labels"]["source"], "test");
    assert!(alert["labels"].get("__name__").is_none());
    assert_eq!(
        alert["annotations"]["summary"],
        "switch at 5 from test in eu1"
    );
    assert_eq!(alert["annotations"]["percent"], "500%");
    assert_eq!(alert["annotations"]["job"], "TEST");
    let active_at = alert["activeAt"].as_str().unwrap().to_string();

    // Firing after `for`; the same alert keeps its activeAt.
    let firing = eventually(WAIT, || async {
        let r = rule(&app, "SwitchOn").await;
        (r["state"] == "firing").then_some(r)
    })
    .await
    .expect("SwitchOn firing");
    assert_eq!(firing["alerts"][0]["state"], "firing");
    assert_eq!(firing["alerts"][0]["activeAt"], active_at.as_str());

    // Stored by the alert pipeline on the transition, after at least `for` of pending.
    let sent = stored_alert(&app, "SwitchOn", "firing").await;
    assert_eq!(
        sent["labels"]["cluster"], "eu1",
        "external labels on sent alerts"
    );
    assert_eq!(sent["severity"], "warning");
    assert_eq!(sent["message"], "switch at 5 from test in eu1");
    assert_eq!(sent["count"], 1, "sent once: {sent}");
    assert!(
        time(&sent["starts_at"]) - time(&Value::from(active_at.clone()))
            >= chrono::Duration::seconds(2)
    );
    assert!(
        sent["generator_url"]
            .as_str()
            .unwrap()
            .contains("/graph?g0.expr=test%3Aswitch+%3E+1")
    );

    // ALERTS through the query engine: firing now, and pending before it (history).
    let now = query(&app, r#"ALERTS{alertname="SwitchOn"}"#).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["metric"]["alertstate"], "firing");
    assert_eq!(now[0]["metric"]["severity"], "warning");
    assert_eq!(now[0]["value"][1], "1");
    let for_state = query(&app, r#"ALERTS_FOR_STATE{alertname="SwitchOn"}"#).await;
    assert_eq!(for_state.len(), 1, "{for_state:?}");
    let r = app
        .client
        .get(app.url("/api/v1/query_range"))
        .query(&[
            ("query", r#"ALERTS{alertname="SwitchOn"}"#.to_string()),
            ("start", format!("{}", started.timestamp() - 1)),
            ("end", format!("{}", chrono::Utc::now().timestamp() + 1)),
            ("step", "0.2".to_string()),
        ])
        .send()
        .await
        .unwrap();
    let history: Value = r.json().await.unwrap();
    let states: Vec<&str> = history["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["alertstate"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"pending"), "{history}");
    assert!(states.contains(&"firing"), "{history}");

    // The condition clears: resolved, sent once, ALERTS ends.
    dir.write("switch.yml", &switch_file(0.0));
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    eventually(WAIT, || async {
        let r = rule(&app, "SwitchOn").await;
        (r["state"] == "inactive" && r["alerts"].as_array().is_some_and(|a| a.is_empty()))
            .then_some(())
    })
    .await
    .expect("SwitchOn resolved");
    let resolved = stored_alert(&app, "SwitchOn", "resolved").await;
    assert_eq!(resolved["id"], sent["id"]);
    assert!(time(&resolved["ends_at"]) <= chrono::Utc::now());
    eventually(WAIT, || async {
        query(&app, r#"ALERTS{alertname="SwitchOn"}"#)
            .await
            .is_empty()
            .then_some(())
    })
    .await
    .expect("ALERTS series of a resolved alert go stale");

    let (_, metrics) = app.get_text("/metrics").await;
    let evaluations = metrics
        .lines()
        .find_map(|l| l.strip_prefix("watchpost_rule_evaluations_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("watchpost_rule_evaluations_total");
    assert!(evaluations > 0.0);
    app.stop().await;
}

#[tokio::test]
async fn keep_firing_for_holds_the_alert() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(5.0));
    dir.write("alert.yml", ALERT_FILE);
    let app = start(&dir, &db.url).await;
    let fired = stored_alert(&app, "Held", "firing").await;
    let cleared_at = chrono::Utc::now();
    dir.write("switch.yml", &switch_file(0.0));
    assert_eq!(reload(&app).await.0, 200);

    // Held: still firing with keepFiringSince while the condition is gone.
    let held = eventually(WAIT, || async {
        let r = rule(&app, "Held").await;
        let a = r["alerts"].get(0)?.clone();
        a.get("keepFiringSince").is_some().then_some(a)
    })
    .await
    .expect("Held shows keepFiringSince");
    assert_eq!(held["state"], "firing");

    let resolved = stored_alert(&app, "Held", "resolved").await;
    let resolved_at = time(&resolved["ends_at"]);
    assert!(
        resolved_at - cleared_at >= chrono::Duration::seconds(3),
        "resolved {resolved_at} only {} after the condition cleared at {cleared_at}",
        resolved_at - cleared_at
    );
    assert_eq!(resolved["id"], fired["id"]);
    assert_eq!(rule(&app, "Held").await["state"], "inactive");
    app.stop().await;
}

const HYSTERESIS_FILE: &str = r#"groups:
- name: hysteresis
  interval: 200ms
  rules:
  - alert: Hot
    expr: test:switch > 90
    annotations:
      watchpost_resolve_expr: test:switch >= 80
"#;

/// Fire above 90, clear below 80, through the real engine and pipeline: oscillating
/// between 85 and 95 fires once and never resolves; 70 resolves once; 85 again does
/// not fire.
#[tokio::test]
async fn resolve_expr_holds_the_alert_until_it_clears() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(95.0));
    dir.write("hot.yml", HYSTERESIS_FILE);
    let app = start(&dir, &db.url).await;
    let fired = stored_alert(&app, "Hot", "firing").await;
    let set = |v: f64| {
        dir.write("switch.yml", &switch_file(v));
        reload(&app)
    };
    for v in [85.0, 95.0, 85.0, 95.0, 85.0] {
        assert_eq!(set(v).await.0, 200);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(rule(&app, "Hot").await["state"], "firing", "at {v}");
    }
    assert_eq!(set(70.0).await.0, 200);
    let resolved = stored_alert(&app, "Hot", "resolved").await;
    assert_eq!(resolved["id"], fired["id"]);
    assert_eq!(set(85.0).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rule(&app, "Hot").await["state"],
        "inactive",
        "85 is below 90"
    );
    let (_, a) = app
        .get_json(&format!("/api/v1/alerts/{}", fired["id"]))
        .await;
    let kinds: Vec<&str> = a["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| *k == "fired" || *k == "resolved")
        .collect();
    assert_eq!(kinds, ["fired", "resolved"], "{a}");
    app.stop().await;
}

#[tokio::test]
async fn broken_reload_keeps_old_rules_running() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(5.0));
    dir.write("alert.yml", ALERT_FILE);
    let app = start(&dir, &db.url).await;

    let firing = eventually(WAIT, || async {
        let r = rule(&app, "SwitchOn").await;
        (r["state"] == "firing").then_some(r)
    })
    .await
    .expect("firing before the broken reload");
    let active_at = firing["alerts"][0]["activeAt"].clone();

    // Break a file: the reload fails naming file and line, nothing changes.
    let broken = format!("{}  - alert: Broken\n    expr: sum(\n", ALERT_FILE);
    dir.write("alert.yml", &broken);
    let broken_line = broken.lines().count();
    let (status, body) = reload(&app).await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    let expected = format!("{}:{broken_line}:", dir.path("alert.yml").display());
    assert!(error.contains(&expected), "{error} should name {expected}");
    assert!(error.contains("could not parse expression"), "{error}");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("watchpost_rules_last_reload_success 0"),
        "reload gauge"
    );
    let listing = rules(&app).await;
    assert!(
        listing["data"]["lastReloadError"]
            .as_str()
            .is_some_and(|e| e.contains(&expected)),
        "{listing}"
    );
    assert!(find_rule(&listing, "Broken").is_none());

    // The old rules keep evaluating with their state.
    let before = rule(&app, "SwitchOn").await["lastEvaluation"].clone();
    eventually(WAIT, || async {
        let r = rule(&app, "SwitchOn").await;
        (r["lastEvaluation"] != before).then_some(())
    })
    .await
    .expect("old rules still evaluate");
    let r = rule(&app, "SwitchOn").await;
    assert_eq!(r["state"], "firing");
    assert_eq!(r["alerts"][0]["activeAt"], active_at);

    // Fixed: the new rule appears, the unchanged group keeps its alert.
    dir.write(
        "alert.yml",
        &format!("{ALERT_FILE}  - alert: Added\n    expr: test:switch > 100\n"),
    );
    let (status, body) = reload(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["groups"], 2);
    let listing = rules(&app).await;
    assert!(listing["data"].get("lastReloadError").is_none());
    assert!(find_rule(&listing, "Added").is_some());
    let r = find_rule(&listing, "SwitchOn").unwrap();
    assert_eq!(r["state"], "firing", "changed group keeps matching alerts");
    assert_eq!(r["alerts"][0]["activeAt"], active_at);
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("watchpost_rules_last_reload_success 1"));
    app.stop().await;
}

#[tokio::test]
async fn rules_api_shape_and_filters() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(5.0));
    dir.write("alert.yml", ALERT_FILE);
    let app = start(&dir, &db.url).await;
    let recorded = eventually(WAIT, || async {
        let r = rule(&app, "test:switch").await;
        (r["health"] == "ok").then_some(r)
    })
    .await
    .expect("recording rule evaluated");
    assert_eq!(recorded["type"], "recording");
    assert_eq!(recorded["query"], "vector(5)");
    assert_eq!(recorded["labels"]["source"], "test");
    assert_eq!(recorded["lastError"], "");
    assert!(recorded["evaluationTime"].is_number());
    assert!(recorded["lastEvaluation"].as_str().unwrap().ends_with('Z'));

    let body = rules(&app).await;
    let groups = body["data"]["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alerting", "switch"]);
    let g = &groups[0];
    assert_eq!(g["interval"], 0.2);
    assert_eq!(g["limit"], 0);
    assert_eq!(g["file"], dir.path("alert.yml").display().to_string());
    for key in ["evaluationTime", "lastEvaluation", "rules"] {
        assert!(g.get(key).is_some(), "group lacks {key}");
    }
    let held = find_rule(&body, "Held").unwrap();
    for key in [
        "state",
        "name",
        "query",
        "duration",
        "keepFiringFor",
        "labels",
        "annotations",
        "alerts",
        "health",
        "lastError",
        "evaluationTime",
        "lastEvaluation",
        "type",
    ] {
        assert!(held.get(key).is_some(), "alerting rule lacks {key}");
    }
    assert_eq!(held["keepFiringFor"], 3.0);

    let (_, only_alerts) = app.get_json("/api/v1/rules?type=alert").await;
    assert!(find_rule(&only_alerts, "test:switch").is_none());
    assert!(find_rule(&only_alerts, "Held").is_some());
    assert_eq!(only_alerts["data"]["groups"].as_array().unwrap().len(), 1);
    let (_, only_records) = app.get_json("/api/v1/rules?type=record").await;
    assert!(find_rule(&only_records, "test:switch").is_some());
    assert!(find_rule(&only_records, "Held").is_none());
    let (_, by_name) = app.get_json("/api/v1/rules?rule_name[]=Held").await;
    let all: Vec<&Value> = by_name["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 1);
    let (status, bad) = app.get_json("/api/v1/rules?type=bogus").await;
    assert_eq!(status, 400);
    assert_eq!(bad["status"], "error");
    assert_eq!(bad["errorType"], "bad_data");
    assert!(bad["error"].as_str().unwrap().contains("type"));
    app.stop().await;
}

#[tokio::test]
async fn reload_needs_the_admin_role() {
    use watchpost::config::{Role, Secret, TokenConfig};
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write("switch.yml", &switch_file(1.0));
    let mut config = test_config(&db.url);
    config.rules.files = vec![dir.glob()];
    for (token, role) in [("viewer-token", Role::Viewer), ("admin-token", Role::Admin)] {
        config.auth.tokens.push(TokenConfig {
            token: Secret(token.into()),
            role,
            name: None,
        });
    }
    let app = TestApp::start(config).await;
    let post = |token: Option<&'static str>| {
        let mut req = app.client.post(app.url("/-/reload"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        post(Some("viewer-token")).await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        post(Some("admin-token")).await.unwrap().status().as_u16(),
        200
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_rules_at_start_are_a_config_error() {
    let db = sqlite_db();
    let dir = RulesDir::new();
    dir.write(
        "bad.yml",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up ==\n",
    );
    let mut config = test_config(&db.url);
    config.rules.files = vec![dir.glob()];
    let err = match watchpost::App::start(config).await {
        Ok(_) => panic!("started with a broken rule file"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("bad.yml:5:"), "{err}");
}
