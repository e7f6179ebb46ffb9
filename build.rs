//! Embeds `migrations/{sqlite,postgres}/NNNN_description.sql` and the built dashboard
//! (`dashboard/dist`) into the binary.
//!
//! Release builds (`cargo run --release`, `cargo build --release`) first build the
//! dashboard themselves: a nested `cargo run -p xtask -- dashboard` with its own target
//! directory (so it cannot wait on this build's lock), which adds the wasm32 target when
//! missing, compiles and binds the WASM and writes `dashboard/dist`. Debug builds embed
//! whatever `dashboard/dist` holds (`cargo xtask dashboard` writes it). Override with
//! `WATCHPOST_DASHBOARD_BUILD=always|never`. When the dashboard cannot be built, the
//! binary still builds and `/` says why and which command fixes it.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The package root, as cargo says at run time (not when this script was compiled: a
/// build script binary can be reused from another checkout).
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let mut out = String::new();
    for backend in ["sqlite", "postgres"] {
        let dir = manifest_dir().join("migrations").join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list migrations in {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
        files.sort();
        assert!(!files.is_empty(), "no migrations in {}", dir.display());
        writeln!(
            out,
            "/// Migrations for {backend}: (version, description, sql)."
        )
        .unwrap();
        writeln!(
            out,
            "pub const {}: &[(i64, &str, &str)] = &[",
            backend.to_uppercase()
        )
        .unwrap();
        for path in files {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let (version, description) = stem.split_once('_').unwrap_or((stem, ""));
            let version: i64 = version.parse().unwrap_or_else(|_| {
                panic!("migration {} must start with a number", path.display())
            });
            writeln!(
                out,
                "    ({version}, {description:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(out, "];").unwrap();
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("migrations.rs");
    std::fs::write(dest, out).unwrap();
    dashboard_assets();
}

/// Whether this build compiles the dashboard itself (release builds, unless overridden).
fn should_build_dashboard(root: &Path) -> bool {
    println!("cargo:rerun-if-env-changed=WATCHPOST_DASHBOARD_BUILD");
    if !root.join("dashboard").join("Cargo.toml").is_file() || !root.join("xtask").is_dir() {
        return false;
    }
    match std::env::var("WATCHPOST_DASHBOARD_BUILD").as_deref() {
        Ok("always") => true,
        Ok("never") => false,
        _ => std::env::var("PROFILE").is_ok_and(|p| p == "release"),
    }
}

/// The outer build's target directory (for the nested builds' own directories).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `cargo xtask dashboard` in a nested cargo; `Err` carries the reason to show.
fn build_dashboard(root: &Path) -> Result<(), String> {
    for watched in [
        "dashboard/src",
        "dashboard/Cargo.toml",
        "dashboard/index.html",
        "dashboard/style.css",
        "xtask/src",
        "xtask/Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["run", "--quiet", "--package", "xtask", "--target-dir"])
        .arg(target_dir(root).join("xtask"))
        .args(["--", "dashboard"]);
    // This build's settings (flags, wrappers such as clippy-driver, the target) are not
    // meant for the nested builds.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo for the dashboard: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(6)
        .collect();
    Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

/// Writes `dashboard_assets.rs`: one `Asset` per file of `dashboard/dist` (with its
/// precompressed `.gz`/`.br` siblings), or an empty list when the dashboard is not built,
/// and `BUILD_NOTE`: why not, when known.
fn dashboard_assets() {
    let root = &manifest_dir();
    let dist = root.join("dashboard").join("dist");
    let mut note = String::new();
    if should_build_dashboard(root)
        && let Err(why) = build_dashboard(root)
    {
        for line in why.lines() {
            println!("cargo:warning=dashboard not built: {line}");
        }
        note = why;
    }
    // Watch the directory that exists, so creating dist/ later also triggers a rebuild.
    if dist.is_dir() {
        println!("cargo:rerun-if-changed={}", dist.display());
    } else {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("dashboard").display()
        );
    }
    let mut files = Vec::new();
    collect_files(&dist, &mut files);
    files.sort();
    let mut out =
        String::from("/// Files of the built dashboard.\npub static ASSETS: &[Asset] = &[\n");
    for path in files {
        let name = path.to_string_lossy();
        if name.ends_with(".gz") || name.ends_with(".br") {
            continue;
        }
        let rel = path
            .strip_prefix(&dist)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with('.') || rel.contains("/.") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let sibling = |ext: &str| {
            let p = path.with_file_name(format!(
                "{}.{ext}",
                path.file_name().unwrap().to_string_lossy()
            ));
            if p.is_file() {
                format!("Some(include_bytes!({:?}))", p.display().to_string())
            } else {
                "None".to_string()
            }
        };
        writeln!(
            out,
            "    Asset {{ path: {:?}, body: include_bytes!({:?}), gzip: {}, br: {}, etag: \"\\\"{:016x}\\\"\" }},",
            format!("/{rel}"),
            path.display().to_string(),
            sibling("gz"),
            sibling("br"),
            fnv1a(&bytes),
        )
        .unwrap();
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// Why the build could not make the dashboard (empty when it did or did not try).\npub static BUILD_NOTE: &str = {note:?};"
    )
    .unwrap();
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("dashboard_assets.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.filter_map(Result::ok) {
        let p = entry.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// FNV-1a, 64 bit: a stable content hash for ETags.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
