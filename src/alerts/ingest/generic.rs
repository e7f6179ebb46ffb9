//! The generic schema of `POST /api/v1/alerts`: one object or an array of
//! `{"message", "severity"?, "source"?, "labels"?, "annotations"?, "starts_at"?,
//! "ends_at"?}`.

use serde::Deserialize;

use super::{
    IngestError, MAX_MESSAGE_CHARS, Names, Parsed, RawAlert, check_labels, from_slice, parse_items,
    parse_time, prefix,
};
use crate::alerts::model::{LabelSet, Severity};

/// One generic alert as posted.
#[derive(Debug, Deserialize)]
pub struct GenericAlert {
    /// Required, 1..=4096 characters.
    pub message: String,
    /// `critical`, `warning` or `info`; classified from the message when absent.
    #[serde(default)]
    pub severity: Option<String>,
    /// Origin; default `api`.
    #[serde(default)]
    pub source: Option<String>,
    /// Identifying labels.
    #[serde(default)]
    pub labels: Option<LabelSet>,
    /// Descriptive annotations.
    #[serde(default)]
    pub annotations: Option<LabelSet>,
    /// RFC 3339.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339; in the past resolves the alert.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Link back to the sender (extension).
    #[serde(default)]
    pub generator_url: Option<String>,
}

/// Parses a body holding one alert or an array of at most `max_alerts`; in an array,
/// each invalid alert is refused alone.
pub fn parse(body: &[u8], max_alerts: usize) -> Result<Parsed, IngestError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    match first {
        Some(b'[') => {
            let list = parse_items::<GenericAlert>(body, "")?;
            if list.len() > max_alerts {
                return Err(IngestError(format!(
                    "too many alerts: {} in one request; the limit is {max_alerts} (alerts.max_alerts_per_request)",
                    list.len()
                )));
            }
            let results = list
                .into_iter()
                .enumerate()
                .map(|(i, r)| r.and_then(|a| convert(a, Some(i))));
            Ok(Parsed::from_results(results, |i| prefix(Some(i))))
        }
        Some(b'{') => {
            let a: GenericAlert = from_slice(body)?;
            Ok(Parsed {
                alerts: vec![convert(a, None)?.storable(String::new)?],
                rejected: Vec::new(),
            })
        }
        None => Err(IngestError("request body is empty; expected JSON".into())),
        Some(_) => {
            // Let serde say what is wrong with it.
            let _: GenericAlert = from_slice(body)?;
            Err(IngestError(
                "expected an alert object or an array of alert objects".into(),
            ))
        }
    }
}

fn convert(a: GenericAlert, index: Option<usize>) -> Result<RawAlert, IngestError> {
    let p = prefix(index);
    let chars = a.message.chars().count();
    if a.message.trim().is_empty() {
        return Err(IngestError(format!("{p}message: must not be empty")));
    }
    if chars > MAX_MESSAGE_CHARS {
        return Err(IngestError(format!(
            "{p}message: must be at most {MAX_MESSAGE_CHARS} characters, got {chars}"
        )));
    }
    let severity = match a.severity.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Severity::parse_strict(s).ok_or_else(|| {
            IngestError(format!(
                "{p}severity: {s:?} is not one of critical, warning, info"
            ))
        })?),
    };
    let source = a.source.unwrap_or_default().trim().to_string();
    if source.chars().count() > 256 {
        return Err(IngestError(format!(
            "{p}source: must be at most 256 characters"
        )));
    }
    let mut labels = a.labels.unwrap_or_default();
    check_labels(&mut labels, &format!("{p}labels"), Names::Utf8)?;
    let mut annotations = a.annotations.unwrap_or_default();
    check_labels(&mut annotations, &format!("{p}annotations"), Names::Utf8)?;
    let starts_at_ms = match &a.starts_at {
        Some(s) => parse_time(s, &format!("{p}starts_at"))?,
        None => None,
    };
    let ends_at_ms = match &a.ends_at {
        Some(s) => parse_time(s, &format!("{p}ends_at"))?,
        None => None,
    };
    if let (Some(s), Some(e)) = (starts_at_ms, ends_at_ms)
        && e < s
    {
        return Err(IngestError(format!(
            "{p}ends_at: must not be before starts_at"
        )));
    }
    Ok(RawAlert {
        source: if source.is_empty() {
            "api".into()
        } else {
            source
        },
        message: Some(a.message),
        severity,
        labels,
        annotations,
        starts_at_ms,
        ends_at_ms,
        generator_url: a.generator_url,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many() {
        let one = parse(br#"{"message":"disk full","labels":{"host":"a"}}"#, 10)
            .unwrap()
            .alerts;
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].source, "api");
        let many = parse(
            br#"[{"message":"a","severity":"CRITICAL"},{"message":"b","source":"cron"}]"#,
            10,
        )
        .unwrap()
        .alerts;
        assert_eq!(many[0].severity, Some(Severity::Critical));
        assert_eq!(many[1].source, "cron");
    }

    /// The one error of a body whose other alerts are valid.
    fn refused(body: &[u8]) -> String {
        let p = parse(body, 10).unwrap();
        assert_eq!(p.rejected.len(), 1, "{:?}", p.rejected);
        p.rejected[0].0.clone()
    }

    #[test]
    fn one_bad_alert_is_refused_alone() {
        let p = parse(
            br#"[{"message":"a"},{"message":"b\u0000"},{"message":"c","labels":{"k":"v\u0000"}},{"message":"d"}]"#,
            10,
        )
        .unwrap();
        let kept: Vec<_> = p
            .alerts
            .iter()
            .map(|a| a.message.clone().unwrap())
            .collect();
        assert_eq!(kept, ["a", "d"]);
        assert_eq!(
            p.rejected[0].0,
            "[1].message: must not contain NUL characters"
        );
        assert_eq!(
            p.rejected[1].0,
            "[2].labels.k: must not contain NUL characters"
        );
        let e = parse(br#"{"message":"x\u0000"}"#, 10).unwrap_err().0;
        assert!(e.starts_with("message"), "{e}");
        let e = refused(br#"[{"message":"a"},{"message":"b","labels":{"k\u0000":"v"}}]"#);
        assert!(e.starts_with("[1].labels"), "{e}");
        let e = refused(br#"[{"message":"a"},{"message":5,"labels":{}}]"#);
        assert!(e.starts_with("[1].message"), "{e}");
    }

    #[test]
    fn errors_name_the_field_and_index() {
        let e = refused(br#"[{"message":"a"},{"labels":{}}]"#);
        assert!(e.contains("[1]") && e.contains("message"), "{e}");
        let e = parse(br#"{"message":5}"#, 10).unwrap_err().0;
        assert!(e.contains("message"), "{e}");
        let long = "x".repeat(4097);
        let body = format!(
            r#"[{{"message":"a"}},{{"message":"a"}},{{"message":"a"}},{{"message":"{long}"}}]"#
        );
        let e = refused(body.as_bytes());
        assert!(e.starts_with("[3].message"), "{e}");
        let e = parse(br#"{"message":"a","severity":"urgent"}"#, 10)
            .unwrap_err()
            .0;
        assert!(e.starts_with("severity"), "{e}");
        let e = parse(br#"{"message":"a","starts_at":"noon"}"#, 10)
            .unwrap_err()
            .0;
        assert!(e.starts_with("starts_at"), "{e}");
        let e = parse(br#"{"message":"a","labels":{"a":1}}"#, 10)
            .unwrap_err()
            .0;
        assert!(e.contains("labels.a"), "{e}");
        let e = parse(b"{nope", 10).unwrap_err().0;
        assert!(e.contains("invalid JSON"), "{e}");
        let e = parse(br#"[{"message":"a"},{"message":"b"}]"#, 1)
            .unwrap_err()
            .0;
        assert!(
            e.contains("alerts.max_alerts_per_request") && e.contains('1'),
            "{e}"
        );
        let e = parse(b"42", 1).unwrap_err().0;
        assert!(e.contains("invalid"), "{e}");
        let e = parse(br#"{"message":"  "}"#, 1).unwrap_err().0;
        assert!(e.starts_with("message"), "{e}");
    }

    #[test]
    fn absurd_times_are_named() {
        for (body, field) in [
            (
                &br#"[{"message":"a"},{"message":"b","starts_at":"9999-12-31T23:59:59-23:59"}]"#[..],
                "[1].starts_at",
            ),
            (
                &br#"{"message":"a","ends_at":"+275760-09-13T00:00:00Z"}"#[..],
                "ends_at",
            ),
            (
                &br#"{"message":"a","starts_at":"9223372036854775807"}"#[..],
                "starts_at",
            ),
        ] {
            let e = match parse(body, 10) {
                Ok(p) => p.rejected[0].0.clone(),
                Err(e) => e.0,
            };
            assert!(e.starts_with(field), "{e}");
        }
        let far = br#"{"message":"a","starts_at":"9999-12-31T23:59:59Z","ends_at":"9999-12-31T23:59:59Z"}"#;
        let a = parse(far, 10).unwrap().alerts.remove(0);
        assert_eq!(a.starts_at_ms, Some(253_402_300_799_000));
        assert_eq!(a.ends_at_ms, a.starts_at_ms);
    }
}
