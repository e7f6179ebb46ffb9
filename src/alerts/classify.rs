//! Deterministic classification: severity, type and risk score, with the reason for
//! each (shown by `GET /api/v1/alerts/{id}`, the dashboard and the bot).
//!
//! The rules (documented in the README's "Classification"):
//!
//! * **Severity**: the explicit field (`severity` of the generic API, ntopng's
//!   severity or score) wins; else the `severity` label (lenient spellings such as
//!   `page`, `error`, `warn`, `notice`); else the meaning of the words
//!   ([`super::vocabulary`]): critical words (down, unreachable, lost quorum,
//!   corruption, exhausted, …) make it critical unless a "soon" word ("almost",
//!   "predicted", "about to") says the condition is only coming; warning words
//!   (high, too many, latency, lag, …) make it a warning; info words (changed,
//!   discovered, …) info; a percentage in the text counts (≥ 95 % critical, ≥ 80 %
//!   warning); nothing at all: warning.
//! * **Type**: an explicit hint (ntopng's alert category) wins; else a `type`,
//!   `category` or `alert_type` label naming a known type; else the type whose
//!   vocabulary scores highest over the alert name (×3), the `job`, `service`,
//!   `component`, `namespace`, `container`, `app` labels (×2), the summary (×2) and the
//!   description (×1), products counting 4 and words 1 (ties: security, database,
//!   network, system, application); else `other`.
//! * **Risk score** (0–100): severity base (critical 60, warning 35, info 10) + type
//!   weight (security 20, database 12, network 10, system 8, application 5, other 0) +
//!   a repeat bonus `min(20, round(6 · ln r))`, where `r` is the number of receipts in
//!   the last hour, exponentially decayed with a one-hour time constant (1 for a first
//!   receipt). A source's own score (ntopng's, 0–250+) can raise it to
//!   `min(100, score · 100 / 250)`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use rustc_hash::FxHashMap;

use super::model::{Alert, LabelSet, Severity};
use super::vocabulary::{self, Class, Entry, Vocabulary};

/// The known alert types, in tie-breaking order.
pub const TYPES: [&str; 5] = ["security", "database", "network", "system", "application"];
/// The type of alerts no rule recognises.
pub const OTHER: &str = "other";

/// Labels whose values name the technology (job, service, …).
pub const TEXT_LABELS: [&str; 7] = [
    "job",
    "service",
    "component",
    "namespace",
    "container",
    "app",
    "category",
];

/// What an alert says, by field.
#[derive(Debug, Clone, Copy)]
pub struct Texts<'a> {
    /// The alert name.
    pub alertname: Option<&'a str>,
    /// Summary (or the message).
    pub summary: &'a str,
    /// Description.
    pub description: &'a str,
    /// Labels (those of [`TEXT_LABELS`] are read).
    pub labels: &'a LabelSet,
}

/// A classification and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Severity.
    pub severity: Severity,
    /// Type.
    pub alert_type: &'static str,
    /// Why this severity.
    pub severity_reason: String,
    /// Why this type.
    pub type_reason: String,
}

/// One vocabulary hit: the entry and the field it was found in.
struct Hit<'a> {
    entry: &'a Entry,
    field: &'static str,
    weight: u32,
}

fn hits<'a>(v: &'a Vocabulary, t: &Texts<'_>) -> Vec<Hit<'a>> {
    let mut out = Vec::new();
    let mut field = |text: &str, name: &'static str, w: u32| {
        if text.is_empty() {
            return;
        }
        let stems = vocabulary::words(text);
        for e in v.hits(&stems) {
            out.push(Hit {
                entry: e,
                field: name,
                weight: w.saturating_mul(e.weight),
            });
        }
    };
    field(t.alertname.unwrap_or(""), "alertname", v.fields.alertname);
    let labels: Vec<&str> = TEXT_LABELS
        .iter()
        .filter_map(|k| t.labels.get(*k).map(String::as_str))
        .collect();
    field(&labels.join(" "), "labels", v.fields.labels);
    field(t.summary, "summary", v.fields.summary);
    if t.description != t.summary {
        field(t.description, "description", v.fields.description);
    }
    out
}

/// "'postgresql' in alertname, 'replica' in summary" (at most five).
fn evidence(hits: &[&Hit<'_>]) -> String {
    let mut s = String::new();
    for (i, h) in hits.iter().take(5).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "'{}' in {}", h.entry.term, h.field);
    }
    s
}

/// Classifications already made, by a hash of everything they depend on: a repeat of
/// an alert (most receipts) costs a hash and a lookup instead of the vocabulary scan.
/// Emptied when full (a plain map: moka's bookkeeping cost more than the scan).
type Cache = Mutex<FxHashMap<u128, Arc<Classification>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn lock_cache() -> std::sync::MutexGuard<'static, FxHashMap<u128, Arc<Classification>>> {
    cache().lock().unwrap_or_else(|p| p.into_inner())
}

/// Distinct alert texts whose classification is kept.
const CACHE_CAPACITY: usize = 20_000;

/// Forgets cached classifications (the vocabulary changed).
pub fn clear_cache() {
    lock_cache().clear();
}

fn cache_key(explicit: Option<Severity>, hint: Option<&str>, t: &Texts<'_>) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut field = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(explicit.map_or("", Severity::as_str));
    field(hint.unwrap_or("\0"));
    field(t.alertname.unwrap_or("\0"));
    field(t.summary);
    field(t.description);
    for key in TEXT_LABELS
        .iter()
        .chain(&["severity", "type", "alert_type"])
    {
        field(t.labels.get(*key).map_or("\0", String::as_str));
    }
    h.digest128()
}

/// Classifies an alert: `explicit` severity and `type_hint` (a sender's own fields)
/// win, then labels, then the words of `t`.
pub fn classify(
    explicit: Option<Severity>,
    type_hint: Option<&str>,
    t: &Texts<'_>,
) -> Classification {
    let key = cache_key(explicit, type_hint, t);
    if let Some(c) = lock_cache().get(&key).cloned() {
        return (*c).clone();
    }
    let c = classify_uncached(explicit, type_hint, t);
    let mut cache = lock_cache();
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(key, Arc::new(c.clone()));
    c
}

fn classify_uncached(
    explicit: Option<Severity>,
    type_hint: Option<&str>,
    t: &Texts<'_>,
) -> Classification {
    let v = vocabulary::active();
    let hits = hits(&v, t);
    let (alert_type, type_reason) = type_of(type_hint, t.labels, &hits);
    let (severity, severity_reason) = severity_of(explicit, t, &hits);
    Classification {
        severity,
        alert_type,
        severity_reason,
        type_reason,
    }
}

fn type_of(hint: Option<&str>, labels: &LabelSet, hits: &[Hit<'_>]) -> (&'static str, String) {
    if let Some((h, t)) = hint.and_then(|h| normalize_type(h).map(|t| (h, t))) {
        return (t, format!("the sender's category {h:?}"));
    }
    for key in ["type", "category", "alert_type"] {
        if let Some((v, t)) = labels
            .get(key)
            .and_then(|v| normalize_type(v).map(|t| (v, t)))
        {
            return (t, format!("label {key}={v:?}"));
        }
    }
    let mut scores = [0u32; 5];
    for h in hits {
        if let Class::Type(i) = h.entry.class {
            scores[i] = scores[i].saturating_add(h.weight);
        }
    }
    let mut best: Option<usize> = None;
    for i in 0..TYPES.len() {
        if scores[i] > 0 && best.is_none_or(|b| scores[i] > scores[b]) {
            best = Some(i);
        }
    }
    let Some(b) = best else {
        return (
            OTHER,
            "no word of the vocabulary names a known type".to_string(),
        );
    };
    let mut mine: Vec<&Hit<'_>> = hits
        .iter()
        .filter(|h| h.entry.class == Class::Type(b))
        .collect();
    mine.sort_by_key(|h| std::cmp::Reverse(h.weight));
    let mut reason = format!("{} (score {}): {}", TYPES[b], scores[b], evidence(&mine));
    let runner = (0..TYPES.len())
        .filter(|i| *i != b && scores[*i] > 0)
        .max_by_key(|i| scores[*i]);
    if let Some(r) = runner {
        let _ = write!(reason, "; next {} ({})", TYPES[r], scores[r]);
    }
    (TYPES[b], reason)
}

/// Percentages in the text: the largest, if any.
fn largest_percentage(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut best: Option<f64> = None;
    for (i, _) in text.match_indices('%') {
        let mut j = i;
        while j > 0 && (bytes[j - 1].is_ascii_digit() || bytes[j - 1] == b'.') {
            j -= 1;
        }
        let digits = text[j..i].trim();
        if let Ok(p) = digits.parse::<f64>()
            && (0.0..=100.0).contains(&p)
        {
            best = Some(best.map_or(p, |b: f64| b.max(p)));
        }
    }
    best
}

fn severity_of(explicit: Option<Severity>, t: &Texts<'_>, hits: &[Hit<'_>]) -> (Severity, String) {
    if let Some(s) = explicit {
        return (s, "the sender's severity".to_string());
    }
    if let Some((v, s)) = t
        .labels
        .get("severity")
        .and_then(|v| Severity::parse_lenient(v).map(|s| (v, s)))
    {
        return (s, format!("label severity={v:?}"));
    }
    let of = |c: Class| -> Vec<&Hit<'_>> { hits.iter().filter(|h| h.entry.class == c).collect() };
    let (critical, warning, info, soon) = (
        of(Class::Critical),
        of(Class::Warning),
        of(Class::Info),
        of(Class::Soon),
    );
    let score = |hs: &[&Hit<'_>]| hs.iter().fold(0u32, |s, h| s.saturating_add(h.weight));
    let (c, w, i) = (score(&critical), score(&warning), score(&info));
    let pct = largest_percentage(t.summary);
    // The words "critical" or "warning" themselves (CorednsServfailErrorRateCritical).
    for (word, sev) in [
        ("critical", Severity::Critical),
        ("warning", Severity::Warning),
        ("info", Severity::Info),
    ] {
        let named = hits
            .iter()
            .find(|h| h.entry.term == word && matches!(h.field, "alertname" | "summary"));
        if let Some(h) = named {
            return (sev, format!("{sev}: '{word}' in {}", h.field));
        }
    }
    // "Very soon" and "imminent" are not "soon": the condition is as good as here.
    let urgent = critical.iter().any(|h| {
        matches!(
            h.entry.term.as_str(),
            "very soon" | "imminent" | "imminently"
        )
    });
    if urgent {
        return (
            Severity::Critical,
            format!("critical: {}", evidence(&critical)),
        );
    }
    if c > 0 && soon.is_empty() && c > w {
        return (
            Severity::Critical,
            format!("critical: {}", evidence(&critical)),
        );
    }
    if c > 0 && !soon.is_empty() {
        return (
            Severity::Warning,
            format!(
                "warning: {} but {} (not yet)",
                evidence(&critical),
                evidence(&soon)
            ),
        );
    }
    if w > 0 && w >= i {
        return (
            Severity::Warning,
            format!("warning: {}", evidence(&warning)),
        );
    }
    if c > 0 {
        return (
            Severity::Critical,
            format!("critical: {}", evidence(&critical)),
        );
    }
    if i > 0 {
        return (Severity::Info, format!("info: {}", evidence(&info)));
    }
    // No words: a number in the summary against the usual thresholds (disk 99 %).
    match pct {
        Some(p) if p >= 95.0 => (
            Severity::Critical,
            format!("critical: {p}% in the summary (≥ 95%)"),
        ),
        Some(p) if p >= 80.0 => (
            Severity::Warning,
            format!("warning: {p}% in the summary (≥ 80%)"),
        ),
        _ => (
            Severity::Warning,
            "no severity words: warning by default".to_string(),
        ),
    }
}

/// The classification of a stored alert with its reasons: recomputed from its name,
/// labels and annotations with the vocabulary in use; a severity or type the words do
/// not give came from the sender.
pub fn explain(a: &Alert) -> Classification {
    let summary = a
        .annotations
        .get("summary")
        .map(String::as_str)
        .unwrap_or(&a.message);
    let description = a.annotations.get("description").map_or("", String::as_str);
    let t = Texts {
        alertname: a.alertname.as_deref(),
        summary,
        description,
        labels: &a.labels,
    };
    let mut c = classify(None, None, &t);
    if c.severity != a.severity {
        c.severity = a.severity;
        c.severity_reason =
            "the sender's severity (field or score), or an earlier vocabulary".to_string();
    }
    if c.alert_type != a.alert_type {
        c.alert_type = TYPES
            .iter()
            .copied()
            .find(|t| *t == a.alert_type)
            .unwrap_or(OTHER);
        c.type_reason = "the sender's category, or an earlier vocabulary".to_string();
    }
    c
}

/// A known type name for a hint such as `Security`, `db`, `app`, `net`; `None` otherwise.
pub fn normalize_type(hint: &str) -> Option<&'static str> {
    match hint.trim().to_ascii_lowercase().as_str() {
        "security" | "sec" | "ids" | "intrusion" => Some("security"),
        "database" | "db" | "sql" => Some("database"),
        "network" | "net" | "networking" => Some("network"),
        "system" | "sys" | "host" | "infrastructure" | "infra" | "internals" => Some("system"),
        "application" | "app" | "service" | "web" => Some("application"),
        "other" => Some(OTHER),
        _ => None,
    }
}

/// Appends the words of `text` to `out`, each followed by a space: split at
/// non-alphanumerics and CamelCase humps (`NodeFilesystemAlmostFull` → `node filesystem
/// almost full`), lower-cased.
pub fn push_words(text: &str, out: &mut String) {
    let mut word_open = false;
    let mut prev = ' ';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let before = std::mem::replace(&mut prev, c);
        if !c.is_alphanumeric() {
            if word_open {
                out.push(' ');
                word_open = false;
            }
            continue;
        }
        if word_open && c.is_uppercase() {
            let next_lower = chars.peek().is_some_and(|n| n.is_lowercase());
            if before.is_lowercase()
                || before.is_ascii_digit()
                || (before.is_uppercase() && next_lower)
            {
                out.push(' ');
            }
        }
        for l in c.to_lowercase() {
            out.push(l);
        }
        word_open = true;
    }
    if word_open {
        out.push(' ');
    }
}

/// One hour in milliseconds: the time constant of the repeat rate.
pub const RATE_WINDOW_MS: f64 = 3_600_000.0;

/// The repeat rate after a receipt at `now_ms`, given the rate at `prev_ms`: receipts
/// in the last hour, exponentially decayed.
pub fn next_rate(prev_rate: f64, prev_ms: i64, now_ms: i64) -> f64 {
    let age = now_ms.saturating_sub(prev_ms).max(0) as f64;
    prev_rate * (-age / RATE_WINDOW_MS).exp() + 1.0
}

/// Risk score 0–100 from severity, type, the repeat rate and a source's own score.
pub fn risk_score(
    severity: Severity,
    alert_type: &str,
    rate: f64,
    source_score: Option<i64>,
) -> i64 {
    let base = match severity {
        Severity::Critical => 60,
        Severity::Warning => 35,
        Severity::Info => 10,
    };
    let weight = match alert_type {
        "security" => 20,
        "database" => 12,
        "network" => 10,
        "system" => 8,
        "application" => 5,
        _ => 0,
    };
    let repeats = if rate > 1.0 {
        ((6.0 * rate.ln()).round() as i64).clamp(0, 20)
    } else {
        0
    };
    let mut score = base + weight + repeats;
    if let Some(s) = source_score {
        score = score.max(scaled_source_score(s));
    }
    score.clamp(0, 100)
}

/// A source's score (ntopng's, 0–250+) on the 0–100 scale: `min(100, score · 100 /
/// 250)`, with the score clamped first so any `i64` works (no overflow in `· 100`).
fn scaled_source_score(score: i64) -> i64 {
    score.clamp(0, SOURCE_SCORE_FULL) * 100 / SOURCE_SCORE_FULL
}

/// The source score that makes the risk 100.
const SOURCE_SCORE_FULL: i64 = 250;

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn texts<'a>(name: &'a str, summary: &'a str, labels: &'a LabelSet) -> Texts<'a> {
        Texts {
            alertname: Some(name),
            summary,
            description: "",
            labels,
        }
    }

    #[test]
    fn severity_order_of_precedence_and_reasons() {
        let none = LabelSet::new();
        let c =
            |l: &LabelSet, s: Option<Severity>, text: &str| classify(s, None, &texts("", text, l));
        assert_eq!(
            c(
                &labels(&[("severity", "critical")]),
                Some(Severity::Info),
                "database is down"
            )
            .severity,
            Severity::Info
        );
        let by_label = c(&labels(&[("severity", "warn")]), None, "database is down");
        assert_eq!(by_label.severity, Severity::Warning);
        assert_eq!(by_label.severity_reason, "label severity=\"warn\"");
        let down = c(&none, None, "database is down");
        assert_eq!(down.severity, Severity::Critical);
        assert!(
            down.severity_reason.contains("'down' in summary"),
            "{down:?}"
        );
        assert_eq!(
            c(&none, None, "replication lag is high").severity,
            Severity::Warning
        );
        let soon = c(&none, None, "disk almost full");
        assert_eq!(soon.severity, Severity::Warning, "{soon:?}");
        assert_eq!(
            c(&none, None, "new device discovered").severity,
            Severity::Info
        );
        assert_eq!(c(&none, None, "disk at 99%").severity, Severity::Critical);
        assert_eq!(
            c(&labels(&[("severity", "purple")]), None, "TargetDown").severity,
            Severity::Critical
        );
        assert_eq!(c(&none, None, "lost quorum").severity, Severity::Critical);
        assert_eq!(
            c(&none, None, "WAL corruptions").severity,
            Severity::Critical
        );
        let urgent = c(&none, None, "SSL certificate will expire very soon");
        assert_eq!(urgent.severity, Severity::Critical, "{urgent:?}");
        assert_eq!(c(&none, None, "MySQL restarted").severity, Severity::Info);
    }

    #[test]
    fn types_and_reasons() {
        let none = LabelSet::new();
        let t = |name: &str, text: &str| classify(None, None, &texts(name, text, &none));
        assert_eq!(
            t("", "Port scan detected from 10.0.0.1").alert_type,
            "security"
        );
        let pg = t("PostgresqlTooManyConnections", "");
        assert_eq!(pg.alert_type, "database");
        assert!(
            pg.type_reason
                .starts_with("database (score 12): 'postgresql' in alertname"),
            "{pg:?}"
        );
        assert_eq!(t("", "Interface eth0 packet loss 5%").alert_type, "network");
        assert_eq!(t("HighCpuUsage", "on web-1").alert_type, "system");
        assert_eq!(
            t("", "HTTP 5xx error rate above 5%").alert_type,
            "application"
        );
        assert_eq!(t("", "something odd").alert_type, "other");
        assert_eq!(t("EnvoyClusterUpstreamErrors", "").alert_type, "network");
        assert_eq!(t("", "HTTP Susp. User-Agent").alert_type, "security");
        assert_eq!(t("", "TLS Cert Self-signed").alert_type, "security");
        assert_eq!(t("CephOsdDown", "").alert_type, "system");
        let hinted = classify(None, Some("Security"), &texts("cpu", "", &none));
        assert_eq!(hinted.alert_type, "security");
        assert_eq!(hinted.type_reason, "the sender's category \"Security\"");
        let l = labels(&[("category", "db")]);
        assert_eq!(
            classify(None, None, &texts("cpu", "", &l)).alert_type,
            "database"
        );
        let job = labels(&[("job", "redis")]);
        assert_eq!(
            classify(None, None, &texts("HighLatency", "", &job)).alert_type,
            "database"
        );
    }

    #[test]
    fn risk_scores() {
        assert_eq!(risk_score(Severity::Critical, "security", 1.0, None), 80);
        assert_eq!(risk_score(Severity::Info, "other", 1.0, None), 10);
        assert_eq!(risk_score(Severity::Warning, "system", 2.0, None), 47);
        assert_eq!(risk_score(Severity::Critical, "security", 1e6, None), 100);
        assert_eq!(risk_score(Severity::Info, "other", 1.0, Some(200)), 80);
        let r = next_rate(next_rate(1.0, 0, 0), 0, 0);
        assert!((r - 3.0).abs() < 1e-9);
        let decayed = next_rate(1.0, 0, 3_600_000);
        assert!((decayed - (1.0 + (-1.0f64).exp())).abs() < 1e-9);
    }

    #[test]
    fn extreme_source_scores_and_times() {
        for (score, risk) in [
            (i64::MAX, 100),
            (i64::MAX / 100 + 1, 100),
            (251, 100),
            (250, 100),
            (125, 50),
            (-1, 10),
            (i64::MIN, 10),
        ] {
            assert_eq!(
                risk_score(Severity::Info, "other", 1.0, Some(score)),
                risk,
                "{score}"
            );
        }
        assert_eq!(scaled_source_score(i64::MAX), 100);
        assert_eq!(scaled_source_score(i64::MIN), 0);
        assert_eq!(next_rate(1.0, i64::MIN, i64::MAX), 1.0);
        assert_eq!(next_rate(1.0, i64::MAX, i64::MIN), 2.0);
        let inf = risk_score(Severity::Info, "other", f64::INFINITY, None);
        assert_eq!(inf, 30);
    }
}
