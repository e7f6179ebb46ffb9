//! Silences and inhibition on SQLite and PostgreSQL: they mute exactly what they match,
//! taking effect and ending produce silenced/unsilenced events, bad matchers are
//! named, and the default inhibition rule mutes a warning under a critical.

mod alerts_support;
mod common;

use std::time::Duration;

use alerts_support::*;
use common::{TestApp, databases, eventually, test_config};
use serde_json::{Value, json};
use watchpost::config::{InhibitRule, Role, Secret, TokenConfig};

fn silence(matchers: Value, starts: Option<String>, ends: String) -> Value {
    let mut s = json!({
        "matchers": matchers,
        "endsAt": ends,
        "createdBy": "ann",
        "comment": "deploy of web tier"
    });
    if let Some(st) = starts {
        s["startsAt"] = json!(st);
    }
    s
}

#[tokio::test]
async fn silences_mute_exactly_what_they_match() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let web1 = ingest(
            &app,
            &alert(
                "web-1 slow",
                json!({"alertname": "Slow", "instance": "web-1", "job": "web"}),
            ),
        )
        .await[0];
        let db1 = ingest(
            &app,
            &alert(
                "db-1 slow",
                json!({"alertname": "Slow", "instance": "db-1", "job": "db"}),
            ),
        )
        .await[0];

        let s = silence(
            json!([
                {"name": "instance", "value": "web-.*", "isRegex": true, "isEqual": true},
                {"name": "job", "value": "db", "isRegex": false, "isEqual": false}
            ]),
            None,
            at(3600),
        );
        let r = post(&app, "/api/v1/silences", &s, None).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        let id = r.body["silenceID"].as_str().unwrap().to_string();
        assert_eq!(r.body["id"], id.as_str());
        assert_eq!(r.body["status"]["state"], "active");
        assert_eq!(r.body["createdBy"], "ann");

        // Applied to the firing alerts as soon as the POST returns.
        let a = alert_by_id(&app, web1).await;
        assert_eq!(a["silenced"], true, "{k}: {a}");
        assert_eq!(event_kinds(&a), ["fired", "silenced"], "{k}");
        let b = alert_by_id(&app, db1).await;
        assert_eq!(b["silenced"], false, "{k}");
        assert_eq!(event_kinds(&b), ["fired"]);
        // New alerts are muted on arrival; others are not.
        let web2 = ingest(
            &app,
            &alert(
                "web-2 slow",
                json!({"alertname": "Slow", "instance": "web-2", "job": "web"}),
            ),
        )
        .await[0];
        assert_eq!(alert_by_id(&app, web2).await["silenced"], true, "{k}");
        let xweb = ingest(
            &app,
            &alert(
                "xweb slow",
                json!({"alertname": "Slow", "instance": "xweb-1"}),
            ),
        )
        .await[0];
        assert_eq!(
            alert_by_id(&app, xweb).await["silenced"],
            false,
            "{k}: regexes are anchored"
        );
        let silenced: Vec<i64> = list_all(&app, "state=silenced")
            .await
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(silenced, vec![web2, web1], "{k}");

        let r = get(&app, "/api/v1/silences", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.as_array().unwrap().len(), 1);
        assert_eq!(r.body[0]["matchers"][0]["isRegex"], true);
        assert_eq!(
            get(&app, &format!("/api/v1/silences/{id}"), None)
                .await
                .body["comment"],
            "deploy of web tier"
        );
        assert_eq!(
            get(&app, "/api/v1/silences?state=expired", None).await.body,
            json!([])
        );

        // Expiring it unmutes them, with an event each.
        let r = delete(&app, &format!("/api/v1/silences/{id}"), None).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        assert_eq!(r.body["status"]["state"], "expired");
        let a = alert_by_id(&app, web1).await;
        assert_eq!(a["silenced"], false, "{k}");
        assert_eq!(event_kinds(&a), ["fired", "silenced", "unsilenced"], "{k}");
        assert_eq!(
            get(&app, "/api/v1/silences?state=expired", None)
                .await
                .body
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            delete(&app, "/api/v1/silences/nope", None).await.status,
            404
        );

        // A pending silence mutes nothing until it starts; one that ends unmutes by itself.
        let pending = silence(
            json!([{"name": "instance", "value": "db-1"}]),
            Some(at(3600)),
            at(7200),
        );
        let r = post(&app, "/api/v1/silences", &pending, None).await;
        assert_eq!(r.body["status"]["state"], "pending", "{k}");
        assert_eq!(alert_by_id(&app, db1).await["silenced"], false);
        let short = silence(json!([{"name": "instance", "value": "db-1"}]), None, at(2));
        assert_eq!(
            post(&app, "/api/v1/silences", &short, None).await.status,
            200
        );
        assert_eq!(alert_by_id(&app, db1).await["silenced"], true, "{k}");
        let unmuted = eventually(Duration::from_secs(15), || async {
            let a = alert_by_id(&app, db1).await;
            (a["silenced"] == false).then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("{k}: silence never ended"));
        assert_eq!(
            event_kinds(&unmuted),
            ["fired", "silenced", "unsilenced"],
            "{k}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_silences_are_named_and_not_stored() {
    for db in databases().await {
        let mut cfg = test_config(&db.url);
        cfg.auth.tokens = vec![
            TokenConfig {
                token: Secret("viewer-token-1".into()),
                role: Role::Viewer,
                name: None,
            },
            TokenConfig {
                token: Secret("operator-token-1".into()),
                role: Role::Operator,
                name: Some("otto".into()),
            },
            TokenConfig {
                token: Secret("admin-token-1".into()),
                role: Role::Admin,
                name: None,
            },
        ];
        let app = TestApp::start(cfg).await;
        let k = db.kind;
        let op = Some("operator-token-1");
        let cases = [
            (
                silence(
                    json!([{"name": "job", "value": "web"}, {"name": "instance", "value": "web-(", "isRegex": true}]),
                    None,
                    at(600),
                ),
                "matchers[1] (instance)",
            ),
            (silence(json!([]), None, at(600)), "matchers"),
            (
                silence(
                    json!([{"name": "job", "value": ".*", "isRegex": true}]),
                    None,
                    at(600),
                ),
                "empty string",
            ),
            (
                silence(json!([{"name": "job", "value": "web"}]), None, at(-600)),
                "endsAt",
            ),
            (
                silence(
                    json!([{"name": "job", "value": "web"}]),
                    None,
                    "tomorrow".into(),
                ),
                "endsAt",
            ),
            (
                silence(
                    json!([{"name": "job", "value": "web"}]),
                    Some(at(900)),
                    at(600),
                ),
                "endsAt",
            ),
            (
                json!({"matchers": [{"name": "job", "value": 5}], "endsAt": at(600)}),
                "matchers[0].value",
            ),
            (
                json!({"matchers": [{"name": "job", "value": "web"}]}),
                "endsAt",
            ),
        ];
        for (body, needle) in cases {
            let r = post(&app, "/api/v1/silences", &body, op).await;
            assert_eq!(r.status, 400, "{k}: {body}: {}", r.text);
            let err = r.body["error"].as_str().unwrap();
            assert!(err.contains(needle), "{k}: {err:?} should name {needle:?}");
        }
        let good = silence(json!([{"name": "job", "value": "web"}]), None, at(600));
        assert_eq!(
            post(&app, "/api/v1/silences", &good, None).await.status,
            401
        );
        assert_eq!(
            post(&app, "/api/v1/silences", &good, Some("viewer-token-1"))
                .await
                .status,
            403
        );
        assert_eq!(
            get(&app, "/api/v1/silences", None).await.body,
            json!([]),
            "{k}: nothing stored"
        );
        let r = post(&app, "/api/v1/silences", &good, op).await;
        assert_eq!(r.status, 200);
        let id = r.body["id"].as_str().unwrap().to_string();
        assert_eq!(
            delete(
                &app,
                &format!("/api/v1/silences/{id}"),
                Some("viewer-token-1")
            )
            .await
            .status,
            403
        );
        assert_eq!(
            delete(&app, &format!("/api/v1/silences/{id}"), op)
                .await
                .status,
            200
        );

        // Updating by id (Alertmanager-style), and the audit trail.
        let mut upd = silence(json!([{"name": "job", "value": "api"}]), None, at(600));
        let r = post(&app, "/api/v1/silences", &upd, op).await;
        let id2 = r.body["id"].as_str().unwrap().to_string();
        upd["id"] = json!(id2);
        upd["comment"] = json!("longer");
        upd["endsAt"] = json!(at(1200));
        let r = post(&app, "/api/v1/silences", &upd, op).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["id"], id2.as_str());
        assert_eq!(r.body["comment"], "longer");
        assert_eq!(
            get(&app, "/api/v1/silences", None)
                .await
                .body
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let audit = get(&app, "/api/v1/audit", Some("admin-token-1")).await.body;
        let actions: Vec<&str> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            [
                "silence.update",
                "silence.create",
                "silence.expire",
                "silence.create"
            ],
            "{k}"
        );
        assert_eq!(audit["entries"][0]["actor"], "otto");
        app.stop().await;
    }
}

#[tokio::test]
async fn default_inhibition_mutes_warning_under_critical() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let labels = |instance: &str, severity: &str| json!({"alertname": "DiskSpace", "instance": instance, "severity": severity});
        let warn_a = ingest(&app, &alert("disk 85% on a", labels("a", "warning"))).await[0];
        let warn_b = ingest(&app, &alert("disk 85% on b", labels("b", "warning"))).await[0];
        assert_eq!(alert_by_id(&app, warn_a).await["silenced"], false);
        let crit_a = ingest(&app, &alert("disk 99% on a", labels("a", "critical"))).await[0];

        let a = alert_by_id(&app, warn_a).await;
        assert_eq!(a["silenced"], true, "{k}: {a}");
        assert_eq!(a["inhibited"], true);
        assert_eq!(event_kinds(&a), ["fired", "silenced"], "{k}");
        assert_eq!(
            alert_by_id(&app, warn_b).await["silenced"],
            false,
            "{k}: other instance"
        );
        assert_eq!(
            alert_by_id(&app, crit_a).await["silenced"],
            false,
            "{k}: the source itself"
        );

        // A warning arriving under the critical is inhibited on arrival.
        assert_eq!(
            ingest(&app, &alert("disk 86% on a", labels("a", "warning"))).await,
            vec![warn_a]
        );
        assert_eq!(alert_by_id(&app, warn_a).await["silenced"], true);

        // Resolving the critical lifts it.
        let mut resolve = alert("disk 99% on a", labels("a", "critical"));
        resolve["ends_at"] = json!(at(-1));
        ingest(&app, &resolve).await;
        let a = alert_by_id(&app, warn_a).await;
        assert_eq!(a["silenced"], false, "{k}: {a}");
        assert_eq!(
            event_kinds(&a),
            ["fired", "silenced", "repeated", "unsilenced"],
            "{k}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn configured_inhibition_rules_replace_the_default() {
    let db = common::sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.inhibit_rules = Some(vec![InhibitRule {
        source_matchers: vec![r#"alertname="NodeDown""#.into()],
        target_matchers: vec![r#"alertname!="NodeDown""#.into()],
        equal: vec!["instance".into()],
    }]);
    let app = TestApp::start(cfg).await;
    let cpu = ingest(
        &app,
        &alert(
            "cpu",
            json!({"alertname": "Cpu", "instance": "n1", "severity": "warning"}),
        ),
    )
    .await[0];
    let crit = ingest(
        &app,
        &alert(
            "disk",
            json!({"alertname": "Disk", "instance": "n2", "severity": "critical"}),
        ),
    )
    .await[0];
    let warn = ingest(
        &app,
        &alert(
            "disk",
            json!({"alertname": "Disk", "instance": "n2", "severity": "warning"}),
        ),
    )
    .await[0];
    assert_eq!(
        alert_by_id(&app, warn).await["silenced"],
        false,
        "the default rule is replaced"
    );
    ingest(
        &app,
        &alert(
            "n1 down",
            json!({"alertname": "NodeDown", "instance": "n1"}),
        ),
    )
    .await;
    assert_eq!(alert_by_id(&app, cpu).await["inhibited"], true);
    assert_eq!(alert_by_id(&app, crit).await["inhibited"], false);
    app.stop().await;

    // An invalid matcher in the config is a start-up error naming it.
    let db = common::sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.inhibit_rules = Some(vec![InhibitRule {
        source_matchers: vec![r#"alertname=~"(""#.into()],
        target_matchers: vec![],
        equal: vec![],
    }]);
    let err = match watchpost::App::start(cfg).await {
        Ok(_) => panic!("an invalid inhibit rule must not start"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .contains("inhibit_rules[0].source_matchers[0]"),
        "{err}"
    );
}
