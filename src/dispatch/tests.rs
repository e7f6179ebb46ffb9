//! Dispatcher timers on tokio's paused clock: group_wait, group_interval,
//! repeat_interval, resolution, restarts.

use std::sync::Mutex as StdMutex;

use super::*;

#[derive(Default)]
struct MemorySink {
    sent: StdMutex<Vec<(tokio::time::Instant, Notification)>>,
    log: StdMutex<HashMap<(String, String), NotifyLogEntry>>,
    forgotten: StdMutex<Vec<String>>,
}

#[async_trait::async_trait]
impl NotificationSink for MemorySink {
    async fn load_log(&self) -> anyhow::Result<Vec<(String, String, NotifyLogEntry)>> {
        Ok(self
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|((g, r), e)| (g.clone(), r.clone(), e.clone()))
            .collect())
    }
    async fn notify(&self, n: &Notification, entry: &NotifyLogEntry) -> anyhow::Result<()> {
        self.sent
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), n.clone()));
        self.log
            .lock()
            .unwrap()
            .insert((n.group_key.clone(), n.receiver.clone()), entry.clone());
        Ok(())
    }
    async fn save_log(&self, g: &str, r: &str, e: &NotifyLogEntry) -> anyhow::Result<()> {
        self.log
            .lock()
            .unwrap()
            .insert((g.into(), r.into()), e.clone());
        Ok(())
    }
    async fn forget(&self, g: &str, r: &str) -> anyhow::Result<()> {
        self.log.lock().unwrap().remove(&(g.into(), r.into()));
        self.forgotten.lock().unwrap().push(g.into());
        Ok(())
    }
}

impl MemorySink {
    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
    fn last(&self) -> Notification {
        self.sent.lock().unwrap().last().unwrap().1.clone()
    }
}

fn route(group_by: &[&str]) -> Route {
    Route {
        id: "{}".into(),
        matchers: Matchers::default(),
        continue_matching: false,
        opts: RouteOpts {
            receiver: "r".into(),
            group_by: GroupBy::Labels(group_by.iter().map(|s| s.to_string()).collect()),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        },
        routes: vec![],
    }
}

fn start(
    sink: Arc<MemorySink>,
    r: Route,
) -> (mpsc::Sender<AlertNotice>, DispatchHandle, CancellationToken) {
    let d = Dispatcher::new(Some(r), sink);
    let tx = d.sender();
    let h = d.handle();
    let token = CancellationToken::new();
    tokio::spawn(d.run(token.clone()));
    (tx, h, token)
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn group_wait_then_one_notification() {
    let sink = Arc::new(MemorySink::default());
    let (tx, h, _t) = start(sink.clone(), route(&["alertname"]));
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    tx.send(AlertNotice::test(2, "b", "Disk")).await.unwrap();
    sleep(29).await;
    assert_eq!(sink.count(), 0, "nothing before group_wait");
    let groups = h.groups(&GroupFilter::all());
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].state, "pending");
    assert_eq!(groups[0].alerts.len(), 2);
    sleep(2).await;
    assert_eq!(sink.count(), 1, "one notification for the group");
    let n = sink.last();
    assert_eq!(n.firing.len(), 2);
    assert_eq!(n.group_labels["alertname"], "Disk");
    assert_eq!(h.groups(&GroupFilter::all())[0].state, "active");
    // Unchanged: nothing more until repeat_interval.
    sleep(3600).await;
    assert_eq!(sink.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn changes_wait_for_group_interval() {
    let sink = Arc::new(MemorySink::default());
    let (tx, _h, _t) = start(sink.clone(), route(&["alertname"]));
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.count(), 1);
    // A new alert 10 s after the first flush waits for the next group_interval tick.
    sleep(10).await;
    tx.send(AlertNotice::test(2, "b", "Disk")).await.unwrap();
    sleep(280).await; // t = 321 s; the tick is at 330 s
    assert_eq!(sink.count(), 1, "not before group_interval");
    sleep(10).await;
    assert_eq!(sink.count(), 2);
    assert_eq!(sink.last().firing.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn repeat_interval_repeats_unchanged_firing_groups() {
    let sink = Arc::new(MemorySink::default());
    let mut r = route(&["alertname"]);
    r.opts.repeat_interval = Duration::from_secs(600);
    let (tx, _h, _t) = start(sink.clone(), r);
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.count(), 1);
    // Ticks at 330 s (300 s after the first notification): not yet; 630 s: repeat.
    sleep(590).await;
    assert_eq!(sink.count(), 1);
    sleep(10).await;
    assert_eq!(sink.count(), 2);
    assert_eq!(sink.last().seq, 2);
}

#[tokio::test(start_paused = true)]
async fn resolved_is_notified_then_the_group_goes_away() {
    let sink = Arc::new(MemorySink::default());
    let (tx, h, _t) = start(sink.clone(), route(&["alertname"]));
    let mut a = AlertNotice::test(1, "a", "Disk");
    tx.send(a.clone()).await.unwrap();
    sleep(31).await;
    a.state = AlertState::Resolved;
    a.ends_at = Some(Utc::now());
    tx.send(a).await.unwrap();
    sleep(300).await;
    assert_eq!(sink.count(), 2);
    let n = sink.last();
    assert_eq!(n.status, AlertState::Resolved);
    assert_eq!(n.resolved.len(), 1);
    assert!(h.groups(&GroupFilter::all()).is_empty(), "group removed");
    assert_eq!(sink.forgotten.lock().unwrap().len(), 1);
    // Firing again later is a new group and a new notification.
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.count(), 3);
    assert_eq!(sink.last().status, AlertState::Firing);
}

#[tokio::test(start_paused = true)]
async fn group_by_splits_and_silenced_alerts_wait_silently() {
    let sink = Arc::new(MemorySink::default());
    let (tx, h, _t) = start(sink.clone(), route(&["alertname", "instance"]));
    for (i, inst) in ["a", "b"].iter().enumerate() {
        let mut n = AlertNotice::test(i as i64, inst, "Down");
        n.labels.insert("instance".into(), inst.to_string());
        tx.send(n).await.unwrap();
    }
    let mut s = AlertNotice::test(9, "s", "Down");
    s.labels.insert("instance".into(), "c".into());
    s.silenced = true;
    tx.send(s).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.count(), 2, "two groups notified, the silenced one not");
    let all = h.groups(&GroupFilter::all());
    assert_eq!(all.len(), 3);
    let mut active = GroupFilter::all();
    active.silenced = false;
    assert_eq!(h.groups(&active).len(), 2);
    let mut by_matcher = GroupFilter::all();
    by_matcher.matchers = Matchers::parse(r#"instance="b""#).unwrap();
    assert_eq!(h.groups(&by_matcher).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn restart_with_the_log_does_not_notify_again() {
    let sink = Arc::new(MemorySink::default());
    let (tx, _h, token) = start(sink.clone(), route(&["alertname"]));
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.count(), 1);
    token.cancel();
    sleep(1).await;

    // A new dispatcher over the same sink; the pipeline replays the firing alert.
    let (tx, _h, _t) = start(sink.clone(), route(&["alertname"]));
    tx.send(AlertNotice::test(1, "a", "Disk")).await.unwrap();
    sleep(400).await;
    assert_eq!(sink.count(), 1, "already notified before the restart");
    // A new alert after the restart is notified.
    tx.send(AlertNotice::test(2, "b", "Disk")).await.unwrap();
    sleep(300).await;
    assert_eq!(sink.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn old_alert_in_a_new_group_is_not_held_back() {
    let sink = Arc::new(MemorySink::default());
    let (tx, _h, _t) = start(sink.clone(), route(&["alertname"]));
    let mut n = AlertNotice::test(1, "a", "Disk");
    n.starts_at = Utc::now() - chrono::Duration::minutes(10);
    tx.send(n).await.unwrap();
    sleep(1).await;
    assert_eq!(sink.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn severity_change_moves_the_alert_between_routes() {
    let sink = Arc::new(MemorySink::default());
    let mut r = route(&["alertname"]);
    r.routes.push(Route {
        id: "{}/{severity=\"critical\"}/0".into(),
        matchers: Matchers::parse(r#"severity="critical""#).unwrap(),
        continue_matching: false,
        opts: RouteOpts {
            receiver: "pager".into(),
            ..r.opts.clone()
        },
        routes: vec![],
    });
    let (tx, h, _t) = start(sink.clone(), r);
    let mut n = AlertNotice::test(1, "a", "Disk");
    tx.send(n.clone()).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.last().receiver, "r");
    n.severity = "critical".into();
    tx.send(n).await.unwrap();
    sleep(31).await;
    assert_eq!(sink.last().receiver, "pager");
    let groups = h.groups(&GroupFilter::all());
    assert_eq!(groups.len(), 1, "left the old group: {groups:?}");
    assert_eq!(groups[0].receiver.name, "pager");
}

/// Stored alerts for restores.
#[derive(Default)]
struct MemorySource {
    alerts: StdMutex<Vec<AlertNotice>>,
}

#[async_trait::async_trait]
impl AlertSource for MemorySource {
    async fn firing(&self) -> anyhow::Result<Vec<AlertNotice>> {
        let all = self.alerts.lock().unwrap();
        Ok(all
            .iter()
            .filter(|n| n.state == AlertState::Firing)
            .cloned()
            .collect())
    }
    async fn by_fingerprints(&self, fps: &[String]) -> anyhow::Result<Vec<AlertNotice>> {
        let all = self.alerts.lock().unwrap();
        Ok(all
            .iter()
            .filter(|n| fps.contains(&n.fingerprint))
            .cloned()
            .collect())
    }
}

fn start_restoring(
    sink: Arc<MemorySink>,
    source: Arc<MemorySource>,
) -> (mpsc::Sender<AlertNotice>, CancellationToken) {
    let d = Dispatcher::new(Some(route(&["alertname"])), sink).with_source(source);
    let tx = d.sender();
    let token = CancellationToken::new();
    tokio::spawn(d.run(token.clone()));
    (tx, token)
}

const DISK_GROUP: &str = "{}:{alertname=\"Disk\"}";

#[tokio::test(start_paused = true)]
async fn restart_inside_group_wait_notifies_what_is_left_once() {
    let sink = Arc::new(MemorySink::default());
    let source = Arc::new(MemorySource::default());
    // Accepted 20 s before the restart; nothing was notified.
    let mut a = AlertNotice::test(1, "a", "Disk");
    a.starts_at = Utc::now() - chrono::Duration::seconds(20);
    source.alerts.lock().unwrap().push(a.clone());
    let (tx, _t) = start_restoring(sink.clone(), source);
    // The pipeline may announce it again: still one notification.
    tx.send(a).await.unwrap();
    sleep(9).await;
    assert_eq!(sink.count(), 0, "group_wait is not over yet");
    sleep(2).await;
    assert_eq!(sink.count(), 1, "the rest of group_wait, then notified");
    assert_eq!(sink.last().firing[0].fingerprint, "a");
    sleep(3600).await;
    assert_eq!(sink.count(), 1, "exactly once");
}

#[tokio::test(start_paused = true)]
async fn restart_inside_group_interval_announces_the_resolve_once() {
    let sink = Arc::new(MemorySink::default());
    let source = Arc::new(MemorySource::default());
    // Told firing 100 s ago; resolved since, the resolve not told yet.
    let told_at = Utc::now().timestamp_millis() - 100_000;
    sink.log.lock().unwrap().insert(
        (DISK_GROUP.into(), "r".into()),
        NotifyLogEntry {
            seq: 1,
            at_ms: told_at,
            firing: BTreeMap::from([("a".to_string(), 2u8)]),
            resolved: BTreeSet::new(),
            flapping: Default::default(),
            episode_ms: 0,
        },
    );
    let mut a = AlertNotice::test(1, "a", "Disk");
    a.state = AlertState::Resolved;
    a.ends_at = Some(Utc::now() - chrono::Duration::seconds(5));
    source.alerts.lock().unwrap().push(a);
    let (_tx, _t) = start_restoring(sink.clone(), source);
    sleep(198).await;
    assert_eq!(sink.count(), 0, "waits for the group_interval tick");
    sleep(4).await;
    assert_eq!(sink.count(), 1, "the resolve is announced on the tick");
    let n = sink.last();
    assert_eq!(n.status, AlertState::Resolved);
    assert_eq!(n.resolved[0].fingerprint, "a");
    assert_eq!(n.seq, 2);
    sleep(3600).await;
    assert_eq!(sink.count(), 1, "exactly once");
}

#[tokio::test(start_paused = true)]
async fn restart_does_not_repeat_what_was_told() {
    let sink = Arc::new(MemorySink::default());
    let source = Arc::new(MemorySource::default());
    sink.log.lock().unwrap().insert(
        (DISK_GROUP.into(), "r".into()),
        NotifyLogEntry {
            seq: 1,
            at_ms: Utc::now().timestamp_millis() - 10_000,
            firing: BTreeMap::from([("a".to_string(), 2u8)]),
            resolved: BTreeSet::new(),
            flapping: Default::default(),
            episode_ms: 0,
        },
    );
    source
        .alerts
        .lock()
        .unwrap()
        .push(AlertNotice::test(1, "a", "Disk"));
    let (tx, _t) = start_restoring(sink.clone(), source);
    sleep(600).await;
    assert_eq!(sink.count(), 0, "already told");
    // A new alert joins the restored group: told on the next group_interval tick.
    tx.send(AlertNotice::test(2, "b", "Disk")).await.unwrap();
    sleep(300).await;
    assert_eq!(sink.count(), 1);
    assert_eq!(sink.last().firing.len(), 2);
}

#[test]
fn group_interval_ticks_continue_from_the_last_notification() {
    let gi = Duration::from_secs(300);
    assert_eq!(next_tick(1_000, gi, 1_000), 1_000);
    assert_eq!(
        next_tick(10_000_000, gi, 1_000),
        301_000,
        "a log from the future"
    );
    assert_eq!(next_tick(0, gi, 100_000), 300_000);
    assert_eq!(next_tick(0, gi, 300_000), 300_000);
    assert_eq!(next_tick(0, gi, 300_001), 600_000);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_alert_sends_one_flapping_and_one_stable_message() {
    let sink = Arc::new(MemorySink::default());
    let mut r = route(&["alertname"]);
    r.opts.group_wait = Duration::from_secs(1);
    r.opts.group_interval = Duration::from_secs(2);
    let d = Dispatcher::new(Some(r), sink.clone()).with_flap(
        &FlapConfig {
            max_transitions: 4,
            window: Duration::from_secs(60),
        },
        prometheus::IntGauge::new("flapping", "test").unwrap(),
    );
    let gauge = d.flapping_gauge.clone().unwrap();
    let tx = d.sender();
    let _token = CancellationToken::new();
    tokio::spawn(d.run(_token.clone()));
    let t0 = Utc::now();
    // Ten changes, 3 s apart: fires, resolves, fires, … and ends resolved.
    for i in 0..10i64 {
        let mut a = AlertNotice::test(1, "a", "Cpu");
        let at = t0 + chrono::Duration::seconds(3 * i);
        if i % 2 == 0 {
            a.starts_at = at;
        } else {
            a.starts_at = at - chrono::Duration::seconds(3);
            a.state = AlertState::Resolved;
            a.ends_at = Some(at);
        }
        tx.send(a).await.unwrap();
        sleep(3).await;
    }
    assert_eq!(gauge.get(), 1, "flapping while it changes");
    let before_stable = sink.count();
    // Stable after window / 3 = 20 s without a change.
    sleep(25).await;
    assert_eq!(gauge.get(), 0);
    let sent: Vec<Notification> = sink
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(_, n)| n.clone())
        .collect();
    let flapping: Vec<&Notification> = sent.iter().filter(|n| !n.flapping.is_empty()).collect();
    let stable: Vec<&Notification> = sent.iter().filter(|n| !n.stable.is_empty()).collect();
    assert_eq!(flapping.len(), 1, "{sent:#?}");
    assert_eq!(stable.len(), 1, "{sent:#?}");
    assert_eq!(
        sent.len(),
        before_stable + 1,
        "only the stable message after"
    );
    assert!(sent.len() <= 6, "not one per change: {}", sent.len());
    // Between the flapping and the stable message nothing was sent.
    let fi = sent.iter().position(|n| !n.flapping.is_empty()).unwrap();
    let si = sent.iter().position(|n| !n.stable.is_empty()).unwrap();
    assert_eq!(si, fi + 1);
    // The stable message tells the final state: resolved.
    assert_eq!(stable[0].resolved.len(), 1);
    assert!(stable[0].firing.is_empty());
    assert_eq!(stable[0].status, AlertState::Resolved);
    sleep(600).await;
    assert_eq!(
        sink.count(),
        sent.len(),
        "nothing more once stable and resolved"
    );
}
