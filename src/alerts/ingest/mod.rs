//! Ingest formats. Each parses its payload into [`RawAlert`]s (the common shape), with
//! errors that name the field (`[3].message`); [`RawAlert::prepare`] then classifies
//! and fingerprints them into [`Incoming`] alerts for the pipeline.
//!
//! * [`generic`]: `POST /api/v1/alerts`, watchpost's own schema.
//! * [`alertmanager`]: Alertmanager's webhook (version 4) and its `/api/v2/alerts` API.
//! * [`ntopng`]: ntopng's webhook endpoint.
//!
//! Times from senders are Unix ms from year 0001 (ntopng: 1970) to [`MAX_UNIX_SECONDS`]
//! (the end of 9999, the last time RFC 3339 can write); later ones are errors naming the
//! field. So adding a duration to one cannot overflow, and [`after_resolve_timeout`]
//! saturates all the same and stops at [`MAX_TIME_MS`].

pub mod alertmanager;
pub mod generic;
pub mod ntopng;

use std::time::Duration;

use super::classify;
use super::fingerprint::fingerprint;
use super::model::{LabelSet, Severity, duration_ms};

/// Longest message accepted from the generic API (characters).
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// Longest label or annotation value kept (characters); longer values are cut.
pub const MAX_VALUE_CHARS: usize = 16 * 1024;
/// How long an alert that carries no end time of its own (Alertmanager's API without
/// `endsAt`, ntopng's one-shot flow alerts) stays firing unless it is sent again:
/// Alertmanager's `resolve_timeout`.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(300);
/// Latest time a sender may state (Unix s): 9999-12-31T23:59:59Z, the last second
/// RFC 3339 can write. A later one is not a real time (and would overflow in ms).
pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;
/// The last millisecond of 9999 (Unix ms): the latest time an alert is given.
pub const MAX_TIME_MS: i64 = MAX_UNIX_SECONDS * 1000 + 999;

/// A payload that cannot be accepted; the message names the field or the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IngestError(pub String);

/// An alert as received, normalised across formats, before classification.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawAlert {
    /// `api`, `prometheus`, `alertmanager`, `ntopng`, `rules`, …
    pub source: String,
    /// The message; when `None`, derived from the annotations or the alert name.
    pub message: Option<String>,
    /// A severity the sender stated explicitly.
    pub severity: Option<Severity>,
    /// A type the sender stated (ntopng's category).
    pub type_hint: Option<String>,
    /// Type to use when neither hint, labels nor keywords decide.
    pub type_fallback: Option<&'static str>,
    /// The sender's own score (ntopng: 0–250+).
    pub source_score: Option<i64>,
    /// Identifying labels.
    pub labels: LabelSet,
    /// Descriptive annotations.
    pub annotations: LabelSet,
    /// Start (Unix ms); default: when received.
    pub starts_at_ms: Option<i64>,
    /// End (Unix ms): in the past resolves, in the future auto-resolves then.
    pub ends_at_ms: Option<i64>,
    /// Link back to the source.
    pub generator_url: Option<String>,
}

/// A classified, fingerprinted alert, ready for the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Identity.
    pub fingerprint: String,
    /// Origin.
    pub source: String,
    /// `alertname` label.
    pub alertname: Option<String>,
    /// Message.
    pub message: String,
    /// Classified severity.
    pub severity: Severity,
    /// Classified type.
    pub alert_type: &'static str,
    /// The sender's own score.
    pub source_score: Option<i64>,
    /// Labels.
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// Link back.
    pub generator_url: Option<String>,
    /// Start (Unix ms), when the sender said.
    pub starts_at_ms: Option<i64>,
    /// End (Unix ms), when the sender said.
    pub ends_at_ms: Option<i64>,
}

impl RawAlert {
    /// Classifies and fingerprints (see the README's "Classification").
    pub fn prepare(self) -> Incoming {
        let alertname = self.labels.get("alertname").cloned();
        let message = match self.message {
            Some(m) => m,
            None => derived_message(&self.annotations, alertname.as_deref()),
        };
        let texts = classify::Texts {
            alertname: alertname.as_deref(),
            summary: self
                .annotations
                .get("summary")
                .map_or(message.as_str(), String::as_str),
            description: self
                .annotations
                .get("description")
                .map_or("", String::as_str),
            labels: &self.labels,
        };
        let c = classify::classify(self.severity, self.type_hint.as_deref(), &texts);
        let severity = c.severity;
        let mut alert_type = c.alert_type;
        if alert_type == classify::OTHER
            && let Some(f) = self.type_fallback
        {
            alert_type = f;
        }
        let source = if self.source.is_empty() {
            "api".to_string()
        } else {
            self.source
        };
        Incoming {
            fingerprint: fingerprint(&source, &self.labels, &message),
            source,
            alertname,
            message,
            severity,
            alert_type,
            source_score: self.source_score,
            labels: self.labels,
            annotations: self.annotations,
            generator_url: self.generator_url.filter(|u| !u.is_empty()),
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
        }
    }
}

/// `summary`, else `description`, else `message` annotation, else the alert name.
fn derived_message(annotations: &LabelSet, alertname: Option<&str>) -> String {
    let text = ["summary", "description", "message"]
        .iter()
        .find_map(|k| annotations.get(*k).filter(|v| !v.trim().is_empty()))
        .map(String::as_str)
        .or(alertname)
        .unwrap_or("alert");
    truncate_chars(text, MAX_MESSAGE_CHARS)
}

/// `s` cut to at most `max` characters.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Parses an RFC 3339 time into Unix ms; Go's zero time (`0001-01-01T00:00:00Z`) is
/// "unset". Errors name `field`, also for a time after [`MAX_UNIX_SECONDS`] (which a
/// negative offset on the last day of 9999 can reach).
pub fn parse_time(value: &str, field: &str) -> Result<Option<i64>, IngestError> {
    if value.is_empty() {
        return Ok(None);
    }
    let t = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|e| IngestError(format!("{field}: {value:?} is not an RFC 3339 time ({e})")))?;
    if t.timestamp() <= -62_135_596_800 + 86_400 {
        return Ok(None);
    }
    if t.timestamp() > MAX_UNIX_SECONDS {
        return Err(IngestError(format!(
            "{field}: {value:?} is after 9999-12-31T23:59:59Z, the latest time accepted"
        )));
    }
    Ok(Some(t.timestamp_millis()))
}

/// `ms` plus [`RESOLVE_TIMEOUT`]: when an alert without an end of its own resolves; at
/// most [`MAX_TIME_MS`], so it can still be written as RFC 3339.
pub fn after_resolve_timeout(ms: i64) -> i64 {
    ms.saturating_add(duration_ms(RESOLVE_TIMEOUT))
        .min(MAX_TIME_MS)
}

/// Longest label or annotation name accepted (bytes).
pub const MAX_NAME_BYTES: usize = 1024;

/// Which label names a format accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// Prometheus' classic rule, `[a-zA-Z_][a-zA-Z0-9_]*`, as Alertmanager validates
    /// its webhook and `/api/v2/alerts` alerts.
    Prometheus,
    /// Any UTF-8 name, as Prometheus 3 allows (the generic API).
    Utf8,
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_prometheus_name(name: &str) -> bool {
    crate::tsdb::is_valid_label_name(name)
}

/// Checks names (non-empty, at most [`MAX_NAME_BYTES`], `rule`); cuts over-long
/// values. Errors name `field`.
pub fn check_labels(labels: &mut LabelSet, field: &str, rule: Names) -> Result<(), IngestError> {
    for (name, v) in labels.iter_mut() {
        if name.is_empty() {
            return Err(IngestError(format!(
                "{field}: label names must not be empty"
            )));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(IngestError(format!(
                "{field}: label name of {} bytes is longer than {MAX_NAME_BYTES}",
                name.len()
            )));
        }
        if rule == Names::Prometheus && !is_prometheus_name(name) {
            return Err(IngestError(format!(
                "{field}: invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
            )));
        }
        if v.len() > MAX_VALUE_CHARS {
            *v = truncate_chars(v, MAX_VALUE_CHARS);
        }
    }
    Ok(())
}

/// Alerts of one request: those that are valid, and an error (naming the alert's
/// index and field) for each that is not. One bad alert never fails its neighbours.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Valid alerts, in request order.
    pub alerts: Vec<RawAlert>,
    /// One error per refused alert.
    pub rejected: Vec<IngestError>,
}

impl Parsed {
    /// Sorts results into alerts and errors; `prefix(i)` names the i-th alert in them.
    pub fn from_results(
        results: impl IntoIterator<Item = Result<RawAlert, IngestError>>,
        prefix: impl Fn(usize) -> String,
    ) -> Self {
        let mut out = Parsed::default();
        for (i, r) in results.into_iter().enumerate() {
            match r.and_then(|a| a.storable(|| prefix(i))) {
                Ok(a) => out.alerts.push(a),
                Err(e) => out.rejected.push(e),
            }
        }
        out
    }
}

impl RawAlert {
    /// This alert, if every text in it can be stored; errors name `{prefix()}field`
    /// (built only for an error: this runs for every alert received).
    pub fn storable(self, prefix: impl Fn() -> String) -> Result<Self, IngestError> {
        let nul = |field: &str| {
            IngestError(format!(
                "{}{field}: must not contain NUL characters",
                prefix()
            ))
        };
        let texts = [
            (Some(&self.source), "source"),
            (self.message.as_ref(), "message"),
            (self.generator_url.as_ref(), "generator_url"),
            (self.type_hint.as_ref(), "type"),
        ];
        for (text, field) in texts {
            if text.is_some_and(|t| t.contains('\0')) {
                return Err(nul(field));
            }
        }
        for (set, field) in [(&self.labels, "labels"), (&self.annotations, "annotations")] {
            for (k, v) in set {
                if k.contains('\0') {
                    return Err(nul(field));
                }
                if v.contains('\0') {
                    return Err(nul(&format!("{field}.{k}")));
                }
            }
        }
        Ok(self)
    }
}

/// Parses a JSON array of `T`, each item on its own: a syntax error fails the whole
/// body, an item of the wrong shape only itself (its error names `{path}[i].field`).
pub fn parse_items<T: serde::de::DeserializeOwned>(
    body: &[u8],
    path: &str,
) -> Result<Vec<Result<T, IngestError>>, IngestError> {
    if let Ok(all) = serde_json::from_slice::<Vec<T>>(body) {
        return Ok(all.into_iter().map(Ok).collect());
    }
    let values: Vec<serde_json::Value> = from_slice(body)?;
    Ok(items_of(values, path))
}

/// Deserializes each of `values` as `T`; errors name `{path}[i].field`.
pub fn items_of<T: serde::de::DeserializeOwned>(
    values: Vec<serde_json::Value>,
    path: &str,
) -> Vec<Result<T, IngestError>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                match field.as_str() {
                    "" | "." | "?" => IngestError(format!("{path}[{i}]: {inner}")),
                    _ => IngestError(format!("{path}[{i}].{field}: {inner}")),
                }
            })
        })
        .collect()
}

/// Deserializes `bytes` with errors naming the path. Valid input takes serde_json's
/// direct path; only a failure is parsed again, tracking the path for the message.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, IngestError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError("request body is empty; expected JSON".into()));
    }
    if let Ok(v) = serde_json::from_slice(bytes) {
        return Ok(v);
    }
    crate::json::from_json(bytes).map_err(IngestError)
}

/// `[i].` for arrays, nothing for a single object.
pub fn prefix(index: Option<usize>) -> String {
    match index {
        Some(i) => format!("[{i}]."),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_time_is_unset() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z", "endsAt").unwrap(), None);
        assert_eq!(
            parse_time("2024-01-01T00:00:00Z", "endsAt").unwrap(),
            Some(1_704_067_200_000)
        );
        let e = parse_time("yesterday", "[2].endsAt").unwrap_err();
        assert!(e.0.starts_with("[2].endsAt"), "{e}");
    }

    #[test]
    fn times_stay_within_year_9999() {
        let last = parse_time("9999-12-31T23:59:59Z", "endsAt").unwrap();
        assert_eq!(last, Some(MAX_UNIX_SECONDS * 1000));
        for bad in [
            "9999-12-31T23:59:59-23:59",
            "10000-01-01T00:00:00Z",
            "+275760-09-13T00:00:00Z",
            "9223372036854775807",
        ] {
            let e = parse_time(bad, "[1].startsAt").unwrap_err();
            assert!(e.0.starts_with("[1].startsAt"), "{bad}: {e}");
        }
        let first = parse_time("0001-01-02T00:00:01Z", "startsAt").unwrap();
        assert_eq!(first, Some(-62_135_510_399_000));
    }

    #[test]
    fn resolve_timeout_saturates() {
        assert_eq!(after_resolve_timeout(1_000), 301_000);
        assert_eq!(after_resolve_timeout(i64::MAX), MAX_TIME_MS);
        assert_eq!(after_resolve_timeout(i64::MAX - 1), MAX_TIME_MS);
        assert_eq!(after_resolve_timeout(MAX_UNIX_SECONDS * 1000), MAX_TIME_MS);
        assert_eq!(after_resolve_timeout(i64::MIN), i64::MIN + 300_000);
        assert_eq!(
            crate::alerts::model::rfc3339(MAX_TIME_MS),
            "9999-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn message_falls_back_to_annotations_and_name() {
        let mut raw = RawAlert {
            source: "prometheus".into(),
            labels: [("alertname".to_string(), "DiskFull".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(raw.clone().prepare().message, "DiskFull");
        raw.annotations
            .insert("description".into(), "disk / is 99% full".into());
        assert_eq!(raw.clone().prepare().message, "disk / is 99% full");
        raw.annotations.insert("summary".into(), "Disk full".into());
        let inc = raw.prepare();
        assert_eq!(inc.message, "Disk full");
        assert_eq!(inc.alertname.as_deref(), Some("DiskFull"));
        assert_eq!(inc.severity, Severity::Critical);
        assert_eq!(inc.alert_type, "system");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }
}
