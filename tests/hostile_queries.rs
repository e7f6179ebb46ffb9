//! Hostile PromQL from anyone who can reach the port, against the real binary: queries
//! ten times deeper than the ones that overflowed a worker's stack and killed the
//! process get a 400 naming the limit, and the service keeps answering.

mod common;

use common::{Server, command};
use serde_json::Value;

/// A query by GET (`POST` when `post`), as status and JSON body.
async fn query(base: &str, q: &str, post: bool) -> (u16, Value) {
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
        let (status, body) = query(&base, q, post).await;
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
    let (status, body) = query(&base, &huge, true).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    // Nesting within the limit still evaluates, and the process is alive.
    let ok = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    let (status, body) = query(&base, &ok, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "1", "{body}");
    let (status, body) = query(&base, &vec!["1"; 200].join("+"), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][1], "200", "{body}");
}
