//! Running programs, and installing what a fresh Debian/Ubuntu machine lacks (needs root there, as CI has).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program).args(args).status().map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Installs Debian packages. A fresh machine's package lists may be empty, so they are fetched first, once per run.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    static LISTS_FETCHED: AtomicBool = AtomicBool::new(false);
    if !LISTS_FETCHED.load(Ordering::Relaxed) {
        run("apt-get", &["update", "-qq"])?;
        LISTS_FETCHED.store(true, Ordering::Relaxed);
    }
    run("apt-get", &[&["install", "-y", "-qq"], packages].concat())
}

/// How `cargo install` compiles a tool.
enum Build {
    /// Optimized: for a tool that does the work itself (wasm-bindgen rewrites every test module).
    Release,
    /// Unoptimized, which compiles several times faster: for tools that only start other programs and relay their
    /// output (geckodriver, wasm-pack, cargo-fuzz), where optimizing gains nothing a run could measure.
    Debug,
}

/// `cargo install` of one pinned version, with the dependency versions its authors published (`--locked`), so a
/// new release of some dependency cannot break CI. A published lock can name a version since yanked (seen:
/// wasm-bindgen-cli 0.2.130's lock wants webpki-roots 1.0.11), which `--locked` cannot resolve: then the newest
/// compatible versions are taken instead, and the log says so.
fn cargo_install(krate: &str, version: &str, build: Build) -> Result<(), String> {
    let mut args = vec!["install", krate, "--version", version];
    if let Build::Debug = build {
        args.push("--debug");
    }
    if run("cargo", &[&args[..], &["--locked"]].concat()).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: {krate} {version} did not install with its published Cargo.lock; trying without --locked");
    run("cargo", &args)
}

/// Installs a rustup component when it is missing (fresh machines may lack clippy or rustfmt).
pub fn ensure_component(component: &str, probe: &[&str]) -> Result<(), String> {
    let ok = Command::new("cargo").args(probe).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        run("rustup", &["component", "add", component])?;
    }
    Ok(())
}

/// Adds the wasm32 target when rustup lacks it (the page build and the wasm check need it).
pub fn ensure_wasm_target() -> Result<(), String> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        run("rustup", &["target", "add", "wasm32-unknown-unknown"])?;
    }
    Ok(())
}

/// Installs Mesa's lavapipe (Vulkan on the CPU) when no Vulkan driver is present, so the GPU parity tests run on
/// machines without a GPU. Needs root, as CI has.
pub fn ensure_vulkan_driver() -> Result<(), String> {
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_driver = icd_dirs.iter().any(|d| std::fs::read_dir(d).map(|mut e| e.next().is_some()).unwrap_or(false));
    let has_loader = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libvulkan.so.1").exists()
        || std::path::Path::new("/usr/lib/aarch64-linux-gnu/libvulkan.so.1").exists();
    if has_driver && has_loader {
        return Ok(());
    }
    apt_install(&["mesa-vulkan-drivers", "libvulkan1"])
}

/// The system's OpenBLAS with its link-time library, for the CPU executor's optional `openblas` feature.
pub fn ensure_openblas() -> Result<(), String> {
    let dev = ["/usr/lib/x86_64-linux-gnu/libopenblas.so", "/usr/lib/aarch64-linux-gnu/libopenblas.so"];
    if dev.iter().any(|p| std::path::Path::new(p).exists()) {
        return Ok(());
    }
    apt_install(&["libopenblas-dev"])
}

/// Whether `program --version` runs and its output contains `needle`.
pub fn has_version(program: &str, needle: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
        .unwrap_or(false)
}

/// The version of a package as Cargo.lock pins it.
pub fn locked_version(package: &str) -> Result<String, String> {
    let lock = std::fs::read_to_string("Cargo.lock").map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{package}\"") {
            if let Some(v) = lines.next().and_then(|l| l.trim().strip_prefix("version = ")) {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    Err(format!("{package} is not in Cargo.lock"))
}

/// wasm-pack, and wasm-bindgen-cli at exactly the wasm-bindgen version that Cargo.lock pins (wasm-pack then finds it
/// on PATH and downloads nothing), plus the wasm32 target.
pub fn ensure_wasm_tools() -> Result<(), String> {
    ensure_wasm_target()?;
    let bindgen = locked_version("wasm-bindgen")?;
    if !has_version("wasm-bindgen", &bindgen) {
        cargo_install("wasm-bindgen-cli", &bindgen, Build::Release)?;
    }
    if !has_version("wasm-pack", "wasm-pack") {
        cargo_install("wasm-pack", "0.15.1", Build::Debug)?;
    }
    Ok(())
}

/// Debian's Chromium and ChromeDriver and Debian's Firefox ESR with geckodriver (browser tests), and the wasm tools.
/// geckodriver is built from crates.io: without it on PATH, wasm-pack would try to download one.
pub fn ensure_browser_tools() -> Result<(), String> {
    let missing = |path: &str| !std::path::Path::new(path).exists();
    if missing("/usr/bin/chromium") || missing("/usr/bin/chromedriver") || missing("/usr/bin/firefox-esr") {
        apt_install(&["chromium", "chromium-driver", "firefox-esr"])?;
    }
    if !has_version("geckodriver", "geckodriver") {
        cargo_install("geckodriver", "0.37.1", Build::Debug)?;
    }
    ensure_wasm_tools()
}

/// Node.js and npm (page tests), from Debian when missing.
pub fn ensure_node() -> Result<(), String> {
    if !has_version("node", "v") || !has_version("npm", ".") {
        apt_install(&["nodejs", "npm"])?;
    }
    Ok(())
}

/// The nightly toolchain, installed when missing (fuzzing and the page's threaded build need unstable flags).
fn ensure_nightly() -> Result<(), String> {
    let nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output();
    if !nightly.map(|o| o.status.success()).unwrap_or(false) {
        run("rustup", &["toolchain", "install", "nightly", "--profile", "minimal"])?;
    }
    Ok(())
}

/// What the page's threaded build needs beyond the wasm tools: nightly with the standard library's source (it is
/// rebuilt with atomics: `-Z build-std`) and the wasm32 target.
pub fn ensure_threads_toolchain() -> Result<(), String> {
    ensure_wasm_tools()?;
    ensure_nightly()?;
    let installed = |what: &str| {
        Command::new("rustup")
            .args([what, "list", "--installed", "--toolchain", "nightly"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    if !installed("component").lines().any(|l| l.starts_with("rust-src")) {
        run("rustup", &["component", "add", "rust-src", "--toolchain", "nightly"])?;
    }
    if !installed("target").lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        run("rustup", &["target", "add", "wasm32-unknown-unknown", "--toolchain", "nightly"])?;
    }
    Ok(())
}

/// cargo-fuzz at a pinned version and the nightly toolchain it builds with (libFuzzer + sanitizers need nightly).
pub fn ensure_fuzz_tools() -> Result<(), String> {
    ensure_nightly()?;
    if !Command::new("cargo").args(["fuzz", "--version"]).output().map(|o| o.status.success()).unwrap_or(false) {
        cargo_install("cargo-fuzz", CARGO_FUZZ_VERSION, Build::Debug)?;
    }
    Ok(())
}

/// The cargo-fuzz release the fuzz targets are built with.
const CARGO_FUZZ_VERSION: &str = "0.13.1";
