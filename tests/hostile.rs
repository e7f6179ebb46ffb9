//! Hostile clients against the real binary, as an attacker on the network would try
//! without a token: queries nested deep enough to overflow a stack, runaway queries,
//! slow or idle connections and floods of them, oversized or malformed requests. Each
//! is answered (or cut) within its limit, in JSON, and the process keeps serving
//! everyone else.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Server, command};
use serde_json::Value;

/// A server with short limits so the test can watch them act.
fn server(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    let mut cmd = command(dir);
    cmd.arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_HTTP__HEADER_TIMEOUT", "2s")
        .env("WATCHPOST_HTTP__IDLE_TIMEOUT", "5s")
        .env("WATCHPOST_QUERY__TIMEOUT", "3s");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Server::spawn(cmd)
}

/// Sends `raw` on a fresh connection and reads until the server closes it (at most
/// `limit`); returns what came back and how long the server took to close.
fn exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let start = Instant::now();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "connection still open after {limit:?} ({e}); got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

/// The status and JSON body of a raw HTTP answer.
fn answer(raw: &str) -> (u16, Value) {
    let status = raw
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {raw:?}"));
    (status, json)
}

async fn health_ok(base: &str, within: Duration) {
    let r = reqwest::Client::builder()
        .timeout(within)
        .build()
        .unwrap()
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_and_floods_do_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[("WATCHPOST_HTTP__MAX_CONNECTIONS", "4096")]);
    let addr = server.addr;
    let limit = Duration::from_secs(10);

    // Nothing, or half a request: closed once the header timeout (2 s) passes, unanswered.
    for (what, raw) in [
        ("nothing", &b""[..]),
        ("half a request", b"GET /health HTTP/1.1\r\nHost: x\r\n"),
    ] {
        let (got, took) = exchange(addr, raw, limit);
        assert!(got.is_empty(), "{what}: {got:?}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
            "{what}: {took:?}"
        );
    }
    // An idle keep-alive after a full answer: closed by the idle timeout (5 s), not the
    // header timeout — a pooled connection lives as long as clients expect.
    let (got, took) = exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", limit);
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_secs(9),
        "{took:?}"
    );
    // Headers trickled a byte every 100 ms: cut once the header timeout passes.
    let mut s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    for b in b"GET /health HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain([b'a'; 40].iter())
    {
        if s.write_all(&[*b]).is_err() || start.elapsed() > Duration::from_secs(4) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let read = s.read(&mut [0u8; 64]);
    let closed = match &read {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed, "a trickling client is still connected: {read:?}");

    // 2,000 slowloris connections: everyone else is still served at once, and the
    // server lets go of every one of them after the header timeout.
    let mut flood: Vec<TcpStream> = (0..2_000)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    health_ok(&server.base(), Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut closed = 0;
    for s in &mut flood {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if matches!(s.read(&mut [0u8; 64]), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, flood.len(), "every slow connection was closed");
    health_ok(&server.base(), Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_wait_instead_of_exhausting_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[("WATCHPOST_HTTP__MAX_CONNECTIONS", "16")]);
    let held: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The 17th client waits in the backlog until the header timeout frees a slot.
    let start = Instant::now();
    health_ok(&server.base(), Duration::from_secs(10)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "served at once: {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_json_errors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[]);
    let addr = server.addr;
    let quick = Duration::from_secs(5);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "declared oversize body",
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999999999\r\nConnection: close\r\n\r\n".to_vec(),
            413,
            "alerts.max_body_bytes",
        ),
        ("URI too long", long_uri.into_bytes(), 414, "URI too long"),
        ("headers too large", big_header.into_bytes(), 431, "headers too large"),
        ("not HTTP", b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed"),
        (
            "stream without upgrade",
            b"GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "upgrade",
        ),
        (
            "JSON followed by garbage",
            b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 22\r\nConnection: close\r\n\r\n{\"message\":\"x\"}garbage".to_vec(),
            400,
            "trailing characters",
        ),
    ];
    for (what, raw, status, needle) in cases {
        let (got, took) = exchange(addr, &raw, quick);
        let (code, body) = answer(&got);
        assert_eq!(code, status, "{what}: {got:?}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle),
            "{what}: {error:?} should name {needle:?}"
        );
        assert!(took < quick, "{what}: {took:?}");
    }
    // Nothing of the refused bodies was stored.
    let alerts: Value = reqwest::get(format!("{}/api/v1/alerts", server.base()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["alerts"], serde_json::json!([]), "{alerts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_queries_end_at_the_timeout_or_the_sample_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), &[("WATCHPOST_QUERY__MAX_CONCURRENCY", "2")]);
    let base = server.base();
    let dir2 = tempfile::tempdir().unwrap();
    let small = self::server(dir2.path(), &[("WATCHPOST_QUERY__MAX_SAMPLES", "100000")]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let run_on = |base: String, q: &'static str, timeout: Option<&'static str>| {
        let client = client.clone();
        let url = format!("{base}/api/v1/query");
        async move {
            let mut form = vec![("query", q)];
            form.extend(timeout.map(|t| ("timeout", t)));
            let start = Instant::now();
            let r = client.post(url).form(&form).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap(), start.elapsed())
        }
    };
    let run = |q, timeout| run_on(base.clone(), q, timeout);
    // Both ran for over 20 s before; now the deadline (3 s) ends them, as Prometheus.
    let nested = "max_over_time(max_over_time(vector(1)[1h:1ms])[1h:1ms])";
    let (status, body, took) = run(nested, None).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (503, Some("timeout")),
        "{body}"
    );
    assert_eq!(body["error"], "query timed out in expression evaluation");
    assert!(took < Duration::from_secs(8), "{took:?}");
    // A request's own `timeout` is honoured when shorter.
    let (status, body, took) = run(nested, Some("500ms")).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // 3.6 million samples with room for 100,000: refused as Prometheus does.
    let (status, body, took) =
        run_on(small.base(), "count_over_time(vector(1)[1h:1ms])", None).await;
    assert_eq!(
        (status, body["errorType"].as_str()),
        (422, Some("execution")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("too many samples"),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    // Every series at 1 ms steps: ended by whichever limit comes first.
    let all = r#"max_over_time(({__name__=~".+"})[1h:1ms])"#;
    // Nested subqueries over nothing: each step is cheap and loads no sample, and there
    // are 13 billion of them.
    let empty = "max_over_time(max_over_time(absent_metric[1h:1ms])[1h:1ms])";
    for (base, q) in [
        (base.clone(), all),
        (small.base(), all),
        (base.clone(), empty),
    ] {
        let (status, body, took) = run_on(base, q, None).await;
        assert!(matches!(status, 422 | 503), "{body}");
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
    // Four at once with room for two: the last wait, and all end within their deadline.
    let many = futures_util::future::join_all((0..4).map(|_| run(nested, Some("2s")))).await;
    for (status, body, took) in many {
        assert_eq!(status, 503, "{body}");
        assert!(took < Duration::from_secs(8), "{took:?}");
    }
    health_ok(&base, Duration::from_secs(2)).await;
    let (status, body, _) = run("1+1", None).await;
    assert_eq!(
        (status, body["data"]["result"][1].as_str()),
        (200, Some("2"))
    );
}

/// A query by GET (`POST` when `post`), as status and JSON body.
async fn get_or_post_query(base: &str, q: &str, post: bool) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("{base}/api/v1/query");
    let req = if post {
        client.post(&url).form(&[("query", q)])
    } else {
        client.get(&url).query(&[("query", q)])
    };
    let r = req.send().await.expect("the service answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_are_refused_and_the_service_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.arg("serve").env("WATCHPOST_LISTEN", "127.0.0.1:0");
    let server = Server::spawn(cmd);
    let base = server.base();

    // 3,000 terms by GET (≈ 12 KB) crashed the service; and ten times that by POST.
    let chain = vec!["1"; 3_000].join("+");
    let long_chain = vec!["1"; 30_000].join("+");
    // 50,000 nested parentheses by POST crashed it.
    let parens = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
    for (what, q, post) in [
        ("chain", &chain, false),
        ("long chain", &long_chain, true),
        ("parens", &parens, true),
    ] {
        let (status, body) = get_or_post_query(&base, q, post).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{what}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("too deeply nested") && error.contains("256"),
            "{what}: {error}"
        );
    }
    // Ten times the parentheses do not fit a request body: refused as such, in JSON.
    let huge = format!("{}1{}", "(".repeat(500_000), ")".repeat(500_000));
    let (status, body) = get_or_post_query(&base, &huge, true).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    // Nesting within the limit still evaluates, and the process is alive.
    let ok = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    let (status, body) = get_or_post_query(&base, &ok, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "1", "{body}");
    let (status, body) = get_or_post_query(&base, &vec!["1"; 200].join("+"), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "200", "{body}");
}
