//! Running programs, and installing what a fresh Debian/Ubuntu machine lacks (needs root there, as CI has).

use std::cell::RefCell;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

thread_local! {
    /// Where this thread's messages and the output of the programs it runs go: the terminal, or the log of the
    /// installs running in the background (`Installs`), which would otherwise interleave with the checks' output.
    static LOG: RefCell<Option<File>> = const { RefCell::new(None) };
}

/// A line from the xtask, to the terminal or to this thread's log.
pub fn say(line: &str) {
    LOG.with(|log| match &mut *log.borrow_mut() {
        Some(file) => {
            let _ = writeln!(file, "xtask: {line}");
        }
        None => eprintln!("xtask: {line}"),
    });
}

pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    say(&format!("{program} {}", args.join(" ")));
    let in_background = LOG.with(|log| log.borrow().is_some());
    // In the background a program runs niced, so it takes only the CPU time the checks leave, and without a
    // terminal to wait on (apt is non-interactive anyway: DEBIAN_FRONTEND below).
    let mut command = if in_background { Command::new("nice") } else { Command::new(program) };
    if in_background {
        command.args(["-n", "10", program]);
    }
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    LOG.with(|log| -> Result<(), String> {
        if let Some(file) = &*log.borrow() {
            let out = file.try_clone().map_err(|e| format!("cannot share the install log: {e}"))?;
            let err = file.try_clone().map_err(|e| format!("cannot share the install log: {e}"))?;
            command.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        }
        Ok(())
    })?;
    let status = command.status().map_err(|e| format!("cannot run {program}: {e}"))?;
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
    say(&format!("{krate} {version} did not install with its published Cargo.lock; trying without --locked"));
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

/// Mesa's lavapipe (Vulkan on the CPU), when no Vulkan driver is present, so the GPU parity tests run on machines
/// without a GPU.
fn vulkan_packages() -> &'static [&'static str] {
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_driver = icd_dirs.iter().any(|d| std::fs::read_dir(d).map(|mut e| e.next().is_some()).unwrap_or(false));
    let has_loader = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libvulkan.so.1").exists()
        || std::path::Path::new("/usr/lib/aarch64-linux-gnu/libvulkan.so.1").exists();
    if has_driver && has_loader {
        &[]
    } else {
        &["mesa-vulkan-drivers", "libvulkan1"]
    }
}

/// Installs lavapipe when no Vulkan driver is present. Needs root, as CI has.
pub fn ensure_vulkan_driver() -> Result<(), String> {
    install_missing(vulkan_packages())
}

/// The system's OpenBLAS with its link-time library, for the CPU executor's optional `openblas` feature.
fn openblas_packages() -> &'static [&'static str] {
    let dev = ["/usr/lib/x86_64-linux-gnu/libopenblas.so", "/usr/lib/aarch64-linux-gnu/libopenblas.so"];
    if dev.iter().any(|p| std::path::Path::new(p).exists()) {
        &[]
    } else {
        &["libopenblas-dev"]
    }
}

pub fn ensure_openblas() -> Result<(), String> {
    install_missing(openblas_packages())
}

fn install_missing(packages: &[&str]) -> Result<(), String> {
    if packages.is_empty() {
        Ok(())
    } else {
        apt_install(packages)
    }
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
    ensure_bindgen_and_wasm_pack(&locked_version("wasm-bindgen")?)
}

fn ensure_bindgen_and_wasm_pack(bindgen: &str) -> Result<(), String> {
    if !has_version("wasm-bindgen", bindgen) {
        cargo_install("wasm-bindgen-cli", bindgen, Build::Release)?;
    }
    if !has_version("wasm-pack", "wasm-pack") {
        cargo_install("wasm-pack", "0.15.1", Build::Debug)?;
    }
    Ok(())
}

/// Debian's Chromium and ChromeDriver and Debian's Firefox ESR with geckodriver (browser tests), and the wasm tools.
/// geckodriver is built from crates.io: without it on PATH, wasm-pack would try to download one.
pub fn ensure_browser_tools() -> Result<(), String> {
    install_missing(browser_packages())?;
    ensure_geckodriver()?;
    ensure_wasm_tools()
}

fn browser_packages() -> &'static [&'static str] {
    let missing = |path: &str| !std::path::Path::new(path).exists();
    if missing("/usr/bin/chromium") || missing("/usr/bin/chromedriver") || missing("/usr/bin/firefox-esr") {
        &["chromium", "chromium-driver", "firefox-esr"]
    } else {
        &[]
    }
}

fn ensure_geckodriver() -> Result<(), String> {
    if !has_version("geckodriver", "geckodriver") {
        cargo_install("geckodriver", "0.37.1", Build::Debug)?;
    }
    Ok(())
}

/// Node.js and npm (page tests), from Debian when missing.
pub fn ensure_node() -> Result<(), String> {
    install_missing(node_packages())
}

fn node_packages() -> &'static [&'static str] {
    if !has_version("node", "v") || !has_version("npm", ".") {
        &["nodejs", "npm"]
    } else {
        &[]
    }
}

/// The installs `cargo xtask test` needs after its first checks, running on a thread of their own meanwhile: on a
/// fresh machine they are minutes of downloads and of compiling tools (geckodriver, wasm-bindgen-cli, wasm-pack),
/// niced, so they take the CPU time that formatting, clippy and fuzzing leave idle (a crate compiled alone at the end
/// of a build, the fuzz runs' single thread). Their output goes to a log, printed when they fail. They use no
/// toolchain the checks use: rustup changes nothing here. apt may replace system libraries while the checks link
/// with them; dpkg replaces each file by a rename, so a link sees the old file or the new one.
pub struct Installs {
    thread: JoinHandle<Result<(), String>>,
    log: PathBuf,
    started: Instant,
}

impl Installs {
    /// Starts them: the system packages of every later phase in one apt run, then the browser and wasm tools.
    pub fn start() -> Result<Installs, String> {
        // Read before the checks start: cargo may rewrite the file.
        let bindgen = locked_version("wasm-bindgen")?;
        std::fs::create_dir_all("target").map_err(|e| format!("cannot create target/: {e}"))?;
        let log = PathBuf::from("target/xtask-installs.log");
        let file = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        eprintln!("xtask: installing what later checks need, in the background (log: {})", log.display());
        let thread = std::thread::spawn(move || {
            LOG.with(|l| *l.borrow_mut() = Some(file));
            let packages: Vec<&str> =
                [vulkan_packages(), browser_packages(), openblas_packages(), node_packages()].concat();
            install_missing(&packages)?;
            ensure_geckodriver()?;
            ensure_bindgen_and_wasm_pack(&bindgen)
        });
        Ok(Installs { thread, log, started: Instant::now() })
    }

    /// Waits for them; on failure, the log's last lines and the error.
    pub fn finish(self) -> Result<(), String> {
        if !self.thread.is_finished() {
            eprintln!("xtask: waiting for the background installs (log: {})", self.log.display());
        }
        let result = self.thread.join().unwrap_or_else(|_| Err("the background installs panicked".into()));
        eprintln!(
            "xtask: background installs {} after {:.0} s",
            if result.is_ok() { "done" } else { "FAILED" },
            self.started.elapsed().as_secs_f64(),
        );
        if result.is_err() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("  {line}");
            }
        }
        result
    }
}

/// The nightly toolchain, installed when missing (fuzzing and the page's threaded build need unstable flags).
pub fn ensure_nightly() -> Result<(), String> {
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
    ensure_nightly_wasm_parts()
}

/// Nightly's standard library source and wasm32 target (nightly itself already installed).
pub fn ensure_nightly_wasm_parts() -> Result<(), String> {
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
