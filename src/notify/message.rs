//! Notification messages: the built-in Telegram HTML template, the data handed to
//! user templates, and the pluggable [`TemplateEngine`].
//!
//! Every piece of user text (labels, annotations, messages) is HTML-escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::webhook::webhook_payload;
use crate::dispatch::{AlertNotice, AlertState, Notification};

/// Renders a user template (a receiver's `template`) over the notification data
/// (Alertmanager's template data: `status`, `alerts`, `groupLabels`, `commonLabels`,
/// `commonAnnotations`, `externalURL`, `receiver`, `groupKey`). The rules' template
/// engine plugs in here so that notification templates get the same functions.
pub trait TemplateEngine: Send + Sync {
    /// Renders `template`; the output is Telegram HTML (the template escapes values).
    fn render(&self, template: &str, data: &serde_json::Value) -> Result<String, String>;
}

/// Escapes `&`, `<`, `>` and `"` for Telegram HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The marker of a severity.
pub fn severity_marker(severity: &str) -> &'static str {
    match crate::dispatch::severity_rank(severity) {
        3 => "🔴",
        2 => "🟠",
        1 => "🔵",
        _ => "⚪",
    }
}

/// Marker of resolved alerts.
pub const RESOLVED_MARKER: &str = "✅";
/// Marks alerts that flap (their notifications are held).
pub const FLAPPING_MARKER: &str = "🔁";

/// Labels never worth showing per alert.
const HIDDEN_LABELS: &[&str] = &["alertname", "severity"];

/// Builds messages; cheap to clone.
#[derive(Clone)]
pub struct MessageBuilder {
    external_url: String,
    tz: chrono_tz::Tz,
    engine: Option<Arc<dyn TemplateEngine>>,
}

impl MessageBuilder {
    /// A builder linking to `external_url` (no trailing slash), with an optional engine
    /// for user templates.
    pub fn new(external_url: &str, engine: Option<Arc<dyn TemplateEngine>>) -> Self {
        MessageBuilder {
            external_url: external_url.trim_end_matches('/').to_string(),
            tz: chrono_tz::Tz::UTC,
            engine,
        }
    }

    /// Shows times in `tz` (`notify.timezone`).
    pub fn with_timezone(mut self, tz: chrono_tz::Tz) -> Self {
        self.tz = tz;
        self
    }

    /// The zone times are shown in.
    pub fn timezone(&self) -> chrono_tz::Tz {
        self.tz
    }

    /// Whether user templates can be rendered.
    pub fn has_engine(&self) -> bool {
        self.engine.is_some()
    }

    /// The dashboard link of an alert: `{external_url}/alerts/{id}`.
    pub fn alert_url(&self, id: i64) -> String {
        format!("{}/alerts/{id}", self.external_url)
    }

    /// The message for `n`: the user template when given (and an engine is plugged
    /// in and it renders), else the built-in one.
    pub fn render(&self, n: &Notification, template: Option<&str>) -> String {
        if let (Some(t), Some(engine)) = (template, &self.engine) {
            let data = webhook_payload(n, &self.external_url);
            match engine.render(t, &data) {
                Ok(s) if !s.trim().is_empty() => return s,
                Ok(_) => {
                    tracing::warn!(receiver = %n.receiver, "template rendered empty text; using the built-in message")
                }
                Err(e) => {
                    tracing::warn!(receiver = %n.receiver, error = %e, "template failed; using the built-in message")
                }
            }
        }
        self.default_message(n, Utc::now())
    }

    /// The built-in message (at `now`, for the "since" durations): alerts that started
    /// flapping, then the changes (stable alerts' final states among them).
    pub fn default_message(&self, n: &Notification, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        if !n.flapping.is_empty() {
            self.flapping(&mut out, &n.flapping);
        }
        if !n.stable.is_empty() {
            let names: BTreeSet<&str> = n
                .alerts()
                .filter(|a| n.stable.contains(&a.fingerprint))
                .map(|a| a.alertname().unwrap_or(a.message.as_str()))
                .collect();
            let names: Vec<&str> = names.into_iter().collect();
            let _ = writeln!(
                out,
                "🟰 <b>STABLE AGAIN</b> · <b>{}</b> · flapping ended; its final state:",
                escape(&names.join(", "))
            );
        }
        if !n.firing.is_empty() || !n.resolved.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&self.changes_message(n, now));
        }
        out.trim_end().to_string()
    }

    fn flapping(&self, out: &mut String, alerts: &[AlertNotice]) {
        let _ = writeln!(
            out,
            "{FLAPPING_MARKER} <b>FLAPPING</b> · {} alert{} changed state too often; notifications are held until {} stable",
            alerts.len(),
            if alerts.len() == 1 { "" } else { "s" },
            if alerts.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        );
        for a in alerts {
            let labels = labels_line(&a.labels, HIDDEN_LABELS);
            let _ = writeln!(
                out,
                "{FLAPPING_MARKER} <b>{}</b> {} · now {} · <a href=\"{}\">Alert #{}</a>",
                escape(a.alertname().unwrap_or(&a.message)),
                labels,
                a.state.as_str(),
                escape(&self.alert_url(a.id)),
                a.id
            );
        }
    }

    /// The firing and resolved alerts of `n`.
    fn changes_message(&self, n: &Notification, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let all: Vec<&AlertNotice> = n.firing.iter().chain(&n.resolved).collect();
        let title = title_of(n);
        let common = n.common_labels();
        if n.status == AlertState::Resolved {
            let _ = write!(out, "{RESOLVED_MARKER} <b>RESOLVED</b>");
        } else {
            let worst = n
                .firing
                .iter()
                .max_by_key(|a| crate::dispatch::severity_rank(&a.severity))
                .map(|a| a.severity.as_str())
                .unwrap_or("");
            let _ = write!(out, "{} <b>FIRING</b>", severity_marker(worst));
        }
        let _ = write!(out, " · <b>{}</b>", escape(&title));
        if all.len() > 1 {
            let _ = write!(out, " · {} alerts", all.len());
            if !n.firing.is_empty() && !n.resolved.is_empty() {
                let _ = write!(
                    out,
                    " ({} firing, {} resolved)",
                    n.firing.len(),
                    n.resolved.len()
                );
            }
        }
        out.push('\n');

        if all.len() == 1 {
            self.single(&mut out, all[0], now);
            return out.trim_end().to_string();
        }

        // Labels shared by the whole group, once.
        let shared = labels_line(&common, &[]);
        if !shared.is_empty() {
            let _ = writeln!(out, "{shared}");
        }
        let summary = common_summary(&all);
        if let Some(s) = &summary {
            let _ = writeln!(out, "{}", escape(s));
        }
        for a in &n.firing {
            out.push('\n');
            self.item(&mut out, a, &common, summary.is_none(), now);
        }
        if !n.resolved.is_empty() {
            let _ = write!(out, "\n{RESOLVED_MARKER} <b>Resolved</b>");
            if !n.firing.is_empty() {
                let _ = write!(out, " ({})", n.resolved.len());
            }
            out.push('\n');
            for a in &n.resolved {
                self.item(&mut out, a, &common, summary.is_none(), now);
            }
        }
        out.trim_end().to_string()
    }

    fn single(&self, out: &mut String, a: &AlertNotice, now: DateTime<Utc>) {
        let summary = summary_of(a);
        if !summary.is_empty() {
            let _ = writeln!(out, "{}", escape(&summary));
        }
        if let Some(d) = a.annotations.get("description")
            && d != &summary
            && !d.is_empty()
        {
            let _ = writeln!(out, "<i>{}</i>", escape(d));
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "<b>Severity:</b> {} {}",
            severity_marker(&a.severity),
            escape(&a.severity)
        );
        let labels = labels_line(&a.labels, HIDDEN_LABELS);
        if !labels.is_empty() {
            let _ = writeln!(out, "<b>Labels:</b> {labels}");
        }
        if let Some(v) = value_of(a) {
            let _ = writeln!(out, "<b>Value:</b> <code>{}</code>", escape(v));
        }
        if a.state == AlertState::Resolved {
            let end = a.ends_at.unwrap_or(now);
            let _ = writeln!(
                out,
                "<b>Resolved after</b> {} (fired {}, resolved {})",
                human_duration(end - a.starts_at),
                timestamp(a.starts_at, self.tz),
                timestamp(end, self.tz)
            );
        } else {
            let _ = writeln!(
                out,
                "<b>Since:</b> {} ({} ago)",
                timestamp(a.starts_at, self.tz),
                human_duration(now - a.starts_at)
            );
        }
        if let Some(by) = &a.acknowledged_by {
            let _ = writeln!(out, "<b>Acknowledged by</b> {}", escape(by));
        }
        let mut links = vec![format!(
            "<a href=\"{}\">Alert #{}</a>",
            escape(&self.alert_url(a.id)),
            a.id
        )];
        if let Some(r) = a.annotations.get("runbook_url").filter(|r| is_http(r)) {
            links.push(format!("<a href=\"{}\">Runbook</a>", escape(r)));
        }
        if let Some(g) = a.generator_url.as_deref().filter(|g| is_http(g)) {
            links.push(format!("<a href=\"{}\">Source</a>", escape(g)));
        }
        let _ = writeln!(out, "{}", links.join(" · "));
    }

    fn item(
        &self,
        out: &mut String,
        a: &AlertNotice,
        common: &BTreeMap<String, String>,
        with_summary: bool,
        now: DateTime<Utc>,
    ) {
        let marker = if a.state == AlertState::Resolved {
            RESOLVED_MARKER
        } else {
            severity_marker(&a.severity)
        };
        let distinct: BTreeMap<String, String> = a
            .labels
            .iter()
            .filter(|(k, v)| common.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let labels = labels_line(&distinct, HIDDEN_LABELS);
        let _ = write!(out, "{marker} <b>{}</b>", escape(&a.severity));
        if !common.contains_key("alertname")
            && let Some(name) = a.alertname()
        {
            let _ = write!(out, " · {}", escape(name));
        }
        if !labels.is_empty() {
            let _ = write!(out, " · {labels}");
        }
        out.push('\n');
        if with_summary {
            let s = summary_of(a);
            if !s.is_empty() {
                let _ = writeln!(out, "{}", escape(&s));
            }
        }
        let mut facts = Vec::new();
        if let Some(v) = value_of(a) {
            facts.push(format!("value <code>{}</code>", escape(v)));
        }
        if a.state == AlertState::Resolved {
            let end = a.ends_at.unwrap_or(now);
            facts.push(format!(
                "resolved after {}",
                human_duration(end - a.starts_at)
            ));
            if let Some(by) = &a.acknowledged_by {
                facts.push(format!("acknowledged by {}", escape(by)));
            }
        } else {
            facts.push(format!(
                "since {} ({})",
                timestamp(a.starts_at, self.tz),
                human_duration(now - a.starts_at)
            ));
        }
        facts.push(format!(
            "<a href=\"{}\">#{}</a>",
            escape(&self.alert_url(a.id)),
            a.id
        ));
        let _ = writeln!(out, "{}", facts.join(" · "));
    }
}

fn is_http(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The group's name: its alertname, else the common alertname, else the first message.
pub fn title_of(n: &Notification) -> String {
    if let Some(name) = n.group_labels.get("alertname") {
        return name.clone();
    }
    let all: Vec<&AlertNotice> = n.firing.iter().chain(&n.resolved).collect();
    if let Some(name) = n.common_labels().get("alertname") {
        return name.clone();
    }
    if all.len() == 1 {
        if let Some(name) = all[0].alertname() {
            return name.to_string();
        }
        let s = summary_of(all[0]);
        return truncate(&s, 80);
    }
    if n.group_labels.is_empty() {
        "alerts".to_string()
    } else {
        crate::dispatch::labels_key(&n.group_labels)
    }
}

/// `summary` annotation, else the message, else `description`.
pub fn summary_of(a: &AlertNotice) -> String {
    a.annotations
        .get("summary")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| (!a.message.is_empty()).then(|| a.message.clone()))
        .or_else(|| a.annotations.get("description").cloned())
        .unwrap_or_default()
}

fn common_summary(all: &[&AlertNotice]) -> Option<String> {
    let first = summary_of(all.first()?);
    (!first.is_empty() && all.iter().all(|a| summary_of(a) == first)).then_some(first)
}

fn value_of(a: &AlertNotice) -> Option<&str> {
    a.value
        .as_deref()
        .or_else(|| a.annotations.get("value").map(String::as_str))
        .filter(|v| !v.is_empty())
}

/// `k=<code>v</code>, …`, skipping `hidden` and internal (`__`) labels.
fn labels_line(labels: &BTreeMap<String, String>, hidden: &[&str]) -> String {
    labels
        .iter()
        .filter(|(k, _)| !hidden.contains(&k.as_str()) && !k.starts_with("__"))
        .map(|(k, v)| format!("{}=<code>{}</code>", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// `2025-01-02 10:04:05 UTC`, or in `tz`: `2025-01-02 13:04:05 MSK`.
pub fn timestamp(t: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `3d 4h`, `2h 5m`, `15m`, `42s`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, hours, mins) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::split::{TELEGRAM_LIMIT, split_html, tests::assert_valid_html, tg_len};

    fn notification(firing: Vec<AlertNotice>, resolved: Vec<AlertNotice>) -> Notification {
        let status = if firing.is_empty() {
            AlertState::Resolved
        } else {
            AlertState::Firing
        };
        Notification {
            group_key: "{}:{alertname=\"HighCpu\"}".into(),
            receiver: "telegram".into(),
            group_labels: BTreeMap::from([("alertname".into(), "HighCpu".into())]),
            status,
            firing,
            resolved,
            flapping: Vec::new(),
            stable: Default::default(),
            seq: 1,
            at_ms: 0,
            episode_ms: 0,
        }
    }

    fn alert(id: i64, instance: &str) -> AlertNotice {
        let mut a = AlertNotice::test(id, &format!("fp{id}"), "HighCpu");
        a.severity = "critical".into();
        a.labels.insert("instance".into(), instance.into());
        a.labels.insert("job".into(), "node".into());
        a.annotations
            .insert("summary".into(), format!("CPU > 90% on {instance}"));
        a.value = Some("93.2".into());
        a.starts_at = Utc::now() - chrono::Duration::minutes(15);
        a
    }

    #[test]
    fn single_alert_message() {
        let b = MessageBuilder::new("https://wp.example/", None);
        let mut a = alert(12, "web-1 <prod>");
        a.annotations
            .insert("runbook_url".into(), "https://runbooks/cpu".into());
        let text = b.default_message(&notification(vec![a], vec![]), Utc::now());
        assert!(
            text.starts_with("🔴 <b>FIRING</b> · <b>HighCpu</b>\n"),
            "{text}"
        );
        assert!(
            text.contains("CPU &gt; 90% on web-1 &lt;prod&gt;"),
            "{text}"
        );
        assert!(
            text.contains("instance=<code>web-1 &lt;prod&gt;</code>"),
            "{text}"
        );
        assert!(text.contains("<b>Value:</b> <code>93.2</code>"), "{text}");
        assert!(text.contains("(15m ago)"), "{text}");
        assert!(
            text.contains("<a href=\"https://wp.example/alerts/12\">Alert #12</a>"),
            "{text}"
        );
        assert!(text.contains("Runbook"));
        assert!(
            !text.contains("alertname="),
            "alertname is the title: {text}"
        );
        assert_valid_html(&text);
    }

    #[test]
    fn group_and_resolved_messages() {
        let b = MessageBuilder::new("http://x", None);
        let mut r = alert(3, "web-3");
        r.state = AlertState::Resolved;
        r.ends_at = Some(Utc::now());
        let n = notification(vec![alert(1, "web-1"), alert(2, "web-2")], vec![r.clone()]);
        let text = b.default_message(&n, Utc::now());
        assert!(text.contains("· 3 alerts (2 firing, 1 resolved)"), "{text}");
        assert!(
            text.contains("job=<code>node</code>"),
            "common labels once: {text}"
        );
        assert_eq!(text.matches("job=").count(), 1, "{text}");
        assert!(text.contains("instance=<code>web-2</code>"));
        assert!(text.contains("✅ <b>Resolved</b> (1)"), "{text}");
        assert!(text.contains("resolved after 15m"), "{text}");
        assert_valid_html(&text);

        let text = b.default_message(&notification(vec![], vec![r]), Utc::now());
        assert!(
            text.starts_with("✅ <b>RESOLVED</b> · <b>HighCpu</b>"),
            "{text}"
        );
        assert!(text.contains("<b>Resolved after</b> 15m"), "{text}");
    }

    #[test]
    fn resolved_message_tells_value_times_in_the_zone_and_who_acked() {
        let msk = crate::rules::template::time::parse_zone("Europe/Moscow").unwrap();
        let b = MessageBuilder::new("http://x", None).with_timezone(msk);
        let mut r = alert(4, "web-4");
        r.state = AlertState::Resolved;
        r.starts_at = "2025-03-04T05:00:00Z".parse().unwrap();
        r.ends_at = Some("2025-03-04T06:30:00Z".parse().unwrap());
        r.value = Some("41.5".into());
        r.acknowledged_by = Some("alice".into());
        let text = b.default_message(&notification(vec![], vec![r.clone()]), Utc::now());
        assert!(text.contains("<b>Value:</b> <code>41.5</code>"), "{text}");
        assert!(
            text.contains("<b>Resolved after</b> 1h 30m (fired 2025-03-04 08:00:00 MSK, resolved 2025-03-04 09:30:00 MSK)"),
            "{text}"
        );
        assert!(text.contains("<b>Acknowledged by</b> alice"), "{text}");
        assert!(!text.contains("UTC"), "{text}");
        let n = notification(vec![alert(5, "web-5")], vec![r]);
        let text = b.default_message(&n, Utc::now());
        assert!(text.contains("acknowledged by alice"), "{text}");
        assert!(
            text.contains(" MSK ("),
            "firing times in the zone too: {text}"
        );
    }

    #[test]
    fn ten_thousand_character_group_splits() {
        let b = MessageBuilder::new("http://x", None);
        let alerts: Vec<AlertNotice> = (0..120)
            .map(|i| alert(i, &format!("host-{i:03}.example.com:9100 & <co>")))
            .collect();
        let text = b.default_message(&notification(alerts, vec![]), Utc::now());
        assert!(tg_len(&text) > 10_000, "{}", tg_len(&text));
        let parts = split_html(&text, TELEGRAM_LIMIT);
        assert!(parts.len() >= 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(tg_len(p) < 4096);
            assert!(p.starts_with(&format!("({}/{})", i + 1, parts.len())));
            assert_valid_html(p);
        }
    }

    struct Upper;
    impl TemplateEngine for Upper {
        fn render(&self, t: &str, data: &serde_json::Value) -> Result<String, String> {
            if t == "fail" {
                return Err("boom".into());
            }
            Ok(format!("{t}:{}", data["status"].as_str().unwrap_or("")))
        }
    }

    #[test]
    fn user_template_via_engine_with_fallback() {
        let n = notification(vec![alert(1, "a")], vec![]);
        let b = MessageBuilder::new("http://x", Some(Arc::new(Upper)));
        assert_eq!(b.render(&n, Some("T")), "T:firing");
        assert!(b.render(&n, Some("fail")).contains("FIRING"));
        let b = MessageBuilder::new("http://x", None);
        assert!(
            b.render(&n, Some("T")).contains("FIRING"),
            "no engine: built-in"
        );
    }
}
