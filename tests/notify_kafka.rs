//! The Kafka receiver against a real Kafka-protocol broker (librdkafka's mock cluster,
//! run by `kcat`, which also consumes the records back): keys, order, partitions and
//! JSON of firing and resolved notifications, compression, a broker that is down and
//! comes back, and a permanent error (SQLite and PostgreSQL). A scripted broker
//! (`support/fake_kafka.rs`) shows what the mock cannot: a lost answer resent with the
//! same sequence number and written once, Kafka's error codes, SASL PLAIN, TLS.

mod common;
#[path = "support/fake_kafka.rs"]
mod fake_kafka;
#[path = "support/kafka_mock.rs"]
mod kafka_mock;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use common::{TestApp, databases, test_config};
use fake_kafka::{FakeKafka, Produce};
use kafka_mock::{Consumed, KafkaMock};
use serde_json::Value;
use watchpost::config::{Config, Secret};
use watchpost::dispatch::{AlertNotice, AlertState};
use watchpost::notify::kafka::murmur::partition_for;

/// Partitions of an auto-created topic in the mock cluster.
const PARTITIONS: i32 = 4;

fn config(db_url: &str, kafka: &str) -> Config {
    let mut c = Config::from_toml(&format!(
        r#"
external_url = "https://wp.example"
[notify]
min_backoff = "200ms"
max_backoff = "1s"
[route]
receiver = "kafka"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "500ms"
[[receivers]]
name = "kafka"
kafka = {kafka}
"#
    ))
    .unwrap();
    let base = test_config(db_url);
    c.listen = base.listen;
    c.database_url = Secret(db_url.into());
    c.rules = base.rules;
    c
}

fn alert(id: i64, name: &str) -> AlertNotice {
    let mut a = AlertNotice::test(id, &format!("fp{id}"), name);
    a.labels.insert("instance".into(), format!("host-{id}"));
    a
}

async fn resolve(app: &TestApp, mut a: AlertNotice) {
    a.state = AlertState::Resolved;
    a.ends_at = Some(Utc::now());
    app.app.alert_notices().send(a).await.unwrap();
}

/// The outbox rows of the `kafka` receiver once `done` holds for them.
async fn rows_when(app: &TestApp, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let (_, body) = app.get_json("/api/v1/notifications?receiver=kafka").await;
        let rows = body["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if done(&rows) {
            return rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "outbox rows never reached the state wanted: {rows:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(r: &Consumed) -> Value {
    serde_json::from_str(&r.value).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.value))
}

#[tokio::test]
async fn notifications_arrive_keyed_by_group_in_order_on_one_partition() {
    if !kafka_mock::available() {
        return;
    }
    for db in databases().await {
        let mock = KafkaMock::start("alerts");
        let app = TestApp::start(config(
            &db.url,
            &format!(r#"{{ brokers = ["{}"], topic = "alerts" }}"#, mock.addr),
        ))
        .await;
        let names = ["DiskFull", "CpuHot", "MemLow"];
        let alerts: Vec<AlertNotice> = names
            .iter()
            .enumerate()
            .map(|(i, n)| alert(i as i64 + 1, n))
            .collect();
        for a in &alerts {
            app.app.alert_notices().send(a.clone()).await.unwrap();
        }
        let firing = mock.wait_for(3, Duration::from_secs(20)).await;
        assert_eq!(
            firing.len(),
            3,
            "{}: three firing records: {firing:#?}",
            db.kind
        );
        for a in &alerts {
            resolve(&app, a.clone()).await;
        }
        let got = mock.wait_for(6, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 6, "{}: {got:#?}", db.kind);

        let mut by_key: BTreeMap<String, Vec<&Consumed>> = BTreeMap::new();
        for r in &got {
            by_key.entry(r.key.clone()).or_default().push(r);
        }
        assert_eq!(by_key.len(), 3, "{}: one key per group", db.kind);
        for (name, a) in names.iter().zip(&alerts) {
            let key = format!("{{}}:{{alertname=\"{name}\"}}");
            let recs = &by_key[&key];
            assert_eq!(recs.len(), 2, "{}: {key}", db.kind);
            let (first, second) = (json(recs[0]), json(recs[1]));
            assert_eq!(first["status"], "firing", "{}: {key}", db.kind);
            assert_eq!(second["status"], "resolved", "{}: {key}", db.kind);
            for (r, v) in recs.iter().zip([&first, &second]) {
                assert_eq!(v["type"], "notification");
                assert_eq!(v["version"], "4");
                assert_eq!(v["groupKey"], key.as_str());
                assert_eq!(v["receiver"], "kafka");
                assert_eq!(v["externalURL"], "https://wp.example");
                assert_eq!(v["alerts"][0]["labels"]["instance"], a.labels["instance"]);
                assert_eq!(
                    r.partition,
                    partition_for(key.as_bytes(), PARTITIONS),
                    "{}: the Java client's partition for {key}",
                    db.kind
                );
                assert!(
                    r.headers.starts_with("idempotency-key=kafka|"),
                    "{}: {}",
                    db.kind,
                    r.headers
                );
            }
            assert_eq!(recs[0].partition, recs[1].partition);
            assert!(recs[0].offset < recs[1].offset, "{}: firing first", db.kind);
            assert_eq!(second["alerts"][0]["status"], "resolved");
        }

        let rows = rows_when(&app, |rows| {
            rows.len() == 6 && rows.iter().all(|r| r["state"] == "delivered")
        })
        .await;
        for r in &rows {
            assert_eq!(r["kind"], "kafka");
            assert!(
                r["target"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("kafka:alerts#"),
                "{r}"
            );
            assert_eq!(r["attempts"], 1, "{}: {r}", db.kind);
            let resp = r["response"].as_str().unwrap_or_default();
            assert!(resp.starts_with("partition "), "{}: {r}", db.kind);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            mock.records().len(),
            6,
            "{}: nothing written twice",
            db.kind
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn gzip_snappy_and_alert_records_arrive() {
    if !kafka_mock::available() {
        return;
    }
    for compression in ["gzip", "snappy", "none"] {
        let db = common::sqlite_db();
        let mock = KafkaMock::start("wp.alerts");
        let app = TestApp::start(config(
            &db.url,
            &format!(
                r#"{{ brokers = "{}", topic = "wp.alerts", compression = "{compression}", alert_changes = true, key = "{{{{ .CommonLabels.alertname }}}}" }}"#,
                mock.addr
            ),
        ))
        .await;
        let (a, b) = (alert(1, "Disk"), alert(2, "Disk"));
        app.app.alert_notices().send(a).await.unwrap();
        app.app.alert_notices().send(b).await.unwrap();
        let got = mock.wait_for(3, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 3, "{compression}: {got:#?}");
        assert!(
            got.iter().all(|r| r.key == "Disk"),
            "{compression}: key template"
        );
        assert!(
            got.iter().all(|r| r.partition == got[0].partition),
            "{compression}: one batch, one partition"
        );
        let values: Vec<Value> = got.iter().map(json).collect();
        assert_eq!(values[0]["type"], "notification", "{compression}");
        assert_eq!(values[0]["alerts"].as_array().unwrap().len(), 2);
        assert_eq!(values[1]["type"], "alert");
        assert_eq!(values[2]["type"], "alert");
        let ids: Vec<i64> = values[1..]
            .iter()
            .map(|v| v["alert"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2], "{compression}");
        assert!(got[1].headers.ends_with("#1"), "{}", got[1].headers);
        app.stop().await;
    }
}

/// Forwards every connection accepted on `port` to `to`.
async fn proxy(port: u16, to: String) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test]
async fn broker_down_is_retried_and_delivered_once_when_it_returns() {
    if !kafka_mock::available() {
        return;
    }
    for db in databases().await {
        let mock = KafkaMock::start("alerts");
        // The bootstrap address: nothing listens there until the proxy starts.
        let port = common::free_port();
        let app = TestApp::start(config(
            &db.url,
            &format!(r#"{{ brokers = ["127.0.0.1:{port}"], topic = "alerts" }}"#),
        ))
        .await;
        app.app
            .alert_notices()
            .send(alert(1, "Down"))
            .await
            .unwrap();
        let rows = rows_when(&app, |rows| {
            rows.first()
                .is_some_and(|r| r["attempts"].as_i64() >= Some(3))
        })
        .await;
        let row = &rows[0];
        assert_eq!(row["state"], "pending", "{}: {row}", db.kind);
        let error = row["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("cannot connect to 127.0.0.1:{port}")),
            "{}: {row}",
            db.kind
        );
        assert!(mock.records().is_empty());

        proxy(port, mock.addr.clone()).await;
        let got = mock.wait_for(1, Duration::from_secs(20)).await;
        assert_eq!(got.len(), 1, "{}", db.kind);
        assert_eq!(json(&got[0])["status"], "firing");
        let rows = rows_when(&app, |rows| rows[0]["state"] == "delivered").await;
        assert!(
            rows[0]["attempts"].as_i64() >= Some(4),
            "{}: {}",
            db.kind,
            rows[0]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(mock.records().len(), 1, "{}: delivered once", db.kind);
        app.stop().await;
    }
}

#[tokio::test]
async fn permanent_errors_fail_with_the_reason() {
    if !kafka_mock::available() {
        return;
    }
    for db in databases().await {
        let mock = KafkaMock::start("alerts");
        // The mock broker has no SASL: a permanent error, never retried.
        let app = TestApp::start(config(
            &db.url,
            &format!(
                r#"{{ brokers = ["{}"], topic = "alerts", sasl = {{ mechanism = "PLAIN", username = "wp", password = "secret" }} }}"#,
                mock.addr
            ),
        ))
        .await;
        app.app
            .alert_notices()
            .send(alert(1, "Auth"))
            .await
            .unwrap();
        let rows = rows_when(&app, |rows| {
            rows.first().is_some_and(|r| r["state"] == "failed")
        })
        .await;
        let row = &rows[0];
        let error = row["last_error"].as_str().unwrap_or_default();
        assert!(error.starts_with("rejected: "), "{}: {row}", db.kind);
        assert!(error.contains("SaslHandshake"), "{}: {row}", db.kind);
        assert_eq!(row["attempts"], 1, "{}: not retried: {row}", db.kind);
        assert!(!error.contains("secret"));
        assert!(mock.records().is_empty());
        app.stop().await;
    }
}

#[test]
fn check_config_names_a_bad_broker_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wp.toml");
    std::fs::write(
        &file,
        r#"
[route]
receiver = "kafka"
[[receivers]]
name = "kafka"
kafka = { brokers = ["kafka-1:9092", "kafka-2"], topic = "alerts" }
"#,
    )
    .unwrap();
    let out = common::command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            r#"receivers[0].kafka.brokers[1]: bad broker address "kafka-2": missing port"#
        ),
        "{err}"
    );

    std::fs::write(
        &file,
        "[route]\nreceiver = \"kafka\"\n[[receivers]]\nname = \"kafka\"\nkafka = { brokers = \"kafka-1:9092\", topic = \"alerts\" }\n",
    )
    .unwrap();
    let out = common::command(dir.path())
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_lost_answer_is_resent_with_the_same_sequence_and_written_once() {
    for db in databases().await {
        let broker = FakeKafka::start(None).await;
        broker.script(&[Produce::Swallow]);
        let app = TestApp::start(config(
            &db.url,
            &format!(r#"{{ brokers = ["{}"], topic = "alerts" }}"#, broker.addr),
        ))
        .await;
        app.app
            .alert_notices()
            .send(alert(1, "Lost"))
            .await
            .unwrap();
        let rows = rows_when(&app, |rows| {
            rows.first().is_some_and(|r| r["state"] == "delivered")
        })
        .await;
        assert_eq!(
            rows[0]["attempts"], 1,
            "{}: resent within the send: {}",
            db.kind, rows[0]
        );
        assert!(
            rows[0]["response"]
                .as_str()
                .unwrap_or_default()
                .contains("already written"),
            "{}: {}",
            db.kind,
            rows[0]
        );
        assert_eq!(
            broker.produce_requests(),
            2,
            "{}: the request and its resend",
            db.kind
        );
        let written = broker.written();
        assert_eq!(written.len(), 1, "{}: written once", db.kind);
        assert_eq!(written[0].sequence, 0);
        assert!(written[0].producer_id > 0, "idempotent: a producer id");

        app.app
            .alert_notices()
            .send(alert(2, "Next"))
            .await
            .unwrap();
        rows_when(&app, |rows| {
            rows.len() == 2 && rows.iter().all(|r| r["state"] == "delivered")
        })
        .await;
        let written = broker.written();
        assert_eq!(written.len(), 2, "{}", db.kind);
        assert_eq!(written[1].producer_id, written[0].producer_id);
        assert_eq!(
            written[1].sequence, 1,
            "{}: the sequence continues",
            db.kind
        );
        assert!(written[1].records[0].0.contains("Next"));
        app.stop().await;
    }
}

#[tokio::test]
async fn retriable_codes_are_retried_and_permanent_ones_fail_with_their_name() {
    for db in databases().await {
        let broker = FakeKafka::start(None).await;
        // NOT_LEADER_OR_FOLLOWER, then MESSAGE_TOO_LARGE.
        broker.script(&[Produce::Error(6), Produce::Error(10)]);
        let app = TestApp::start(config(
            &db.url,
            &format!(r#"{{ brokers = ["{}"], topic = "alerts" }}"#, broker.addr),
        ))
        .await;
        app.app.alert_notices().send(alert(1, "Big")).await.unwrap();
        let rows = rows_when(&app, |rows| {
            rows.first().is_some_and(|r| r["state"] == "failed")
        })
        .await;
        let row = &rows[0];
        assert_eq!(row["attempts"], 2, "{}: {row}", db.kind);
        assert_eq!(
            row["last_error"], "rejected: Produce: MESSAGE_TOO_LARGE (Kafka error 10)",
            "{}",
            db.kind
        );
        assert!(broker.written().is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn sasl_plain_logs_in_and_a_wrong_password_fails() {
    let db = common::sqlite_db();
    let broker = FakeKafka::start(Some(("wp", "s3cret"))).await;
    let app = TestApp::start(config(
        &db.url,
        &format!(
            r#"{{ brokers = ["{}"], topic = "alerts", sasl = {{ mechanism = "PLAIN", username = "wp", password = "s3cret" }} }}"#,
            broker.addr
        ),
    ))
    .await;
    app.app
        .alert_notices()
        .send(alert(1, "Auth"))
        .await
        .unwrap();
    rows_when(&app, |rows| {
        rows.first().is_some_and(|r| r["state"] == "delivered")
    })
    .await;
    assert_eq!(broker.written().len(), 1);
    assert!(broker.authenticated().contains(&"wp".to_string()));
    app.stop().await;

    let db = common::sqlite_db();
    let app = TestApp::start(config(
        &db.url,
        &format!(
            r#"{{ brokers = ["{}"], topic = "alerts", sasl = {{ mechanism = "PLAIN", username = "wp", password = "wrong-pw" }} }}"#,
            broker.addr
        ),
    ))
    .await;
    app.app
        .alert_notices()
        .send(alert(2, "Auth"))
        .await
        .unwrap();
    let rows = rows_when(&app, |rows| {
        rows.first().is_some_and(|r| r["state"] == "failed")
    })
    .await;
    let error = rows[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("SASL: authentication as \"wp\" failed: Authentication failed"),
        "{error}"
    );
    assert!(!error.contains("wrong-pw"));
    assert_eq!(rows[0]["attempts"], 1);
    assert_eq!(broker.written().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn tls_to_the_broker_checks_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, acceptor) = fake_kafka::tls_server(dir.path());
    let broker = FakeKafka::start_tls(acceptor).await;
    let db = common::sqlite_db();
    let app = TestApp::start(config(
        &db.url,
        &format!(
            r#"{{ brokers = ["{}"], topic = "alerts", tls = {{ ca_file = "{}" }} }}"#,
            broker.addr,
            ca.display()
        ),
    ))
    .await;
    app.app.alert_notices().send(alert(1, "Tls")).await.unwrap();
    rows_when(&app, |rows| {
        rows.first().is_some_and(|r| r["state"] == "delivered")
    })
    .await;
    assert_eq!(broker.written().len(), 1, "written over TLS");
    app.stop().await;

    // Without the CA the certificate is refused: a permanent error.
    let db = common::sqlite_db();
    let app = TestApp::start(config(
        &db.url,
        &format!(
            r#"{{ brokers = ["{}"], topic = "alerts", tls = {{ }} }}"#,
            broker.addr
        ),
    ))
    .await;
    app.app.alert_notices().send(alert(2, "Tls")).await.unwrap();
    let rows = rows_when(&app, |rows| {
        rows.first().is_some_and(|r| r["state"] == "failed")
    })
    .await;
    let error = rows[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("rejected: TLS: "), "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(broker.written().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn acks_none_writes_without_waiting_for_an_answer() {
    let db = common::sqlite_db();
    let broker = FakeKafka::start(None).await;
    let app = TestApp::start(config(
        &db.url,
        &format!(
            r#"{{ brokers = ["{}"], topic = "alerts", acks = "none", idempotent = false }}"#,
            broker.addr
        ),
    ))
    .await;
    for (id, name) in [(1, "A"), (2, "B"), (3, "C")] {
        app.app.alert_notices().send(alert(id, name)).await.unwrap();
    }
    let rows = rows_when(&app, |rows| {
        rows.len() == 3 && rows.iter().all(|r| r["state"] == "delivered")
    })
    .await;
    assert!(
        rows.iter().all(|r| r["response"]
            .as_str()
            .unwrap_or_default()
            .ends_with("(acks = none)")),
        "{rows:#?}"
    );
    let written = broker.written();
    assert_eq!(written.len(), 3);
    assert!(
        written
            .iter()
            .all(|w| w.producer_id == -1 && w.sequence == -1),
        "not idempotent"
    );
    app.stop().await;
}

#[tokio::test]
async fn sasl_scram_sha256_logs_in() {
    let broker = FakeKafka::start_scram("wp", "pencil").await;
    for (password, ok) in [("pencil", true), ("crayon", false)] {
        let db = common::sqlite_db();
        let app = TestApp::start(config(
            &db.url,
            &format!(
                r#"{{ brokers = ["{}"], topic = "alerts", sasl = {{ mechanism = "SCRAM-SHA-256", username = "wp", password = "{password}" }} }}"#,
                broker.addr
            ),
        ))
        .await;
        app.app
            .alert_notices()
            .send(alert(1, "Scram"))
            .await
            .unwrap();
        let want = if ok { "delivered" } else { "failed" };
        let rows = rows_when(&app, |rows| {
            rows.first().is_some_and(|r| r["state"] == want)
        })
        .await;
        if !ok {
            let error = rows[0]["last_error"].as_str().unwrap_or_default();
            assert!(error.contains("invalid credentials"), "{error}");
            assert!(!error.contains(password));
        }
        app.stop().await;
    }
    // One login per connection (metadata and the partition leader), all as "wp".
    let logins = broker.authenticated();
    assert!(
        !logins.is_empty() && logins.iter().all(|u| u == "wp"),
        "{logins:?}"
    );
    assert_eq!(broker.written().len(), 1);
}

#[tokio::test]
async fn an_unresolved_batch_resent_after_others_is_still_written_once() {
    // Written but unanswered: the other batch waits for the resend (answered as a
    // duplicate), then takes the next sequence.
    unresolved_then_other(
        &[Produce::Swallow, Produce::Swallow, Produce::Swallow],
        true,
    )
    .await;
    // Never written: the other batch waits for the resend, which is written under its
    // reserved sequence; then the other follows.
    unresolved_then_other(&[Produce::Drop, Produce::Drop, Produce::Drop], false).await;
}

async fn unresolved_then_other(script: &[Produce], written_first: bool) {
    use watchpost::notify::kafka::LANES;
    let lane =
        |name: &str| partition_for(format!("{{}}:{{alertname=\"{name}\"}}").as_bytes(), LANES);
    // A second group in another outbox lane, so it goes out while the first waits.
    let other = ["Second", "Third", "Fourth", "Fifth", "Sixth"]
        .into_iter()
        .find(|n| lane(n) != lane("First"))
        .unwrap();
    for db in databases().await {
        let broker = FakeKafka::start(None).await;
        broker.script(script);
        let mut c = config(
            &db.url,
            &format!(r#"{{ brokers = ["{}"], topic = "alerts" }}"#, broker.addr),
        );
        c.notify.min_backoff = Duration::from_secs(3);
        c.notify.max_backoff = Duration::from_secs(3);
        let app = TestApp::start(c).await;
        app.app
            .alert_notices()
            .send(alert(1, "First"))
            .await
            .unwrap();
        let rows = rows_when(&app, |rows| {
            rows.first().is_some_and(|r| r["attempts"] == 1)
        })
        .await;
        assert_eq!(rows[0]["state"], "pending", "{}: {}", db.kind, rows[0]);
        let error = rows[0]["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("ambiguous"), "{}: {error}", db.kind);

        app.app.alert_notices().send(alert(2, other)).await.unwrap();
        rows_when(&app, |rows| {
            rows.len() == 2 && rows.iter().all(|r| r["state"] == "delivered")
        })
        .await;
        let written = broker.written();
        let keys: Vec<&str> = written.iter().map(|w| w.records[0].0.as_str()).collect();
        assert_eq!(written.len(), 2, "{}: each written once: {keys:?}", db.kind);
        let (_, body) = app.get_json("/api/v1/notifications?receiver=kafka").await;
        let first = body["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["group_key"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("First")
            })
            .cloned()
            .unwrap();
        let response = first["response"].as_str().unwrap_or_default().to_string();
        if written_first {
            assert!(
                keys[0].contains("First") && keys[1].contains(other),
                "{keys:?}"
            );
            assert_eq!(written[1].producer_id, written[0].producer_id);
            assert_eq!(
                written[1].sequence, 1,
                "{}: the lost batch's sequence stays taken",
                db.kind
            );
            assert!(response.contains("already written"), "{}: {first}", db.kind);
        } else {
            // The other batch waited for the resend (Waiting), so the lost one went out
            // again under its own sequence: both once, in order, one producer id.
            assert!(
                keys[0].contains("First") && keys[1].contains(other),
                "{keys:?}"
            );
            assert_eq!(
                written[0].producer_id, written[1].producer_id,
                "{}",
                db.kind
            );
            assert_eq!(
                (written[0].sequence, written[1].sequence),
                (0, 1),
                "{}",
                db.kind
            );
            assert!(response.contains("offset"), "{}: {first}", db.kind);
            let second = body["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["group_key"].as_str().unwrap_or_default().contains(other))
                .cloned()
                .unwrap();
            assert!(
                second["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("waits for the resend")),
                "{}: it waited for the unanswered batch: {second}",
                db.kind
            );
        }
        app.stop().await;
    }
}
