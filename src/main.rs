fn main() -> std::process::ExitCode {
    meshmedic::cli::main()
}
