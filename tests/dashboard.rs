//! The dashboard's server side: the page and deep links, and the `/api/v1/stream`
//! WebSocket against the real app.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::{TestApp, sqlite_db, test_config};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp) -> Ws {
    let url = format!("{}/api/v1/stream", app.base.replace("http://", "ws://"));
    let (ws, resp) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next JSON text message (pings are skipped).
async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

async fn subscribe(ws: &mut Ws, series: &[&str]) {
    let msg = serde_json::json!({"type": "subscribe", "series": series}).to_string();
    ws.send(Message::text(msg)).await.unwrap();
}

#[tokio::test]
async fn stream_sends_hello_samples_and_ticks() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let mut ws = connect(&app).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["interval_ms"], 200);

    subscribe(&mut ws, &["system_load1", "system_cpu_core_usage_ratio"]).await;
    // The current values come at once, then one batch per tick, each ending with a tick.
    let mut ticks = Vec::new();
    let mut load = 0;
    let mut cores = std::collections::BTreeSet::new();
    while ticks.len() < 3 {
        let m = next_json(&mut ws).await;
        match m["type"].as_str().unwrap() {
            "sample" => {
                assert!(m["t"].as_i64().unwrap() > 1_600_000_000_000, "{m}");
                assert!(m["v"].is_number(), "{m}");
                match m["series"].as_str().unwrap() {
                    "system_load1" => {
                        assert_eq!(m["labels"]["__name__"], "system_load1");
                        load += 1;
                    }
                    "system_cpu_core_usage_ratio" => {
                        cores.insert(m["labels"]["core"].as_str().unwrap().to_string());
                    }
                    other => panic!("unexpected series {other}"),
                }
            }
            "tick" => ticks.push(m["t"].as_i64().unwrap()),
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    assert_eq!(load, 3, "one load sample per tick");
    assert!(!cores.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn stream_evaluates_promql_like_the_query_api() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let mut ws = connect(&app).await;
    let _hello = next_json(&mut ws).await;
    let expr = "sum by (route) (rate(watchpost_http_requests_total[5s]))";
    subscribe(
        &mut ws,
        &[expr, "system_memory_used_bytes / system_memory_total_bytes"],
    )
    .await;
    // Requests to /health give the rate something to count.
    for _ in 0..5 {
        app.get_text("/health").await;
    }
    let mut routes = std::collections::BTreeSet::new();
    let mut ratio = None;
    for _ in 0..200 {
        let m = next_json(&mut ws).await;
        if m["type"] != "sample" {
            assert_ne!(m["type"], "error", "{m}");
            continue;
        }
        if m["series"] == expr {
            assert!(m["labels"].get("__name__").is_none(), "{m}");
            routes.insert(m["labels"]["route"].as_str().unwrap().to_string());
        } else {
            ratio = m["v"].as_f64();
        }
        if routes.contains("/health") && ratio.is_some() {
            break;
        }
    }
    assert!(routes.contains("/health"), "{routes:?}");
    let ratio = ratio.expect("memory ratio");
    assert!(ratio > 0.0 && ratio <= 1.0, "{ratio}");

    // A streamed point is what the query API says for that instant (so backfill from
    // /api/v1/query_range lines up with live samples).
    subscribe(&mut ws, &["system_memory_used_bytes"]).await;
    let (t, v) = loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "sample" && m["series"] == "system_memory_used_bytes" {
            break (m["t"].as_i64().unwrap(), m["v"].as_f64().unwrap());
        }
    };
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/query?query=system_memory_used_bytes&time={}.{:03}",
            t / 1000,
            t % 1000
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let value: f64 = body["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(value, v, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn stream_reports_bad_subscriptions_and_messages() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let mut ws = connect(&app).await;
    let _hello = next_json(&mut ws).await;

    ws.send(Message::text("{not json")).await.unwrap();
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "error");
    assert!(
        m["error"].as_str().unwrap().contains("invalid message"),
        "{m}"
    );

    subscribe(&mut ws, &[""]).await;
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "error");
    assert!(m["error"].as_str().unwrap().contains("series[0]"), "{m}");

    // An expression the server cannot evaluate is named in an error, once.
    subscribe(&mut ws, &["sum(", "system_load5"]).await;
    let mut errors = 0;
    let mut ticks = 0;
    while ticks < 3 {
        let m = next_json(&mut ws).await;
        match m["type"].as_str().unwrap() {
            "error" => {
                assert_eq!(m["series"], "sum(");
                errors += 1;
            }
            "tick" => ticks += 1,
            _ => {}
        }
    }
    assert!((1..=2).contains(&errors), "errors repeated: {errors}");
    app.stop().await;
}

#[tokio::test]
async fn stream_clients_are_counted_and_closed_when_the_app_stops() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let mut ws = connect(&app).await;
    let _hello = next_json(&mut ws).await;
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("watchpost_stream_clients 1"), "{metrics}");
    app.stop().await;
    // The server ends the stream rather than leaving it open forever.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "stream still open after stop");
}

#[tokio::test]
async fn page_routes_serve_html_and_unknown_api_paths_stay_json() {
    let db = sqlite_db();
    let app = TestApp::start(test_config(&db.url)).await;
    let (status, root) = app.get_text("/").await;
    assert_eq!(status, 200);
    for path in [
        "/alerts",
        "/alerts/123",
        "/rules",
        "/silences",
        "/history",
        "/cluster",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(r.headers()["cache-control"], "no-cache");
        assert_eq!(r.text().await.unwrap(), root, "{path}");
    }
    if watchpost::web::is_built() {
        assert!(root.contains("/assets/"), "{root}");
    } else {
        assert!(root.contains("cargo run --release"), "{root}");
    }
    for path in [
        "/api/v1/nothing",
        "/api/v1/alerts/1/nothing-here",
        "/assets/nope.js",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    app.stop().await;
}
