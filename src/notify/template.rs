//! Receiver templates: a receiver's `template` is a Go template run by the rules'
//! template engine ([`crate::rules::template`]) over Alertmanager's notification data,
//! with the same functions as rule templates plus Alertmanager's (`join`, `trimSpace`,
//! `stringSlice`, `since`).
//!
//! The data (`.`) is Alertmanager's `template.Data`:
//! `.Receiver`, `.Status` (`firing`/`resolved`), `.Alerts` (with `.Alerts.Firing` and
//! `.Alerts.Resolved`), `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`
//! (key/value maps with `.SortedPairs`, `.Names`, `.Values`, `.Remove`),
//! `.ExternalURL`, `.GroupKey`. Each alert has `.Status`, `.Labels`, `.Annotations`,
//! `.StartsAt`, `.EndsAt` (times), `.GeneratorURL`, `.Fingerprint`, and watchpost's
//! `.ID`, `.Severity`, `.Value` and `.URL` (its dashboard link).
//!
//! What actions print is HTML-escaped (Telegram HTML); the template's own text is not,
//! so it carries the markup. `safeHtml` passes trusted HTML through. The result must be
//! HTML Telegram accepts (its tags only, balanced); otherwise rendering fails and the
//! built-in message is sent instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;

use super::message::{TemplateEngine, escape};
use crate::rules::template::{Context, LabelMap, Object, Template, Value, ZERO_TIME};

/// Tags Telegram's HTML parse mode accepts.
const TELEGRAM_TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Most distinct templates kept parsed.
const CACHE_MAX: usize = 64;

/// The Go-template engine for receiver templates. Cheap to share; parsed templates are
/// cached by source.
pub struct GoTemplates {
    external_url: String,
    timezone: chrono_tz::Tz,
    cache: Mutex<HashMap<String, Arc<Template>>>,
}

impl GoTemplates {
    /// An engine whose `externalURL`/`pathPrefix` functions use `external_url`.
    pub fn new(external_url: &str) -> GoTemplates {
        GoTemplates {
            external_url: external_url.trim_end_matches('/').to_string(),
            timezone: chrono_tz::Tz::UTC,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The zone of `.Local` in templates (`notify.timezone`).
    pub fn with_timezone(mut self, tz: chrono_tz::Tz) -> Self {
        self.timezone = tz;
        self
    }

    fn parsed(&self, source: &str) -> Result<Arc<Template>, String> {
        if let Ok(cache) = self.cache.lock()
            && let Some(t) = cache.get(source)
        {
            return Ok(t.clone());
        }
        let t = Arc::new(parse(source)?);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(source.to_string(), t.clone());
        }
        Ok(t)
    }
}

/// Parses a receiver template (only `$` is predefined); the error names the line.
pub fn parse(source: &str) -> Result<Template, String> {
    Template::parse_with_vars(source, &["$"]).map_err(|e| e.to_string())
}

impl TemplateEngine for GoTemplates {
    fn render(&self, template: &str, data: &Json) -> Result<String, String> {
        let t = self.parsed(template)?;
        let ctx = Context {
            external_url: &self.external_url,
            query: None,
            escape: Some(escape),
            timezone: self.timezone,
        };
        let out = t
            .execute_value(&ctx, template_data(data))
            .map_err(|e| e.to_string())?;
        check_telegram_html(&out)?;
        Ok(out)
    }
}

/// Alertmanager's template data from the webhook payload (see the module docs).
pub fn template_data(payload: &Json) -> Value {
    let alerts: Vec<Value> = payload["alerts"]
        .as_array()
        .map(|a| a.iter().map(alert_data).collect())
        .unwrap_or_default();
    let data = Object::new("*template.Data")
        .with("Receiver", string(&payload["receiver"]))
        .with("Status", string(&payload["status"]))
        .with("Alerts", Value::List(Arc::new(alerts)))
        .with("GroupLabels", kv(&payload["groupLabels"]))
        .with("CommonLabels", kv(&payload["commonLabels"]))
        .with("CommonAnnotations", kv(&payload["commonAnnotations"]))
        .with("ExternalURL", string(&payload["externalURL"]))
        .with("GroupKey", string(&payload["groupKey"]))
        .with(
            "TruncatedAlerts",
            Value::Int(payload["truncatedAlerts"].as_i64().unwrap_or(0)),
        );
    Value::Object(Arc::new(data))
}

fn alert_data(a: &Json) -> Value {
    let value = match &a["value"] {
        Json::Null => Value::Str(String::new()),
        other => string(other),
    };
    Value::Object(Arc::new(
        Object::new("template.Alert")
            .with("Status", string(&a["status"]))
            .with("Labels", kv(&a["labels"]))
            .with("Annotations", kv(&a["annotations"]))
            .with("StartsAt", time(&a["startsAt"]))
            .with("EndsAt", time(&a["endsAt"]))
            .with("GeneratorURL", string(&a["generatorURL"]))
            .with("Fingerprint", string(&a["fingerprint"]))
            .with("ID", Value::Int(a["id"].as_i64().unwrap_or(0)))
            .with("Severity", string(&a["severity"]))
            .with("Value", value)
            .with("URL", string(&a["url"])),
    ))
}

fn string(v: &Json) -> Value {
    Value::Str(match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    })
}

fn kv(v: &Json) -> Value {
    let map: LabelMap = v
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Json::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default();
    Value::Kv(Arc::new(map))
}

/// An RFC 3339 time; Go's zero time for `0001-01-01T00:00:00Z` or anything unparsable.
fn time(v: &Json) -> Value {
    let ns = v
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(ZERO_TIME);
    Value::Time(ns)
}

/// Checks that `html` is something Telegram's HTML parse mode accepts: only its tags,
/// balanced, and every `&` an entity.
pub fn check_telegram_html(html: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(['<', '&']) {
        let tail = &rest[i..];
        if tail.starts_with('&') {
            let end = tail
                .find(';')
                .filter(|&e| e > 1 && e <= 10)
                .ok_or_else(|| format!("bare '&' at {:?} (write &amp;)", snippet(tail)))?;
            let name = &tail[1..end];
            let ok = if let Some(num) = name.strip_prefix('#') {
                match num.strip_prefix(['x', 'X']) {
                    Some(hex) => !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
                    None => !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()),
                }
            } else {
                matches!(name, "lt" | "gt" | "amp" | "quot")
            };
            if !ok {
                return Err(format!(
                    "unsupported entity &{name}; (Telegram knows &lt; &gt; &amp; &quot; and numeric ones)"
                ));
            }
            rest = &tail[end + 1..];
            continue;
        }
        let end = tail
            .find('>')
            .ok_or_else(|| format!("unclosed tag at {:?}", snippet(tail)))?;
        let inner = tail[1..end].trim();
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            match open.pop() {
                Some(o) if o == name => {}
                Some(o) => return Err(format!("</{name}> closes <{o}>")),
                None => return Err(format!("</{name}> without an opening tag")),
            }
        } else {
            let name: String = inner
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect::<String>()
                .to_ascii_lowercase();
            if !TELEGRAM_TAGS.contains(&name.as_str()) {
                return Err(format!(
                    "unsupported tag <{name}> (Telegram HTML allows {}; write &lt; for a literal '<')",
                    TELEGRAM_TAGS.join(", ")
                ));
            }
            open.push(name);
        }
        rest = &tail[end + 1..];
    }
    match open.last() {
        Some(o) => Err(format!("<{o}> is never closed")),
        None => Ok(()),
    }
}

fn snippet(s: &str) -> String {
    s.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::dispatch::{AlertNotice, AlertState, Notification};
    use crate::notify::message::MessageBuilder;

    fn alert(id: i64, instance: &str, state: AlertState) -> AlertNotice {
        let mut a = AlertNotice::test(id, &format!("fp{id}"), "HighCpu");
        a.severity = "critical".into();
        a.state = state;
        a.labels.insert("instance".into(), instance.into());
        a.labels.insert("job".into(), "node".into());
        a.annotations
            .insert("summary".into(), format!("CPU high on {instance}"));
        a.value = Some("0.9731".into());
        a.starts_at = Utc::now() - chrono::Duration::minutes(90);
        if state == AlertState::Resolved {
            a.ends_at = Some(Utc::now());
        }
        a
    }

    fn notification(firing: Vec<AlertNotice>, resolved: Vec<AlertNotice>) -> Notification {
        Notification {
            group_key: "{}:{alertname=\"HighCpu\"}".into(),
            receiver: "ops".into(),
            group_labels: BTreeMap::from([("alertname".into(), "HighCpu".into())]),
            status: if firing.is_empty() {
                AlertState::Resolved
            } else {
                AlertState::Firing
            },
            firing,
            resolved,
            flapping: Vec::new(),
            stable: Default::default(),
            seq: 1,
            at_ms: 0,
            episode_ms: 0,
        }
    }

    fn render(template: &str, n: &Notification) -> Result<String, String> {
        let data = crate::notify::webhook::webhook_payload(n, "https://wp.example");
        GoTemplates::new("https://wp.example").render(template, &data)
    }

    fn group() -> Notification {
        notification(
            vec![
                alert(1, "web-1", AlertState::Firing),
                alert(2, "web-2 <b>&", AlertState::Firing),
            ],
            vec![alert(3, "web-3", AlertState::Resolved)],
        )
    }

    #[test]
    fn alertmanager_data_with_range_if_and_functions() {
        let t = r#"{{ if eq .Status "firing" }}🔥{{ else }}✅{{ end }} <b>{{ .CommonLabels.alertname | toUpper }}</b> ({{ len .Alerts.Firing }} firing, {{ len .Alerts.Resolved }} resolved, {{ len .Alerts }} in all)
{{ range .Alerts.Firing }}• {{ .Labels.instance }}: {{ .Annotations.summary }} = {{ .Value | humanizePercentage }} <a href="{{ .URL }}">#{{ .ID }}</a>
{{ end }}{{ range $i, $a := .Alerts.Resolved }}{{ $i }}:{{ $a.Labels.instance | title }} {{ $a.Status }}{{ end }}
group {{ range .GroupLabels.SortedPairs }}{{ .Name }}={{ .Value }}{{ end }}; others: {{ .CommonLabels.Remove .GroupLabels.Names }}
{{ printf "%s/alerts" .ExternalURL }} {{ .Receiver }} {{ humanizeDuration 5400 }} {{ join "," (stringSlice "a" "b") }}"#;
        let out = render(t, &group()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "🔥 <b>HIGHCPU</b> (2 firing, 1 resolved, 3 in all)"
        );
        assert_eq!(
            lines[1],
            "• web-1: CPU high on web-1 = 97.31% <a href=\"https://wp.example/alerts/1\">#1</a>"
        );
        assert_eq!(
            lines[2],
            "• web-2 &lt;b&gt;&amp;: CPU high on web-2 &lt;b&gt;&amp; = 97.31% <a href=\"https://wp.example/alerts/2\">#2</a>",
            "user values are escaped"
        );
        assert_eq!(lines[3], "0:Web-3 resolved");
        assert_eq!(lines[4], "group alertname=HighCpu; others: map[job:node]");
        assert_eq!(lines[5], "https://wp.example/alerts ops 1h 30m 0s a,b");
        check_telegram_html(&out).unwrap();
    }

    #[test]
    fn times_missing_keys_and_safe_html() {
        let n = group();
        let out = render(
            "{{ with index .Alerts 0 }}{{ .StartsAt | since | humanizeDuration }}|{{ .EndsAt }}|{{ .Labels.nope }}|{{ .Fingerprint }}{{ end }}|{{ \"<i>x</i>\" | safeHtml }}|{{ \"<i>\" }}|{{ .CommonAnnotations.summary }}",
            &n,
        )
        .unwrap();
        let parts: Vec<&str> = out.split('|').collect();
        assert!(parts[0].starts_with("1h 30m"), "{out}");
        assert_eq!(
            parts[1], "0001-01-01 00:00:00 +0000 UTC",
            "firing: zero EndsAt"
        );
        assert_eq!(parts[2], "", "missing label is empty");
        assert_eq!(parts[3], "fp1");
        assert_eq!(parts[4], "<i>x</i>", "safeHtml is not escaped");
        assert_eq!(parts[5], "&lt;i&gt;");
        assert_eq!(parts[6], "", "no common summary");
    }

    #[test]
    fn errors_name_the_problem() {
        let n = group();
        let e = render("{{ .Stauts }}", &n).unwrap_err();
        assert!(e.contains("can't evaluate field Stauts"), "{e}");
        let e = render("x\n{{ .Status | humanize }}", &n).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = render("{{ $labels.job }}", &n).unwrap_err();
        assert!(e.contains("undefined variable"), "{e}");
        let e = render("{{ if .Status }}open", &n).unwrap_err();
        assert!(e.contains("line"), "{e}");
        let e = render("<br>{{ .Status }}", &n).unwrap_err();
        assert!(e.contains("unsupported tag <br>"), "{e}");
        let e = render("<b>{{ .Status }}", &n).unwrap_err();
        assert!(e.contains("never closed"), "{e}");
        let e = render("CPU < 90 {{ .Status }}", &n).unwrap_err();
        assert!(e.contains("tag"), "{e}");
        let e = render("a & b {{ .Status }}", &n).unwrap_err();
        assert!(e.contains("bare '&'"), "{e}");
    }

    #[test]
    fn message_builder_uses_the_engine_and_falls_back() {
        let b = MessageBuilder::new(
            "https://wp.example",
            Some(Arc::new(GoTemplates::new("https://wp.example"))),
        );
        let n = notification(vec![alert(1, "web-1", AlertState::Firing)], vec![]);
        assert_eq!(
            b.render(
                &n,
                Some("<b>{{ .Status }}</b> {{ (index .Alerts 0).Labels.instance }}")
            ),
            "<b>firing</b> web-1"
        );
        let fallback = b.render(&n, Some("{{ .Nope }}"));
        assert!(
            fallback.contains("<b>FIRING</b> · <b>HighCpu</b>"),
            "{fallback}"
        );
    }

    #[test]
    fn telegram_html_check() {
        for ok in [
            "plain",
            "<b>x</b> <i>y</i> <a href=\"https://x/?a=1&amp;b=2\">l</a>",
            "<pre><code class=\"language-rust\">x</code></pre>",
            "&lt;&gt;&amp;&quot;&#39;&#x1F525;",
            "<blockquote expandable>q</blockquote>",
        ] {
            check_telegram_html(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "<div>x</div>",
            "<b>x</i>",
            "</b>",
            "<b",
            "&nbsp;",
            "fish & chips",
        ] {
            assert!(check_telegram_html(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_documented_example_renders() {
        let doc = include_str!("../../docs/telegram.md");
        let marker = "template = \"\"\"\n";
        let start = doc.find(marker).expect("example in docs") + marker.len();
        let len = doc[start..].find("\"\"\"").expect("end of the example");
        let out = render(&doc[start..start + len], &group()).unwrap();
        // The TOML around it is a valid config.
        let block_start = doc[..start].rfind("```toml\n").expect("toml block") + 8;
        let block_len = doc[block_start..].find("```").expect("end of block");
        let toml = format!(
            "[telegram]\nbot_token = \"1:x\"\nchat_ids = [1]\n{}",
            &doc[block_start..block_start + block_len]
        );
        let config = crate::config::Config::from_toml(&toml).unwrap();
        let receivers = crate::notify::receivers(&config).unwrap();
        assert!(
            matches!(receivers["telegram"].telegram(), Some(t) if t.template.is_some() && t.chat_ids == vec![1])
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "🔥 <b>HighCpu</b> · 2 firing", "{out}");
        assert!(
            lines[1].starts_with("• web-1: CPU high on web-1 (1h 30m"),
            "{out}"
        );
        assert!(
            lines[1].ends_with("<a href=\"https://wp.example/alerts/1\">#1</a>"),
            "{out}"
        );
        assert_eq!(lines.len(), 5, "3 alerts and the common labels: {out}");
        assert_eq!(lines[4], "job=node ", "{out}");
    }

    #[test]
    fn json_walks_generically() {
        let v = Value::from_json(&serde_json::json!({"a": [1, 2.5, "x", {"b": true}], "n": null}));
        let t = Template::parse_with_vars(
            "{{ range .a }}{{ . }};{{ end }}{{ len .a }} {{ (index .a 3).b }} {{ .n }}",
            &["$"],
        )
        .unwrap();
        assert_eq!(
            t.execute_value(&Context::default(), v).unwrap(),
            "1;2.5;x;map[b:true];4 true <no value>"
        );
    }
}

#[cfg(test)]
mod zone_tests {
    use super::*;
    use crate::dispatch::{AlertNotice, AlertState, Notification};

    #[test]
    fn times_in_the_configured_zone_and_any_other() {
        let mut a = AlertNotice::test(1, "fp1", "HighCpu");
        a.state = AlertState::Firing;
        a.starts_at = "2025-03-04T05:06:07Z".parse().unwrap();
        let n = Notification {
            group_key: "{}".into(),
            receiver: "ops".into(),
            group_labels: Default::default(),
            status: AlertState::Firing,
            firing: vec![a],
            resolved: Vec::new(),
            flapping: Vec::new(),
            stable: Default::default(),
            seq: 1,
            at_ms: 0,
            episode_ms: 0,
        };
        let data = crate::notify::webhook::webhook_payload(&n, "https://wp.example");
        let msk = crate::rules::template::time::parse_zone("Europe/Moscow").unwrap();
        let engine = GoTemplates::new("https://wp.example").with_timezone(msk);
        let t = r#"{{ range .Alerts }}{{ .StartsAt }}|{{ .StartsAt.Local }}|{{ .StartsAt.Local.Format "15:04 MST" }}|{{ tz "Asia/Tokyo" .StartsAt }}|{{ (tz "America/New_York" .StartsAt).Format "Jan 2 3:04PM" }}|{{ .StartsAt.Unix }}{{ end }}"#;
        let out = engine.render(t, &data).unwrap();
        assert_eq!(
            out,
            "2025-03-04 05:06:07 +0000 UTC|2025-03-04 08:06:07 +0300 MSK|08:06 MSK|2025-03-04 14:06:07 +0900 JST|Mar 4 12:06AM|1741064767"
        );
        let err = engine
            .render(
                r#"{{ range .Alerts }}{{ tz "Mars/Base" .StartsAt }}{{ end }}"#,
                &data,
            )
            .unwrap_err();
        assert!(err.contains("unknown time zone \"Mars/Base\""), "{err}");
    }
}
