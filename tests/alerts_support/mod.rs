//! Helpers shared by the alert pipeline tests (on top of `tests/common`).
#![allow(dead_code)]

use serde_json::{Value, json};

use crate::common::TestApp;

/// A response: status, JSON body (or `null`), headers.
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

async fn finish(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        headers,
    }
}

fn auth(b: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => b.bearer_auth(t),
        None => b,
    }
}

/// POST a JSON value.
pub async fn post(app: &TestApp, path: &str, body: &Value, token: Option<&str>) -> Resp {
    let b = app.client.post(app.url(path)).json(body);
    finish(auth(b, token).send().await.expect("POST")).await
}

/// POST raw bytes as JSON.
pub async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>, token: Option<&str>) -> Resp {
    let b = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body);
    finish(auth(b, token).send().await.expect("POST")).await
}

/// GET.
pub async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Resp {
    let b = app.client.get(app.url(path));
    finish(auth(b, token).send().await.expect("GET")).await
}

/// DELETE.
pub async fn delete(app: &TestApp, path: &str, token: Option<&str>) -> Resp {
    let b = app.client.delete(app.url(path));
    finish(auth(b, token).send().await.expect("DELETE")).await
}

/// A generic alert.
pub fn alert(message: &str, labels: Value) -> Value {
    json!({"message": message, "labels": labels})
}

/// POST generic alerts and expect 202; returns the ids.
pub async fn ingest(app: &TestApp, body: &Value) -> Vec<i64> {
    let r = post(app, "/api/v1/alerts", body, None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.body["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_i64().expect("id"))
        .collect()
}

/// GET one alert (with events).
pub async fn alert_by_id(app: &TestApp, id: i64) -> Value {
    let r = get(app, &format!("/api/v1/alerts/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// The event kinds of an alert detail.
pub fn event_kinds(detail: &Value) -> Vec<String> {
    detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_string())
        .collect()
}

/// Every alert matching a list query (follows cursors).
pub async fn list_all(app: &TestApp, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = match &cursor {
            Some(c) => format!("/api/v1/alerts?{query}{sep}cursor={c}"),
            None => format!("/api/v1/alerts?{query}"),
        };
        let r = get(app, &path, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(r.body["alerts"].as_array().expect("alerts").iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// The value of a sample in Prometheus text format, e.g.
/// `watchpost_alerts_active{severity="critical"}`.
pub async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let (_, text) = app.get_text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// RFC 3339 time `secs` seconds from now (negative = past).
pub fn at(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
