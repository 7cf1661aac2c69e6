//! `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target in fuzz/ for a bounded time (CI: `cargo xtask test` runs
//! them too), starting from the committed corpus in fuzz/corpus/<target>/. New inputs that libFuzzer finds go to a
//! scratch corpus, so a run never dirties the checkout; a crash fails the run and leaves its input in
//! fuzz/artifacts/<target>/ to become a regression test.

use crate::tools::{ensure_fuzz_tools, run};

/// The targets in fuzz/Cargo.toml.
pub const TARGETS: [&str; 6] =
    ["model_bytes", "config_json", "adapter_bytes", "url_query", "saved_run", "tokenizer_files"];

/// Seconds per target in CI.
pub const CI_SECONDS: u64 = 20;

pub fn fuzz(args: &[String]) -> Result<(), String> {
    let seconds = match args.first() {
        None => CI_SECONDS,
        Some(s) => s.parse().map_err(|_| format!("fuzz takes a number of seconds per target, not {s:?}"))?,
    };
    ensure_fuzz_tools()?;
    let scratch = std::env::temp_dir().join("qlora-fuzz-corpus");
    for target in TARGETS {
        let fresh = scratch.join(target);
        std::fs::create_dir_all(&fresh).map_err(|e| format!("cannot create {}: {e}", fresh.display()))?;
        let committed = format!("fuzz/corpus/{target}");
        let time = format!("-max_total_time={seconds}");
        // The first corpus directory receives new inputs; the committed one only seeds the run.
        run(
            "cargo",
            &[
                "+nightly",
                "fuzz",
                "run",
                "--fuzz-dir",
                "fuzz",
                target,
                fresh.to_str().expect("utf-8 temp dir"),
                &committed,
                "--",
                &time,
                "-rss_limit_mb=2048",
                "-max_len=65536",
            ],
        )?;
    }
    Ok(())
}
