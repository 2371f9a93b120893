//! The simulation seeds CI runs: whole clusters under seeded faults, invariants after every
//! step, then the liveness phase. A failure prints `ORC_SIM_SEED=<seed>`; run
//! `ORC_SIM_SEED=<seed> cargo run --release -p sim [-- --ci]` to reproduce it, and add it to
//! `REGRESSIONS`. The fixed seeds run in `SimConfig::ci`'s shape with real agents (`--ci
//! --real-agents`); regressions in the shape and agents that found them. Every failure fails
//! the test, safety and liveness alike.

use sim::harness::{run, SimConfig};

/// The shape a seed runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `SimConfig::ci` with the fake agents and no lost-state restart (as the seeds were found
    /// before `SimConfig::ci` had it: `--ci --keep-state`): seconds per seed in a debug build.
    Ci,
    /// `SimConfig::small`: about a minute per seed in a debug build.
    Small,
    /// `SimConfig::ci` on five servers instead of three, with real agents.
    CiFive,
    /// `SimConfig::ci` with real agents (`--real-agents`: the agent crate, `sim` driver).
    CiReal,
    /// `SimConfig::ci` with a lost-state server restart (`--ci --lost-state`, fake agents).
    CiLost,
}

impl Shape {
    fn config(self, seed: u64) -> SimConfig {
        match self {
            Shape::Ci => SimConfig { lost_state: false, ..SimConfig::ci(seed) },
            Shape::Small => SimConfig::small(seed),
            Shape::CiFive => SimConfig { servers: 5, real_agents: true, ..SimConfig::ci(seed) },
            Shape::CiReal => SimConfig { real_agents: true, ..SimConfig::ci(seed) },
            Shape::CiLost => SimConfig { lost_state: true, ..SimConfig::ci(seed) },
        }
    }
}

/// Seeds that once failed, in the shape that found them, named by what they found.
const REGRESSIONS: &[(u64, Shape, &str)] = &[
    // A one-way partition left Raft's cached connection silent; followers never caught up
    // until the RPC client learned to redial after a timeout.
    (6, Shape::Small, "follower stuck behind a silent connection after leader isolation"),
    (7, Shape::Small, "follower stuck after one-way partitions between all servers"),
    (8, Shape::Small, "follower stuck after a one-way partition s0 -> s2"),
    // The leader stamped evaluations with the machine's clock while everything else ran on
    // simulated time: delayed evaluations (failed follow-ups, nack delays) fell due minutes of
    // simulated time late and stayed pending. Fixed by `server::clock`.
    (1013, Shape::Ci, "evaluation pending after faults (wall clock in the leader)"),
    (1029, Shape::Ci, "evaluation pending after leader isolation (wall clock)"),
    (1055, Shape::Ci, "evaluation pending after an agent partition (wall clock)"),
    // A plan placed an allocation on a node between the leader reading the state for the
    // node-down evaluations and the node's Down status committing: the allocation was lost and
    // no evaluation ever replaced it. Fixed in `pipeline::Cluster::sync` (lost evaluations).
    (1040, Shape::Ci, "allocation lost on a down node with no evaluation to replace it"),
    // Real agents. An agent restarted on a crashed host reloaded a finished allocation and its
    // runner panicked (it skipped the finished tasks, then waited for them).
    (1010, Shape::CiReal, "runner panic on a reloaded finished allocation"),
    // An allocation stopped before its agent ran it stayed pending on the servers for good:
    // the agent reported nothing for it (now: complete, as Nomad's client).
    (1011, Shape::CiReal, "drained node still runs a stopped, never-started allocation"),
    (1148, Shape::CiReal, "drained node still runs a stopped, never-started allocation"),
    // A batch allocation completed while its host was cut off; the host then crashed, and
    // the restarted agent never re-sent the completion.
    (1122, Shape::CiReal, "batch allocation running for good on the servers"),
    // The 1,000-seed sweep at 372e659 (fake agents). A plan verified before a drain began
    // committed after the drainer's last look, and the drain ended with its allocation running
    // on the node; fixed by `Command::NodeDrainComplete`, decided in log order.
    (1285, Shape::Ci, "drained node still runs a late plan's allocation (agents vanished)"),
    (1315, Shape::Ci, "drained node still runs a late plan's allocation"),
    (1405, Shape::Ci, "drained node still runs a late plan's allocation (deadline)"),
    (1483, Shape::Ci, "drained node still runs a late plan's allocation (deadline)"),
    (1602, Shape::Ci, "drained node still runs a late replacement"),
    (1837, Shape::Ci, "drained node still runs a late plan's allocation"),
    // Reported as "not every server is running" when the deadline fell between two liveness
    // checks; really the drained-node failure above.
    (1100, Shape::Ci, "drained node still runs work (misreported as a server down)"),
    (1579, Shape::Ci, "drained node still runs work (misreported as a server down)"),
    // An in-place update computed before the drainer marked an allocation undid the mark.
    (1770, Shape::Ci, "drained node still runs an allocation whose mark a plan undid"),
    // The drainer ended itself on a moment without leadership that the pipeline missed.
    (1450, Shape::Ci, "drain running past its deadline for good (no drainer on the leader)"),
    // A deposed leader's plan applier forwarded its plan to the new leader, which had
    // scheduled the same evaluation: two replacements of one lost allocation ran (about 1 run
    // in 15 before; 0 in 100 since the leader's own writes are never forwarded).
    (1109, Shape::Small, "two plans of one evaluation committed (forwarded leader write)"),
    // A wiped server came back empty under its old Raft ID: the leader saw that follower's log
    // go back and openraft's debug_assert panicked its core (debug builds). It now comes back
    // under a new ID, and the old ID's Raft messages are refused.
    (1026, Shape::CiLost, "leader panic: follower log reversion (wiped server, old ID)"),
    (1031, Shape::CiLost, "leader panic: follower log reversion (wiped server, old ID)"),
    (1035, Shape::CiLost, "leader panic: follower log reversion (wiped server, old ID)"),
    // With the wiped leader's old ID gone for good, the two others split every vote for 120 s
    // (openraft's fixed election timeouts on aligned ticks); `break_split_votes` in the server.
    (1001, Shape::CiLost, "no leader for good: split votes between the two servers left"),
    (1038, Shape::CiLost, "no leader for good: split votes between the two servers left"),
    // A wiped server's join was cut short: the leader replicated the configuration adding its
    // new ID, then was isolated and crashed before committing it. The wiped server took the
    // uncommitted configuration for membership and stopped asking, while the cluster kept
    // addressing the old ID at its address. A server now keeps joining until a committed
    // configuration names it (found by the 2026-11-26 sweep of seeds 6000-6999).
    (6181, Shape::CiLost, "no convergence: a join cut short left a server outside the cluster"),
];

/// Runs CI-shaped seeds with real agents; every one must pass, and the workload's node drains must have run:
/// at least one drain of the group ended (completed, or forced by its deadline) and the
/// liveness phase found its node empty of non-system work.
fn check(seeds: impl IntoIterator<Item = u64>) {
    let drains = check_with(seeds.into_iter().map(|s| (s, Shape::CiReal)));
    assert!(drains > 0, "no node drain completed in these seeds");
}

/// Runs seeds; returns how many node drains completed in all.
fn check_with(seeds: impl IntoIterator<Item = (u64, Shape)>) -> usize {
    let mut failures = Vec::new();
    let mut drains = 0;
    for (seed, shape) in seeds {
        match run(&shape.config(seed)) {
            Ok(r) => drains += r.drains_completed,
            Err(f) => {
                eprintln!("{f}");
                failures.push(seed);
            }
        }
    }
    assert!(failures.is_empty(), "failing seeds (rerun with ORC_SIM_SEED=<seed>): {failures:?}");
    drains
}

// Tests of five seeds each, so the test harness spreads them over the cores.
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

/// Five servers: two may fail at once, and elections have more voters.
#[test]
fn five_servers_seeds_0_to_4() {
    let drains = check_with((0..5).map(|s| (s, Shape::CiFive)));
    assert!(drains > 0, "no node drain completed in these seeds");
}

/// Real agents on every simulated host: the agent crate's client, runner and restart policy
/// with the `sim` driver, over the real node RPCs. Each group must complete a drain, and an
/// agent restarted on a crashed host must have re-adopted running tasks from its data dir.
#[test]
fn real_agents_seeds() {
    let mut failures = Vec::new();
    let (mut drains, mut started, mut readopted) = (0, 0, 0);
    for seed in [1010, 1016, 1048, 1060] {
        match run(&Shape::CiReal.config(seed)) {
            Ok(r) => {
                drains += r.drains_completed;
                let (s, a, _) = r.real_agent_tasks.expect("a real-agent run reports its tasks");
                (started, readopted) = (started + s, readopted + a);
            }
            Err(f) => {
                eprintln!("{f}");
                failures.push(seed);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing seeds (rerun with ORC_SIM_SEED=<seed> and --real-agents): {failures:?}"
    );
    assert!(drains > 0, "no node drain completed in these seeds");
    assert!(started > 0 && readopted > 0, "{started} task starts, {readopted} re-adopted");
}

/// The regression seeds in CI's shape run always; those found in the larger
/// `SimConfig::small` shape take about a minute each in a debug build and are opt-in with
/// ORC_SIM_SLOW=1 (or `cargo run --release -p sim -- --from 6 --seeds 3`).
#[test]
fn regressions() {
    let slow = std::env::var_os("ORC_SIM_SLOW").is_some();
    check_with(
        REGRESSIONS
            .iter()
            .filter(|(_, shape, _)| {
                slow || matches!(shape, Shape::Ci | Shape::CiReal | Shape::CiLost)
            })
            .map(|(seed, shape, _)| (*seed, *shape)),
    );
}

/// One seed, run twice, is the same run: the same faults and the same trace of everything the
/// servers showed, step by step, with fake agents and with real ones. The server's clocks, IDs,
/// Raft's election timeouts and the pipeline's work follow the seed (see tests/sim/README.md);
/// tokio's per-runtime generator behind `select!`'s branch order follows it because the
/// workspace builds with `--cfg tokio_unstable` (`.cargo/config.toml`), under which turmoil seeds
/// it. Opt-in (`ORC_SIM_EXACT=1 cargo test -p sim a_seed`): alone it passes, but once in CI,
/// running beside the other simulations of this binary, seed 1040's two runs diverged (cause not
/// found yet; tests/sim/README.md).
#[test]
fn a_seed_reproduces_its_run_exactly() {
    if std::env::var_os("ORC_SIM_EXACT").is_none() {
        eprintln!("skipped; set ORC_SIM_EXACT=1");
        return;
    }
    if !cfg!(tokio_unstable) {
        panic!(
            "built without --cfg tokio_unstable (a RUSTFLAGS variable replaces \
             .cargo/config.toml's rustflags): tokio's select! order is then not seeded and runs \
             diverge"
        );
    }
    for seed in [1003, 1541] {
        let real = SimConfig { real_agents: true, ..SimConfig::ci(seed) };
        let (a, b) = (run(&real), run(&real));
        let (a, b) = (a.unwrap_or_else(|f| panic!("{f}")), b.unwrap_or_else(|f| panic!("{f}")));
        assert_eq!(a.trace_digest, b.trace_digest, "real agents, seed {seed}: the runs diverged");
    }
    for seed in [3, 1040] {
        let (a, b) = (run(&SimConfig::ci(seed)), run(&SimConfig::ci(seed)));
        let (a, b) = (a.unwrap_or_else(|f| panic!("{f}")), b.unwrap_or_else(|f| panic!("{f}")));
        assert_eq!(a.faults, b.faults, "seed {seed}");
        assert_eq!(a.trace_digest, b.trace_digest, "seed {seed}: the runs diverged");
        assert_eq!(a.invariant_checks, b.invariant_checks, "seed {seed}");
    }
    // And a different seed is a different run.
    let other = run(&SimConfig::ci(4)).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(other.trace_digest, run(&SimConfig::ci(3)).unwrap().trace_digest);
}
