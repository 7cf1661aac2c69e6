//! The page: `cargo xtask dist` builds the engine for the browser (wasm-pack, release) and writes a self-contained
//! static site to `dist/` (`dist/index.html` is the playground); `cargo xtask serve` does that and serves it.

use crate::tools::ensure_threads_toolchain;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `www/` may hold that the page does not ship: hidden files and pretraining checkpoints (gitignored).
fn shipped(name: &str) -> bool {
    !name.starts_with('.') && name != "checkpoint"
}

/// Copies a directory tree (files only; the page has no links), leaving out what is not shipped.
fn copy_tree(from: &Path, to: &Path) -> Result<u64, String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let mut bytes = 0;
    let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if !shipped(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else {
            bytes += std::fs::copy(&src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        }
    }
    Ok(bytes)
}

/// One build of the engine for the page. The worker picks the best its browser allows (www/js/worker.js); all four
/// have the same API.
struct EngineBuild {
    /// Directory under `dist/` (and `target/page-<dir>` for wasm-pack's output).
    dir: &'static str,
    /// The CPU executor on a pool of Web Workers sharing the module's memory (needs a cross-origin isolated page).
    threads: bool,
    /// Relaxed SIMD (the crate's `relaxed-simd` feature): the CPU executor's matrix products (src/cpu/packed.rs) then
    /// multiply and add with `f32x4.relaxed_madd`, one fused instruction where the CPU has FMA (Chrome 114+), instead
    /// of a multiply and an add.
    relaxed: bool,
}

const ENGINE_BUILDS: [EngineBuild; 4] = [
    EngineBuild { dir: "pkg", threads: false, relaxed: false },
    EngineBuild { dir: "pkg-relaxed", threads: false, relaxed: true },
    EngineBuild { dir: "pkg-threads", threads: true, relaxed: false },
    EngineBuild { dir: "pkg-threads-relaxed", threads: true, relaxed: true },
];

/// Runs wasm-pack for one engine build, into `target/page-<dir>`.
fn build_engine(build: &EngineBuild) -> Result<(), String> {
    // Release builds without the CLI feature; wasm-opt is off in Cargo.toml (Debian's binaryen breaks the module).
    let out_dir = format!("target/page-{}", build.dir);
    let mut args = vec!["build", "--release", "--target", "web", "--no-typescript", "--no-pack", "--out-dir", &out_dir];
    args.extend(["--", "--no-default-features"]);
    let mut crate_features = vec![];
    let mut features = vec!["+simd128"];
    let mut link_args = vec![];
    if build.threads {
        // Shared memory needs atomics in every function, so the standard library is rebuilt with them (nightly's
        // build-std). Since rust-lang/rust#147225 atomics no longer imply shared memory, so the link arguments ask
        // for it: an imported, shared memory and the thread-local-storage exports that wasm-bindgen initializes each
        // worker with. It may grow to wasm32's 4 GiB, as the single-threaded module's can (the page's memory budget
        // assumes it).
        crate_features.push("threads");
        args.extend(["-Z", "build-std=panic_abort,std"]);
        features.extend(["+atomics", "+bulk-memory"]);
        link_args.extend(["--shared-memory", "--import-memory", "--max-memory=4294967296", "--export=__wasm_init_tls"]);
        link_args.extend(["--export=__tls_size", "--export=__tls_align", "--export=__tls_base"]);
    }
    // A crate feature, not a target feature: the rest of the code, dependencies included, compiles exactly as in
    // the plain build, so both share one target directory and the relaxed build recompiles this crate only.
    if build.relaxed {
        crate_features.push("relaxed-simd");
    }
    let crate_features = crate_features.join(",");
    if !crate_features.is_empty() {
        args.extend(["--features", &crate_features]);
    }
    let mut rustflags = format!("-C target-feature={}", features.join(","));
    for arg in link_args {
        rustflags += &format!(" -C link-arg={arg}");
    }
    let mut command = if build.threads {
        let mut nightly = Command::new("rustup");
        nightly.args(["run", "nightly", "wasm-pack"]);
        nightly
    } else {
        Command::new("wasm-pack")
    };
    eprintln!("xtask: wasm-pack {} ({}{rustflags})", args.join(" "), if build.threads { "nightly, " } else { "" });
    // The threaded builds have a target directory of their own (their flags differ: every crate is recompiled), so
    // that the two kinds do not invalidate each other. No debug info: the
    // release profile keeps limited debug info for native profiling, but wasm-bindgen strips it from the module the
    // page ships, and generating it cost each build about 10 s (`pkg` from scratch: 1 m 56 s against 1 m 45 s).
    let status = command
        .args(&args)
        .env("CARGO_TARGET_DIR", if build.threads { "target/pkg-threads" } else { "target/pkg" })
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", &rustflags)
        .status()
        .map_err(|e| format!("cannot run wasm-pack: {e}"))?;
    if !status.success() {
        return Err(format!("the page's {} build failed ({status})", build.dir));
    }
    Ok(())
}

/// Builds `dist/`: `www/` as it is, plus the engine (the wasm module and its JavaScript glue) in the four builds of
/// `ENGINE_BUILDS`. Returns the directory.
pub fn dist() -> Result<PathBuf, String> {
    ensure_threads_toolchain()?;
    for build in &ENGINE_BUILDS {
        build_engine(build)?;
    }
    let dist = PathBuf::from("dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear dist/: {e}"))?;
    }
    let page_bytes = copy_tree(Path::new("www"), &dist)?;
    let mut wasm_bytes = 0;
    for build in &ENGINE_BUILDS {
        let (from, to) = (PathBuf::from(format!("target/page-{}", build.dir)), dist.join(build.dir));
        std::fs::create_dir_all(&to).map_err(|e| e.to_string())?;
        for name in ["qlora_playground.js", "qlora_playground_bg.wasm"] {
            wasm_bytes += std::fs::copy(from.join(name), to.join(name))
                .map_err(|e| format!("cannot copy {name} from {}: {e}", from.display()))?;
        }
        // wasm-bindgen-rayon's worker script, which the threaded module's glue imports from there.
        if from.join("snippets").is_dir() {
            copy_tree(&from.join("snippets"), &to.join("snippets"))?;
        }
    }
    eprintln!(
        "xtask: wrote dist/ ({:.1} MB of page and model, {:.1} MB of wasm in {} builds); serve it from any static \
         host (threads need the two cross-origin isolation headers that `cargo xtask serve` sends)",
        page_bytes as f64 / 1e6,
        wasm_bytes as f64 / 1e6,
        ENGINE_BUILDS.len()
    );
    Ok(dist)
}

/// `cargo xtask serve [--port N] [--no-build]`: builds `dist/` and serves it on 127.0.0.1 until interrupted.
pub fn serve(args: &[String]) -> Result<(), String> {
    let mut port: u16 = 8000;
    let mut build = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => {
                let v = it.next().ok_or("--port needs a number")?;
                port = v.parse().map_err(|_| format!("--port takes a port number (1-65535), not {v:?}"))?;
            }
            "--no-build" => build = false,
            other => return Err(format!("unknown option {other:?} for serve; options: --port N, --no-build")),
        }
    }
    let root = if build { dist()? } else { PathBuf::from("dist") };
    if !root.join("index.html").is_file() {
        return Err("dist/ has no page yet; run without --no-build".into());
    }
    let addr = crate::static_server::spawn_server(root, port)?;
    eprintln!("xtask: serving dist/ on http://{addr}/ (Ctrl-C to stop)");
    loop {
        std::thread::park();
    }
}
