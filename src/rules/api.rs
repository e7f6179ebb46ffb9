//! `GET /api/v1/rules` in Prometheus' response shape, with its filters.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

use super::alerting::{Alert, AlertState};
use super::gofmt;
use super::group::{Group, Rule};
use super::{EvalStatus, Health, LabelSet, ms_to_time};

/// The filters of `/api/v1/rules`.
#[derive(Debug, Default, Clone)]
pub struct RulesFilter {
    /// `type=alert|record`.
    pub kind: Option<KindFilter>,
    /// `rule_name[]`.
    pub rule_names: HashSet<String>,
    /// `rule_group[]`.
    pub rule_groups: HashSet<String>,
    /// `file[]`.
    pub files: HashSet<String>,
    /// `exclude_alerts=true`.
    pub exclude_alerts: bool,
}

/// `type=` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindFilter {
    /// Alerting rules only.
    Alert,
    /// Recording rules only.
    Record,
}

impl RulesFilter {
    /// Parses a raw query string; the error names the bad parameter.
    pub fn from_query(query: Option<&str>) -> Result<RulesFilter, String> {
        let mut f = RulesFilter::default();
        for (key, value) in parse_query(query.unwrap_or("")) {
            match key.as_str() {
                "type" => {
                    f.kind = match value.as_str() {
                        "" => None,
                        "alert" => Some(KindFilter::Alert),
                        "record" => Some(KindFilter::Record),
                        other => {
                            return Err(format!(
                                "invalid parameter type: not supported value {other:?} (expected alert or record)"
                            ));
                        }
                    }
                }
                "rule_name[]" | "rule_name" => {
                    f.rule_names.insert(value);
                }
                "rule_group[]" | "rule_group" => {
                    f.rule_groups.insert(value);
                }
                "file[]" | "file" => {
                    f.files.insert(value);
                }
                "exclude_alerts" => {
                    f.exclude_alerts = match value.as_str() {
                        "" | "false" | "0" => false,
                        "true" | "1" => true,
                        other => {
                            return Err(format!(
                                "invalid parameter exclude_alerts: {other:?} is not a boolean"
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(f)
    }

    fn narrows_rules(&self) -> bool {
        self.kind.is_some() || !self.rule_names.is_empty()
    }
}

/// `{"status":"success","data":{"groups":[…]}}`.
#[derive(Debug, Serialize)]
pub struct RulesResponse {
    /// Always `success`.
    pub status: &'static str,
    /// The groups.
    pub data: RulesData,
}

/// `data` of the response.
#[derive(Debug, Serialize)]
pub struct RulesData {
    /// Rule groups.
    pub groups: Vec<GroupJson>,
    /// Problems of the last reload when it failed (the groups above are the previous,
    /// still running rules). Not in Prometheus' response; absent when fine.
    #[serde(rename = "lastReloadError", skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
}

/// One group.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupJson {
    /// Group name.
    pub name: String,
    /// Rule file.
    pub file: String,
    /// Rules.
    pub rules: Vec<RuleJson>,
    /// Interval in seconds.
    pub interval: f64,
    /// `limit` (0 = none).
    pub limit: usize,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// Start of the last evaluation (RFC 3339; Go's zero time when never).
    pub last_evaluation: String,
}

/// A rule of either kind.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RuleJson {
    /// Alerting rule.
    Alerting(AlertingJson),
    /// Recording rule.
    Recording(RecordingJson),
}

/// An alerting rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertingJson {
    /// `inactive`, `pending` or `firing`.
    pub state: &'static str,
    /// Alert name.
    pub name: String,
    /// Expression.
    pub query: String,
    /// `for` in seconds.
    pub duration: f64,
    /// `keep_firing_for` in seconds.
    pub keep_firing_for: f64,
    /// Rule labels (templates as written).
    pub labels: LabelSet,
    /// Rule annotations (templates as written).
    pub annotations: LabelSet,
    /// Pending and firing alerts.
    pub alerts: Vec<AlertJson>,
    /// `ok`, `err`, `unknown`.
    pub health: Health,
    /// Last error, empty when healthy.
    pub last_error: String,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// Start of the last evaluation.
    pub last_evaluation: String,
    /// `alerting`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// A recording rule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingJson {
    /// Recorded metric name.
    pub name: String,
    /// Expression.
    pub query: String,
    /// Rule labels.
    #[serde(skip_serializing_if = "LabelSet::is_empty")]
    pub labels: LabelSet,
    /// `ok`, `err`, `unknown`.
    pub health: Health,
    /// Last error, empty when healthy.
    pub last_error: String,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// Start of the last evaluation.
    pub last_evaluation: String,
    /// `recording`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// An active alert.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertJson {
    /// Alert labels.
    pub labels: LabelSet,
    /// Expanded annotations.
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: &'static str,
    /// When it became active.
    pub active_at: String,
    /// Since when `keep_firing_for` holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_firing_since: Option<String>,
    /// Last value, as Go's `%e`.
    pub value: String,
}

/// Go's RFC 3339 with nanoseconds, trailing zeros trimmed, for Unix ms.
pub fn go_time(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "0001-01-01T00:00:00Z".into();
    };
    let t = ms_to_time(ms);
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        s.push('.');
        s.push_str(format!("{frac:03}").trim_end_matches('0'));
    }
    s.push('Z');
    s
}

fn status_parts(s: &EvalStatus) -> (Health, String, f64, String) {
    (
        s.health,
        s.last_error.clone(),
        s.evaluation_time.as_secs_f64(),
        go_time(s.last_evaluation_ms),
    )
}

fn alert_json(a: &Alert) -> AlertJson {
    AlertJson {
        labels: a.labels.clone(),
        annotations: a.annotations.clone(),
        state: a.state.as_str(),
        active_at: go_time(Some(a.active_at_ms)),
        keep_firing_since: a.keep_firing_since_ms.map(|ms| go_time(Some(ms))),
        value: gofmt::format_exp(a.value),
    }
}

/// Builds the response for `groups` under `filter`.
pub fn rules_response(groups: &[Arc<Group>], filter: &RulesFilter) -> RulesResponse {
    let mut out = Vec::new();
    for g in groups {
        if !filter.rule_groups.is_empty() && !filter.rule_groups.contains(g.name()) {
            continue;
        }
        if !filter.files.is_empty() && !filter.files.contains(&g.file) {
            continue;
        }
        let mut rules = Vec::new();
        for rule in &g.rules {
            let def = rule.def();
            if !filter.rule_names.is_empty() && !filter.rule_names.contains(&def.name) {
                continue;
            }
            match rule {
                Rule::Alerting(r) => {
                    if filter.kind == Some(KindFilter::Record) {
                        continue;
                    }
                    let snap = r.snapshot();
                    let (health, last_error, evaluation_time, last_evaluation) =
                        status_parts(&snap.status);
                    rules.push(RuleJson::Alerting(AlertingJson {
                        state: snap.state.as_str(),
                        name: def.name.clone(),
                        query: r.query.clone(),
                        duration: def.hold.as_secs_f64(),
                        keep_firing_for: def.keep_firing_for.as_secs_f64(),
                        labels: def.label_sources(),
                        annotations: def.annotation_sources(),
                        alerts: if filter.exclude_alerts {
                            Vec::new()
                        } else {
                            snap.alerts.iter().map(alert_json).collect()
                        },
                        health,
                        last_error,
                        evaluation_time,
                        last_evaluation,
                        kind: "alerting",
                    }));
                }
                Rule::Recording(r) => {
                    if filter.kind == Some(KindFilter::Alert) {
                        continue;
                    }
                    let (health, last_error, evaluation_time, last_evaluation) =
                        status_parts(&r.status());
                    rules.push(RuleJson::Recording(RecordingJson {
                        name: def.name.clone(),
                        query: r.query.clone(),
                        labels: def.label_sources(),
                        health,
                        last_error,
                        evaluation_time,
                        last_evaluation,
                        kind: "recording",
                    }));
                }
            }
        }
        if rules.is_empty() && filter.narrows_rules() {
            continue;
        }
        let status = g.status();
        out.push(GroupJson {
            name: g.name().to_string(),
            file: g.file.clone(),
            rules,
            interval: g.interval.as_secs_f64(),
            limit: g.def.limit,
            evaluation_time: status.evaluation_time.as_secs_f64(),
            last_evaluation: go_time(status.last_evaluation_ms),
        });
    }
    RulesResponse {
        status: "success",
        data: RulesData {
            groups: out,
            last_reload_error: None,
        },
    }
}

/// The state of every alerting rule's alerts, for callers that want them flat.
pub fn active_alerts(groups: &[Arc<Group>]) -> Vec<(String, Alert)> {
    let mut out = Vec::new();
    for g in groups {
        for r in &g.rules {
            if let Rule::Alerting(a) = r {
                for alert in a.snapshot().alerts {
                    if alert.state != AlertState::Inactive {
                        out.push((g.name().to_string(), alert));
                    }
                }
            }
        }
    }
    out
}

/// `a=b&c=d` with percent-decoding and `+` as space.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        let f = RulesFilter::from_query(Some(
            "type=alert&rule_name%5B%5D=HighCPU&rule_name[]=X&exclude_alerts=true",
        ))
        .unwrap();
        assert_eq!(f.kind, Some(KindFilter::Alert));
        assert!(f.rule_names.contains("HighCPU") && f.rule_names.contains("X"));
        assert!(f.exclude_alerts);
        let e = RulesFilter::from_query(Some("type=bogus")).unwrap_err();
        assert!(e.contains("type"), "{e}");
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(Some(1_700_000_000_120)), "2023-11-14T22:13:20.12Z");
        assert_eq!(go_time(Some(1_700_000_000_000)), "2023-11-14T22:13:20Z");
    }
}
