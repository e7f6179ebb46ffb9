//! Unit tests of the Kafka receiver: config checks, payloads, verdicts.

use std::collections::BTreeMap;

use super::*;
use crate::dispatch::{AlertNotice, AlertState};

fn receiver(toml: &str) -> KafkaReceiver {
    let c = Config::from_toml(&format!("[[receivers]]\nname = \"k\"\nkafka = {toml}\n")).unwrap();
    c.receivers[0].kafka.clone().unwrap()
}

fn notification() -> Notification {
    let mut a = AlertNotice::test(7, "fp7", "Disk");
    a.labels.insert("instance".into(), "db1".into());
    let mut r = AlertNotice::test(8, "fp8", "Disk");
    r.state = AlertState::Resolved;
    Notification {
        group_key: "{}:{alertname=\"Disk\"}".into(),
        receiver: "k".into(),
        group_labels: BTreeMap::from([("alertname".into(), "Disk".into())]),
        status: AlertState::Firing,
        firing: vec![a],
        resolved: vec![r],
        flapping: Vec::new(),
        stable: Default::default(),
        seq: 1,
        at_ms: 0,
        episode_ms: 0,
    }
}

#[test]
fn good_config_has_no_problems() {
    let k = receiver(
        r#"{ brokers = "a:9092, [::1]:9093", topic = "alerts.v1_x-y", compression = "gzip", sasl = { mechanism = "SCRAM-SHA-512", username = "u", password = "p" } }"#,
    );
    assert_eq!(k.brokers, ["a:9092", "[::1]:9093"]);
    assert_eq!(validate("receivers[0].kafka", &k), Vec::<String>::new());
}

#[test]
fn bad_config_names_the_key() {
    let k = receiver(
        r#"{ brokers = ["x", "h:0", ":9092", "::1:9092"], topic = "a b", acks = "leader", sasl = { mechanism = "GSSAPI", username = "", password = "p" }, key = "{{ .Nope" }"#,
    );
    let p = validate("receivers[0].kafka", &k).join("\n");
    for want in [
        "receivers[0].kafka.brokers[0]: bad broker address \"x\": missing port",
        "receivers[0].kafka.brokers[1]: bad broker address \"h:0\": bad port \"0\"",
        "receivers[0].kafka.brokers[2]: bad broker address \":9092\": missing host",
        "receivers[0].kafka.brokers[3]: bad broker address \"::1:9092\": an IPv6 address needs brackets",
        "receivers[0].kafka.topic: \"a b\" has ' '",
        "receivers[0].kafka.acks: must be \"all\" for the idempotent producer",
        "receivers[0].kafka.sasl.mechanism: unknown mechanism \"GSSAPI\"",
        "receivers[0].kafka.sasl.username: must not be empty",
        "receivers[0].kafka.key: ",
    ] {
        assert!(p.contains(want), "missing {want:?} in:\n{p}");
    }
    let k = receiver(r#"{ brokers = [], topic = "" }"#);
    let p = validate("receivers[1].kafka", &k).join("\n");
    assert!(
        p.contains("receivers[1].kafka.brokers: at least one broker"),
        "{p}"
    );
    assert!(
        p.contains("receivers[1].kafka.topic: must not be empty"),
        "{p}"
    );
    let long = "t".repeat(250);
    assert!(check_topic(&long).is_err());
    assert!(check_topic(&"t".repeat(249)).is_ok());
    assert!(check_topic("..").is_err());
    let k = receiver(
        r#"{ brokers = "h:1", topic = "t", acks = "none", idempotent = false, tls = { ca_file = "/nonexistent.pem" } }"#,
    );
    let p = validate("receivers[0].kafka", &k).join("\n");
    assert!(
        p.starts_with("receivers[0].kafka.tls.ca_file: /nonexistent.pem"),
        "{p}"
    );
}

#[test]
fn payload_is_the_webhook_payload_keyed_by_group() {
    let n = notification();
    let target = KafkaTarget {
        topic: "alerts".into(),
        key: None,
        alert_changes: false,
    };
    let p = KafkaPayload::new(&n, &target, "http://wp");
    let lane = murmur::partition_for(n.group_key.as_bytes(), LANES);
    assert_eq!(target.outbox_target(&p.key), format!("kafka:alerts#{lane}"));
    assert_eq!(p.key, n.group_key);
    assert_eq!(p.records.len(), 1);
    let v = &p.records[0];
    assert_eq!(v["type"], "notification");
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["groupKey"], n.group_key);
    assert_eq!(v["alerts"][0]["labels"]["instance"], "db1");

    let recs = p.records("row-key");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].key, n.group_key.as_bytes());
    assert_eq!(
        recs[0].headers,
        vec![("idempotency-key".to_string(), Bytes::from("row-key"))]
    );
    let back: Value = serde_json::from_slice(&recs[0].value).unwrap();
    assert_eq!(&back, v);
}

#[test]
fn alert_changes_and_key_templates() {
    let n = notification();
    let target = KafkaTarget {
        topic: "alerts".into(),
        key: Some("{{ .CommonLabels.alertname }}-{{ .Status }}".into()),
        alert_changes: true,
    };
    let p = KafkaPayload::new(&n, &target, "http://wp");
    assert_eq!(p.key, "Disk-firing");
    assert_eq!(p.records.len(), 3, "notification + one record per alert");
    assert_eq!(p.records[1]["type"], "alert");
    assert_eq!(p.records[1]["status"], "firing");
    assert_eq!(p.records[1]["alert"]["id"], 7);
    assert_eq!(p.records[2]["status"], "resolved");
    assert_eq!(p.records[2]["groupKey"], n.group_key);
    let ids: Vec<Bytes> = p
        .records("r")
        .into_iter()
        .map(|r| r.headers[0].1.clone())
        .collect();
    assert_eq!(ids, ["r", "r#1", "r#2"]);

    // A key template that fails (or prints nothing) falls back to the group key.
    for t in ["{{ .Nope.Deeper.X }}", "{{ if false }}x{{ end }}"] {
        let target = KafkaTarget {
            key: Some(t.into()),
            ..target.clone()
        };
        assert_eq!(KafkaPayload::new(&n, &target, "").key, n.group_key, "{t}");
    }
}

#[test]
fn verdicts() {
    let rejected = KafkaError::broker(
        "Produce",
        ResponseError::MessageTooLarge,
        Some("too big".into()),
    );
    assert_eq!(
        rejected.attempt(),
        Attempt::Rejected("Produce: MESSAGE_TOO_LARGE (Kafka error 10): too big".into())
    );
    for e in [
        ResponseError::TopicAuthorizationFailed,
        ResponseError::InvalidTopicException,
        ResponseError::CorruptMessage,
        ResponseError::InvalidRecord,
    ] {
        let a = KafkaError::broker("Produce", e, None).attempt();
        assert!(matches!(a, Attempt::Rejected(_)), "{e:?}: {a:?}");
    }
    for e in [
        ResponseError::NotLeaderOrFollower,
        ResponseError::LeaderNotAvailable,
        ResponseError::RequestTimedOut,
        ResponseError::NotEnoughReplicas,
        ResponseError::UnknownTopicOrPartition,
    ] {
        let a = KafkaError::broker("Produce", e, None).attempt();
        assert!(matches!(a, Attempt::Transient(_)), "{e:?}: {a:?}");
    }
    let refused = KafkaError::Connect {
        addr: "h:1".into(),
        why: "refused".into(),
    };
    assert!(matches!(refused.attempt(), Attempt::Transient(_)));
    let lost = KafkaError::unanswered(KafkaError::NoAnswer {
        addr: "h:1".into(),
        api: "Produce".into(),
        why: "connection closed".into(),
    });
    assert!(matches!(lost.attempt(), Attempt::Ambiguous(_)));
    assert!(matches!(
        KafkaError::Sasl("x".into()).attempt(),
        Attempt::Rejected(_)
    ));
    assert_eq!(
        error_name(&ResponseError::InvalidTopicException),
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(
        error_name(&ResponseError::Unknown(999)),
        "Unknown error code: 999"
    );
}
