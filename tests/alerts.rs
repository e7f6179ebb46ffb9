//! The alert API end to end on SQLite and PostgreSQL: generic ingest, dedup, resolve
//! and refire, the alert object, list filters and pagination, acknowledgements, roles
//! and the audit log, stats and reports on a fixed data set.

mod alerts_support;
mod common;

use std::collections::BTreeSet;

use alerts_support::*;
use common::{TestApp, databases, test_config};
use serde_json::{Value, json};

#[tokio::test]
async fn ingest_dedup_resolve_and_refire() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let body = json!({
            "message": "Disk / is 97% full on db-1",
            "severity": "critical",
            "source": "cron",
            "labels": {"alertname": "DiskFull", "instance": "db-1"},
            "annotations": {"runbook": "https://wiki/disk"}
        });
        let ids = ingest(&app, &body).await;
        assert_eq!(ids.len(), 1, "{k}");
        let id = ids[0];
        let a = alert_by_id(&app, id).await;
        for key in [
            "id",
            "fingerprint",
            "source",
            "alertname",
            "message",
            "severity",
            "type",
            "risk_score",
            "state",
            "silenced",
            "labels",
            "annotations",
            "starts_at",
            "ends_at",
            "first_seen",
            "last_seen",
            "count",
            "acknowledged",
            "events",
        ] {
            assert!(a.get(key).is_some(), "{k}: {key} missing from {a}");
        }
        assert_eq!(a["id"], id);
        assert_eq!(a["source"], "cron");
        assert_eq!(a["alertname"], "DiskFull");
        assert_eq!(a["severity"], "critical");
        assert_eq!(a["type"], "system");
        assert_eq!(a["state"], "firing");
        assert_eq!(a["silenced"], false);
        assert_eq!(a["count"], 1);
        assert_eq!(a["ends_at"], Value::Null);
        assert_eq!(a["acknowledged"], Value::Null);
        assert_eq!(a["annotations"]["runbook"], "https://wiki/disk");
        let risk = a["risk_score"].as_i64().unwrap();
        assert!((0..=100).contains(&risk), "{k}: {risk}");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 32);
        assert_eq!(event_kinds(&a), ["fired"], "{k}");

        // The same alert again is the same alert, counted twice.
        assert_eq!(ingest(&app, &body).await, vec![id], "{k}");
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["count"], 2, "{k}");
        assert_eq!(event_kinds(&a), ["fired", "repeated"], "{k}");
        assert!(a["last_seen"].as_str() >= a["first_seen"].as_str());
        assert!(
            a["risk_score"].as_i64().unwrap() >= risk,
            "repeats raise the risk"
        );
        assert_eq!(list_all(&app, "").await.len(), 1, "{k}: one alert, not two");

        // A different label set is a different alert.
        let other = json!({"message": "Disk full", "source": "cron",
                           "labels": {"alertname": "DiskFull", "instance": "db-2"}});
        let other_id = ingest(&app, &other).await[0];
        assert_ne!(other_id, id);

        // ends_at in the past resolves.
        let mut resolve = body.clone();
        resolve["ends_at"] = json!(at(-5));
        assert_eq!(ingest(&app, &resolve).await, vec![id]);
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["state"], "resolved", "{k}");
        assert!(a["ends_at"].is_string());
        assert_eq!(event_kinds(&a), ["fired", "repeated", "resolved"], "{k}");
        let firing: Vec<i64> = list_all(&app, "state=firing")
            .await
            .iter()
            .map(|a| a["id"].as_i64().unwrap())
            .collect();
        assert_eq!(firing, vec![other_id], "{k}");

        // Firing again reopens it with a new event.
        assert_eq!(ingest(&app, &body).await, vec![id]);
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["state"], "firing", "{k}");
        assert_eq!(a["ends_at"], Value::Null);
        assert_eq!(a["count"], 3);
        assert_eq!(
            event_kinds(&a),
            ["fired", "repeated", "resolved", "fired"],
            "{k}"
        );

        // db-1 (explicitly critical) and db-2 ("disk full" is critical) fire.
        assert_eq!(
            metric(&app, r#"watchpost_alerts_active{severity="critical"}"#).await,
            Some(2.0),
            "{k}"
        );
        assert_eq!(
            metric(&app, r#"watchpost_alerts_received_total{source="cron"}"#).await,
            Some(5.0),
            "{k}"
        );
        assert!(
            metric(
                &app,
                r#"watchpost_batch_items_total{outcome="committed",queue="alerts"}"#
            )
            .await
            .unwrap_or(0.0)
                >= 5.0,
            "{k}"
        );
        assert!(
            metric(&app, r#"watchpost_batch_queue_capacity{queue="alerts"}"#).await > Some(0.0)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn arrays_classification_and_unlabelled_alerts() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let ids = ingest(
            &app,
            &json!([
                {"message": "Port scan detected from 203.0.113.9"},
                {"message": "PostgreSQL replication lag is high"},
                {"message": "Nightly backup finished", "severity": "info"},
                {"message": "web-3 is down", "labels": {"severity": "page", "instance": "web-3"}},
                {"message": "Interface eth0 packet loss 4%", "labels": {"instance": "sw-1"}}
            ]),
        )
        .await;
        assert_eq!(ids.len(), 5, "{k}");
        assert_eq!(
            ids.iter().collect::<BTreeSet<_>>().len(),
            5,
            "{k}: unlabelled alerts differ by message"
        );
        let got: Vec<(String, String)> = {
            let mut v = Vec::new();
            for id in &ids {
                let a = alert_by_id(&app, *id).await;
                v.push((
                    a["severity"].as_str().unwrap().to_string(),
                    a["type"].as_str().unwrap().to_string(),
                ));
            }
            v
        };
        // A detected scan is critical; a backup is a host's job; packet loss needs
        // attention (the vocabulary's severity words, README "Classification").
        let want = [
            ("critical", "security"),
            ("warning", "database"),
            ("info", "system"),
            ("critical", "other"),
            ("warning", "network"),
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str()), w, "{k}: {got:?}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn list_filters_and_cursor_pagination() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let mut batch = Vec::new();
        for i in 0..25 {
            let severity = ["critical", "warning", "info"][i % 3];
            batch.push(json!({
                "message": format!("alert {i}"),
                "severity": severity,
                "source": if i % 2 == 0 { "even" } else { "odd" },
                "labels": {"alertname": "Load", "instance": format!("host-{i}"), "team": if i < 5 { "db" } else { "web" }},
            }));
        }
        batch.push(json!({
            "message": "old one", "source": "even", "starts_at": at(-7200),
            "labels": {"alertname": "Old", "team": "web"}
        }));
        let ids = ingest(&app, &Value::Array(batch)).await;
        assert_eq!(ids.len(), 26);

        let page = get(&app, "/api/v1/alerts?limit=10", None).await;
        assert_eq!(page.body["alerts"].as_array().unwrap().len(), 10, "{k}");
        assert!(page.body["next_cursor"].is_string(), "{k}");
        let mut seen = BTreeSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/alerts?limit=10&cursor={c}"),
                None => "/api/v1/alerts?limit=10".into(),
            };
            let r = get(&app, &path, None).await;
            pages += 1;
            for a in r.body["alerts"].as_array().unwrap() {
                assert!(
                    seen.insert(a["id"].as_i64().unwrap()),
                    "{k}: duplicate across pages"
                );
            }
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!((pages, seen.len()), (3, 26), "{k}");

        assert_eq!(list_all(&app, "severity=critical").await.len(), 9, "{k}");
        assert_eq!(list_all(&app, "source=odd").await.len(), 12, "{k}");
        assert_eq!(list_all(&app, "label=team%3Ddb").await.len(), 5, "{k}");
        assert_eq!(
            list_all(&app, "label=team=db&label=instance=host-3")
                .await
                .len(),
            1,
            "{k}"
        );
        assert_eq!(
            list_all(&app, "label=team=db&severity=info").await.len(),
            1,
            "{k}"
        );
        assert_eq!(
            list_all(&app, "since=1h").await.len(),
            25,
            "{k}: started in the last hour"
        );
        assert_eq!(
            list_all(
                &app,
                &format!("since={}", at(-3 * 3600).replace('+', "%2B"))
            )
            .await
            .len(),
            26
        );
        for bad in [
            "state=sleepy",
            "severity=urgent",
            "limit=zero",
            "cursor=nope",
            "since=later",
            "label=x",
        ] {
            let r = get(&app, &format!("/api/v1/alerts?{bad}"), None).await;
            assert_eq!(r.status, 400, "{k}: {bad}");
            let name = bad.split('=').next().unwrap();
            assert!(
                r.body["error"].as_str().unwrap().contains(name),
                "{k}: {bad}: {}",
                r.text
            );
        }
        let r = get(&app, "/api/v1/alerts?limit=5000", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["alerts"].as_array().unwrap().len(), 26);
        assert_eq!(get(&app, "/api/v1/alerts/999999", None).await.status, 404);
        assert_eq!(get(&app, "/api/v1/alerts/abc", None).await.status, 400);
        app.stop().await;
    }
}

#[tokio::test]
async fn ack_roles_and_audit_log() {
    for db in databases().await {
        let mut cfg = test_config(&db.url);
        cfg.auth.tokens = common::role_tokens();
        let app = TestApp::start(cfg).await;
        let k = db.kind;
        let body = alert(
            "CPU high on web-1",
            json!({"alertname": "Cpu", "instance": "web-1"}),
        );

        let r = post(&app, "/api/v1/alerts", &body, None).await;
        assert_eq!(r.status, 401, "{k}: {}", r.text);
        let r = post(&app, "/api/v1/alerts", &body, Some("wrong-token")).await;
        assert_eq!(r.status, 401, "{k}");
        let r = post(&app, "/api/v1/alerts", &body, Some("viewer-token-1")).await;
        assert_eq!(r.status, 403, "{k}");
        assert!(
            list_all(&app, "").await.is_empty(),
            "{k}: nothing stored by refused writes"
        );
        let r = post(&app, "/api/v1/alerts", &body, Some("operator-token-1")).await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        let id = r.body["ids"][0].as_i64().unwrap();

        let ack_path = format!("/api/v1/alerts/{id}/ack");
        let ack = json!({"by": "otto", "comment": "looking into it"});
        assert_eq!(post(&app, &ack_path, &ack, None).await.status, 401, "{k}");
        assert_eq!(
            post(&app, &ack_path, &ack, Some("viewer-token-1"))
                .await
                .status,
            403,
            "{k}"
        );
        let r = post(&app, &ack_path, &ack, Some("operator-token-1")).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        assert_eq!(r.body["acknowledged"]["by"], "otto");
        assert_eq!(r.body["acknowledged"]["comment"], "looking into it");
        assert!(r.body["acknowledged"]["at"].is_string());
        let a = alert_by_id(&app, id).await;
        assert_eq!(a["acknowledged"]["by"], "otto", "{k}");
        assert_eq!(event_kinds(&a), ["fired", "acknowledged"], "{k}");
        let acked = list_all(&app, "state=acknowledged").await;
        assert_eq!(acked.len(), 1, "{k}");
        assert_eq!(
            post(
                &app,
                "/api/v1/alerts/424242/ack",
                &ack,
                Some("operator-token-1")
            )
            .await
            .status,
            404
        );
        // Ack without a body: `by` is the caller.
        let r = post_raw(&app, &ack_path, Vec::new(), Some("admin-token-1")).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        assert_eq!(r.body["acknowledged"]["by"], "ada");

        // The audit log is for admins, and has who, what, target and where.
        assert_eq!(
            get(&app, "/api/v1/audit", Some("operator-token-1"))
                .await
                .status,
            403
        );
        assert_eq!(get(&app, "/api/v1/audit", None).await.status, 401);
        let r = get(&app, "/api/v1/audit", Some("admin-token-1")).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        let entries = r.body["entries"].as_array().unwrap();
        let find = |action: &str| {
            entries
                .iter()
                .find(|e| e["action"] == action && e["actor"] == "otto")
                .unwrap_or_else(|| panic!("{k}: no {action} in {entries:?}"))
                .clone()
        };
        let ingest_entry = find("alerts.ingest");
        assert_eq!(ingest_entry["actor"], "otto");
        assert_eq!(ingest_entry["target"], "/api/v1/alerts");
        assert_eq!(ingest_entry["detail"]["alerts"], 1);
        assert!(
            ingest_entry["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        let ack_entry = find("alert.ack");
        assert_eq!(ack_entry["target"], id.to_string());
        assert_eq!(ack_entry["detail"]["comment"], "looking into it");
        assert_eq!(entries.len(), 3, "{k}: refused requests are not mutations");
        let r = get(
            &app,
            "/api/v1/audit?action=alert.ack&limit=1",
            Some("admin-token-1"),
        )
        .await;
        assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
        assert!(r.body["next_cursor"].is_string());
        app.stop().await;
    }
}

/// Posts the fixed data set of the stats and report test; returns ids by name.
async fn fixed_data_set(app: &TestApp) -> Vec<i64> {
    let rows = [
        // name, severity, source, start (s ago), end (s ago or none), repeats
        ("A", "critical", "prometheus", 60, None, 3),
        ("B", "warning", "prometheus", 600, Some(300), 1),
        ("C", "info", "ntopng", 1200, Some(600), 1),
        ("D", "critical", "api", 2400, None, 1),
        ("E", "warning", "api", 3 * 3600, Some(2 * 3600), 2),
        ("F", "info", "api", 2 * 86400, None, 1),
        (
            "G",
            "critical",
            "prometheus",
            10 * 86400,
            Some(9 * 86400),
            1,
        ),
        ("H", "warning", "api", 20 * 86400, None, 1),
    ];
    let mut ids = Vec::new();
    for (name, severity, source, start, end, repeats) in rows {
        let mut a = json!({
            "message": format!("alert {name}"),
            "severity": severity,
            "source": source,
            "starts_at": at(-start),
            "labels": {"alertname": format!("Rule{name}"), "env": if start < 3600 { "prod" } else { "staging" }},
        });
        let mut id = 0;
        for _ in 0..repeats {
            id = ingest(app, &a).await[0];
        }
        if let Some(end) = end {
            a["ends_at"] = json!(at(-end));
            ingest(app, &a).await;
        }
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn stats_windows_and_reports_on_a_fixed_data_set() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        fixed_data_set(&app).await;
        let totals = [
            ("5m", 1),
            ("15m", 2),
            ("30m", 3),
            ("1h", 4),
            ("24h", 5),
            ("7d", 6),
            ("30d", 8),
            ("90s", 1),
            ("45m", 4),
        ];
        for (w, n) in totals {
            let r = get(&app, &format!("/api/v1/alerts/stats?window={w}"), None).await;
            assert_eq!(r.status, 200, "{k}: {}", r.text);
            assert_eq!(r.body["total"], n, "{k}: window {w}: {}", r.body);
            assert_eq!(r.body["window"], w);
        }
        let s = get(&app, "/api/v1/alerts/stats?window=1h", None).await.body;
        assert_eq!(
            s["by_severity"],
            json!({"critical": 2, "warning": 1, "info": 1}),
            "{k}"
        );
        assert_eq!(
            s["by_source"],
            json!({"prometheus": 2, "ntopng": 1, "api": 1}),
            "{k}"
        );
        assert_eq!(s["by_state"], json!({"firing": 2, "resolved": 2}), "{k}");
        assert_eq!(s["firing"], 2);
        assert_eq!(s["resolved"], 2);
        assert_eq!(s["receipts"], 6, "{k}: A three times, B C D once");
        assert_eq!(
            s["by_type"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_i64().unwrap())
                .sum::<i64>(),
            4
        );
        let top = s["top_labels"].as_array().unwrap();
        assert_eq!(
            top[0],
            json!({"name": "env", "value": "prod", "count": 4}),
            "{k}: {top:?}"
        );
        let s30 = get(&app, "/api/v1/alerts/stats?window=30d", None)
            .await
            .body;
        assert_eq!(
            s30["by_severity"],
            json!({"critical": 3, "warning": 3, "info": 2}),
            "{k}"
        );
        assert_eq!(s30["by_source"]["api"], 4);
        assert_eq!(
            get(&app, "/api/v1/alerts/stats?window=soon", None)
                .await
                .status,
            400
        );

        // Cached, and invalidated by the next write.
        get(&app, "/api/v1/alerts/stats?window=1h", None).await;
        assert!(
            metric(
                &app,
                r#"watchpost_cache_requests_total{cache="alert_stats",result="hit"}"#
            )
            .await
            .unwrap_or(0.0)
                >= 1.0,
            "{k}"
        );
        ingest(
            &app,
            &json!({"message": "new", "labels": {"alertname": "New"}}),
        )
        .await;
        let s = get(&app, "/api/v1/alerts/stats?window=1h", None).await.body;
        assert_eq!(s["total"], 5, "{k}: a write invalidates the cache");

        let r = get(&app, "/api/v1/reports?window=1h&format=json", None).await;
        assert_eq!(r.status, 200, "{k}: {}", r.text);
        let rep = r.body;
        assert_eq!(rep["counts"]["total"], 5);
        assert_eq!(rep["resolved"], 2, "{k}");
        // B: 600s → 300s ago = 300 s; C: 1200 → 600 = 600 s; mean 450 s.
        let mttr = rep["mttr_seconds"].as_f64().unwrap();
        assert!((mttr - 450.0).abs() < 2.0, "{k}: mttr {mttr}");
        assert_eq!(rep["top_alerts"][0]["alertname"], "RuleA", "{k}");
        assert_eq!(rep["top_alerts"][0]["count"], 3);
        assert_eq!(
            rep["noisiest_sources"][0],
            json!({"name": "prometheus", "alerts": 2, "receipts": 4}),
            "{k}"
        );
        assert_eq!(rep["noisiest_rules"][0]["name"], "RuleA");
        assert_eq!(rep["acknowledged"], 0);
        assert_eq!(rep["mtta_seconds"], Value::Null);

        let r = app
            .client
            .get(app.url("/api/v1/reports?window=7d&format=markdown"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/markdown")
        );
        let md = r.text().await.unwrap();
        assert!(md.starts_with("# Alert report: last 7d"), "{md}");
        for needle in [
            "## Top alerts",
            "| RuleA |",
            "Mean time to resolve (MTTR)",
            "## Noisiest sources",
            "## Noisiest rules",
            "| total | 7 |",
        ] {
            assert!(md.contains(needle), "{k}: {needle} missing from\n{md}");
        }
        assert_eq!(
            get(&app, "/api/v1/reports?format=pdf", None).await.status,
            400
        );
        app.stop().await;
    }
}
