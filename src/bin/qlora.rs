fn main() -> std::process::ExitCode {
    qlora_playground::cli::main()
}
