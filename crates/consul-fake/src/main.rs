//! `consul-fake [-addr HOST:PORT] [-token TOKEN]`: serves the fake Consul agent until killed.
//! Prints `listening on <addr>` once it accepts connections.

fn main() {
    if let Err(e) = consul_fake::cli_main(std::env::args().skip(1).collect()) {
        eprintln!("consul-fake: {e}");
        std::process::exit(1);
    }
}
