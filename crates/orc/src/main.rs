//! The `orc` binary: a thin shell over the `orc` library so tests can drive the same code.

fn main() -> std::process::ExitCode {
    orc::cli::main(std::env::args_os().collect())
}
