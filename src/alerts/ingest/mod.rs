//! Ingest formats. Each parses its payload into [`RawAlert`]s (the common shape), with
//! errors that name the field (`[3].message`); [`RawAlert::prepare`] then classifies
//! and fingerprints them into [`Incoming`] alerts for the pipeline.
//!
//! * [`generic`]: `POST /api/v1/alerts`, watchpost's own schema.
//! * [`alertmanager`]: Alertmanager's webhook (version 4) and its `/api/v2/alerts` API.
//! * [`ntopng`]: ntopng's webhook endpoint.

pub mod alertmanager;
pub mod generic;
pub mod ntopng;

use std::time::Duration;

use super::classify;
use super::fingerprint::fingerprint;
use super::model::{LabelSet, Severity};

/// Longest message accepted from the generic API (characters).
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// Longest label or annotation value kept (characters); longer values are cut.
pub const MAX_VALUE_CHARS: usize = 16 * 1024;
/// How long an alert that carries no end time of its own (Alertmanager's API without
/// `endsAt`, ntopng's one-shot flow alerts) stays firing unless it is sent again:
/// Alertmanager's `resolve_timeout`.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(300);

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
        let words = classify::words_for(alertname.as_deref(), &message, &self.labels);
        let severity = classify::severity(self.severity, &self.labels, &words);
        let mut alert_type = classify::alert_type(self.type_hint.as_deref(), &self.labels, &words);
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
/// "unset". Errors name `field`.
pub fn parse_time(value: &str, field: &str) -> Result<Option<i64>, IngestError> {
    if value.is_empty() {
        return Ok(None);
    }
    let t = chrono::DateTime::parse_from_rfc3339(value)
        .map_err(|e| IngestError(format!("{field}: {value:?} is not an RFC 3339 time ({e})")))?;
    if t.timestamp() <= -62_135_596_800 + 86_400 {
        return Ok(None);
    }
    Ok(Some(t.timestamp_millis()))
}

/// Rejects empty label names; cuts over-long values.
pub fn check_labels(labels: &mut LabelSet, field: &str) -> Result<(), IngestError> {
    if labels.contains_key("") {
        return Err(IngestError(format!(
            "{field}: label names must not be empty"
        )));
    }
    for v in labels.values_mut() {
        if v.len() > MAX_VALUE_CHARS {
            *v = truncate_chars(v, MAX_VALUE_CHARS);
        }
    }
    Ok(())
}

/// Maps a `serde_path_to_error` failure to an [`IngestError`] naming the path.
pub fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> IngestError {
    IngestError(crate::api::error::json_error_message(e))
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
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(de).map_err(json_error)?;
    Ok(v)
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
