//! The `provision` binary: everything is in the library (`provision::cli`).

fn main() -> std::process::ExitCode {
    provision::cli::main()
}
