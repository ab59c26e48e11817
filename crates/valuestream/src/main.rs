fn main() -> std::process::ExitCode {
    valuestream::cli::main()
}
