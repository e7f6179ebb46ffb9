//! Graceful shutdown of the real binary: SIGTERM while a slow request is in flight lets
//! it finish (202, durable) and the process exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, command, sqlite_db};
use serde_json::Value;

fn spawn(dir: &std::path::Path, url: &str) -> Server {
    let mut cmd = command(dir);
    cmd.arg("serve")
        .env("WATCHPOST_LISTEN", "127.0.0.1:0")
        .env("WATCHPOST_DATABASE_URL", url)
        .env("WATCHPOST_RULES__FILES", "");
    Server::spawn(cmd)
}

#[test]
fn sigterm_lets_a_slow_ingest_request_finish() {
    let db = sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &db.url);

    let body = br#"{"message":"sent slowly during shutdown","labels":{"alertname":"Slow","instance":"a"}}"#;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/v1/alerts HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    )
    .unwrap();
    s.write_all(&body[..10]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    // The rest of the body over about two seconds.
    for chunk in body[10..].chunks(body[10..].len() / 8 + 1) {
        std::thread::sleep(Duration::from_millis(250));
        s.write_all(chunk).unwrap();
        s.flush().unwrap();
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the in-flight request must complete: {response:?}"
    );
    let json_body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(json_body.trim()).unwrap_or(Value::Null);
    let id = v["ids"][0].as_i64().expect("an id in the 202");
    assert_eq!(
        server.wait_exit(Duration::from_secs(20)),
        Some(0),
        "exit code"
    );

    // And it was stored.
    let server = spawn(dir.path(), &db.url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a: Value = rt.block_on(async {
        common::client()
            .get(format!("{}/api/v1/alerts/{id}", server.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(a["message"], "sent slowly during shutdown");
}
