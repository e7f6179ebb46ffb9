//! A Kafka-protocol broker for tests: librdkafka's mock cluster, started by `kcat`
//! (Debian's kcat 1.7.1, librdkafka 2.0.2). The same `kcat` process consumes one topic
//! from the beginning and prints each record, so a test reads back what arrived.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One record as the consumer printed it.
#[derive(Debug, Clone)]
pub struct Consumed {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: String,
    /// Headers as kcat prints them (`name=value,…`).
    pub headers: String,
    /// Value.
    pub value: String,
}

/// A running mock cluster with its consumer.
pub struct KafkaMock {
    child: Child,
    /// `127.0.0.1:PORT` of the mock broker.
    pub addr: String,
    records: Arc<Mutex<Vec<Consumed>>>,
}

/// Whether `kcat` is installed; under `CI=true` its absence is a failure.
pub fn available() -> bool {
    let ok = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but kcat is not installed: run the tests with scripts/test.sh");
    }
    if !ok {
        eprintln!("kcat not installed; skipping (scripts/test.sh installs it)");
    }
    ok
}

impl KafkaMock {
    /// Starts a one-broker mock cluster consuming `topic` (auto-created, 4 partitions).
    pub fn start(topic: &str) -> KafkaMock {
        let mut child = Command::new("kcat")
            .args([
                "-b",
                "127.0.0.1:1",
                "-X",
                "test.mock.num.brokers=1",
                "-C",
                "-u",
            ])
            .args(["-t", topic, "-o", "beginning"])
            .args(["-f", "%p\t%o\t%k\t%h\t%s\n"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kcat");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("replaced with ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("kcat names the mock cluster's address");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let f: Vec<&str> = line.splitn(5, '\t').collect();
                if f.len() == 5 {
                    sink.lock().unwrap().push(Consumed {
                        partition: f[0].parse().unwrap_or(-1),
                        offset: f[1].parse().unwrap_or(-1),
                        key: f[2].to_string(),
                        headers: f[3].to_string(),
                        value: f[4].to_string(),
                    });
                }
            }
        });
        KafkaMock {
            child,
            addr,
            records,
        }
    }

    /// Records consumed so far, in arrival order.
    pub fn records(&self) -> Vec<Consumed> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` records arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Consumed> {
        let start = std::time::Instant::now();
        loop {
            let r = self.records();
            if r.len() >= n || start.elapsed() > timeout {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for KafkaMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
