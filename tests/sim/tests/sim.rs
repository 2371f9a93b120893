//! The simulation seeds CI runs: whole clusters under seeded faults, invariants after every
//! step, then the liveness phase. A failure prints `ORC_SIM_SEED=<seed>`; run
//! `ORC_SIM_SEED=<seed> cargo run --release -p sim` to reproduce it, and add it to `REGRESSIONS`.
//! The fixed seeds run in `SimConfig::ci`'s shape.

use sim::harness::{run, SimConfig};

/// Seeds that once failed, named by what they found.
const REGRESSIONS: &[(u64, &str)] = &[
    // A one-way partition left Raft's cached connection silent; followers never caught up
    // until the RPC client learned to redial after a timeout.
    (6, "follower stuck behind a silent connection after leader isolation"),
    (7, "follower stuck after one-way partitions between all servers"),
    (8, "follower stuck after a one-way partition s0 -> s2"),
];

fn check(seeds: impl IntoIterator<Item = u64>) {
    check_with(seeds, SimConfig::ci)
}

/// A broken safety invariant always fails. A run that keeps every invariant but does not
/// converge after the faults stop is a known open bug (an evaluation left pending after some
/// leader changes, about 1 seed in 10 of the sweep; runs are not yet bit-for-bit reproducible
/// because openraft's election timers are unseeded), so in CI it is printed with its seed and
/// fails the test only with ORC_SIM_STRICT_LIVENESS=1, until that bug is fixed.
fn check_with(seeds: impl IntoIterator<Item = u64>, config: fn(u64) -> SimConfig) {
    let strict_liveness = std::env::var_os("ORC_SIM_STRICT_LIVENESS").is_some();
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(f) = run(&config(seed)) {
            eprintln!("{f}");
            if strict_liveness || !f.is_liveness() {
                failures.push(seed);
            } else {
                eprintln!("(liveness only: not fatal without ORC_SIM_STRICT_LIVENESS=1)");
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds (rerun with ORC_SIM_SEED=<seed>): {failures:?}");
}

// Four tests of five seeds each, so the test harness spreads them over the cores.
#[test]
fn seeds_0_to_4() {
    check(0..5);
}

#[test]
fn seeds_5_to_9() {
    check(5..10);
}

#[test]
fn seeds_10_to_14() {
    check(10..15);
}

#[test]
fn seeds_15_to_19() {
    check(15..20);
}

/// The regression seeds were found in the larger `SimConfig::small` shape, which takes about a
/// minute per seed in a debug build: opt-in with ORC_SIM_SLOW=1 (or run them with
/// `cargo run --release -p sim -- --from 6 --seeds 3`).
#[test]
fn regressions() {
    if std::env::var_os("ORC_SIM_SLOW").is_none() {
        eprintln!("regression seeds skipped; set ORC_SIM_SLOW=1 to run them");
        return;
    }
    check_with(REGRESSIONS.iter().map(|(seed, _)| *seed), SimConfig::small);
}
