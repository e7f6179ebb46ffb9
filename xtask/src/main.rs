//! Build automation for watchpost (`cargo xtask <command>`).
//!
//! - `cargo xtask dashboard [--dev]`: builds the Leptos dashboard for
//!   `wasm32-unknown-unknown` (adding the target with rustup if missing), binds it with
//!   `wasm-bindgen-cli-support` as a library (no downloaded tools), optionally shrinks it
//!   with `wasm-opt -Oz` (`XTASK_WASM_OPT=1`), and writes content-hashed
//!   assets plus `index.html` (each with `.gz` and `.br` siblings) into
//!   `dashboard/dist/`, which the next build of `watchpost` embeds.
//! - `cargo xtask run [ARGS…]`: the above, then `cargo run --release -- serve ARGS…`:
//!   the whole service with its dashboard, on a fresh machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

const TARGET: &str = "wasm32-unknown-unknown";
/// The dashboard's own cargo profile (opt-level "z", fat LTO; see the root Cargo.toml).
const PROFILE: &str = "wasm-release";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dashboard") => dashboard(args[1..].iter().any(|a| a == "--dev")).map(|_| ()),
        Some("run") => run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; try `cargo xtask help`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         commands:\n  \
         dashboard [--dev]   build the WASM dashboard into dashboard/dist (embedded by the next cargo build)\n  \
         run [ARGS...]       build the dashboard, then `cargo run --release -- serve ARGS...`\n  \
         help                this text"
    );
}

/// The workspace root (xtask lives in `<root>/xtask`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(args: &[String]) -> Result<()> {
    dashboard(false)?;
    let mut cmd = cargo();
    cmd.current_dir(root())
        .args(["run", "--release", "--bin", "watchpost", "--", "serve"])
        .args(args);
    eprintln!("xtask: starting watchpost (cargo run --release -- serve)");
    let status = cmd.status().context("running cargo run")?;
    if !status.success() {
        bail!("watchpost exited with {status}");
    }
    Ok(())
}

/// Builds the bundle; returns the dist directory.
fn dashboard(dev: bool) -> Result<PathBuf> {
    let started = Instant::now();
    let root = root();
    ensure_target()?;
    let target_dir = root.join("target").join("dashboard");
    let profile = if dev { "dev" } else { PROFILE };
    let mut build = cargo();
    build
        .current_dir(&root)
        .args([
            "build",
            "-p",
            "dashboard",
            "--lib",
            "--target",
            TARGET,
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the WASM build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    eprintln!("xtask: cargo build -p dashboard --target {TARGET} --profile {profile}");
    let status = build
        .status()
        .context("running cargo build for the dashboard")?;
    if !status.success() {
        bail!("building the dashboard failed ({status})");
    }
    let out_dir = if dev { "debug" } else { PROFILE };
    let wasm = target_dir.join(TARGET).join(out_dir).join("dashboard.wasm");
    let dashboard_dir = root.join("dashboard");
    let dist = dashboard_dir.join("dist");

    let css = std::fs::read(dashboard_dir.join("style.css")).context("dashboard/style.css")?;
    let template = std::fs::read_to_string(dashboard_dir.join("index.html"))
        .context("dashboard/index.html")?;
    let input = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let stamp = format!(
        "{:016x}",
        fnv1a_all(&[
            &input,
            &css,
            template.as_bytes(),
            env!("CARGO_PKG_VERSION").as_bytes(),
            &[dev as u8]
        ])
    );
    let stamp_file = dist.join(".stamp");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
        && dist.join("index.html").is_file()
    {
        eprintln!("xtask: dashboard/dist is up to date");
        return Ok(dist);
    }

    // Bind.
    let bind_dir = target_dir.join("bindgen");
    let _ = std::fs::remove_dir_all(&bind_dir);
    std::fs::create_dir_all(&bind_dir)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .web(true)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?
        .typescript(false)
        .omit_default_module_path(true)
        .remove_producers_section(true)
        .remove_name_section(!dev)
        .generate(&bind_dir)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?;
    let bound_wasm = bind_dir.join("dashboard_bg.wasm");
    let js = std::fs::read_to_string(bind_dir.join("dashboard.js")).context("bound JS")?;

    // Shrink.
    let wasm_bytes = if dev {
        std::fs::read(&bound_wasm)?
    } else {
        wasm_opt(&bound_wasm, &bind_dir.join("dashboard_opt.wasm"))?
    };

    // Hash, compress, write.
    let _ = std::fs::remove_dir_all(&dist);
    let assets = dist.join("assets");
    std::fs::create_dir_all(&assets)?;
    let wasm_name = hashed("dashboard", "wasm", &wasm_bytes);
    // The module starts itself: no inline script, so the page's CSP can forbid them.
    let js = format!(
        "{js}\n__wbg_init({{ module_or_path: new URL(\"./{wasm_name}\", import.meta.url) }});\n"
    );
    let js_name = hashed("dashboard", "js", js.as_bytes());
    let css_name = hashed("style", "css", &css);
    write_compressed(&assets.join(&wasm_name), &wasm_bytes)?;
    write_compressed(&assets.join(&js_name), js.as_bytes())?;
    write_compressed(&assets.join(&css_name), &css)?;
    let html = template
        .replace("{{css}}", &format!("/assets/{css_name}"))
        .replace("{{js}}", &format!("/assets/{js_name}"))
        .replace("{{wasm}}", &format!("/assets/{wasm_name}"));
    if html.contains("{{") {
        bail!("dashboard/index.html has an unknown {{{{placeholder}}}}");
    }
    write_compressed(&dist.join("index.html"), html.as_bytes())?;
    std::fs::write(&stamp_file, &stamp)?;

    let gz = std::fs::metadata(assets.join(format!("{wasm_name}.gz")))?.len();
    let br = std::fs::metadata(assets.join(format!("{wasm_name}.br")))?.len();
    eprintln!(
        "xtask: dashboard/dist written in {:.1}s: {wasm_name} {} KiB raw, {} KiB gzip, {} KiB brotli; {js_name} {} KiB",
        started.elapsed().as_secs_f64(),
        wasm_bytes.len() / 1024,
        gz / 1024,
        br / 1024,
        js.len() / 1024,
    );
    eprintln!("xtask: the next `cargo build` of watchpost embeds it");
    Ok(dist)
}

/// Adds the wasm32 target with rustup when it is missing.
fn ensure_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            if String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
            {
                return Ok(());
            }
            eprintln!("xtask: rustup target add {TARGET}");
            let status = Command::new("rustup")
                .args(["target", "add", TARGET])
                .status()
                .context("running rustup target add")?;
            if !status.success() {
                bail!("rustup target add {TARGET} failed");
            }
            Ok(())
        }
        // Without rustup the toolchain may still have the target (distro Rust); let
        // cargo say so if not.
        _ => {
            eprintln!("xtask: rustup not found; assuming the {TARGET} target is installed");
            Ok(())
        }
    }
}

/// Runs `wasm-opt -Oz` when asked for with `XTASK_WASM_OPT=1` and available; otherwise
/// (or if it fails) keeps the input.
///
/// Off by default: Debian bookworm's binaryen (version 108) rewrites wasm-bindgen's
/// externref table so that the module fails at start ("WebAssembly.Table.set(): Argument
/// 1 is invalid for table"), and even its output compresses worse than rustc's
/// `opt-level = "z"` + LTO output (measured: 362 vs 328 KiB gzipped). A newer binaryen
/// may do better; try it with `XTASK_WASM_OPT=1` and the browser tests.
fn wasm_opt(input: &Path, output: &Path) -> Result<Vec<u8>> {
    if !wasm_opt_wanted() {
        return Ok(std::fs::read(input)?);
    }
    let status = Command::new("wasm-opt")
        .arg("-Oz")
        .args([
            "--enable-bulk-memory",
            "--enable-mutable-globals",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-reference-types",
            "--enable-multivalue",
            "--strip-debug",
            "--strip-producers",
        ])
        .arg(input)
        .arg("-o")
        .arg(output)
        .status();
    match status {
        Ok(s) if s.success() => Ok(std::fs::read(output)?),
        Ok(s) => {
            eprintln!("xtask: wasm-opt failed ({s}); using the unoptimized module");
            Ok(std::fs::read(input)?)
        }
        Err(_) => {
            eprintln!("xtask: wasm-opt not found (Debian: apt-get install binaryen); skipping");
            Ok(std::fs::read(input)?)
        }
    }
}

fn wasm_opt_wanted() -> bool {
    std::env::var("XTASK_WASM_OPT").is_ok_and(|v| v == "1")
}

/// `<stem>-<16 hex of the content hash>.<ext>`.
fn hashed(stem: &str, ext: &str, bytes: &[u8]) -> String {
    format!("{stem}-{:016x}.{ext}", fnv1a_all(&[bytes]))
}

/// Writes `path`, `path.gz` (level 9) and `path.br` (quality 11).
fn write_compressed(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    std::fs::write(with_suffix(path, "gz"), gz.finish()?)?;
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 64 * 1024, 11, 22);
        w.write_all(bytes)?;
    }
    std::fs::write(with_suffix(path, "br"), br)?;
    Ok(())
}

fn with_suffix(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// FNV-1a 64 over several byte strings (each length-prefixed).
fn fnv1a_all(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    for p in parts {
        for b in (p.len() as u64).to_le_bytes() {
            eat(b);
        }
        for b in *p {
            eat(*b);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_follow_content() {
        let a = hashed("dashboard", "wasm", b"one");
        assert!(a.starts_with("dashboard-") && a.ends_with(".wasm") && a.len() == 31);
        assert_ne!(a, hashed("dashboard", "wasm", b"two"));
        assert_eq!(a, hashed("dashboard", "wasm", b"one"));
        assert_ne!(fnv1a_all(&[b"ab", b"c"]), fnv1a_all(&[b"a", b"bc"]));
    }
}
