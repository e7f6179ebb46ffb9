//! Alertmanager's formats: the webhook payload (version 4) that Alertmanager POSTs to
//! a `webhook_configs` receiver, and the list of postable alerts that Prometheus (or
//! amtool) POSTs to `/api/v2/alerts`.

use serde::Deserialize;

use super::{
    IngestError, Names, Parsed, RawAlert, after_resolve_timeout, check_labels, from_slice,
    items_of, parse_items, parse_time,
};
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

/// A webhook payload whose alerts are parsed one by one.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    version: Option<String>,
    alerts: Vec<serde_json::Value>,
}

/// Parses a webhook payload; resolved alerts get their `endsAt` (or now). Each invalid
/// alert is refused alone.
pub fn parse_webhook(body: &[u8], max_alerts: usize, now_ms: i64) -> Result<Parsed, IngestError> {
    let (version, alerts) = match serde_json::from_slice::<WebhookPayload>(body) {
        Ok(p) => (p.version, p.alerts.into_iter().map(Ok).collect()),
        Err(_) => {
            let e: Envelope = from_slice(body)?;
            (e.version, items_of::<WebhookAlert>(e.alerts, "alerts"))
        }
    };
    if let Some(v) = &version
        && v != "4"
    {
        return Err(IngestError(format!(
            "version: unsupported webhook payload version {v:?}; expected \"4\""
        )));
    }
    if alerts.len() > max_alerts {
        return Err(too_many(alerts.len(), max_alerts));
    }
    let results = alerts
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.and_then(|a| webhook_alert(a, i, now_ms)));
    Ok(Parsed::from_results(results, |i| format!("alerts[{i}].")))
}

/// One webhook alert, validated as Alertmanager validates alerts.
fn webhook_alert(a: WebhookAlert, i: usize, now_ms: i64) -> Result<RawAlert, IngestError> {
    let f = |name: &str| format!("alerts[{i}].{name}");
    let (labels, annotations) = label_sets(a.labels, a.annotations, &f)?;
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

/// Parses a `/api/v2/alerts` body, validating like Alertmanager: each invalid alert is
/// refused alone, the others are kept.
pub fn parse_v2(body: &[u8], max_alerts: usize, now_ms: i64) -> Result<Parsed, IngestError> {
    let list = parse_items::<PostableAlert>(body, "")?;
    if list.len() > max_alerts {
        return Err(too_many(list.len(), max_alerts));
    }
    let results = list
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.and_then(|a| postable_alert(a, i, now_ms)));
    Ok(Parsed::from_results(results, |i| format!("[{i}].")))
}

/// One postable alert.
fn postable_alert(a: PostableAlert, i: usize, now_ms: i64) -> Result<RawAlert, IngestError> {
    let f = |name: &str| format!("[{i}].{name}");
    let (labels, annotations) = label_sets(a.labels, a.annotations.unwrap_or_default(), &f)?;
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
    let ends_at_ms = Some(ends_at_ms.unwrap_or_else(|| after_resolve_timeout(start.max(now_ms))));
    Ok(RawAlert {
        source: "prometheus".into(),
        labels,
        annotations,
        starts_at_ms,
        ends_at_ms,
        generator_url: a.generator_url,
        ..Default::default()
    })
}

/// An alert's labels (at least one) and annotations, validated as Alertmanager does;
/// `f` names a field of this alert.
fn label_sets(
    mut labels: LabelSet,
    mut annotations: LabelSet,
    f: &dyn Fn(&str) -> String,
) -> Result<(LabelSet, LabelSet), IngestError> {
    if labels.is_empty() {
        return Err(IngestError(format!(
            "{}: at least one label pair is required",
            f("labels")
        )));
    }
    check_labels(&mut labels, &f("labels"), Names::Prometheus)?;
    check_labels(&mut annotations, &f("annotations"), Names::Prometheus)?;
    Ok((labels, annotations))
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
        let alerts = parse_webhook(body, 100, NOW).unwrap().alerts;
        assert_eq!(alerts[0].ends_at_ms, None);
        assert_eq!(alerts[0].source, "alertmanager");
        assert_eq!(alerts[1].ends_at_ms, Some(1_699_999_800_000));
        let e = parse_webhook(br#"{"version":"3","alerts":[]}"#, 100, NOW).unwrap_err();
        assert!(e.0.starts_with("version"), "{e}");
        let p = parse_webhook(
            br#"{"alerts":[{"labels":{"a":"b"},"status":"maybe"},{"labels":{"a":"c"}},{"labels":5}]}"#,
            100,
            NOW,
        )
        .unwrap();
        assert_eq!(p.alerts.len(), 1);
        assert!(
            p.rejected[0].0.starts_with("alerts[0].status"),
            "{:?}",
            p.rejected
        );
        assert!(
            p.rejected[1].0.starts_with("alerts[2].labels"),
            "{:?}",
            p.rejected
        );
    }

    #[test]
    fn v2_defaults_and_validation() {
        let body = br#"[{"labels":{"alertname":"X"},"annotations":{"summary":"s"},"generatorURL":"http://g"},
                        {"labels":{"alertname":"Y"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T22:05:00Z"}]"#;
        let alerts = parse_v2(body, 100, NOW).unwrap().alerts;
        assert_eq!(alerts[0].ends_at_ms, Some(NOW + 300_000));
        assert_eq!(alerts[1].ends_at_ms, Some(1_699_999_500_000));
        let one_error = |body: &[u8]| {
            let p = parse_v2(body, 100, NOW).unwrap();
            assert_eq!(p.rejected.len(), 1, "{:?}", p.rejected);
            p.rejected[0].0.clone()
        };
        let e = one_error(br#"[{"labels":{}}]"#);
        assert!(e.starts_with("[0].labels"), "{e}");
        let e = one_error(br#"[{"labels":{"a":"b"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T21:00:00Z"}]"#);
        assert!(e.starts_with("[0].endsAt"), "{e}");
        for bad in ["1abc", "a-b", "a.b", "a b", "é"] {
            let body = format!(r#"[{{"labels":{{"ok":"1"}}}},{{"labels":{{"{bad}":"x"}}}}]"#);
            let e = one_error(body.as_bytes());
            assert!(
                e.starts_with("[1].labels") && e.contains("invalid label name"),
                "{e}"
            );
        }
        let e = one_error(br#"[{"labels":{"a":"b"},"annotations":{"x-y":"z"}}]"#);
        assert!(e.starts_with("[0].annotations"), "{e}");
        let e = one_error(br#"[{"labels":{"a":"b\u0000"}}]"#);
        assert_eq!(e, "[0].labels.a: must not contain NUL characters");
        let e = parse_v2(br#"{"labels":{"a":"b"}}"#, 100, NOW).unwrap_err();
        assert!(e.0.contains("invalid"), "{e}");
        let e = parse_v2(br#"[{"labels":{"a":"b"}},{"labels":{"a":"c"}}]"#, 1, NOW).unwrap_err();
        assert!(e.0.contains("max_alerts_per_request"), "{e}");
    }

    #[test]
    fn extreme_times() {
        // The last second of 9999 is a time; the default end stops at the end of 9999.
        let body = br#"[{"labels":{"a":"b"},"startsAt":"9999-12-31T23:59:59Z"}]"#;
        let a = parse_v2(body, 10, NOW).unwrap().alerts;
        assert_eq!(a[0].ends_at_ms, Some(super::super::MAX_TIME_MS));
        // A clock at the end of time saturates instead of wrapping.
        let a = parse_v2(br#"[{"labels":{"a":"b"}}]"#, 10, i64::MAX)
            .unwrap()
            .alerts;
        assert_eq!(a[0].ends_at_ms, Some(super::super::MAX_TIME_MS));
        for (body, field) in [
            (
                &br#"[{"labels":{"a":"b"},"startsAt":"9999-12-31T23:59:59-12:00"}]"#[..],
                "[0].startsAt",
            ),
            (
                &br#"[{"labels":{"a":"b"},"endsAt":"99999-01-01T00:00:00Z"}]"#[..],
                "[0].endsAt",
            ),
        ] {
            let e = parse_v2(body, 10, NOW).unwrap().rejected.remove(0);
            assert!(e.0.starts_with(field), "{e}");
        }
        let body = br#"{"alerts":[{"status":"resolved","labels":{"a":"b"},"endsAt":"9999-12-31T23:59:59-01:00"}]}"#;
        let e = parse_webhook(body, 10, NOW).unwrap().rejected.remove(0);
        assert!(e.0.starts_with("alerts[0].endsAt"), "{e}");
    }
}
