//! The server's JSON shapes as the dashboard reads them (tolerant: unknown fields are
//! ignored and missing optional ones default), plus the pure logic on them: alert
//! filters and sorting, query strings, silence matchers prefilled from labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::time::parse_rfc3339;

/// Labels or annotations.
pub type Labels = BTreeMap<String, String>;

/// An alert object of the contract (list, detail and stream messages).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Alert {
    /// Database id.
    pub id: i64,
    /// Dedup fingerprint (source + labels).
    #[serde(default)]
    pub fingerprint: String,
    /// Where it came from (rule, alertmanager, ntopng, …).
    #[serde(default)]
    pub source: String,
    /// `alertname` label, if any.
    #[serde(default)]
    pub alertname: Option<String>,
    /// Human message.
    #[serde(default)]
    pub message: String,
    /// critical, warning or info.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// Classified type.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// 0–100.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub risk_score: f64,
    /// firing or resolved.
    #[serde(default)]
    pub state: String,
    /// Muted: matched by a silence or inhibited.
    #[serde(default)]
    pub silenced: bool,
    /// Inhibited by another alert.
    #[serde(default)]
    pub inhibited: bool,
    /// Ids of the silences muting it.
    #[serde(default, deserialize_with = "lenient_strings")]
    pub silenced_by: Vec<String>,
    /// Link to the source (a rule's expression in Prometheus, …).
    #[serde(default)]
    pub generator_url: Option<String>,
    /// Labels.
    #[serde(default, deserialize_with = "lenient_labels")]
    pub labels: Labels,
    /// Annotations.
    #[serde(default, deserialize_with = "lenient_labels")]
    pub annotations: Labels,
    /// RFC 3339.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339 or null.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub first_seen: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// How many times it was received.
    #[serde(default)]
    pub count: i64,
    /// Acknowledgement, if any.
    #[serde(default)]
    pub acknowledged: Option<Ack>,
    /// Event timeline (detail only).
    #[serde(default)]
    pub events: Vec<AlertEventRecord>,
    /// Flapping: its notifications are held.
    #[serde(default)]
    pub flapping: bool,
    /// Why the classifier chose its type and severity (detail only).
    #[serde(default)]
    pub classification: Option<Classification>,
}

/// The classifier's explanation of an alert.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Classification {
    /// Why this type.
    #[serde(default)]
    pub type_reason: String,
    /// Why this severity.
    #[serde(default)]
    pub severity_reason: String,
}

fn default_severity() -> String {
    "info".into()
}

/// Accepts a number or a numeric string; anything else is 0.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    })
}

/// Accepts a list of strings or numbers (stringified) or null.
fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// Accepts a string map (non-string values are stringified) or null.
fn lenient_labels<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(m) => m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => Labels::new(),
    })
}

/// Who acknowledged an alert.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Ack {
    /// Who.
    #[serde(default)]
    pub by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub at: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
}

/// One event of an alert's timeline.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AlertEventRecord {
    /// fired, resolved, acked, notified, …
    #[serde(default)]
    pub kind: String,
    /// RFC 3339.
    #[serde(default)]
    pub at: Option<String>,
    /// Whatever else the server records (by, comment, receiver, …).
    #[serde(flatten)]
    pub details: BTreeMap<String, Value>,
}

impl AlertEventRecord {
    /// The details as "k: v" pairs for display (the event's own id left out).
    pub fn detail_text(&self) -> String {
        self.details
            .iter()
            .filter(|(k, v)| {
                !v.is_null() && k.as_str() != "id" && !(v.is_string() && v.as_str() == Some(""))
            })
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                Value::Array(items) => format!(
                    "{k}: {}",
                    items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// `GET /api/v1/alerts` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct AlertList {
    /// The page.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// Cursor for the next page.
    #[serde(default)]
    pub next_cursor: Option<Value>,
}

impl Alert {
    /// The name shown in tables: alertname, else the message.
    pub fn title(&self) -> &str {
        self.alertname
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.message)
    }

    /// Unix ms the alert started (starts_at, else first_seen).
    pub fn since_ms(&self) -> Option<i64> {
        self.starts_at
            .as_deref()
            .or(self.first_seen.as_deref())
            .and_then(parse_rfc3339)
    }

    /// True while firing and not acknowledged or silenced.
    pub fn needs_attention(&self) -> bool {
        self.state == "firing" && self.acknowledged.is_none() && !self.silenced
    }
}

/// Rank for sorting severities: critical > warning > info > anything else.
pub fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// Which alerts the table shows by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateFilter {
    /// Firing (acknowledged and silenced included).
    #[default]
    Firing,
    /// Resolved.
    Resolved,
    /// Acknowledged.
    Acknowledged,
    /// Silenced.
    Silenced,
    /// Everything.
    All,
}

impl StateFilter {
    /// The value of the `state` query parameter (also the API's).
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Firing => "firing",
            StateFilter::Resolved => "resolved",
            StateFilter::Acknowledged => "acknowledged",
            StateFilter::Silenced => "silenced",
            StateFilter::All => "all",
        }
    }

    /// Parses the query parameter.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "firing" => StateFilter::Firing,
            "resolved" => StateFilter::Resolved,
            "acknowledged" => StateFilter::Acknowledged,
            "silenced" => StateFilter::Silenced,
            "all" => StateFilter::All,
            _ => return None,
        })
    }

    /// Every choice, for a select box.
    pub const ALL: [StateFilter; 5] = [
        StateFilter::Firing,
        StateFilter::Acknowledged,
        StateFilter::Silenced,
        StateFilter::Resolved,
        StateFilter::All,
    ];
}

/// One label condition: `name=value` or `name!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label name.
    pub name: String,
    /// Value to compare.
    pub value: String,
    /// `=` when true, `!=` when false.
    pub equal: bool,
}

impl LabelMatch {
    /// Parses `k=v` or `k!=v` (surrounding quotes on v are removed).
    pub fn parse(s: &str) -> Option<LabelMatch> {
        let s = s.trim();
        let (name, value, equal) = if let Some((n, v)) = s.split_once("!=") {
            (n, v, false)
        } else {
            let (n, v) = s.split_once('=')?;
            (n, v, true)
        };
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let value = value.trim().trim_matches('"');
        Some(LabelMatch {
            name: name.into(),
            value: value.into(),
            equal,
        })
    }

    /// Whether `labels` satisfy it (a missing label equals "").
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        (v == self.value) == self.equal
    }
}

impl std::fmt::Display for LabelMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "=" } else { "!=" };
        write!(f, "{}{op}{}", self.name, self.value)
    }
}

/// The alert table's filters; round-trips through the page's query string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertFilter {
    /// State.
    pub state: StateFilter,
    /// Exact severity, or any.
    pub severity: Option<String>,
    /// Exact source, or any.
    pub source: Option<String>,
    /// Label conditions, all must hold.
    pub labels: Vec<LabelMatch>,
    /// Free text searched in name, message and label values (case-insensitive).
    pub text: String,
}

impl AlertFilter {
    /// Whether `a` passes every filter.
    pub fn matches(&self, a: &Alert) -> bool {
        let state_ok = match self.state {
            StateFilter::Firing => a.state == "firing",
            StateFilter::Resolved => a.state == "resolved",
            StateFilter::Acknowledged => a.acknowledged.is_some(),
            StateFilter::Silenced => a.silenced,
            StateFilter::All => true,
        };
        state_ok
            && self.severity.as_ref().is_none_or(|s| &a.severity == s)
            && self.source.as_ref().is_none_or(|s| &a.source == s)
            && self.labels.iter().all(|m| m.matches(&a.labels))
            && self.text_matches(a)
    }

    fn text_matches(&self, a: &Alert) -> bool {
        let q = self.text.trim().to_lowercase();
        if q.is_empty() {
            return true;
        }
        a.title().to_lowercase().contains(&q)
            || a.message.to_lowercase().contains(&q)
            || a.source.to_lowercase().contains(&q)
            || a.labels.values().any(|v| v.to_lowercase().contains(&q))
    }

    /// Reads the filter from query parameters (unknown values are ignored).
    pub fn from_query(q: &[(String, String)]) -> Self {
        let mut f = AlertFilter::default();
        for (k, v) in q {
            match k.as_str() {
                "state" => f.state = StateFilter::parse(v).unwrap_or_default(),
                "severity" if !v.is_empty() => f.severity = Some(v.clone()),
                "source" if !v.is_empty() => f.source = Some(v.clone()),
                "label" => f.labels.extend(LabelMatch::parse(v)),
                "q" => f.text = v.clone(),
                _ => {}
            }
        }
        f
    }

    /// Query parameters for this filter, defaults left out.
    pub fn to_query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if self.state != StateFilter::Firing {
            q.push(("state".into(), self.state.as_str().into()));
        }
        if let Some(s) = &self.severity {
            q.push(("severity".into(), s.clone()));
        }
        if let Some(s) = &self.source {
            q.push(("source".into(), s.clone()));
        }
        for m in &self.labels {
            q.push(("label".into(), m.to_string()));
        }
        if !self.text.is_empty() {
            q.push(("q".into(), self.text.clone()));
        }
        q
    }

    /// The server-side query for `GET /api/v1/alerts` (the text search stays local;
    /// negative label matches too, since the API only filters on `k=v`).
    pub fn api_query(&self, limit: usize) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if self.state != StateFilter::All {
            q.push(("state".into(), self.state.as_str().into()));
        }
        if let Some(s) = &self.severity {
            q.push(("severity".into(), s.clone()));
        }
        if let Some(s) = &self.source {
            q.push(("source".into(), s.clone()));
        }
        for m in self.labels.iter().filter(|m| m.equal) {
            q.push(("label".into(), m.to_string()));
        }
        q.push(("limit".into(), limit.to_string()));
        q
    }
}

/// Columns the alert table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Severity rank.
    Severity,
    /// Title.
    Name,
    /// Source.
    Source,
    /// Start time.
    Since,
    /// Count.
    Count,
    /// Risk score.
    Risk,
}

impl SortKey {
    /// The query-parameter name.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Severity => "severity",
            SortKey::Name => "name",
            SortKey::Source => "source",
            SortKey::Since => "since",
            SortKey::Count => "count",
            SortKey::Risk => "risk",
        }
    }

    /// Parses `name` or `-name` (descending).
    pub fn parse(s: &str) -> Option<(SortKey, bool)> {
        let (desc, name) = match s.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, s),
        };
        let key = match name {
            "severity" => SortKey::Severity,
            "name" => SortKey::Name,
            "source" => SortKey::Source,
            "since" => SortKey::Since,
            "count" => SortKey::Count,
            "risk" => SortKey::Risk,
            _ => return None,
        };
        Some((key, desc))
    }
}

/// Sorts alerts by `key` (descending when `desc`); ties fall back to severity, then
/// newest first, then id, so the order is stable across live updates.
pub fn sort_alerts(alerts: &mut [Alert], key: SortKey, desc: bool) {
    use std::cmp::Ordering;
    alerts.sort_by(|a, b| {
        let primary = match key {
            SortKey::Severity => severity_rank(&a.severity).cmp(&severity_rank(&b.severity)),
            SortKey::Name => a.title().to_lowercase().cmp(&b.title().to_lowercase()),
            SortKey::Source => a.source.cmp(&b.source),
            SortKey::Since => a.since_ms().cmp(&b.since_ms()),
            SortKey::Count => a.count.cmp(&b.count),
            SortKey::Risk => a
                .risk_score
                .partial_cmp(&b.risk_score)
                .unwrap_or(Ordering::Equal),
        };
        let primary = if desc { primary.reverse() } else { primary };
        primary
            .then_with(|| severity_rank(&b.severity).cmp(&severity_rank(&a.severity)))
            .then_with(|| b.since_ms().cmp(&a.since_ms()))
            .then_with(|| b.id.cmp(&a.id))
    });
}

/// Inserts or replaces `alert` (by id) in `list`; returns true if it was new.
pub fn upsert_alert(list: &mut Vec<Alert>, alert: Alert) -> bool {
    match list.iter_mut().find(|a| a.id == alert.id) {
        Some(existing) => {
            // Stream messages carry no event timeline; keep the one we have.
            let events = std::mem::take(&mut existing.events);
            *existing = alert;
            if existing.events.is_empty() {
                existing.events = events;
            }
            false
        }
        None => {
            list.push(alert);
            true
        }
    }
}

/// Firing alerts by severity: (critical, warning, info), counting only those that need
/// attention (not acknowledged, not silenced) — and, separately, all firing.
pub fn severity_counts(alerts: &[Alert]) -> SeverityCounts {
    let mut c = SeverityCounts::default();
    for a in alerts.iter().filter(|a| a.state == "firing") {
        let slot = match a.severity.as_str() {
            "critical" => &mut c.critical,
            "warning" => &mut c.warning,
            _ => &mut c.info,
        };
        *slot += 1;
        if !a.needs_attention() {
            c.handled += 1;
        }
    }
    c
}

/// Counts of firing alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityCounts {
    /// Critical.
    pub critical: usize,
    /// Warning.
    pub warning: usize,
    /// Info and unknown.
    pub info: usize,
    /// Of those, acknowledged or silenced.
    pub handled: usize,
}

/// A silence matcher (Alertmanager's shape).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value or regex.
    pub value: String,
    /// Regex match.
    #[serde(default)]
    pub is_regex: bool,
    /// Equality (false: negative match).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl Matcher {
    /// Displays as `name="value"`, `name=~"v"`, `name!="v"` or `name!~"v"`.
    pub fn display(&self) -> String {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (true, true) => "=~",
            (false, false) => "!=",
            (false, true) => "!~",
        };
        format!("{}{op}{:?}", self.name, self.value)
    }
}

/// Matchers that silence exactly this alert: one equality matcher per label (the
/// fingerprint is source + labels), `alertname` first.
pub fn matchers_for(alert: &Alert) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = alert
        .labels
        .iter()
        .map(|(k, v)| Matcher {
            name: k.clone(),
            value: v.clone(),
            is_regex: false,
            is_equal: true,
        })
        .collect();
    if out.is_empty()
        && let Some(n) = alert.alertname.as_ref().filter(|n| !n.is_empty())
    {
        out.push(Matcher {
            name: "alertname".into(),
            value: n.clone(),
            is_regex: false,
            is_equal: true,
        });
    }
    out.sort_by_key(|m| m.name != "alertname");
    out
}

/// A silence as listed by `GET /api/v1/silences`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// Id (string or number on the wire).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Matchers.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// RFC 3339.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Author.
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// `{"state": "active" | "pending" | "expired"}`.
    #[serde(default)]
    pub status: Option<SilenceStatus>,
}

/// A silence's status.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SilenceStatus {
    /// active, pending or expired.
    #[serde(default)]
    pub state: String,
}

fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

impl Silence {
    /// The state from `status`, or derived from the times at `now_ms`.
    pub fn state(&self, now_ms: i64) -> String {
        if let Some(s) = self.status.as_ref().filter(|s| !s.state.is_empty()) {
            return s.state.clone();
        }
        let starts = self.starts_at.as_deref().and_then(parse_rfc3339);
        let ends = self.ends_at.as_deref().and_then(parse_rfc3339);
        match (starts, ends) {
            (_, Some(e)) if e <= now_ms => "expired".into(),
            (Some(s), _) if s > now_ms => "pending".into(),
            _ => "active".into(),
        }
    }
}

/// Reads the silence list from either a bare array or `{"silences": [...]}` /
/// `{"data": [...]}`.
pub fn parse_silences(v: &Value) -> Result<Vec<Silence>, String> {
    let arr = match v {
        Value::Array(_) => v,
        Value::Object(m) => m
            .get("silences")
            .or_else(|| m.get("data"))
            .ok_or("expected a list of silences")?,
        _ => return Err("expected a list of silences".into()),
    };
    serde_json::from_value(arr.clone()).map_err(|e| format!("silences: {e}"))
}

/// A new silence for `POST /api/v1/silences`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSilence {
    /// Matchers.
    pub matchers: Vec<Matcher>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl NewSilence {
    /// Checks the form: at least one matcher with a name, a positive duration, an author
    /// and a comment (Alertmanager requires both).
    pub fn validate(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("add at least one matcher".into());
        }
        if let Some(m) = self.matchers.iter().find(|m| m.name.trim().is_empty()) {
            return Err(format!(
                "matcher with value {:?} has no label name",
                m.value
            ));
        }
        if self
            .matchers
            .iter()
            .all(|m| m.value.is_empty() || (m.is_regex && m.value == ".*"))
        {
            return Err("matchers would silence every alert; add a concrete value".into());
        }
        let (s, e) = (parse_rfc3339(&self.starts_at), parse_rfc3339(&self.ends_at));
        match (s, e) {
            (Some(s), Some(e)) if e > s => {}
            (Some(_), Some(_)) => return Err("the end must be after the start".into()),
            _ => return Err("start and end must be valid times".into()),
        }
        if self.created_by.trim().is_empty() {
            return Err("created by is required".into());
        }
        if self.comment.trim().is_empty() {
            return Err("a comment is required".into());
        }
        Ok(())
    }
}

/// A rule group of `GET /api/v1/rules` (Prometheus' shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Rule file.
    #[serde(default)]
    pub file: String,
    /// Evaluation interval in seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub interval: f64,
    /// RFC 3339.
    #[serde(default)]
    pub last_evaluation: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub evaluation_time: f64,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One alerting or recording rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Alert name or recorded metric.
    pub name: String,
    /// PromQL.
    #[serde(default)]
    pub query: String,
    /// alerting or recording.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// firing, pending, inactive (alerting rules).
    #[serde(default)]
    pub state: Option<String>,
    /// ok, err, unknown.
    #[serde(default)]
    pub health: String,
    /// Last evaluation error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub last_evaluation: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub evaluation_time: f64,
    /// `for` in seconds.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub duration: f64,
    /// Labels.
    #[serde(default, deserialize_with = "lenient_labels")]
    pub labels: Labels,
    /// Active alerts of the rule.
    #[serde(default)]
    pub alerts: Vec<Value>,
}

/// Reads rule groups from `{"status":"success","data":{"groups":[…]}}` (or a bare
/// `{"groups":[…]}`).
pub fn parse_rules(v: &Value) -> Result<Vec<RuleGroup>, String> {
    if v.get("status").and_then(Value::as_str) == Some("error") {
        return Err(v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_string());
    }
    let groups = v
        .get("data")
        .and_then(|d| d.get("groups"))
        .or_else(|| v.get("groups"))
        .ok_or("expected data.groups")?;
    serde_json::from_value(groups.clone()).map_err(|e| format!("rules: {e}"))
}

/// `data.lastReloadError` of a rules answer: why the last reload failed (the previous
/// rules keep running), if it did.
pub fn rules_reload_error(v: &Value) -> Option<String> {
    v.get("data")?
        .get("lastReloadError")?
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// The toast text for a successful `POST /-/reload` answer
/// (`{"status":"success","data":{"files","groups","rules","unchanged"}}`).
pub fn reload_summary(v: &Value) -> String {
    let n = |k: &str| {
        v.get("data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let count = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "Rules reloaded: {} in {} from {}",
        count(n("rules"), "rule"),
        count(n("groups"), "group"),
        count(n("files"), "file")
    )
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes a query component (`+` is a space); invalid escapes pass through.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Builds `k=v&k2=v2` with encoding.
pub fn build_query(q: &[(String, String)]) -> String {
    q.iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `q` with `key` set to `value` (in place, else appended), or removed when `value` is
/// empty; other parameters keep their order.
pub fn set_param(q: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(q.len() + 1);
    let mut done = value.is_empty();
    for (k, v) in q {
        if k != key {
            out.push((k.clone(), v.clone()));
        } else if !done {
            out.push((k.clone(), value.to_string()));
            done = true;
        }
    }
    if !done {
        out.push((key.to_string(), value.to_string()));
    }
    out
}

/// Parses `?k=v&k2=v2` (leading `?` optional).
pub fn parse_query(s: &str) -> Vec<(String, String)> {
    s.trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

/// `GET /api/v1/cluster`: the members and who leads.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ClusterView {
    /// This node (the one the dashboard talks to).
    #[serde(rename = "self", default)]
    pub self_id: String,
    /// The leader, if any node leads.
    #[serde(default)]
    pub leader: Option<String>,
    /// The fencing epoch of the current term.
    #[serde(default)]
    pub epoch: i64,
    /// Every member.
    #[serde(default)]
    pub nodes: Vec<ClusterNode>,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct ClusterNode {
    /// `cluster.node_id`.
    pub id: String,
    /// Advertised URL.
    #[serde(default)]
    pub address: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Leads the current term.
    #[serde(default)]
    pub leader: bool,
    /// Heartbeat within `cluster.node_timeout`.
    #[serde(default)]
    pub alive: bool,
    /// RFC 3339.
    #[serde(default)]
    pub started_at: String,
    /// RFC 3339.
    #[serde(default)]
    pub last_heartbeat: String,
}

impl ClusterView {
    /// Reads the answer; the leader first, then live nodes, then by id.
    pub fn parse(v: &Value) -> Result<ClusterView, String> {
        let mut c: ClusterView =
            serde_json::from_value(v.clone()).map_err(|e| format!("cluster: {e}"))?;
        c.nodes
            .sort_by(|a, b| (!a.leader, !a.alive, &a.id).cmp(&(!b.leader, !b.alive, &b.id)));
        Ok(c)
    }

    /// Live members.
    pub fn alive(&self) -> usize {
        self.nodes.iter().filter(|n| n.alive).count()
    }
}

/// One heartbeat of `GET /api/v1/heartbeats`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct HeartbeatView {
    /// Its name.
    pub name: String,
    /// `new`, `up`, `late`, `down` or `failed`.
    #[serde(default)]
    pub status: String,
    /// Longest time between pings (`1h`).
    #[serde(default)]
    pub period: String,
    /// Wait after the due time (`5m`).
    #[serde(default)]
    pub grace: String,
    /// RFC 3339, when it ever pinged.
    #[serde(default)]
    pub last_ping: Option<String>,
    /// RFC 3339, once pinged.
    #[serde(default)]
    pub next_due: Option<String>,
    /// Seconds from start to ping, the last time both came.
    #[serde(default)]
    pub last_duration: Option<f64>,
}

impl HeartbeatView {
    /// Reads the list; missed and failed first, then late, new, up; then by name.
    pub fn parse_list(v: &Value) -> Result<Vec<HeartbeatView>, String> {
        let mut list: Vec<HeartbeatView> =
            serde_json::from_value(v.clone()).map_err(|e| format!("heartbeats: {e}"))?;
        let rank = |s: &str| match s {
            "down" | "failed" => 0,
            "late" => 1,
            "new" => 2,
            _ => 3,
        };
        list.sort_by(|a, b| (rank(&a.status), &a.name).cmp(&(rank(&b.status), &b.name)));
        Ok(list)
    }
}

/// One agent of `GET /api/v1/agents`: another host's `watchpost agent` streaming its
/// host metrics (stored with `instance="<name>"`, `job="agent"`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct AgentView {
    /// Its name (`--name`), the `instance` label of its series.
    pub name: String,
    /// The hostname it reports.
    #[serde(default, deserialize_with = "null_string")]
    pub host: String,
    /// Its watchpost version.
    #[serde(default, deserialize_with = "null_string")]
    pub version: String,
    /// Where it connects from (`10.0.0.5:51234`).
    #[serde(default, deserialize_with = "null_string")]
    pub address: String,
    /// Whether its stream is open now.
    #[serde(default)]
    pub connected: bool,
    /// RFC 3339, while connected.
    #[serde(default)]
    pub connected_since: Option<String>,
    /// RFC 3339, when it last sent anything.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Samples received since the server started.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub samples_received: f64,
    /// AgentDown fires for it (disconnected longer than `agents.grace`).
    #[serde(default)]
    pub down: bool,
}

/// A string that may be null (then empty).
fn null_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl AgentView {
    /// `down`, `disconnected` or `connected` (the row's `data-status`).
    pub fn status(&self) -> &'static str {
        if self.down {
            "down"
        } else if self.connected {
            "connected"
        } else {
            "disconnected"
        }
    }

    /// Reads the list; down first, then disconnected, then connected; then by name.
    pub fn parse_list(v: &Value) -> Result<Vec<AgentView>, String> {
        let mut list: Vec<AgentView> =
            serde_json::from_value(v.clone()).map_err(|e| format!("agents: {e}"))?;
        let rank = |a: &AgentView| match a.status() {
            "down" => 0,
            "disconnected" => 1,
            _ => 2,
        };
        list.sort_by(|a, b| (rank(a), &a.name).cmp(&(rank(b), &b.name)));
        Ok(list)
    }

    /// The Agents page's summary: "2 agents · 1 connected · 1 down".
    pub fn summary(list: &[AgentView]) -> String {
        let connected = list.iter().filter(|a| a.connected).count();
        let down = list.iter().filter(|a| a.down).count();
        let noun = if list.len() == 1 { "agent" } else { "agents" };
        format!(
            "{} {noun} · {connected} connected · {down} down",
            list.len()
        )
    }
}

/// Who the session's token signs in as (`GET /api/v1/whoami`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Who {
    /// A name for people: a JWT's `preferred_username`/`email`/`sub`, a token's name.
    #[serde(default)]
    pub display_name: String,
    /// viewer, operator, admin or agent.
    #[serde(default)]
    pub role: String,
    /// `jwt`, `token` or `anonymous`.
    #[serde(default)]
    pub kind: String,
    /// When a JWT expires (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl Who {
    /// Expiry in Unix ms, when the token has one.
    pub fn expires_ms(&self) -> Option<i64> {
        self.expires_at.as_deref().and_then(parse_rfc3339)
    }

    /// Whether the token has expired at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms().is_some_and(|e| e <= now_ms)
    }

    /// The top bar's label: "ada · admin", or "ada · expired".
    pub fn label(&self, now_ms: i64) -> String {
        if self.expired(now_ms) {
            format!("{} · expired", self.display_name)
        } else {
            format!("{} · {}", self.display_name, self.role)
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn heartbeats_missed_first() {
        let v = serde_json::json!([
            {"name": "a", "status": "up", "period": "1h", "grace": "5m", "last_ping": "2026-12-07T08:00:00Z", "next_due": "2026-12-07T09:00:00Z", "last_duration": 2.5},
            {"name": "b", "status": "down", "period": "1d", "grace": "30m", "last_ping": null, "next_due": null, "last_duration": null}
        ]);
        let list = HeartbeatView::parse_list(&v).unwrap();
        assert_eq!(list[0].name, "b");
        assert_eq!(list[1].last_duration, Some(2.5));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn set_param_replaces_appends_and_removes() {
        let q = parse_query("window=5m&host=a&host=b");
        assert_eq!(
            build_query(&set_param(&q, "host", "web 1")),
            "window=5m&host=web%201"
        );
        assert_eq!(build_query(&set_param(&q, "host", "")), "window=5m");
        assert_eq!(
            build_query(&set_param(&q[..1], "host", "x")),
            "window=5m&host=x"
        );
        assert_eq!(build_query(&set_param(&[], "window", "")), "");
    }

    #[test]
    fn agents_down_and_disconnected_first_and_tolerant() {
        let v = serde_json::json!([
            {"name": "web-2", "host": "web-2.example.org", "version": "0.1.0", "address": "10.0.0.6:1",
             "connected": true, "connected_since": "2026-12-07T11:00:00Z", "last_seen": "2026-12-07T11:05:00Z",
             "samples_received": 12345, "down": false},
            {"name": "web-1", "connected": true},
            {"name": "db", "host": null, "connected": false, "connected_since": null, "last_seen": null, "down": true},
            {"name": "cache", "connected": false}
        ]);
        let list = AgentView::parse_list(&v).unwrap();
        let names: Vec<(&str, &str)> = list.iter().map(|a| (a.name.as_str(), a.status())).collect();
        assert_eq!(
            names,
            [
                ("db", "down"),
                ("cache", "disconnected"),
                ("web-1", "connected"),
                ("web-2", "connected")
            ]
        );
        assert_eq!(list[3].samples_received, 12345.0);
        assert_eq!(list[0].host, "");
        assert_eq!(AgentView::summary(&list), "4 agents · 2 connected · 1 down");
        assert_eq!(
            AgentView::summary(&list[..1]),
            "1 agent · 0 connected · 1 down"
        );
        assert!(AgentView::parse_list(&serde_json::json!({"x": 1})).is_err());
    }

    fn alert(id: i64, sev: &str, state: &str) -> Alert {
        serde_json::from_value(json!({
            "id": id, "fingerprint": format!("fp{id}"), "source": if id % 2 == 0 { "rules" } else { "ntopng" },
            "alertname": format!("Alert{id}"), "message": format!("message {id}"),
            "severity": sev, "type": "system", "risk_score": id * 10, "state": state,
            "silenced": false, "labels": {"alertname": format!("Alert{id}"), "instance": format!("host{id}")},
            "annotations": {}, "starts_at": format!("2026-01-01T00:0{id}:00Z"), "ends_at": null,
            "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-01-01T00:00:00Z",
            "count": id, "acknowledged": null
        }))
        .unwrap()
    }

    #[test]
    fn contract_alert_object_parses_tolerantly() {
        let a: Alert = serde_json::from_value(json!({
            "id": 7, "message": "disk full", "severity": "critical", "risk_score": "85",
            "labels": {"n": 1}, "acknowledged": {"by": "ann", "at": "2026-01-01T00:00:00Z", "comment": null},
            "events": [{"kind": "fired", "at": "2026-01-01T00:00:00Z"}, {"id": 9, "kind": "acknowledged", "at": "2026-01-01T00:01:00Z", "by": "ann", "comment": ""}],
            "inhibited": true, "silenced_by": ["s1", 2],
            "something_new": true, "flapping": true,
            "classification": {"type_reason": "system (score 6): 'disk' in summary", "severity_reason": "critical: 'full' in summary"}
        }))
        .unwrap();
        assert_eq!(a.title(), "disk full");
        assert!(a.flapping);
        let c = a.classification.clone().unwrap();
        assert_eq!(c.severity_reason, "critical: 'full' in summary");
        assert_eq!(a.risk_score, 85.0);
        assert_eq!(a.labels["n"], "1");
        assert_eq!(a.events[1].detail_text(), "by: ann");
        let e: AlertEventRecord = serde_json::from_value(
            json!({"kind": "silenced", "reason": "silence", "silences": ["a", "b"]}),
        )
        .unwrap();
        assert_eq!(e.detail_text(), "reason: silence · silences: a, b");
        assert!(a.inhibited);
        assert_eq!(a.silenced_by, vec!["s1".to_string(), "2".to_string()]);
        assert!(!a.needs_attention());
    }

    #[test]
    fn filters() {
        let mut acked = alert(3, "critical", "firing");
        acked.acknowledged = Some(Ack {
            by: "x".into(),
            at: None,
            comment: None,
        });
        let all = [
            alert(1, "critical", "firing"),
            alert(2, "warning", "firing"),
            alert(4, "critical", "resolved"),
            acked,
        ];
        let pick = |f: &AlertFilter| -> Vec<i64> {
            all.iter().filter(|a| f.matches(a)).map(|a| a.id).collect()
        };
        assert_eq!(pick(&AlertFilter::default()), vec![1, 2, 3]);
        let f = AlertFilter {
            severity: Some("critical".into()),
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![1, 3]);
        let f = AlertFilter {
            state: StateFilter::Acknowledged,
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![3]);
        let f = AlertFilter {
            state: StateFilter::All,
            source: Some("rules".into()),
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![2, 4]);
        let f = AlertFilter {
            labels: vec![LabelMatch::parse("instance=host2").unwrap()],
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![2]);
        let f = AlertFilter {
            labels: vec![LabelMatch::parse("instance != \"host2\"").unwrap()],
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![1, 3]);
        let f = AlertFilter {
            text: "MESSAGE 1".into(),
            ..Default::default()
        };
        assert_eq!(pick(&f), vec![1]);
    }

    #[test]
    fn filter_round_trips_through_the_query_string() {
        let f = AlertFilter {
            state: StateFilter::All,
            severity: Some("warning".into()),
            source: None,
            labels: vec![LabelMatch::parse("job=node exporter").unwrap()],
            text: "cpu & mem".into(),
        };
        let qs = build_query(&f.to_query());
        assert_eq!(
            qs,
            "state=all&severity=warning&label=job%3Dnode%20exporter&q=cpu%20%26%20mem"
        );
        assert_eq!(AlertFilter::from_query(&parse_query(&format!("?{qs}"))), f);
        assert!(AlertFilter::default().to_query().is_empty());
        assert_eq!(
            build_query(&f.api_query(500)),
            "severity=warning&label=job%3Dnode%20exporter&limit=500"
        );
        assert_eq!(url_decode("a+b%2"), "a b%2");
        assert_eq!(url_decode("%E2%9C%93"), "✓");
    }

    #[test]
    fn sorting_is_stable_and_directional() {
        let mut v = vec![
            alert(1, "info", "firing"),
            alert(2, "critical", "firing"),
            alert(3, "warning", "firing"),
        ];
        sort_alerts(&mut v, SortKey::Severity, true);
        assert_eq!(v.iter().map(|a| a.id).collect::<Vec<_>>(), vec![2, 3, 1]);
        sort_alerts(&mut v, SortKey::Risk, false);
        assert_eq!(v.iter().map(|a| a.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        sort_alerts(&mut v, SortKey::Since, true);
        assert_eq!(v.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(SortKey::parse("-count"), Some((SortKey::Count, true)));
        assert_eq!(SortKey::parse("nope"), None);
    }

    #[test]
    fn upsert_and_counts() {
        let mut v = vec![alert(1, "critical", "firing")];
        v[0].events = vec![AlertEventRecord {
            kind: "fired".into(),
            at: None,
            details: BTreeMap::new(),
        }];
        assert!(upsert_alert(&mut v, alert(2, "warning", "firing")));
        let mut again = alert(1, "critical", "firing");
        again.count = 99;
        assert!(!upsert_alert(&mut v, again));
        assert_eq!(v[0].count, 99);
        assert_eq!(v[0].events.len(), 1, "timeline kept");
        v[1].silenced = true;
        v.push(alert(5, "info", "resolved"));
        assert_eq!(
            severity_counts(&v),
            SeverityCounts {
                critical: 1,
                warning: 1,
                info: 0,
                handled: 1
            }
        );
    }

    #[test]
    fn silence_prefill_and_validation() {
        let a = alert(1, "critical", "firing");
        let m = matchers_for(&a);
        assert_eq!(m[0].name, "alertname");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].display(), "instance=\"host1\"");
        let mut s = NewSilence {
            matchers: m,
            starts_at: "2026-01-01T00:00:00Z".into(),
            ends_at: "2026-01-01T02:00:00Z".into(),
            created_by: "ann".into(),
            comment: "maintenance".into(),
        };
        assert_eq!(s.validate(), Ok(()));
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["matchers"][0]["isRegex"], false);
        assert_eq!(v["startsAt"], "2026-01-01T00:00:00Z");
        s.ends_at = "2025-01-01T00:00:00Z".into();
        assert!(s.validate().unwrap_err().contains("after"));
        s.ends_at = "2026-01-01T02:00:00Z".into();
        s.comment.clear();
        assert!(s.validate().is_err());
        s.comment = "x".into();
        s.matchers = vec![Matcher {
            name: "a".into(),
            value: ".*".into(),
            is_regex: true,
            is_equal: true,
        }];
        assert!(s.validate().unwrap_err().contains("every alert"));
    }

    #[test]
    fn prometheus_rules_shape() {
        let v = json!({"status": "success", "data": {"groups": [{
        "name": "host", "file": "alerts/host.yml", "interval": 5, "lastEvaluation": "2026-01-01T00:00:00Z",
        "evaluationTime": 0.0012, "rules": [
            {"name": "HighCPU", "query": "x > 1", "type": "alerting", "state": "firing", "health": "ok",
             "duration": 60, "labels": {"severity": "warning"}, "alerts": [{}], "lastError": "",
             "lastEvaluation": "2026-01-01T00:00:00Z", "evaluationTime": 0.001},
            {"name": "job:x:rate", "query": "rate(x[1m])", "type": "recording", "health": "err", "lastError": "boom"}
        ]}]}});
        let g = parse_rules(&v).unwrap();
        assert_eq!(g[0].rules.len(), 2);
        assert_eq!(g[0].interval, 5.0);
        assert_eq!(g[0].rules[0].state.as_deref(), Some("firing"));
        assert_eq!(g[0].rules[1].last_error.as_deref(), Some("boom"));
        assert!(parse_rules(&json!({"status": "error", "error": "x"})).is_err());
        assert!(parse_rules(&json!({"groups": []})).unwrap().is_empty());
        assert_eq!(rules_reload_error(&v), None);
        assert_eq!(
            rules_reload_error(&json!({"data": {"groups": [], "lastReloadError": "a.yml:3: bad"}})),
            Some("a.yml:3: bad".to_string())
        );
        assert_eq!(
            reload_summary(
                &json!({"status": "success", "data": {"files": 2, "groups": 3, "rules": 7, "unchanged": 1}})
            ),
            "Rules reloaded: 7 rules in 3 groups from 2 files"
        );
        assert_eq!(
            reload_summary(&json!({"data": {"files": 1, "groups": 1, "rules": 1}})),
            "Rules reloaded: 1 rule in 1 group from 1 file"
        );
    }

    #[test]
    fn silence_lists_in_either_shape() {
        let item = json!({"id": 12, "matchers": [{"name": "a", "value": "b", "isRegex": false, "isEqual": true}],
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T01:00:00Z", "createdBy": "x", "comment": "y"});
        let a = parse_silences(&json!([item.clone()])).unwrap();
        let b = parse_silences(&json!({"silences": [item]})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].id, "12");
        let t = parse_rfc3339("2026-01-01T00:30:00Z").unwrap();
        assert_eq!(a[0].state(t), "active");
        assert_eq!(a[0].state(t + 3_600_000), "expired");
        assert!(parse_silences(&json!("x")).is_err());
    }

    #[test]
    fn cluster_view_lists_the_leader_first_then_live_nodes() {
        let v = serde_json::json!({"self": "n2", "leader": "n3", "epoch": 4, "nodes": [
            {"id": "n1", "address": "http://a", "version": "0.1.0", "leader": false, "alive": false,
             "started_at": "2026-12-06T10:00:00Z", "last_heartbeat": "2026-12-06T10:05:00Z"},
            {"id": "n2", "address": "http://b", "version": "0.1.0", "leader": false, "alive": true,
             "started_at": "2026-12-06T10:00:00Z", "last_heartbeat": "2026-12-06T11:00:00Z"},
            {"id": "n3", "address": "http://c", "version": "0.1.0", "leader": true, "alive": true,
             "started_at": "2026-12-06T10:00:00Z", "last_heartbeat": "2026-12-06T11:00:00Z"}]});
        let c = ClusterView::parse(&v).unwrap();
        let order: Vec<&str> = c.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(order, ["n3", "n2", "n1"]);
        assert_eq!(
            (c.self_id.as_str(), c.leader.as_deref(), c.epoch, c.alive()),
            ("n2", Some("n3"), 4, 2)
        );
        assert!(ClusterView::parse(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn who_reads_whoami_and_tells_expiry() {
        let w: Who = serde_json::from_value(serde_json::json!({
            "name": "3f2a", "display_name": "ada", "role": "admin", "kind": "jwt",
            "expires_at": "2026-12-07T10:00:00.000Z", "sub": "3f2a"
        }))
        .unwrap();
        let exp = w.expires_ms().unwrap();
        assert_eq!(w.label(exp - 1), "ada · admin");
        assert_eq!(w.label(exp), "ada · expired");
        let t: Who = serde_json::from_value(serde_json::json!({
            "display_name": "ops", "role": "operator", "kind": "token", "expires_at": null
        }))
        .unwrap();
        assert!(!t.expired(i64::MAX));
    }
}
