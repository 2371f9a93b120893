//! The `pot` binary: a thin shell over `pot_standin::run`; it owns nothing but the process exit code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let code = pot_standin::run(&args, &mut stdout.lock(), &mut stderr.lock());
    std::process::exit(code);
}
