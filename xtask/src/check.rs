//! `cargo xtask test`: every check CI runs, installing what is missing first.

use crate::tools::{
    ensure_browser_tools, ensure_component, ensure_nightly, ensure_nightly_wasm_parts, ensure_node, ensure_openblas,
    ensure_vulkan_driver, ensure_wasm_target, run, Installs,
};
use crate::{page, static_server};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long each part of the run took, printed when it ends (passed or not): CI has 45 minutes on two cores, and
/// this says where they go.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        Phases { last: Instant::now(), done: Vec::new() }
    }

    /// Ends the phase that began when the previous one ended.
    fn end(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    fn print(&self) {
        let total: Duration = self.done.iter().map(|(_, d)| *d).sum::<Duration>() + self.last.elapsed();
        eprintln!("xtask: time per phase");
        for (name, d) in &self.done {
            eprintln!("  {name:<40} {:>6.0} s", d.as_secs_f64());
        }
        eprintln!("  {:<40} {:>6.0} s ({:.1} min)", "total", total.as_secs_f64(), total.as_secs_f64() / 60.0);
    }
}

pub fn test() -> Result<(), String> {
    let mut phases = Phases::new();
    let result = test_in_phases(&mut phases);
    phases.print();
    result
}

fn test_in_phases(phases: &mut Phases) -> Result<(), String> {
    ensure_component("rustfmt", &["fmt", "--version"])?;
    ensure_component("clippy", &["clippy", "--version"])?;
    // Toolchains first, here: nothing in the background changes one that a check is using.
    ensure_wasm_target()?;
    ensure_nightly()?;
    ensure_nightly_wasm_parts()?;
    let installs = Installs::start()?;
    // A failed check still waits for the installs, so a run never ends with apt or cargo half-way through.
    let checked = lints_and_fuzzing(phases);
    if let Err(e) = &checked {
        eprintln!("xtask: {e}");
    }
    let installed = installs.finish();
    checked?;
    installed?;
    // Whatever the background installs did not cover (nothing, unless a check above removed something).
    ensure_vulkan_driver()?;
    ensure_browser_tools()?;
    phases.end("waiting for the background installs");
    // The WebGPU executor in headless Chromium (WebGPU on SwiftShader) and headless Firefox (its WebGPU is wgpu, on
    // lavapipe); webdriver.json enables WebGPU in both. The plain commands users type, with the runner's default
    // timeout, which every browser test must stay well inside.
    for browser in ["--chrome", "--firefox"] {
        let args = ["test", "--headless", browser];
        eprintln!("xtask: wasm-pack {}", args.join(" "));
        // wasm-pack compiles the tests twice: `cargo build --tests` (the dev profile), then `cargo test` (the test
        // profile: opt-level 2, line tables). With the dev profile given the test profile's settings, Cargo reuses
        // every dependency of the first build in the second (measured: 1 m 14 s of 3 m 40 s was the first build).
        let status = Command::new("wasm-pack")
            .args(args)
            .env("CARGO_PROFILE_DEV_OPT_LEVEL", "2")
            .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
            .env_remove("WASM_BINDGEN_TEST_TIMEOUT")
            .status()
            .map_err(|e| format!("cannot run wasm-pack: {e}"))?;
        if !status.success() {
            return Err(format!("browser tests failed in {} ({status})", &browser[2..]));
        }
        phases.end(if browser == "--chrome" { "wasm-pack test --chrome" } else { "wasm-pack test --firefox" });
    }
    page_tests(phases)?;
    // The optional OpenBLAS multiply (feature `openblas`): linted, and the CPU executor's own tests run on it (the
    // multiply in every orientation and split, the layers and the optimizer).
    ensure_openblas()?;
    run("cargo", &["clippy", "--lib", "--features", "openblas", "--", "-D", "warnings"])?;
    run("cargo", &["test", "--lib", "--features", "openblas", "cpu::"])?;
    phases.end("OpenBLAS: clippy and tests");
    // Native tests last, so their summary closes the log. wgpu's Vulkan loader wants XDG_RUNTIME_DIR (it only warns).
    let args = ["test", "--package", "qlora-playground", "--all-targets"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let runtime_dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let status = Command::new("cargo")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    phases.end("native tests (build and runs)");
    if !status.success() {
        return Err(format!("tests failed ({status})"));
    }
    Ok(())
}

/// Formatting, clippy (native and wasm32) and the fuzz targets: the phases the installs run beside.
fn lints_and_fuzzing(phases: &mut Phases) -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    phases.end("fmt, clippy");
    // The engine must keep compiling for the browser (no CLI there), and its browser-only code (`web::api`) and the
    // browser tests (tests/browser*.rs, which native clippy never sees) are linted like the rest: clippy checks
    // without generating code, quicker than the build it replaces.
    run(
        "cargo",
        &[
            "clippy",
            "--lib",
            "--tests",
            "--no-default-features",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    phases.end("clippy for wasm32");
    // The loaders of untrusted input (model and adapter files, config.json, links) under libFuzzer, bounded.
    crate::fuzz::fuzz(&[])?;
    phases.end("fuzzing (build and runs)");
    Ok(())
}

/// The page end to end: build `dist/`, serve it, and drive it in headless Chromium (Playwright) and headless
/// Firefox (puppeteer-core over WebDriver BiDi), each with WebGPU and without (the CPU fallback). Screenshots land in
/// tests/page/artifacts/<browser>/.
fn page_tests(phases: &mut Phases) -> Result<(), String> {
    ensure_node()?;
    let dir = "tests/page";
    eprintln!("xtask: npm ci (in {dir})");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !status.success() {
        return Err(format!("npm ci failed ({status})"));
    }
    let root = page::dist()?;
    phases.end("npm ci and the page's four builds");
    let addr = static_server::spawn_server(root, 0)?;
    // Every test file there, so that a new one cannot be left out of CI.
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {dir}: {e}"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    for browser in ["chromium", "firefox"] {
        eprintln!("xtask: page tests in {browser} against http://{addr}/: {}", files.join(" "));
        let status = Command::new("node")
            .args(["--test", "--test-concurrency=1"])
            .args(&files)
            .current_dir(dir)
            .env("PAGE_URL", format!("http://{addr}/"))
            .env("BROWSER", browser)
            .status()
            .map_err(|e| format!("cannot run node: {e}"))?;
        phases.end(if browser == "chromium" { "page tests in Chromium" } else { "page tests in Firefox" });
        if !status.success() {
            return Err(format!(
                "page tests failed in {browser} ({status}); screenshots in {dir}/artifacts/{browser}/"
            ));
        }
    }
    eprintln!("xtask: page tests passed in both browsers; screenshots in {dir}/artifacts/");
    Ok(())
}
