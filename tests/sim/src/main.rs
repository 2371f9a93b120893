//! The seed sweep: `cargo run --release -p sim --bin sim -- --seeds N [--from S]` runs N simulations
//! (seeds S..S+N, or the one in ORC_SIM_SEED) and prints every failure with its seed. A thin
//! shell over `sim::harness`.

use sim::harness::{run, SimConfig};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut count, mut from) = (1u64, 0u64);
    let (mut no_faults, mut ci, mut lost_state) = (false, false, false);
    let (mut real_agents, mut keep_state) = (false, false);
    let mut servers: Option<u64> = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
        match a.as_str() {
            "--seeds" => count = value(),
            "--from" => from = value(),
            "--no-faults" => no_faults = true,
            "--ci" => ci = true,
            "--lost-state" => lost_state = true,
            "--keep-state" => keep_state = true,
            "--real-agents" => real_agents = true,
            "--servers" => servers = Some(value()),
            _ => usage(),
        }
    }
    if let Some(seed) = std::env::var("ORC_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        (from, count) = (seed, 1);
    }
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut wiped = 0;
    for seed in from..from + count {
        let mut cfg = if ci { SimConfig::ci(seed) } else { SimConfig::small(seed) };
        cfg.faults = !no_faults;
        // `--ci` loses a server's state as `SimConfig::ci` does; `--lost-state` adds it to the
        // small shape, `--keep-state` takes it out (to replay seeds found without it).
        cfg.lost_state = (cfg.lost_state || lost_state) && !keep_state;
        cfg.real_agents = real_agents;
        if let Some(n) = servers {
            cfg.servers = n as usize;
        }
        let t = Instant::now();
        match run(&cfg) {
            Ok(r) => {
                wiped += r.faults.iter().filter(|f| f.contains("(state lost")).count();
                println!(
                "seed {seed}: ok in {:.1}s wall, {} faults, {} acked writes, converged {:?} after faults, {} checks, drains {} complete {} canceled, trace {:016x}",
                t.elapsed().as_secs_f64(),
                r.faults.len(),
                r.acked_writes,
                r.converged_after,
                r.invariant_checks,
                r.drains_completed,
                r.drains_canceled,
                r.trace_digest
            );
                for f in
                    r.faults.iter().filter(|f| f.contains("(state lost") || f.contains("old ID"))
                {
                    println!("  {f}");
                }
                if let Some((started, readopted, gone)) = r.real_agent_tasks {
                    println!("  real agents: {started} task starts, {readopted} re-adopted after a host crash, {gone} gone by then");
                }
            }
            Err(f) => {
                println!("{f}");
                failed.push(seed);
            }
        }
    }
    println!(
        "seeds={count} failed={} wall_seconds={:.0} failing_seeds={failed:?} lost_state_restarts_in_passing_runs={wiped}",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: sim [--seeds N] [--from S] [--no-faults] [--ci] [--lost-state] [--keep-state] [--real-agents] [--servers 3|5]   (ORC_SIM_SEED=S runs one seed)"
    );
    std::process::exit(2)
}
