//! The generic webhook receiver: Alertmanager's webhook payload (version 4), POSTed as
//! JSON, through the same outbox and retries as Telegram.

use std::time::Duration;

use serde_json::{Value, json};

use super::outbox::OutboxRow;
use super::policy::Attempt;
use super::sender::{OutboxTransport, Started};
use crate::dispatch::{AlertNotice, Notification};

/// Alertmanager's "zero time" for `endsAt` of firing alerts.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The Alertmanager webhook (v4) payload of a notification; also the data handed to
/// user templates. Alerts carry watchpost's `id` and dashboard `url` in addition.
pub fn webhook_payload(n: &Notification, external_url: &str) -> Value {
    let alerts: Vec<Value> = n
        .alerts()
        .map(|a| {
            let mut v = alert_json(a, external_url);
            v["flapping"] = a.flapping.into();
            v["stable"] = n.stable.contains(&a.fingerprint).into();
            v
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status.as_str(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": external_url,
        "alerts": alerts,
    })
}

fn alert_json(a: &AlertNotice, external_url: &str) -> Value {
    let rfc =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ends = match (a.state, a.ends_at) {
        (crate::dispatch::AlertState::Resolved, Some(t)) => rfc(t),
        (crate::dispatch::AlertState::Resolved, None) => rfc(chrono::Utc::now()),
        _ => ZERO_TIME.to_string(),
    };
    json!({
        "status": a.state.as_str(),
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc(a.starts_at),
        "endsAt": ends,
        "generatorURL": a.generator_url.clone().unwrap_or_default(),
        "fingerprint": a.fingerprint,
        "id": a.id,
        "severity": a.severity,
        "value": a.value,
        "url": format!("{}/alerts/{}", external_url.trim_end_matches('/'), a.id),
    })
}

/// Sends webhook rows: the payload column is the JSON body, the target is `webhook:URL`.
pub struct WebhookTransport {
    client: reqwest::Client,
}

impl WebhookTransport {
    /// A transport with its own HTTP client; each request may take `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("watchpost/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        WebhookTransport { client }
    }
}

impl Default for WebhookTransport {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[async_trait::async_trait]
impl OutboxTransport for WebhookTransport {
    async fn send(&self, row: &OutboxRow, started: &Started) -> Attempt {
        let Some(url) = row.target.strip_prefix("webhook:") else {
            return Attempt::Rejected(format!("bad webhook target {:?}", row.target));
        };
        if !started.mark() {
            return super::sender::not_leading();
        }
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            // The same key on a resend (after an ambiguous attempt): receivers that
            // honour it drop the duplicate.
            .header("Idempotency-Key", &row.idempotency_key)
            .body(row.payload.clone())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Attempt::network(&e),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // The status is the receiver's answer; a body cut short does not change it. A
        // receiver may echo its own path (`Cannot POST /services/T0/B0/SECRET`).
        let body = resp.text().await.unwrap_or_default();
        let body: String = echoed_secrets(url)
            .iter()
            .fold(body, |b, secret| crate::redact::without(&b, secret))
            .chars()
            .take(300)
            .collect();
        if status.is_success() {
            Attempt::Delivered(Some(format!("HTTP {}", status.as_u16())))
        } else if status.as_u16() == 429 {
            match retry_after {
                Some(s) => Attempt::RetryAfter(Duration::from_secs(s), format!("HTTP 429 {body}")),
                None => Attempt::Transient(format!("HTTP 429 {body}")),
            }
        } else if status.is_server_error() || status.as_u16() == 408 {
            Attempt::Transient(format!("HTTP {} {body}", status.as_u16()))
        } else {
            Attempt::Rejected(format!("HTTP {} {body}", status.as_u16()))
        }
    }
}

/// The parts of a receiver's URL that may be secret and that its answers may echo:
/// the path (Slack and Discord keep their tokens there), the query, the password.
fn echoed_secrets(url: &str) -> Vec<String> {
    let Ok(u) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let path = Some(u.path().to_string()).filter(|p| p.len() > 1);
    let query = u.query().filter(|q| !q.is_empty()).map(str::to_string);
    let password = u.password().map(str::to_string);
    [path, query, password].into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_paths_queries_and_passwords_are_known_secrets() {
        let s = echoed_secrets("https://u:pw@hooks.slack.com/services/T0/B0/XYZ?token=abc");
        assert_eq!(s, ["/services/T0/B0/XYZ", "token=abc", "pw"]);
        assert!(echoed_secrets("http://h:9/").is_empty());
        assert!(echoed_secrets("not a url").is_empty());
    }
    use crate::dispatch::AlertState;
    use std::collections::BTreeMap;

    #[test]
    fn payload_has_the_v4_shape() {
        let mut a = AlertNotice::test(7, "fp7", "Disk");
        a.labels.insert("instance".into(), "h".into());
        let mut r = AlertNotice::test(8, "fp8", "Disk");
        r.state = AlertState::Resolved;
        let n = Notification {
            group_key: "{}:{alertname=\"Disk\"}".into(),
            receiver: "hook".into(),
            group_labels: BTreeMap::from([("alertname".into(), "Disk".into())]),
            status: AlertState::Firing,
            firing: vec![a],
            resolved: vec![r],
            flapping: Vec::new(),
            stable: Default::default(),
            seq: 1,
            at_ms: 0,
            episode_ms: 0,
        };
        let p = webhook_payload(&n, "http://wp");
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "hook");
        assert_eq!(p["groupLabels"]["alertname"], "Disk");
        assert_eq!(p["commonLabels"], json!({"alertname": "Disk"}));
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["alerts"][0]["url"], "http://wp/alerts/7");
        assert_eq!(p["alerts"][1]["status"], "resolved");
        assert_ne!(p["alerts"][1]["endsAt"], ZERO_TIME);
        assert_eq!(p["truncatedAlerts"], 0);
    }
}
