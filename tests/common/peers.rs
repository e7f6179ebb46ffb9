//! Real peers as child processes: Debian's `prometheus` and `prometheus-alertmanager`
//! on free loopback ports, each in its own temporary folder, killed on drop, every wait
//! bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A Debian binary, or `None` (skip) when missing; missing is a failure under `CI=true`.
pub fn debian_binary(exe: &'static str, package: &str) -> Option<&'static str> {
    if Path::new(exe).exists() {
        return Some(exe);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {exe} is missing: apt-get install {package}");
    }
    eprintln!("{exe} missing: skipping (apt-get install {package})");
    None
}

/// A peer process with its folder and port.
pub struct Peer {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    name: &'static str,
    exe: String,
    args: Vec<String>,
}

impl Peer {
    /// The peer's folder (config, data, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the peer logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Waits until `GET /-/ready` answers 200, at most `timeout`; panics with the log.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let client = super::client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            let ready = client
                .get(format!("{}/-/ready", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            if Instant::now() >= deadline {
                panic!("{} not ready after {timeout:?}:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Peer {
    /// Kills the peer (SIGKILL) and waits for it; its folder stays.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the peer again, same folder, port and flags (after [`Peer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.child = launch(&self.exe, self.dir.path(), &self.args);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    name: &'static str,
    exe: &str,
    dir: tempfile::TempDir,
    port: u16,
    args: &[String],
) -> Peer {
    let child = launch(exe, dir.path(), args);
    Peer {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
        name,
        exe: exe.to_string(),
        args: args.to_vec(),
    }
}

/// Spawns `exe` in `dir`, its output appended to `dir/log`.
fn launch(exe: &str, dir: &Path, args: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .expect("peer log file");
    Command::new(exe)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {exe}: {e}"))
}

fn write_files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("wp-peer")
        .tempdir()
        .expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write peer file");
    }
    dir
}

fn path_arg(flag: &str, dir: &Path, name: &str) -> String {
    let p: PathBuf = dir.join(name);
    format!("--{flag}={}", p.display())
}

/// Starts Prometheus with `prometheus.yml` and any other `files` (name, text) in its
/// folder, plus `extra` flags.
pub fn start_prometheus(exe: &str, files: &[(&str, &str)], extra: &[&str]) -> Peer {
    let dir = write_files(files);
    let port = free_port();
    let mut args = vec![
        path_arg("config.file", dir.path(), "prometheus.yml"),
        path_arg("storage.tsdb.path", dir.path(), "data"),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn("prometheus", exe, dir, port, &args)
}

/// Starts Alertmanager with `config` as `alertmanager.yml`, clustering off.
pub fn start_alertmanager(exe: &str, config: &str) -> Peer {
    let dir = write_files(&[("alertmanager.yml", config)]);
    let port = free_port();
    let args = vec![
        path_arg("config.file", dir.path(), "alertmanager.yml"),
        path_arg("storage.path", dir.path(), "data"),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_string(),
        "--log.level=debug".to_string(),
    ];
    spawn("alertmanager", exe, dir, port, &args)
}

/// Starts `exe` with `args` in a fresh folder (its log there); `port` is where it listens.
pub fn start_plain(name: &'static str, exe: &str, port: u16, args: &[String]) -> Peer {
    spawn(name, exe, write_files(&[]), port, args)
}
