//! Alertmanager's formats: the webhook payload (version 4) that Alertmanager POSTs to
//! a `webhook_configs` receiver, and the list of postable alerts that Prometheus (or
//! amtool) POSTs to `/api/v2/alerts`.

use serde::Deserialize;

use super::{IngestError, RESOLVE_TIMEOUT, RawAlert, check_labels, from_slice, parse_time};
use crate::alerts::model::LabelSet;

/// Alertmanager's webhook payload.
#[derive(Debug, Deserialize)]
pub struct WebhookPayload {
    /// `"4"`.
    #[serde(default)]
    pub version: Option<String>,
    /// Group status (`firing`/`resolved`); each alert has its own.
    #[serde(default)]
    pub status: Option<String>,
    /// The receiver name in Alertmanager.
    #[serde(default)]
    pub receiver: Option<String>,
    /// The alerts of the group.
    pub alerts: Vec<WebhookAlert>,
    /// Alertmanager's external URL.
    #[serde(default, rename = "externalURL")]
    pub external_url: Option<String>,
    /// How many alerts Alertmanager left out.
    #[serde(default, rename = "truncatedAlerts")]
    pub truncated_alerts: Option<u64>,
}

/// One alert of a webhook payload.
#[derive(Debug, Deserialize)]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: LabelSet,
    /// Annotations.
    #[serde(default)]
    pub annotations: LabelSet,
    /// Start.
    #[serde(default, rename = "startsAt")]
    pub starts_at: Option<String>,
    /// End (Go's zero time while firing).
    #[serde(default, rename = "endsAt")]
    pub ends_at: Option<String>,
    /// Link to the expression.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Alertmanager's fingerprint (ignored: ours covers the source too).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Parses a webhook payload; resolved alerts get their `endsAt` (or now).
pub fn parse_webhook(
    body: &[u8],
    max_alerts: usize,
    now_ms: i64,
) -> Result<Vec<RawAlert>, IngestError> {
    let p: WebhookPayload = from_slice(body)?;
    if let Some(v) = &p.version
        && v != "4"
    {
        return Err(IngestError(format!(
            "version: unsupported webhook payload version {v:?}; expected \"4\""
        )));
    }
    if p.alerts.len() > max_alerts {
        return Err(too_many(p.alerts.len(), max_alerts));
    }
    p.alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let f = |name: &str| format!("alerts[{i}].{name}");
            let mut labels = a.labels;
            if labels.is_empty() {
                return Err(IngestError(format!(
                    "{}: at least one label is required",
                    f("labels")
                )));
            }
            check_labels(&mut labels, &f("labels"))?;
            let mut annotations = a.annotations;
            check_labels(&mut annotations, &f("annotations"))?;
            let starts_at_ms = opt_time(a.starts_at.as_deref(), &f("startsAt"))?;
            let mut ends_at_ms = opt_time(a.ends_at.as_deref(), &f("endsAt"))?;
            match a.status.as_deref() {
                Some("resolved") => {
                    ends_at_ms = Some(ends_at_ms.unwrap_or(now_ms).min(now_ms));
                }
                Some("firing") | None => {
                    // A firing alert's endsAt is only Alertmanager's bookkeeping.
                    ends_at_ms = None;
                }
                Some(other) => {
                    return Err(IngestError(format!(
                        "{}: {other:?} is not firing or resolved",
                        f("status")
                    )));
                }
            }
            Ok(RawAlert {
                source: "alertmanager".into(),
                labels,
                annotations,
                starts_at_ms,
                ends_at_ms,
                generator_url: a.generator_url,
                ..Default::default()
            })
        })
        .collect()
}

/// One postable alert of Alertmanager's `/api/v2/alerts`.
#[derive(Debug, Deserialize)]
pub struct PostableAlert {
    /// Required, non-empty.
    pub labels: LabelSet,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<LabelSet>,
    /// Start; default now.
    #[serde(default, rename = "startsAt")]
    pub starts_at: Option<String>,
    /// End; default now + resolve timeout (the alert resolves unless sent again).
    #[serde(default, rename = "endsAt")]
    pub ends_at: Option<String>,
    /// Link to the expression.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: Option<String>,
}

/// Parses a `/api/v2/alerts` body, validating like Alertmanager.
pub fn parse_v2(body: &[u8], max_alerts: usize, now_ms: i64) -> Result<Vec<RawAlert>, IngestError> {
    let list: Vec<PostableAlert> = from_slice(body)?;
    if list.len() > max_alerts {
        return Err(too_many(list.len(), max_alerts));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let f = |name: &str| format!("[{i}].{name}");
            let mut labels = a.labels;
            if labels.is_empty() {
                return Err(IngestError(format!(
                    "{}: at least one label pair is required",
                    f("labels")
                )));
            }
            check_labels(&mut labels, &f("labels"))?;
            let mut annotations = a.annotations.unwrap_or_default();
            check_labels(&mut annotations, &f("annotations"))?;
            let starts_at_ms = opt_time(a.starts_at.as_deref(), &f("startsAt"))?;
            let ends_at_ms = opt_time(a.ends_at.as_deref(), &f("endsAt"))?;
            let start = starts_at_ms.unwrap_or(now_ms);
            if let Some(e) = ends_at_ms
                && e < start
            {
                return Err(IngestError(format!(
                    "{}: must not be before startsAt",
                    f("endsAt")
                )));
            }
            let ends_at_ms = Some(
                ends_at_ms
                    .unwrap_or_else(|| start.max(now_ms) + RESOLVE_TIMEOUT.as_millis() as i64),
            );
            Ok(RawAlert {
                source: "prometheus".into(),
                labels,
                annotations,
                starts_at_ms,
                ends_at_ms,
                generator_url: a.generator_url,
                ..Default::default()
            })
        })
        .collect()
}

fn opt_time(v: Option<&str>, field: &str) -> Result<Option<i64>, IngestError> {
    match v {
        Some(s) => parse_time(s, field),
        None => Ok(None),
    }
}

fn too_many(n: usize, max: usize) -> IngestError {
    IngestError(format!(
        "too many alerts: {n} in one request; the limit is {max} (alerts.max_alerts_per_request)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn webhook_v4() {
        let body = br#"{"version":"4","groupKey":"{}:{}","status":"firing","receiver":"wp",
          "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am",
          "truncatedAlerts":0,
          "alerts":[
            {"status":"firing","labels":{"alertname":"A","severity":"critical"},"annotations":{"summary":"a down"},
             "startsAt":"2023-11-14T22:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://p","fingerprint":"x"},
            {"status":"resolved","labels":{"alertname":"B"},"annotations":{},
             "startsAt":"2023-11-14T21:00:00Z","endsAt":"2023-11-14T22:10:00Z"}]}"#;
        let alerts = parse_webhook(body, 100, NOW).unwrap();
        assert_eq!(alerts[0].ends_at_ms, None);
        assert_eq!(alerts[0].source, "alertmanager");
        assert_eq!(alerts[1].ends_at_ms, Some(1_699_999_800_000));
        let e = parse_webhook(br#"{"version":"3","alerts":[]}"#, 100, NOW).unwrap_err();
        assert!(e.0.starts_with("version"), "{e}");
        let e = parse_webhook(
            br#"{"alerts":[{"labels":{"a":"b"},"status":"maybe"}]}"#,
            100,
            NOW,
        )
        .unwrap_err();
        assert!(e.0.starts_with("alerts[0].status"), "{e}");
    }

    #[test]
    fn v2_defaults_and_validation() {
        let body = br#"[{"labels":{"alertname":"X"},"annotations":{"summary":"s"},"generatorURL":"http://g"},
                        {"labels":{"alertname":"Y"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T22:05:00Z"}]"#;
        let alerts = parse_v2(body, 100, NOW).unwrap();
        assert_eq!(alerts[0].ends_at_ms, Some(NOW + 300_000));
        assert_eq!(alerts[1].ends_at_ms, Some(1_699_999_500_000));
        let e = parse_v2(br#"[{"labels":{}}]"#, 100, NOW).unwrap_err();
        assert!(e.0.starts_with("[0].labels"), "{e}");
        let e = parse_v2(br#"[{"labels":{"a":"b"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T21:00:00Z"}]"#, 100, NOW).unwrap_err();
        assert!(e.0.starts_with("[0].endsAt"), "{e}");
        let e = parse_v2(br#"{"labels":{"a":"b"}}"#, 100, NOW).unwrap_err();
        assert!(e.0.contains("invalid"), "{e}");
        let e = parse_v2(br#"[{"labels":{"a":"b"}},{"labels":{"a":"c"}}]"#, 1, NOW).unwrap_err();
        assert!(e.0.contains("max_alerts_per_request"), "{e}");
    }
}
