//! Embeds `migrations/{sqlite,postgres}/NNNN_description.sql` and the built dashboard
//! (`dashboard/dist`, made by `cargo xtask dashboard`) into the binary.

use std::fmt::Write;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let mut out = String::new();
    for backend in ["sqlite", "postgres"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
        files.sort();
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

/// Writes `dashboard_assets.rs`: one `Asset` per file of `dashboard/dist` (with its
/// precompressed `.gz`/`.br` siblings), or an empty list when the dashboard is not built.
fn dashboard_assets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dist = root.join("dashboard").join("dist");
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
