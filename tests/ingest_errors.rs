//! Bad input, limits and back-pressure on SQLite and PostgreSQL: every rejected request
//! gets the right 4xx naming the problem and stores nothing; a bad alert among good ones
//! is refused alone; the rate limit answers 429 with `Retry-After`; a full queue
//! answers 503 with `Retry-After`.

mod alerts_support;
mod common;

use std::time::Duration;

use alerts_support::*;
use common::{TestApp, databases, eventually, test_config};
use serde_json::json;
use sqlx::Connection;
use watchpost::config::{Role, Secret, TokenConfig};

#[tokio::test]
async fn bad_inputs_are_named_and_refused_alone() {
    for db in databases().await {
        let mut cfg = test_config(&db.url);
        cfg.alerts.max_body_bytes = 64 * 1024;
        cfg.alerts.max_alerts_per_request = 5;
        let app = TestApp::start(cfg).await;
        let k = db.kind;
        let long = "x".repeat(4097);
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("/api/v1/alerts", b"{not json".to_vec(), 400, "invalid JSON"),
            ("/api/v1/alerts", b"".to_vec(), 400, "empty"),
            (
                "/api/v1/alerts",
                br#"{"labels":{"a":"b"}}"#.to_vec(),
                400,
                "message",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":42}"#.to_vec(),
                400,
                "message",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":"x","labels":{"a":1}}"#.to_vec(),
                400,
                "labels.a",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":"x","labels":["a"]}"#.to_vec(),
                400,
                "labels",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":"x","severity":5}"#.to_vec(),
                400,
                "severity",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":"x","severity":"urgent"}"#.to_vec(),
                400,
                "severity",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":"x","starts_at":"noon"}"#.to_vec(),
                400,
                "starts_at",
            ),
            (
                "/api/v1/alerts",
                br#"{"message":""}"#.to_vec(),
                400,
                "message",
            ),
            (
                "/api/v1/alerts",
                format!(r#"{{"message":"{long}"}}"#).into_bytes(),
                400,
                "message",
            ),
            (
                "/api/v1/alerts",
                serde_json::to_vec(
                    &(0..6)
                        .map(|i| json!({"message": format!("m{i}")}))
                        .collect::<Vec<_>>(),
                )
                .unwrap(),
                400,
                "alerts.max_alerts_per_request",
            ),
            (
                "/api/v1/alerts",
                serde_json::to_vec(
                    &json!({"message": "big", "annotations": {"blob": "y".repeat(100_000)}}),
                )
                .unwrap(),
                413,
                "alerts.max_body_bytes",
            ),
            (
                "/api/v2/alerts",
                b"[{\"labels\":".to_vec(),
                400,
                "invalid JSON",
            ),
            (
                "/api/v2/alerts",
                br#"[{"labels":{"a":"b"},"startsAt":"then"}]"#.to_vec(),
                400,
                "[0].startsAt",
            ),
            (
                "/api/v1/webhooks/alertmanager",
                br#"{"version":"4"}"#.to_vec(),
                400,
                "alerts",
            ),
            (
                "/api/v1/webhooks/alertmanager",
                br#"{"version":"4","alerts":[{"labels":{"a":"b"},"status":"maybe"}]}"#.to_vec(),
                400,
                "alerts[0].status",
            ),
            (
                "/api/v1/webhooks/ntopng",
                br#"{"version":"0.2","alerts":[5]}"#.to_vec(),
                400,
                "alerts[0]",
            ),
            (
                "/api/v1/webhooks/ntopng",
                br#"{"version":"0.2"}"#.to_vec(),
                400,
                "alerts",
            ),
        ];
        for (path, body, status, needle) in cases {
            let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
            let r = post_raw(&app, path, body, None).await;
            assert_eq!(r.status, status, "{k}: {path} {shown}: {}", r.text);
            let err = r.body["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{k}: no error JSON: {}", r.text));
            assert!(
                err.contains(needle),
                "{k}: {path} {shown}: {err:?} should name {needle:?}"
            );
        }
        assert!(
            list_all(&app, "").await.is_empty(),
            "{k}: nothing half-written"
        );
        assert_eq!(
            metric(
                &app,
                r#"watchpost_batch_items_total{outcome="committed",queue="alerts"}"#
            )
            .await,
            Some(0.0),
            "{k}"
        );
        // In an array, a bad alert is refused alone: the others are stored.
        let body = format!(
            r#"[{{"message":"ok 0"}},{{"message":"ok 1"}},{{"message":"ok 2"}},{{"message":"{long}"}}]"#
        );
        let r = post_raw(&app, "/api/v1/alerts", body.into_bytes(), None).await;
        assert_eq!(r.status, 400, "{k}: {}", r.text);
        assert!(
            r.body["error"].as_str().unwrap().starts_with("[3].message"),
            "{k}: {}",
            r.text
        );
        assert_eq!(r.body["accepted"], 3, "{k}: {}", r.text);
        let r = post_raw(
            &app,
            "/api/v1/alerts",
            br#"[{"message":"ok 3"},{"labels":{}}]"#.to_vec(),
            None,
        )
        .await;
        assert_eq!(r.status, 400, "{k}: {}", r.text);
        assert!(
            r.body["errors"][0].as_str().unwrap().starts_with("[1]"),
            "{k}: {}",
            r.text
        );
        assert_eq!(
            list_all(&app, "").await.len(),
            4,
            "{k}: the valid alerts are stored"
        );
        // Exactly at the limits is fine.
        let five: Vec<_> = (0..5)
            .map(|i| json!({"message": "x".repeat(4096), "labels": {"i": i.to_string()}}))
            .collect();
        let r = post(&app, "/api/v1/alerts", &json!(five), None).await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        app.stop().await;
    }
}

/// NUL characters (which PostgreSQL cannot store) and names Alertmanager refuses, in
/// every format, posted while other clients' good alerts share the writer's batches:
/// each bad alert gets its own error, everything else is stored.
#[tokio::test]
async fn one_bad_alert_never_fails_its_neighbours() {
    for db in databases().await {
        let app = TestApp::start(test_config(&db.url)).await;
        let k = db.kind;
        let bad: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "/api/v1/alerts",
                json!([{"message": "good g1"}, {"message": "bad\u{0}"}, {"message": "good g2", "labels": {"k": "v"}}]),
                "[1].message: must not contain NUL",
            ),
            (
                "/api/v1/alerts",
                json!([{"message": "good g3"}, {"message": "x", "labels": {"k": "v\u{0}"}}]),
                "[1].labels.k: must not contain NUL",
            ),
            (
                "/api/v2/alerts",
                json!([{"labels": {"alertname": "GoodV2"}}, {"labels": {"alertname": "Bad", "bad-name": "x"}}, {"labels": {"alertname": "Nul\u{0}"}}]),
                "[1].labels: invalid label name",
            ),
            (
                "/api/v1/webhooks/alertmanager",
                json!({"version": "4", "alerts": [
                    {"status": "firing", "labels": {"alertname": "GoodHook"}},
                    {"status": "firing", "labels": {"alertname": "BadHook"}, "annotations": {"summary": "\u{0}"}}
                ]}),
                "alerts[1].annotations.summary: must not contain NUL",
            ),
            (
                "/api/v1/webhooks/ntopng",
                json!({"version": "0.2", "alerts": [
                    {"action": "engage", "alert_id": 1, "score": 10, "entity_val": "10.0.0.1", "name": "good-ntop", "ifid": 0},
                    {"action": "engage", "alert_id": 2, "score": 10, "entity_val": "10.0.0.2", "name": "bad\u{0}ntop", "ifid": 0}
                ]}),
                "alerts[1].",
            ),
        ];
        let neighbours = (0..20).map(|i| {
            let app = &app;
            async move {
                let body = alert(&format!("neighbour {i}"), json!({"n": i.to_string()}));
                post(app, "/api/v1/alerts", &body, None).await
            }
        });
        let refused = bad
            .iter()
            .map(|(path, body, _)| async { post(&app, path, body, None).await });
        let (goods, bads) = tokio::join!(
            futures_util::future::join_all(neighbours),
            futures_util::future::join_all(refused)
        );
        for r in goods {
            assert_eq!(r.status, 202, "{k}: a neighbour failed: {}", r.text);
        }
        for ((path, _, needle), r) in bad.iter().zip(bads) {
            assert_eq!(r.status, 400, "{k}: {path}: {}", r.text);
            let errors = r.body["errors"].to_string();
            assert!(
                errors.contains(needle),
                "{k}: {path}: {errors} should name {needle:?}"
            );
        }
        let all = list_all(&app, "").await;
        let texts = serde_json::to_string(&all).unwrap();
        for good in [
            "good g1",
            "good g2",
            "good g3",
            "GoodV2",
            "GoodHook",
            "good-ntop",
            "neighbour 19",
        ] {
            assert!(texts.contains(good), "{k}: {good} was not stored");
        }
        assert!(
            !texts.contains("BadHook") && !texts.contains("bad-name"),
            "{k}"
        );
        assert_eq!(all.len(), 20 + 6, "{k}: {texts}");
        app.stop().await;
    }
}

#[tokio::test]
async fn rate_limit_per_token_with_retry_after() {
    let db = common::sqlite_db();
    let mut cfg = test_config(&db.url);
    cfg.alerts.rate_limit_per_second = 1;
    cfg.alerts.rate_limit_burst = 1;
    cfg.auth.tokens = ["operator-token-a", "operator-token-b"]
        .iter()
        .map(|t| TokenConfig {
            token: Secret(t.to_string()),
            role: Role::Operator,
            name: None,
        })
        .collect();
    let app = TestApp::start(cfg).await;
    let body = alert("cpu high", json!({"alertname": "Cpu"}));
    let mut limited = None;
    for _ in 0..10 {
        let r = post(&app, "/api/v1/alerts", &body, Some("operator-token-a")).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text);
    }
    let r = limited.expect("ten requests at once exceed 1/s with a burst of 1");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("rate_limit_per_second"),
        "{}",
        r.text
    );
    // The same token however the header spells it shares the bucket (the scheme is
    // case-insensitive, so `BEARER` authenticates too).
    for header in [
        "BEARER operator-token-a",
        "bearer   operator-token-a ",
        "Bearer\toperator-token-a",
    ] {
        let r = app
            .client
            .post(app.url("/api/v1/alerts"))
            .header("authorization", header)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{header:?}: {}", r.text().await.unwrap());
    }
    // Another token has its own bucket, and `BEARER` is accepted.
    let r = app
        .client
        .post(app.url("/api/v1/alerts"))
        .header("authorization", "BEARER operator-token-b")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn full_queue_answers_503_then_recovers() {
    for db in databases().await {
        let mut cfg = test_config(&db.url);
        cfg.alerts.queue_capacity = 10;
        cfg.alerts.max_alerts_per_request = 10;
        let app = TestApp::start(cfg).await;
        let k = db.kind;
        // Hold the write lock so the writer cannot commit.
        let mut locker = sqlx::AnyConnection::connect(&db.url).await.unwrap();
        if db.kind == "sqlite" {
            sqlx::query("BEGIN EXCLUSIVE")
                .execute(&mut locker)
                .await
                .unwrap();
        } else {
            sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
            sqlx::query("LOCK TABLE alerts IN EXCLUSIVE MODE")
                .execute(&mut locker)
                .await
                .unwrap();
        }
        let ten: Vec<_> = (0..10)
            .map(|i| json!({"message": format!("m{i}"), "labels": {"i": i.to_string()}}))
            .collect();
        let client = app.client.clone();
        let url = app.url("/api/v1/alerts");
        let first = tokio::spawn(async move {
            let r = client.post(url).json(&ten).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        });
        let full = eventually(Duration::from_secs(20), || async {
            (metric(&app, r#"watchpost_batch_queue_depth{queue="alerts"}"#).await == Some(10.0))
                .then_some(())
        })
        .await;
        assert!(full.is_some(), "{k}: queue never filled");
        let r = post(
            &app,
            "/api/v1/alerts",
            &alert("one more", json!({"a": "b"})),
            None,
        )
        .await;
        assert_eq!(r.status, 503, "{k}: {}", r.text);
        assert!(r.headers.contains_key("retry-after"), "{k}");
        assert!(
            r.body["error"].as_str().unwrap().contains("queue"),
            "{k}: {}",
            r.text
        );
        sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
        let (status, text) = first.await.unwrap();
        assert_eq!(status, 202, "{k}: {text}");
        assert_eq!(
            list_all(&app, "").await.len(),
            10,
            "{k}: the rejected alert is not stored"
        );
        assert_eq!(
            metric(
                &app,
                r#"watchpost_batch_items_total{outcome="rejected",queue="alerts"}"#
            )
            .await,
            Some(1.0)
        );
        let r = post(
            &app,
            "/api/v1/alerts",
            &alert("one more", json!({"a": "b"})),
            None,
        )
        .await;
        assert_eq!(r.status, 202, "{k}: recovered: {}", r.text);
        let _ = locker.close().await;
        app.stop().await;
    }
}

#[tokio::test]
async fn max_firing_refuses_new_alerts_but_not_repeats_or_resolves() {
    for db in databases().await {
        let k = db.kind;
        let mut cfg = test_config(&db.url);
        cfg.alerts.max_firing = 5;
        let app = TestApp::start(cfg).await;
        let batch = |from: usize, to: usize| -> serde_json::Value {
            (from..to)
                .map(|i| json!({"message": format!("m{i}"), "labels": {"i": i.to_string()}}))
                .collect()
        };
        let r = post(&app, "/api/v1/alerts", &batch(0, 4), None).await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        // Two new ones would make 6 firing: they are refused (503), while the repeat of
        // m3 in the same request is stored, so what still fires stays fresh.
        let r = post(&app, "/api/v1/alerts", &batch(3, 6), None).await;
        assert_eq!(r.status, 503, "{k}: {}", r.text);
        assert!(r.headers.contains_key("retry-after"), "{k}");
        let error = r.body["error"].as_str().unwrap();
        assert!(error.contains("alerts.max_firing"), "{k}: {error}");
        let stored = list_all(&app, "").await;
        assert_eq!(stored.len(), 4, "{k}: the new ones are not stored");
        let m3 = stored.iter().find(|a| a["message"] == "m3").unwrap();
        assert_eq!(
            m3["count"], 2,
            "{k}: the repeat in the refused request counts: {m3}"
        );
        assert_eq!(
            metric(
                &app,
                r#"watchpost_alerts_refused_total{reason="max_firing"}"#
            )
            .await,
            Some(2.0),
            "{k}"
        );
        // One more fits; repeats of firing alerts always pass, even at the limit.
        let r = post(&app, "/api/v1/alerts", &batch(4, 5), None).await;
        assert_eq!(r.status, 202, "{k}: {}", r.text);
        let r = post(&app, "/api/v1/alerts", &batch(0, 5), None).await;
        assert_eq!(r.status, 202, "{k}: repeats at the limit: {}", r.text);
        let r = post(&app, "/api/v1/alerts", &batch(5, 6), None).await;
        assert_eq!(r.status, 503, "{k}: {}", r.text);
        // A resolve passes, even of an alert never seen (stored resolved), and one of a
        // firing alert makes room.
        let unseen = json!([{"message": "gone", "labels": {"i": "gone"},
            "starts_at": "2019-01-01T00:00:00Z", "ends_at": "2020-01-01T00:00:00Z"}]);
        let r = post(&app, "/api/v1/alerts", &unseen, None).await;
        assert_eq!(
            r.status, 202,
            "{k}: an unseen resolve at the limit: {}",
            r.text
        );
        let resolve = json!([{"message": "m0", "labels": {"i": "0"},
            "starts_at": "2019-01-01T00:00:00Z", "ends_at": "2020-01-01T00:00:00Z"}]);
        let r = post(&app, "/api/v1/alerts", &resolve, None).await;
        assert_eq!(r.status, 202, "{k}: resolve at the limit: {}", r.text);
        let r = post(&app, "/api/v1/alerts", &batch(5, 6), None).await;
        assert_eq!(r.status, 202, "{k}: room after a resolve: {}", r.text);
        app.stop().await;
    }
}
