//! The `qlora` command line (native only; the wasm32 build of this target is empty).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    qlora_playground::cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
