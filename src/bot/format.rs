//! Bot replies as Telegram HTML.

use std::fmt::Write;

use chrono::Utc;

use super::{AlertDetailInfo, AlertInfo, ReportInfo, SilenceInfo, StatusInfo};
use crate::notify::message::{RESOLVED_MARKER, escape, human_duration, severity_marker, timestamp};

fn name_of(a: &AlertInfo) -> String {
    a.alertname.clone().unwrap_or_else(|| {
        let m: String = a.message.chars().take(60).collect();
        if m.is_empty() { "alert".into() } else { m }
    })
}

fn marker(a: &AlertInfo) -> &'static str {
    if a.state == "resolved" {
        RESOLVED_MARKER
    } else {
        severity_marker(&a.severity)
    }
}

/// `/alerts`.
pub fn alert_list(alerts: &[AlertInfo], severity: Option<&str>, external_url: &str) -> String {
    let scope = severity.map(|s| format!(" ({s})")).unwrap_or_default();
    if alerts.is_empty() {
        return format!("{RESOLVED_MARKER} No firing alerts{}.", escape(&scope));
    }
    let mut out = format!(
        "<b>{} firing alert(s){}</b>\n",
        alerts.len(),
        escape(&scope)
    );
    for a in alerts {
        let _ = write!(
            out,
            "\n{} <a href=\"{}/alerts/{}\">#{}</a> <b>{}</b>",
            marker(a),
            escape(external_url),
            a.id,
            a.id,
            escape(&name_of(a))
        );
        if let Some(inst) = a.labels.get("instance") {
            let _ = write!(out, " · <code>{}</code>", escape(inst));
        }
        let _ = write!(out, " · {}", human_duration(Utc::now() - a.starts_at));
        if a.acknowledged_by.is_some() {
            out.push_str(" · ✔ acked");
        }
        if a.silenced {
            out.push_str(" · 🔕");
        }
        out.push('\n');
        if !a.message.is_empty() && a.alertname.is_some() {
            let _ = writeln!(out, "{}", escape(&a.message));
        }
    }
    out.trim_end().to_string()
}

/// `/alert ID`.
pub fn alert_detail(d: &AlertDetailInfo, external_url: &str, tz: chrono_tz::Tz) -> String {
    let a = &d.alert;
    let mut out = format!(
        "{} <b>#{} {}</b> — {}\n",
        marker(a),
        a.id,
        escape(&name_of(a)),
        escape(&a.state)
    );
    if !a.message.is_empty() {
        let _ = writeln!(out, "{}", escape(&a.message));
    }
    let _ = writeln!(
        out,
        "\n<b>Severity:</b> {} · <i>{}</i>",
        escape(&a.severity),
        escape(&d.severity_reason)
    );
    let _ = writeln!(
        out,
        "<b>Type:</b> {} · <i>{}</i>",
        escape(&d.alert_type),
        escape(&d.type_reason)
    );
    if d.flapping {
        out.push_str("🔁 flapping: notifications held until it is stable\n");
    }
    for (k, v) in &a.labels {
        if k != "alertname" {
            let _ = writeln!(out, "{}=<code>{}</code>", escape(k), escape(v));
        }
    }
    for (k, v) in &a.annotations {
        let _ = writeln!(out, "<i>{}</i>: {}", escape(k), escape(v));
    }
    let _ = writeln!(
        out,
        "<b>Since:</b> {} · seen {} time(s)",
        timestamp(a.starts_at, tz),
        a.count
    );
    if let Some(end) = a.ends_at {
        let _ = writeln!(out, "<b>Resolved:</b> {}", timestamp(end, tz));
    }
    if let Some(by) = &a.acknowledged_by {
        let _ = writeln!(out, "<b>Acknowledged by</b> {}", escape(by));
    }
    if a.silenced {
        out.push_str("🔕 silenced\n");
    }
    if !d.events.is_empty() {
        out.push_str("\n<b>Events</b>\n");
        for e in d.events.iter().rev().take(15).rev() {
            let _ = write!(out, "{} · {}", timestamp(e.at, tz), escape(&e.kind));
            if let Some(detail) = &e.detail {
                let _ = write!(out, " · {}", escape(detail));
            }
            out.push('\n');
        }
    }
    let _ = write!(
        out,
        "<a href=\"{}/alerts/{}\">Open in the dashboard</a>",
        escape(external_url),
        a.id
    );
    out
}

/// The answer to `/ack`.
pub fn acked(a: &AlertInfo, by: &str) -> String {
    format!(
        "✔ Acknowledged <b>#{} {}</b> by {} — no re-notification until it resolves or escalates.",
        a.id,
        escape(&name_of(a)),
        escape(by)
    )
}

/// The answer to `/silence`.
pub fn silenced(s: &SilenceInfo, tz: chrono_tz::Tz) -> String {
    let matchers: Vec<String> = s
        .matchers
        .iter()
        .map(|m| {
            let op = match (m.is_regex, m.is_equal) {
                (false, true) => "=",
                (false, false) => "!=",
                (true, true) => "=~",
                (true, false) => "!~",
            };
            format!(
                "{}{}{}",
                m.name,
                op,
                crate::silence::matcher::quote(&m.value)
            )
        })
        .collect();
    let mut out = format!(
        "🔕 Silence <code>{}</code> until {}\n<code>{{{}}}</code>",
        escape(&s.id),
        timestamp(s.ends_at, tz),
        escape(&matchers.join(", "))
    );
    if let Some(c) = &s.comment {
        let _ = write!(out, "\n{}", escape(c));
    }
    let _ = write!(out, "\nby {}", escape(&s.created_by));
    out
}

/// `/report`.
pub fn report(r: &ReportInfo, tz: chrono_tz::Tz) -> String {
    let to = Utc::now();
    let from = to - chrono::Duration::from_std(r.window).unwrap_or_default();
    let mut out = format!(
        "📊 <b>Report of the last {}</b>\n<i>{} – {}</i>\n\n<b>{}</b> alerts · {} firing · {} resolved\n",
        humantime::format_duration(r.window),
        timestamp(from, tz),
        timestamp(to, tz),
        r.total,
        r.firing,
        r.resolved
    );
    if let Some(m) = r.mean_time_to_resolve {
        let _ = writeln!(
            out,
            "Mean time to resolve: {}",
            human_duration(chrono::Duration::from_std(m).unwrap_or_default())
        );
    }
    let section = |out: &mut String, title: &str, items: &[(String, u64)]| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(out, "\n<b>{title}</b>");
        for (k, n) in items.iter().take(10) {
            let _ = writeln!(out, "{n} × {}", escape(k));
        }
    };
    section(&mut out, "By severity", &r.by_severity);
    section(&mut out, "Top alerts", &r.top_alerts);
    section(&mut out, "Noisiest sources", &r.noisiest_sources);
    out.trim_end().to_string()
}

/// `/status`.
pub fn status(s: &StatusInfo, depths: &[(String, i64)], groups: usize) -> String {
    let ok = |b: bool| if b { "✅" } else { "❌" };
    let mut out = format!(
        "<b>watchpost {}</b>\n{} service\n{} database\n",
        escape(&s.version),
        ok(s.healthy),
        ok(s.database)
    );
    let _ = writeln!(
        out,
        "{} rules: {} loaded, {} failing",
        ok(s.rules_failing == 0),
        s.rules_loaded,
        s.rules_failing
    );
    if let Some(c) = &s.cluster {
        let alive = c.nodes.iter().filter(|n| n.alive).count();
        let leader = c.leader.as_deref().unwrap_or("none");
        let _ = writeln!(
            out,
            "{} leader: <code>{}</code> (epoch {}), this node <code>{}</code>, {alive}/{} nodes alive",
            ok(c.leader.is_some()),
            escape(leader),
            c.epoch,
            escape(&c.self_id),
            c.nodes.len()
        );
    }
    let _ = writeln!(out, "🔔 firing alerts: {}", s.firing_alerts);
    let _ = writeln!(out, "🗂 notification groups: {groups}");
    let pending: i64 = depths.iter().map(|(_, n)| n).sum();
    let _ = write!(out, "📮 notification queue: {pending}");
    for (r, n) in depths {
        let _ = write!(out, "\n  {}: {n}", escape(r));
    }
    out
}

/// `/agents`: one line per agent, down ones first, then disconnected, then connected.
pub fn agents(list: &[crate::agent::registry::AgentView]) -> String {
    if list.is_empty() {
        return "No agents. Run <code>watchpost agent --server URL --token T --name NAME</code> \
                on a host to watch it."
            .into();
    }
    let rank = |a: &crate::agent::registry::AgentView| match (a.down, a.connected) {
        (true, _) => 0,
        (false, false) => 1,
        (false, true) => 2,
    };
    let mut sorted: Vec<&crate::agent::registry::AgentView> = list.iter().collect();
    sorted.sort_by_key(|a| (rank(a), a.name.clone()));
    let down = list.iter().filter(|a| a.down).count();
    let mut out = format!("<b>Agents</b> ({}, {down} down)", list.len());
    const SHOWN: usize = 40;
    let more = sorted.len().saturating_sub(SHOWN);
    for a in sorted.into_iter().take(SHOWN) {
        let (icon, state) = match rank(a) {
            0 => ("🔴", "down"),
            1 => ("🟠", "disconnected"),
            _ => ("🟢", "connected"),
        };
        let when = if a.connected {
            a.connected_since.as_deref().map(|t| format!("since {t}"))
        } else {
            a.last_seen.as_deref().map(|t| format!("last seen {t}"))
        };
        out.push_str(&format!(
            "\n{icon} <b>{}</b> — {state}{} · {}",
            escape(&a.name),
            when.map(|w| format!(" {w}")).unwrap_or_default(),
            escape(&a.host)
        ));
    }
    if more > 0 {
        out.push_str(&format!("\n… and {more} more (GET /api/v1/agents)"));
    }
    out
}

/// `/heartbeats`: one line per heartbeat, the ones needing attention first.
pub fn heartbeats(list: &[crate::heartbeat::Heartbeat]) -> String {
    use crate::heartbeat::Status;
    if list.is_empty() {
        return "No heartbeats. Add <code>[[heartbeats]]</code> or ping \
                <code>/api/v1/heartbeats/NAME?period=1h</code>."
            .into();
    }
    let rank = |s: Status| match s {
        Status::Down | Status::Failed => 0,
        Status::Late => 1,
        Status::New => 2,
        Status::Up => 3,
    };
    let mut sorted: Vec<&crate::heartbeat::Heartbeat> = list.iter().collect();
    sorted.sort_by_key(|h| (rank(h.status), h.name.clone()));
    let mut out = format!("<b>Heartbeats</b> ({})", list.len());
    // Telegram's limit is 4096 characters: the first ones (those needing attention).
    const SHOWN: usize = 40;
    let more = sorted.len().saturating_sub(SHOWN);
    for h in sorted.into_iter().take(SHOWN) {
        let icon = match h.status {
            Status::Down | Status::Failed => "🔴",
            Status::Late => "🟠",
            Status::New => "⚪",
            Status::Up => "🟢",
        };
        let period =
            humantime::format_duration(std::time::Duration::from_millis(h.period_ms.max(0) as u64));
        let last = h.last_ping_ms.map_or("never pinged".to_string(), |t| {
            format!("last ping {}", crate::heartbeat::rfc3339(t))
        });
        out.push_str(&format!(
            "\n{icon} <b>{}</b> — {} · every {period} · {last}",
            escape(&h.name),
            h.status.as_str()
        ));
    }
    if more > 0 {
        out.push_str(&format!("\n… and {more} more (GET /api/v1/heartbeats)"));
    }
    out
}

#[cfg(test)]
mod agent_tests {
    use crate::agent::registry::AgentView;

    fn view(name: &str, connected: bool, down: bool) -> AgentView {
        AgentView {
            name: name.into(),
            host: format!("{name}.example<org>"),
            version: "0.1.0".into(),
            address: "10.0.0.1:5000".into(),
            connected,
            connected_since: connected.then(|| "2026-12-07T10:00:00Z".into()),
            last_seen: Some("2026-12-07T10:05:00Z".into()),
            samples_received: 10,
            down,
            node: None,
        }
    }

    #[test]
    fn agents_list_down_first_escaped() {
        let text = super::agents(&[
            view("a-up", true, false),
            view("b-gone", false, false),
            view("c-down", false, true),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "<b>Agents</b> (3, 1 down)");
        assert!(
            lines[1].starts_with("🔴 <b>c-down</b> — down last seen 2026-12-07T10:05:00Z"),
            "{text}"
        );
        assert!(lines[2].contains("b-gone</b> — disconnected"), "{text}");
        assert!(
            lines[3].contains("a-up</b> — connected since 2026-12-07T10:00:00Z"),
            "{text}"
        );
        assert!(text.contains("a-up.example&lt;org&gt;"), "{text}");
        assert!(super::agents(&[]).contains("watchpost agent"));
    }
}
