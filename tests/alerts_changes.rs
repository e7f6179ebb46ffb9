//! The typed hand-over to the notifier: every committed change arrives as an
//! `AlertChange` on the channel, in order, with the flags that decide notification —
//! an acknowledged alert is not re-notified until it resolves or its severity rises;
//! silenced and inhibited alerts are never notified. The dashboard's event bus gets the
//! same changes with the contract's alert object.

mod common;

use std::time::Duration;

use serde_json::json;
use watchpost::alerts::ingest::RawAlert;
use watchpost::alerts::{
    AlertChange, AlertService, AlertState, ChangeKind, ChangeReceiver, Severity,
};
use watchpost::api::auth::Principal;
use watchpost::audit::AuditRecord;
use watchpost::config::Role;
use watchpost::events::EventBus;
use watchpost::metrics::Metrics;
use watchpost::silence::PostableSilence;
use watchpost::store::Db;

fn raw(severity: Severity, instance: &str, ends_at_ms: Option<i64>) -> RawAlert {
    RawAlert {
        source: "api".into(),
        message: Some(format!("disk filling on {instance}")),
        severity: Some(severity),
        labels: [
            ("alertname".to_string(), "Disk".to_string()),
            ("instance".to_string(), instance.to_string()),
        ]
        .into(),
        ends_at_ms,
        ..Default::default()
    }
}

fn me() -> Principal {
    Principal {
        name: "tester".into(),
        role: Role::Admin,
        remote_addr: None,
        identity: None,
    }
}

async fn next(rx: &mut ChangeReceiver) -> AlertChange {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a change within 10 s")
        .expect("channel open")
}

#[tokio::test]
async fn changes_carry_what_the_notifier_needs() {
    for db in common::databases().await {
        let k = db.kind;
        let config = common::test_config(&db.url);
        let metrics = Metrics::new().unwrap();
        let store = Db::connect(&config, metrics.db.clone()).await.unwrap();
        store.migrate().await.unwrap();
        let events = EventBus::default();
        let mut stream = events.subscribe_alerts();
        let (tx, mut rx) = watchpost::alerts::change::channel();
        let (svc, task) = AlertService::start(
            &config,
            store.clone(),
            metrics,
            events,
            tx,
            watchpost::cluster::NodeRole::single_node(),
        )
        .await
        .unwrap();

        let id = svc
            .ingest(vec![raw(Severity::Warning, "a", None)], None)
            .await
            .unwrap()[0];
        let c = next(&mut rx).await;
        assert_eq!(
            (c.kind, c.id, c.state),
            (ChangeKind::Fired, id, AlertState::Firing),
            "{k}"
        );
        assert_eq!(c.labels["severity"], "warning", "{k}: severity is routable");
        assert_eq!(c.labels["alertname"], "Disk");
        assert!(c.should_notify());
        let ev = stream.recv().await.unwrap();
        assert_eq!(ev.alert["id"], id);
        assert_eq!(ev.alert["state"], "firing");

        svc.ingest(vec![raw(Severity::Warning, "a", None)], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!((c.kind, c.count), (ChangeKind::Repeated, 2), "{k}");
        assert!(c.should_notify());

        // Acknowledged: no more notifications while it fires at this severity.
        let audit = AuditRecord::new(&me(), "alert.ack", id.to_string(), json!({}));
        let acked = svc
            .ack(id, "ann".into(), "on it".into(), audit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acked.ack.as_ref().unwrap().by, "ann");
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Acked, "{k}");
        assert!(c.acknowledged && !c.should_notify());
        svc.ingest(vec![raw(Severity::Warning, "a", None)], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Repeated);
        assert!(c.acknowledged, "{k}");
        assert!(!c.should_notify(), "{k}: acked alerts are not re-notified");

        // A higher severity lifts the acknowledgement.
        svc.ingest(vec![raw(Severity::Critical, "a", None)], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::SeverityRaised, "{k}");
        assert_eq!(c.severity, Severity::Critical);
        assert!(!c.acknowledged && c.should_notify(), "{k}");

        // Acked again, then resolved: the resolution is still worth telling.
        let audit = AuditRecord::new(&me(), "alert.ack", id.to_string(), json!({}));
        svc.ack(id, "ann".into(), String::new(), audit)
            .await
            .unwrap();
        assert_eq!(next(&mut rx).await.kind, ChangeKind::Acked);
        let past = chrono::Utc::now().timestamp_millis() - 1000;
        svc.ingest(vec![raw(Severity::Critical, "a", Some(past))], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(
            (c.kind, c.state),
            (ChangeKind::Resolved, AlertState::Resolved),
            "{k}"
        );
        assert!(c.ends_at.is_some() && c.should_notify());

        // Refiring is a new incident: the acknowledgement is gone.
        svc.ingest(vec![raw(Severity::Critical, "a", None)], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Fired, "{k}");
        assert!(!c.acknowledged && c.should_notify());

        // Silenced: announced, flagged, never notified, until the silence ends.
        let posted: PostableSilence = serde_json::from_value(json!({
            "matchers": [{"name": "instance", "value": "a"}],
            "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "ann", "comment": "maintenance"
        }))
        .unwrap();
        let (s, created) = svc
            .save_silence(&posted, "tester", |s, _| {
                AuditRecord::new(&me(), "silence.create", s.id.clone(), json!({}))
            })
            .await
            .unwrap();
        assert!(created);
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Silenced, "{k}");
        assert!(c.silenced && !c.should_notify());
        svc.ingest(vec![raw(Severity::Critical, "a", None)], None)
            .await
            .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Repeated);
        assert!(!c.should_notify(), "{k}: silenced alerts are not notified");
        svc.expire_silence(&s.id, |s| {
            AuditRecord::new(&me(), "silence.expire", s.id.clone(), json!({}))
        })
        .await
        .unwrap();
        let c = next(&mut rx).await;
        assert_eq!(c.kind, ChangeKind::Unsilenced, "{k}");
        assert!(!c.silenced && c.should_notify());

        // Inhibited by a critical with the same alertname and instance.
        let w = svc
            .ingest(vec![raw(Severity::Warning, "b", None)], None)
            .await
            .unwrap()[0];
        assert_eq!(next(&mut rx).await.kind, ChangeKind::Fired);
        let mut crit = raw(Severity::Critical, "b", None);
        crit.labels.insert("severity".into(), "critical".into());
        let mut warn = raw(Severity::Warning, "b", None);
        warn.labels.insert("severity".into(), "warning".into());
        svc.ingest(vec![warn.clone(), crit], None).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let c = next(&mut rx).await;
            got.push((c.kind, c.labels["severity"].clone(), c.inhibited));
        }
        assert!(
            got.contains(&(ChangeKind::Silenced, "warning".into(), true)),
            "{k}: {got:?}"
        );
        assert_ne!(w, 0);

        task.shutdown(Duration::from_secs(5)).await;
        store.close().await;
    }
}

/// What the edge validation would have refused, submitted past it (a NUL character,
/// which PostgreSQL cannot store) together with other requests: the database refuses
/// the writer's batch, and the writer commits every other request of it anyway.
#[tokio::test]
async fn a_batch_the_database_refuses_fails_only_its_culprit() {
    let Some(db) = common::postgres_db().await else {
        eprintln!("skipped: WATCHPOST_TEST_DATABASE_URL is not set");
        return;
    };
    let mut config = common::test_config(&db.url);
    config.alerts.batch_max_delay = Duration::from_millis(200);
    let metrics = Metrics::new().unwrap();
    let store = Db::connect(&config, metrics.db.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let (tx, _rx) = watchpost::alerts::change::channel();
    let (svc, _task) = AlertService::start(
        &config,
        store.clone(),
        metrics,
        EventBus::default(),
        tx,
        watchpost::cluster::NodeRole::single_node(),
    )
    .await
    .unwrap();
    let mut bad = raw(Severity::Warning, "nul", None);
    bad.message = Some("disk\0full".into());
    let goods =
        (0..10).map(|i| svc.ingest(vec![raw(Severity::Warning, &format!("g{i}"), None)], None));
    let (bad_result, good_results) = tokio::join!(
        svc.ingest(vec![bad], None),
        futures_util::future::join_all(goods)
    );
    assert!(bad_result.is_err(), "the culprit is refused");
    for r in good_results {
        assert!(r.is_ok(), "a neighbour failed with the culprit: {r:?}");
    }
    let filter = watchpost::alerts::repo::ListFilter {
        limit: 100,
        ..Default::default()
    };
    let stored = svc.list(&filter).await.unwrap();
    assert_eq!(stored.len(), 10, "every good request is stored");
}
