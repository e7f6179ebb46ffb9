//! ntopng's webhook endpoint (`scripts/lua/modules/notifications/endpoints/webhook.lua`):
//! `{"version": "0.2", "timestamp": <unix s>, "sharedsecret": "...", "alerts": [...]}`
//! with at most 10 alerts, each ntopng's own alert record (as built by
//! `Host::alert2JSON` / `Flow::alert2JSON` and decoded by the endpoint, so `json` is a
//! nested object). The test button sends an empty `alerts` list.
//!
//! Mapping:
//! * `alertname`: the check (`json.alert_generation.script_key`), else
//!   `ntopng_alert_<alert_id>`; labels `entity`, `entity_val` (non-flow), `ip`/
//!   `instance`, `cli_ip`, `srv_ip`, `srv_port`, `l7_proto`, `ifid`, `vlan_id`.
//! * severity: an explicit `severity` (ntopng's level 0–8 or a name), else the score
//!   (≥ 100 critical, ≥ 50 warning, else info); type: `alert_category` (1 security,
//!   2 internals → system, 3 network, 4 system), else keywords, flows default to network.
//! * `action` `engage` fires, `release` resolves (at `tstamp_end`), `store` (one-shot,
//!   flows) fires and resolves by itself after the resolve timeout unless repeated.
//!
//! Numbers from the record (integers, floats or numeric strings):
//! * Times (`tstamp`, `alert_tstamp`, `tstamp_end`, Unix seconds): 0 or absent is
//!   ntopng's "none"; anything else must be a time from 1970 to the end of 9999
//!   ([`MAX_UNIX_SECONDS`]). Negative, later, non-numeric or non-finite values are an
//!   error naming the field (`alerts[1].tstamp`) for that record: Prometheus and
//!   Alertmanager refuse a time they cannot represent rather than guess one, and a
//!   clamped time would start or end the alert at a moment nobody stated.
//! * `score` and the ids (`alert_id`, `entity_id`, `ifid`, `vlan_id`, `severity`,
//!   `alert_category`) are accepted as integers, saturating at the `i64` range (a float
//!   such as `1e300` is `i64::MAX`): they are only compared, printed or looked up,
//!   and a score's meaning (higher is worse) survives saturation; severity and risk
//!   are the same for every score ≥ 250. NaN is no number.
//!
//! A batch is ntopng's queue of unrelated records, which ntopng does not resend:
//! [`convert`] keeps the good records and names each bad one ([`Parsed`]), and the
//! endpoint stores the good ones and answers 400 naming the bad ones (as Alertmanager's
//! `POST /api/v2/alerts` does).

use serde::Deserialize;
use serde_json::Value;

use super::{
    IngestError, MAX_UNIX_SECONDS, Parsed, RawAlert, after_resolve_timeout, from_slice,
    truncate_chars,
};
use crate::alerts::model::{LabelSet, Severity};

/// The webhook's envelope.
#[derive(Debug, Deserialize)]
pub struct NtopngPayload {
    /// `"0.2"`.
    #[serde(default)]
    pub version: Option<Value>,
    /// Unix seconds when sent.
    #[serde(default)]
    pub timestamp: Option<Value>,
    /// The configured shared secret, if any.
    #[serde(default)]
    pub sharedsecret: Option<String>,
    /// Alert records; empty for the test button.
    pub alerts: Vec<Value>,
}

/// Parses the envelope (the caller checks `sharedsecret`).
pub fn parse_envelope(body: &[u8]) -> Result<NtopngPayload, IngestError> {
    from_slice(body)
}

/// Converts the alert records of a payload; too many is an error for the whole payload,
/// a bad record only for itself.
pub fn convert(p: &NtopngPayload, max_alerts: usize, now_ms: i64) -> Result<Parsed, IngestError> {
    if p.alerts.len() > max_alerts {
        return Err(IngestError(format!(
            "too many alerts: {} in one request; the limit is {max_alerts} (alerts.max_alerts_per_request)",
            p.alerts.len()
        )));
    }
    let results = p
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| convert_one(a, i, now_ms));
    Ok(Parsed::from_results(results, |i| format!("alerts[{i}].")))
}

fn convert_one(a: &Value, i: usize, now_ms: i64) -> Result<RawAlert, IngestError> {
    let obj = a
        .as_object()
        .ok_or_else(|| IngestError(format!("alerts[{i}]: expected an alert object")))?;
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let text = |k: &str| get(k).and_then(as_text).filter(|s| !s.is_empty());
    let int = |k: &str| get(k).and_then(as_int);

    let details = match get("json") {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let script_key = details
        .pointer("/alert_generation/script_key")
        .and_then(as_text)
        .filter(|s| !s.is_empty());
    let alert_id = int("alert_id").or_else(|| int("alert_type"));
    let alertname = match (&script_key, alert_id) {
        (Some(k), _) => k.clone(),
        (None, Some(id)) => format!("ntopng_alert_{id}"),
        (None, None) => {
            return Err(IngestError(format!(
                "alerts[{i}]: neither alert_id nor json.alert_generation.script_key present"
            )));
        }
    };
    let is_flow = get("is_flow_alert")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || int("entity_id") == Some(4);
    let entity = if is_flow {
        "flow".to_string()
    } else {
        entity_name(int("entity_id"))
    };

    let mut labels = LabelSet::new();
    labels.insert("alertname".into(), alertname.clone());
    labels.insert("entity".into(), entity.clone());
    let ip = text("ip");
    let entity_val = text("entity_val");
    if is_flow {
        for k in ["cli_ip", "srv_ip", "srv_port", "l7_proto", "proto"] {
            if let Some(v) = text(k) {
                labels.insert(k.into(), v);
            }
        }
    } else if let Some(v) = &entity_val {
        labels.insert("entity_val".into(), v.clone());
    }
    if let Some(ip) = &ip {
        labels.insert("ip".into(), ip.clone());
    }
    let instance = ip.clone().or_else(|| {
        if is_flow {
            text("srv_ip")
        } else {
            entity_val.clone()
        }
    });
    if let Some(inst) = instance {
        labels.insert("instance".into(), inst);
    }
    for k in ["ifid", "vlan_id"] {
        if let Some(v) = int(k).filter(|v| *v != 0 || k == "ifid") {
            labels.insert(k.into(), v.to_string());
        }
    }

    let score = int("score");
    let severity = get("severity")
        .and_then(severity_of)
        .or_else(|| get("alert_severity").and_then(severity_of))
        .or_else(|| score.map(severity_of_score));
    let type_hint = get("alert_category")
        .or_else(|| get("category"))
        .and_then(category_of);

    let info = text("info").or_else(|| details.get("info").and_then(as_text));
    let message = match text("msg")
        .or_else(|| text("message"))
        .or_else(|| text("description"))
    {
        Some(m) => m,
        None => describe(&alertname, &entity, is_flow, obj, info.as_deref()),
    };

    let mut annotations = LabelSet::new();
    annotations.insert("summary".into(), message.clone());
    if let Some(s) = score {
        annotations.insert("score".into(), s.to_string());
    }
    if let Some(id) = alert_id {
        annotations.insert("ntopng_alert_id".into(), id.to_string());
    }
    for k in ["name", "action", "cli_port", "community_id"] {
        if let Some(v) = text(k) {
            annotations.insert(k.into(), v);
        }
    }
    if let Some(info) = &info {
        annotations.insert("info".into(), info.clone());
    }
    if !details.is_null() {
        annotations.insert(
            "details".into(),
            truncate_chars(&details.to_string(), super::MAX_VALUE_CHARS),
        );
    }

    let time = |k: &str| unix_ms(get(k), &format!("alerts[{i}].{k}"));
    let tstamp_ms = match time("tstamp")? {
        Some(t) => Some(t),
        None => time("alert_tstamp")?,
    };
    let tstamp_end_ms = time("tstamp_end")?;
    let action = text("action").unwrap_or_else(|| {
        if is_flow {
            "store".into()
        } else {
            "engage".into()
        }
    });
    let ends_at_ms = match action.as_str() {
        "release" => Some(tstamp_end_ms.unwrap_or(now_ms).min(now_ms)),
        "store" => Some(after_resolve_timeout(
            tstamp_ms.unwrap_or(now_ms).max(now_ms),
        )),
        _ => None,
    };

    Ok(RawAlert {
        source: "ntopng".into(),
        message: Some(truncate_chars(&message, super::MAX_MESSAGE_CHARS)),
        severity,
        type_hint,
        type_fallback: match entity.as_str() {
            "flow" | "interface" | "network" | "snmp_device" | "asn" | "l7" => Some("network"),
            "system" | "am_host" => Some("system"),
            _ => None,
        },
        source_score: score,
        labels,
        annotations,
        starts_at_ms: tstamp_ms.map(|t| t.min(now_ms)),
        ends_at_ms,
        generator_url: None,
    })
}

/// A JSON scalar as text (numbers and booleans too).
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A JSON number or numeric string as an integer, saturating at the `i64` range
/// (fractions cut); NaN and other text are none.
fn as_int(v: &Value) -> Option<i64> {
    as_f64_or_int(v).map(|n| match n {
        Num::Int(i) => i,
        // `as` saturates (and maps ±∞ to the bounds); NaN was filtered out.
        Num::Float(f) => f as i64,
    })
}

/// A number as read: exact when it is an `i64`, else a float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

/// A JSON number or numeric string; `None` for NaN, text and other values.
fn as_f64_or_int(v: &Value) -> Option<Num> {
    let n = match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Num::Int(i),
            None => Num::Float(n.as_f64()?),
        },
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(i) => Num::Int(i),
                Err(_) => Num::Float(s.parse::<f64>().ok()?),
            }
        }
        _ => return None,
    };
    match n {
        Num::Float(f) if f.is_nan() => None,
        n => Some(n),
    }
}

/// An ntopng time (Unix seconds) as Unix ms: `None` when absent, empty or 0 (ntopng's
/// "none"); an error naming `field` unless it is a time from 1970 to the end of 9999.
fn unix_ms(v: Option<&Value>, field: &str) -> Result<Option<i64>, IngestError> {
    let Some(v) = v.filter(|v| v.as_str().is_none_or(|s| !s.trim().is_empty())) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        IngestError(format!(
            "{field}: {v} is not a time: {why} (Unix seconds, 1970 to 9999-12-31T23:59:59Z)"
        ))
    };
    let ms = match as_f64_or_int(v).ok_or_else(|| bad("not a number"))? {
        Num::Int(0) => return Ok(None),
        Num::Int(s) if s < 0 => return Err(bad("negative")),
        Num::Int(s) if s > MAX_UNIX_SECONDS => return Err(bad("after the year 9999")),
        // In range, so the product fits (≤ 2.6e14).
        Num::Int(s) => s * 1000,
        Num::Float(0.0) => return Ok(None),
        Num::Float(f) if f < 0.0 => return Err(bad("negative")),
        Num::Float(f) if f > MAX_UNIX_SECONDS as f64 => return Err(bad("after the year 9999")),
        Num::Float(f) => (f * 1000.0).round() as i64,
    };
    Ok(Some(ms))
}

/// ntopng's alert entities.
fn entity_name(id: Option<i64>) -> String {
    match id {
        Some(0) => "interface",
        Some(1) => "host",
        Some(2) => "network",
        Some(3) => "snmp_device",
        Some(4) => "flow",
        Some(5) => "mac",
        Some(6) => "host_pool",
        Some(7) => "user",
        Some(8) => "am_host",
        Some(9) => "system",
        Some(10) => "test",
        Some(11) => "asn",
        Some(12) => "l7",
        _ => "other",
    }
    .to_string()
}

/// ntopng's severity: a level (1 debug … 4 warning, 5 error, 6 critical, 7 alert,
/// 8 emergency) or a name.
fn severity_of(v: &Value) -> Option<Severity> {
    let level = match v {
        Value::Number(_) => as_int(v),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if let Some(n) = level {
        return Some(match n {
            i64::MIN..=3 => Severity::Info,
            4 => Severity::Warning,
            _ => Severity::Critical,
        });
    }
    v.as_str().and_then(Severity::parse_lenient)
}

/// ntopng's score to severity: ≥ 100 (error and above) critical, ≥ 50 warning.
fn severity_of_score(score: i64) -> Severity {
    if score >= 100 {
        Severity::Critical
    } else if score >= 50 {
        Severity::Warning
    } else {
        Severity::Info
    }
}

/// ntopng's alert categories (0 other, 1 security, 2 internals, 3 network, 4 system).
fn category_of(v: &Value) -> Option<String> {
    match as_int(v) {
        Some(1) => Some("security".into()),
        Some(2) | Some(4) => Some("system".into()),
        Some(3) => Some("network".into()),
        Some(_) => None,
        None => v.as_str().map(str::to_string),
    }
}

/// A readable message from the record's fields.
fn describe(
    alertname: &str,
    entity: &str,
    is_flow: bool,
    obj: &serde_json::Map<String, Value>,
    info: Option<&str>,
) -> String {
    let t = |k: &str| obj.get(k).and_then(as_text).filter(|s| !s.is_empty());
    let title = alertname.replace('_', " ");
    let mut m = if is_flow {
        let cli = t("cli_ip").unwrap_or_else(|| "?".into());
        let srv = t("srv_ip").unwrap_or_else(|| "?".into());
        let port = t("srv_port").map(|p| format!(":{p}")).unwrap_or_default();
        let proto = t("l7_proto")
            .or_else(|| t("proto.ndpi"))
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        format!("ntopng: {title} flow {cli} -> {srv}{port}{proto}")
    } else {
        let who = t("name")
            .filter(|n| Some(n) != t("ip").as_ref())
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let target = t("ip")
            .or_else(|| t("entity_val"))
            .unwrap_or_else(|| "?".into());
        format!("ntopng: {title} on {entity} {target}{who}")
    };
    if let Some(i) = info.filter(|i| !i.is_empty()) {
        m.push_str(": ");
        m.push_str(i);
    }
    m
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn host_and_flow_records() {
        let body = br#"{"version":"0.2","timestamp":1699999990,"sharedsecret":"s","alerts":[
          {"ifid":0,"action":"engage","alert_id":20,"score":100,"entity_id":1,"entity_val":"192.168.1.5@0",
           "ip":"192.168.1.5","name":"nas","vlan_id":0,"tstamp":1699999900,"tstamp_end":0,"alert_category":1,
           "json":{"alert_generation":{"script_key":"syn_scan","subdir":"host"},"value":812}},
          {"ifid":0,"alert_id":26,"score":150,"is_flow_alert":true,"entity_id":4,"entity_val":"flow",
           "cli_ip":"10.0.0.2","srv_ip":"185.7.8.9","cli_port":51234,"srv_port":443,"l7_proto":"TLS",
           "tstamp":1699999950,"json":"{\"alert_generation\":{\"script_key\":\"blacklisted\",\"subdir\":\"flow\"}}",
           "info":"evil.example"}]}"#;
        let p = parse_envelope(body).unwrap();
        assert_eq!(p.sharedsecret.as_deref(), Some("s"));
        let alerts = convert(&p, 10, NOW).unwrap().alerts;
        let host = alerts[0].clone().prepare();
        assert_eq!(host.alertname.as_deref(), Some("syn_scan"));
        assert_eq!(host.labels["instance"], "192.168.1.5");
        assert_eq!(host.severity, Severity::Critical);
        assert_eq!(host.alert_type, "security");
        assert_eq!(host.ends_at_ms, None);
        assert_eq!(host.starts_at_ms, Some(1_699_999_900_000));
        assert!(
            host.message.contains("syn scan on host 192.168.1.5 (nas)"),
            "{}",
            host.message
        );
        let flow = alerts[1].clone().prepare();
        assert_eq!(flow.alertname.as_deref(), Some("blacklisted"));
        assert_eq!(flow.labels["srv_port"], "443");
        assert!(
            !flow.labels.contains_key("cli_port"),
            "ephemeral ports split dedup"
        );
        assert_eq!(flow.alert_type, "security");
        assert_eq!(flow.ends_at_ms, Some(NOW + 300_000));
        assert!(
            flow.message
                .contains("10.0.0.2 -> 185.7.8.9:443 [TLS]: evil.example"),
            "{}",
            flow.message
        );
    }

    #[test]
    fn release_resolves_and_garbage_is_named() {
        let body =
            br#"{"alerts":[{"alert_id":5,"action":"release","entity_id":0,"entity_val":"eth0",
            "score":50,"tstamp":1699990000,"tstamp_end":1699999000}]}"#;
        let p = parse_envelope(body).unwrap();
        let a = convert(&p, 10, NOW).unwrap().alerts.remove(0).prepare();
        assert_eq!(a.ends_at_ms, Some(1_699_999_000_000));
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(a.labels["entity"], "interface");
        let p = parse_envelope(br#"{"alerts":[{"score":1}]}"#).unwrap();
        let c = convert(&p, 10, NOW).unwrap();
        assert!(c.alerts.is_empty());
        assert!(c.rejected[0].0.starts_with("alerts[0]"));
        let p = parse_envelope(br#"{"alerts":[7]}"#).unwrap();
        assert!(
            convert(&p, 10, NOW).unwrap().rejected[0]
                .0
                .starts_with("alerts[0]")
        );
        let p = parse_envelope(br#"{"alerts":[7,7]}"#).unwrap();
        assert!(
            convert(&p, 1, NOW)
                .unwrap_err()
                .0
                .contains("max_alerts_per_request")
        );
        assert!(
            parse_envelope(br#"{"version":"0.2"}"#)
                .unwrap_err()
                .0
                .contains("alerts")
        );
    }

    /// One record with `fields` added to a minimal engaged host alert.
    fn record(fields: Value) -> Value {
        let mut r = json!({"alert_id": 5, "entity_id": 1, "entity_val": "h"});
        if let (Some(r), Value::Object(f)) = (r.as_object_mut(), fields) {
            r.extend(f);
        }
        r
    }

    fn one(fields: Value) -> Result<RawAlert, IngestError> {
        convert_one(&record(fields), 1, NOW)
    }

    #[test]
    fn times_out_of_range_are_named() {
        for (fields, field) in [
            (json!({"tstamp": i64::MAX}), "alerts[1].tstamp"),
            (json!({"tstamp": i64::MIN}), "alerts[1].tstamp"),
            (json!({"tstamp": u64::MAX}), "alerts[1].tstamp"),
            (json!({"tstamp": 1e300}), "alerts[1].tstamp"),
            (json!({"tstamp": -1e300}), "alerts[1].tstamp"),
            (json!({"tstamp": -1}), "alerts[1].tstamp"),
            (json!({"tstamp": "9223372036854775807"}), "alerts[1].tstamp"),
            (json!({"tstamp": "inf"}), "alerts[1].tstamp"),
            (json!({"tstamp": "NaN"}), "alerts[1].tstamp"),
            (json!({"tstamp": "soon"}), "alerts[1].tstamp"),
            (json!({"tstamp": MAX_UNIX_SECONDS + 1}), "alerts[1].tstamp"),
            (json!({"alert_tstamp": i64::MAX}), "alerts[1].alert_tstamp"),
            (
                json!({"action": "release", "tstamp_end": i64::MAX}),
                "alerts[1].tstamp_end",
            ),
            (
                json!({"action": "store", "tstamp_end": -5, "tstamp": 1}),
                "alerts[1].tstamp_end",
            ),
        ] {
            let e = one(fields.clone()).unwrap_err().0;
            assert!(e.starts_with(field), "{fields}: {e}");
            assert!(e.contains("9999"), "{fields}: {e}");
        }
    }

    #[test]
    fn times_in_range_convert_exactly() {
        let last = one(json!({"tstamp": MAX_UNIX_SECONDS})).unwrap();
        assert_eq!(last.starts_at_ms, Some(NOW), "a future start is now");
        let frac = one(json!({"tstamp": 1_699_999_900.5})).unwrap();
        assert_eq!(frac.starts_at_ms, Some(1_699_999_900_500));
        let text = one(json!({"tstamp": " 1699999900 "})).unwrap();
        assert_eq!(text.starts_at_ms, Some(1_699_999_900_000));
        let zero = one(json!({"tstamp": 0, "alert_tstamp": 1_699_999_000})).unwrap();
        assert_eq!(zero.starts_at_ms, Some(1_699_999_000_000));
        let none = one(json!({"tstamp": 0.0, "tstamp_end": ""})).unwrap();
        assert_eq!(none.starts_at_ms, None);
        let none = one(json!({"tstamp": -0.0, "alert_tstamp": "0"})).unwrap();
        assert_eq!(none.starts_at_ms, None);
        // One-shot flow alerts end a resolve timeout after their (future) time.
        let store = one(json!({"action": "store", "tstamp": MAX_UNIX_SECONDS})).unwrap();
        assert_eq!(
            store.ends_at_ms,
            Some(super::super::MAX_TIME_MS),
            "no overflow at the last second"
        );
        let release = one(json!({"action": "release", "tstamp_end": MAX_UNIX_SECONDS})).unwrap();
        assert_eq!(release.ends_at_ms, Some(NOW));
        // A clock at the end of time saturates.
        let late = convert_one(&record(json!({"action": "store"})), 0, i64::MAX).unwrap();
        assert_eq!(late.ends_at_ms, Some(super::super::MAX_TIME_MS));
    }

    #[test]
    fn huge_scores_saturate() {
        for (score, kept) in [
            (json!(i64::MAX), i64::MAX),
            (json!(u64::MAX), i64::MAX),
            (json!(1e300), i64::MAX),
            (json!("1e300"), i64::MAX),
            (json!(-1e300), i64::MIN),
            (json!(i64::MIN), i64::MIN),
        ] {
            let raw = one(json!({"score": score.clone()})).unwrap();
            assert_eq!(raw.source_score, Some(kept), "{score}");
            let inc = raw.prepare();
            let expected = if kept > 0 {
                Severity::Critical
            } else {
                Severity::Info
            };
            assert_eq!(inc.severity, expected, "{score}");
            assert_eq!(inc.annotations["score"], kept.to_string());
        }
        let nan = one(json!({"score": "NaN"})).unwrap();
        assert_eq!(nan.source_score, None);
        // Ids are only printed.
        let id = convert_one(&json!({"alert_id": 1e300}), 0, NOW).unwrap();
        assert_eq!(id.labels["alertname"], format!("ntopng_alert_{}", i64::MAX));
    }

    #[test]
    fn a_bad_record_does_not_take_the_batch_down() {
        let body = br#"{"alerts":[
          {"alert_id":1,"entity_id":1,"entity_val":"a","tstamp":1699999900,"score":10},
          {"alert_id":2,"entity_id":1,"entity_val":"b","tstamp":9223372036854775807,"score":9223372036854775807},
          {"alert_id":3,"entity_id":1,"entity_val":"c","tstamp_end":-1,"action":"release"}]}"#;
        let c = convert(&parse_envelope(body).unwrap(), 10, NOW).unwrap();
        assert_eq!(c.alerts.len(), 1);
        assert_eq!(c.alerts[0].labels["entity_val"], "a");
        assert_eq!(c.rejected.len(), 2);
        let msg = c.rejected[0].0.clone();
        assert!(
            msg.starts_with("alerts[1].tstamp: 9223372036854775807"),
            "{msg}"
        );
        let msg = &c.rejected[1].0;
        assert!(msg.starts_with("alerts[2].tstamp_end: -1"), "{msg}");
    }
}
