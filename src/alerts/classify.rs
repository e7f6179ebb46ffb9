//! Deterministic classification: severity, type and risk score.
//!
//! The rules (documented in the README's "Classification" section):
//!
//! * **Severity**: the explicit field (`severity` of the generic API, ntopng's
//!   severity or score) wins; else the `severity` label (lenient spellings such as
//!   `page`, `error`, `warn`, `notice`); else keywords of the message and alert name
//!   ([`CRITICAL_WORDS`], then [`WARNING_WORDS`]); else `info`.
//! * **Type**: an explicit hint (ntopng's alert category) wins; else a `type`,
//!   `category` or `alert_type` label naming a known type; else the type with the most
//!   keywords occurring in the alert name, message and `job`/`service`/`component`
//!   labels (ties: security, database, network, system, application); else `other`.
//! * **Risk score** (0–100): severity base (critical 60, warning 35, info 10) + type
//!   weight (security 20, database 12, network 10, system 8, application 5, other 0) +
//!   a repeat bonus `min(20, round(6 · ln r))`, where `r` is the number of receipts in
//!   the last hour, exponentially decayed with a one-hour time constant (1 for a first
//!   receipt). A source's own score (ntopng's, 0–250+) can raise it to
//!   `min(100, score · 100 / 250)`.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::model::{LabelSet, Severity};

/// The known alert types, in keyword-matching order.
pub const TYPES: [&str; 5] = ["security", "database", "network", "system", "application"];
/// The type of alerts no rule recognises.
pub const OTHER: &str = "other";

/// Words (or phrases) that make an unlabelled alert critical.
pub const CRITICAL_WORDS: &[&str] = &[
    "critical",
    "fatal",
    "panic",
    "emergency",
    "outage",
    "down",
    "unreachable",
    "unavailable",
    "crash",
    "crashed",
    "crashloop",
    "crashloopbackoff",
    "oom",
    "oomkilled",
    "out of memory",
    "data loss",
    "corrupted",
    "corruption",
    "breach",
    "compromised",
    "ransomware",
    "disk full",
    "no space left",
];

/// Words (or phrases) that make an unlabelled alert a warning.
pub const WARNING_WORDS: &[&str] = &[
    "warning",
    "warn",
    "error",
    "errors",
    "failed",
    "failure",
    "failing",
    "degraded",
    "slow",
    "latency",
    "timeout",
    "timeouts",
    "timed out",
    "high",
    "exceeded",
    "exceeds",
    "threshold",
    "retry",
    "retrying",
    "lag",
    "throttled",
    "nearly full",
    "almost full",
    "expiring",
    "expires",
    "suspicious",
    "unusual",
];

const SECURITY_WORDS: &[&str] = &[
    "security",
    "attack",
    "attacker",
    "intrusion",
    "malware",
    "virus",
    "breach",
    "exploit",
    "scan",
    "scanning",
    "scanner",
    "brute",
    "bruteforce",
    "unauthorized",
    "unauthorised",
    "login failed",
    "failed login",
    "authentication failure",
    "authentication failed",
    "blacklisted",
    "blacklist",
    "blocklist",
    "suspicious",
    "ddos",
    "botnet",
    "phishing",
    "ransomware",
    "cve",
    "vulnerability",
    "vulnerable",
    "firewall",
    "ids",
    "compromised",
    "privilege",
    "rootkit",
    "trojan",
    "certificate",
    "tls",
    "ssl",
];

const DATABASE_WORDS: &[&str] = &[
    "database",
    "db",
    "postgres",
    "postgresql",
    "pg",
    "mysql",
    "mariadb",
    "sqlite",
    "mongodb",
    "mongo",
    "redis",
    "oracle",
    "mssql",
    "sql",
    "query",
    "queries",
    "replication",
    "replica",
    "deadlock",
    "deadlocks",
    "clickhouse",
    "elasticsearch",
    "cassandra",
    "etcd",
    "pgbouncer",
    "tablespace",
    "vacuum",
];

const NETWORK_WORDS: &[&str] = &[
    "network",
    "interface",
    "link",
    "packet",
    "packets",
    "packet loss",
    "bandwidth",
    "throughput",
    "traffic",
    "dns",
    "dhcp",
    "bgp",
    "ospf",
    "vlan",
    "snmp",
    "ping",
    "icmp",
    "router",
    "switch",
    "tcp",
    "udp",
    "connection refused",
    "nic",
    "wan",
    "lan",
    "vpn",
    "flow",
    "flows",
    "jitter",
    "retransmission",
    "retransmissions",
    "unreachable",
    "probe",
    "blackbox",
];

const SYSTEM_WORDS: &[&str] = &[
    "cpu",
    "memory",
    "mem",
    "ram",
    "swap",
    "disk",
    "disks",
    "filesystem",
    "file system",
    "inode",
    "inodes",
    "load",
    "host",
    "node",
    "kernel",
    "oom",
    "oomkilled",
    "out of memory",
    "uptime",
    "reboot",
    "rebooted",
    "temperature",
    "fan",
    "power",
    "battery",
    "process",
    "processes",
    "systemd",
    "no space left",
    "disk full",
    "iowait",
    "raid",
    "smart",
    "ntp",
    "clock",
];

const APPLICATION_WORDS: &[&str] = &[
    "http",
    "https",
    "api",
    "5xx",
    "4xx",
    "500",
    "502",
    "503",
    "504",
    "request",
    "requests",
    "response",
    "endpoint",
    "application",
    "app",
    "service",
    "job",
    "jobs",
    "queue",
    "worker",
    "workers",
    "deployment",
    "deploy",
    "pod",
    "pods",
    "container",
    "containers",
    "kubernetes",
    "k8s",
    "exception",
    "exceptions",
    "error rate",
    "latency",
    "timeout",
    "cron",
    "backup",
    "target",
];

const CRITICAL: u8 = 1;
const WARNING: u8 = 2;
/// Bit of type `i` of [`TYPES`].
const fn type_bit(i: usize) -> u8 {
    4 << i
}

/// Keyword lookup: single words in a hash map; phrases by their first word, scanned
/// only when that word occurs.
struct Index {
    words: HashMap<&'static str, u8>,
    phrases: HashMap<&'static str, Vec<(&'static str, u8)>>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut idx = Index {
            words: HashMap::new(),
            phrases: HashMap::new(),
        };
        let lists: [(&[&'static str], u8); 7] = [
            (CRITICAL_WORDS, CRITICAL),
            (WARNING_WORDS, WARNING),
            (SECURITY_WORDS, type_bit(0)),
            (DATABASE_WORDS, type_bit(1)),
            (NETWORK_WORDS, type_bit(2)),
            (SYSTEM_WORDS, type_bit(3)),
            (APPLICATION_WORDS, type_bit(4)),
        ];
        for (list, bit) in lists {
            for w in list {
                if let Some((first, _)) = w.split_once(' ') {
                    let list = idx.phrases.entry(first).or_default();
                    match list.iter_mut().find(|(p, _)| p == w) {
                        Some((_, b)) => *b |= bit,
                        None => list.push((w, bit)),
                    }
                } else {
                    *idx.words.entry(w).or_default() |= bit;
                }
            }
        }
        idx
    })
}

/// Text split into lowercase words, camelCase and snake_case included
/// (`NodeFilesystemAlmostFull` → `node filesystem almost full`), and which keyword
/// lists it hits (each distinct keyword counts once).
#[derive(Debug, Default)]
pub struct Words {
    text: String,
    critical: bool,
    warning: bool,
    types: [usize; 5],
}

impl Words {
    /// Words of all `texts`.
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Words {
        let mut text = String::from(" ");
        for t in texts {
            push_words(t, &mut text);
        }
        let idx = index();
        let mut flags: Vec<u8> = Vec::new();
        let mut seen: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        seen.sort_unstable();
        seen.dedup();
        for w in seen {
            if let Some(f) = idx.words.get(w) {
                flags.push(*f);
            }
            for (p, f) in idx.phrases.get(w).into_iter().flatten() {
                if contains_word(&text, p) {
                    flags.push(*f);
                }
            }
        }
        let mut out = Words {
            text,
            ..Default::default()
        };
        for f in flags {
            out.critical |= f & CRITICAL != 0;
            out.warning |= f & WARNING != 0;
            for (i, n) in out.types.iter_mut().enumerate() {
                if f & type_bit(i) != 0 {
                    *n += 1;
                }
            }
        }
        out
    }

    /// Whether the word or phrase occurs.
    pub fn has(&self, word: &str) -> bool {
        contains_word(&self.text, word)
    }

    /// Whether any of `words` occurs.
    pub fn any(&self, words: &[&str]) -> bool {
        words.iter().any(|w| self.has(w))
    }
}

/// `text` (words between single spaces, with a space at each end) contains `word` as
/// whole words.
fn contains_word(text: &str, word: &str) -> bool {
    let bytes = text.as_bytes();
    let w = word.len();
    text.match_indices(word)
        .any(|(i, _)| i > 0 && bytes[i - 1] == b' ' && bytes.get(i + w).is_some_and(|b| *b == b' '))
}

fn push_words(text: &str, out: &mut String) {
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

/// Severity by the README's rules: `explicit`, else the `severity` label, else keywords.
pub fn severity(explicit: Option<Severity>, labels: &LabelSet, words: &Words) -> Severity {
    if let Some(s) = explicit {
        return s;
    }
    if let Some(s) = labels
        .get("severity")
        .and_then(|v| Severity::parse_lenient(v))
    {
        return s;
    }
    if words.critical {
        Severity::Critical
    } else if words.warning {
        Severity::Warning
    } else {
        Severity::Info
    }
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

/// Type by the README's rules.
pub fn alert_type(hint: Option<&str>, labels: &LabelSet, words: &Words) -> &'static str {
    if let Some(t) = hint.and_then(normalize_type) {
        return t;
    }
    for key in ["type", "category", "alert_type"] {
        if let Some(t) = labels.get(key).and_then(|v| normalize_type(v)) {
            return t;
        }
    }
    // The type with the most matching keywords; ties go to the earlier type.
    let mut best = (0, OTHER);
    for (i, t) in TYPES.iter().enumerate() {
        if words.types[i] > best.0 {
            best = (words.types[i], t);
        }
    }
    best.1
}

/// The words classification looks at: alert name, message, and the `job`, `service`,
/// `component` labels.
pub fn words_for(alertname: Option<&str>, message: &str, labels: &LabelSet) -> Words {
    let extra = ["job", "service", "component"]
        .into_iter()
        .filter_map(|k| labels.get(k).map(String::as_str));
    Words::of(alertname.into_iter().chain([message]).chain(extra))
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

    #[test]
    fn words_split_camel_and_snake_case() {
        let w = Words::of([
            "NodeFilesystemAlmostOutOfSpace",
            "HTTPRequests_total",
            "eth0",
        ]);
        assert_eq!(
            w.text,
            " node filesystem almost out of space http requests total eth0 "
        );
        assert!(w.has("filesystem"));
        assert!(w.has("out of space"));
        assert!(!w.has("files"));
    }

    #[test]
    fn severity_order_of_precedence() {
        let w = Words::of(["database is down"]);
        assert_eq!(
            severity(
                Some(Severity::Info),
                &labels(&[("severity", "critical")]),
                &w
            ),
            Severity::Info
        );
        assert_eq!(
            severity(None, &labels(&[("severity", "warn")]), &w),
            Severity::Warning
        );
        assert_eq!(severity(None, &LabelSet::new(), &w), Severity::Critical);
        let w = Words::of(["replication lag is high"]);
        assert_eq!(severity(None, &LabelSet::new(), &w), Severity::Warning);
        let w = Words::of(["nightly backup finished"]);
        assert_eq!(severity(None, &LabelSet::new(), &w), Severity::Info);
        // A label that names no severity falls through to keywords.
        let w = Words::of(["TargetDown"]);
        assert_eq!(
            severity(None, &labels(&[("severity", "purple")]), &w),
            Severity::Critical
        );
    }

    #[test]
    fn types() {
        let none = LabelSet::new();
        let t = |text: &str| alert_type(None, &none, &Words::of([text]));
        assert_eq!(t("Port scan detected from 10.0.0.1"), "security");
        assert_eq!(t("PostgresqlReplicationLag"), "database");
        assert_eq!(t("Interface eth0 packet loss 5%"), "network");
        assert_eq!(t("HighCpuUsage on web-1"), "system");
        assert_eq!(t("HTTP 5xx error rate above 5%"), "application");
        assert_eq!(t("something odd"), "other");
        assert_eq!(t("Disk full on db-1"), "system");
        assert_eq!(t("Database disk usage high"), "database");
        assert_eq!(
            alert_type(Some("Security"), &none, &Words::of(["cpu"])),
            "security"
        );
        assert_eq!(
            alert_type(None, &labels(&[("category", "db")]), &Words::of(["cpu"])),
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
