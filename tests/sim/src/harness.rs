//! The simulation itself: real `orc` servers (`Server::start` on `MemStore`, with the leader's
//! scheduling pipeline) and fake agents on turmoil hosts, operators' commands, a seeded fault
//! schedule, the invariants after every step that changed what a server shows, and the
//! liveness phase once faults stop.
//!
//! Everything random comes from `SimConfig::seed`: turmoil's network and scheduling, the fault
//! schedule, the workload and every agent. What is not yet seeded (server-generated IDs and
//! timestamps, openraft's election timeouts) is listed in tests/sim/README.md.

use crate::agent::{self, AgentControl};
use crate::invariants::Checker;
use crate::net::{SimConnector, SimListener};
use crate::real_agent::{self, RealAgents};
use crate::workload::Workload;
use crate::{liveness, ServerView, Violation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use server::clock::{Clock, SeededSource};
use server::raft::RaftTiming;
use server::state::{Command, Outcome};
use server::store::MemStore;
use server::{Config, Consistency, Seams, Server, ServerHandle, Written};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

const RPC_PORT: u16 = 4647;

/// One simulation run's shape. Everything else follows from `seed`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub servers: usize,
    pub agent_hosts: usize,
    pub agents_per_host: usize,
    /// Operator commands issued during the fault phase.
    pub commands: usize,
    pub max_jobs: usize,
    /// Simulated time with faults injected.
    pub fault_phase: Duration,
    /// Simulated time the cluster gets to converge once faults stop.
    pub liveness_deadline: Duration,
    pub faults: bool,
    /// Whether one server crash a run (a third of them) loses the server's state: the server
    /// comes back empty under a new Raft ID, joins, and the operator removes its old ID.
    pub lost_state: bool,
    /// Simulated time per step: the network's and the timers' resolution.
    pub tick: Duration,
    /// Real agents (`agent::client::Client` with the `sim` driver, `crate::real_agent`)
    /// instead of the fake ones that speak the node RPCs directly.
    pub real_agents: bool,
}

impl SimConfig {
    /// The shape CI runs: 3 servers, 3 hosts of 4 agents, a few jobs, 15 s of faults.
    pub fn small(seed: u64) -> Self {
        SimConfig {
            seed,
            servers: 3,
            agent_hosts: 3,
            agents_per_host: 4,
            commands: 12,
            max_jobs: 6,
            fault_phase: Duration::from_secs(15),
            liveness_deadline: Duration::from_secs(60),
            faults: true,
            lost_state: false,
            tick: Duration::from_millis(1),
            real_agents: false,
        }
    }

    /// The shape `cargo test -p sim` runs in a debug build: fewer agents, a shorter fault
    /// phase and coarser steps, so that twenty seeds take seconds each; one server crash in
    /// three (at most one a run) loses its state.
    pub fn ci(seed: u64) -> Self {
        SimConfig {
            agent_hosts: 3,
            agents_per_host: 2,
            commands: 8,
            max_jobs: 4,
            fault_phase: Duration::from_secs(8),
            liveness_deadline: Duration::from_secs(120),
            tick: Duration::from_millis(5),
            lost_state: true,
            ..SimConfig::small(seed)
        }
    }
}

/// How a run went.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    /// Faults injected, in order, with their simulated time.
    pub faults: Vec<String>,
    pub acked_writes: usize,
    /// Simulated time from the end of faults to convergence.
    pub converged_after: Duration,
    pub invariant_checks: u64,
    /// Node drains that ended, in the converged state (nodes whose last drain is `complete`,
    /// whether the drainer finished it or the deadline did).
    pub drains_completed: usize,
    /// Drains an operator disabled again (`canceled`).
    pub drains_canceled: usize,
    /// With real agents: tasks their `sim` driver started, tasks re-adopted by an agent
    /// restarted on a crashed host, and tasks such an agent found gone.
    pub real_agent_tasks: Option<(u64, u64, u64)>,
    /// A digest of everything the servers showed, step by step (simulated time, each server's
    /// term, leadership, applied index and the evaluations and allocations in its state): two
    /// runs of one seed are the same run exactly when their digests match.
    pub trace_digest: u64,
}

/// Where each step of the trace is written as a line, when `ORC_SIM_TRACE` names a file prefix
/// (`<prefix>.<seed>.<n>`, `n` counting runs in this process): two runs of one seed that
/// diverge are compared with `diff`, which names the first step that differs.
fn trace_log(seed: u64) -> Option<std::io::BufWriter<std::fs::File>> {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let prefix = std::env::var_os("ORC_SIM_TRACE")?;
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let path = format!("{}.{seed}.{n}", prefix.to_string_lossy());
    std::fs::File::create(path).ok().map(std::io::BufWriter::new)
}

/// Folds what a server showed at one instant into the run's trace digest (and the trace log).
fn trace(
    h: &mut impl Hasher,
    log: &mut Option<std::io::BufWriter<std::fs::File>>,
    now: Duration,
    v: &ServerView,
) {
    if let Some(log) = log {
        use std::io::Write;
        let mut step = std::collections::hash_map::DefaultHasher::new();
        trace(&mut step, &mut None, now, v);
        let _ = writeln!(
            log,
            "{now:?} server={} term={} leader={} applied={} view={:016x}",
            v.server,
            v.term,
            v.leader,
            v.applied,
            step.finish()
        );
        for e in v.state.evals() {
            let _ = writeln!(log, "  eval {} {:?} {}", e.id, e.status, e.modify_index);
        }
        for a in v.state.allocs() {
            let (want, got) = (a.desired_status, a.client_status);
            let _ =
                writeln!(log, "  alloc {} {} {want:?}/{got:?} {}", a.id, a.node_id, a.modify_index);
        }
    }
    h.write_u128(now.as_nanos());
    h.write_u64(v.server);
    h.write_u64(v.term);
    h.write_u8(v.leader as u8);
    h.write_u64(v.applied);
    let mut evals: Vec<(&str, String, u64)> = v
        .state
        .evals()
        .map(|e| (e.id.as_str(), format!("{:?}", e.status), e.modify_index))
        .collect();
    evals.sort();
    let mut allocs: Vec<(&str, &str, String, u64)> = v
        .state
        .allocs()
        .map(|a| {
            let status = format!("{:?}/{:?}", a.desired_status, a.client_status);
            (a.id.as_str(), a.node_id.as_str(), status, a.modify_index)
        })
        .collect();
    allocs.sort();
    evals.hash(h);
    allocs.hash(h);
}

/// A failed run: the seed reproduces it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub at: Duration,
    pub reason: String,
    pub faults: Vec<String>,
}

impl Failure {
    /// True when the run kept every safety invariant but did not converge after the faults
    /// stopped (as opposed to a broken invariant).
    pub fn is_liveness(&self) -> bool {
        self.reason.starts_with("no convergence")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "simulation failed: ORC_SIM_SEED={} at {:?}: {}",
            self.seed, self.at, self.reason
        )?;
        for fault in &self.faults {
            writeln!(f, "  fault {fault}")?;
        }
        Ok(())
    }
}

/// A server host's state that outlives the host: its store and Raft ID survive a crash (a
/// lost-state crash replaces both, as a wiped `data_dir` does), its handle and command queue
/// are replaced when the host restarts.
struct ServerSlot {
    name: String,
    id: Mutex<u64>,
    store: Mutex<Arc<MemStore>>,
    handle: Mutex<Option<ServerHandle>>,
    commands: Mutex<Option<mpsc::UnboundedSender<Op>>>,
}

/// What the harness asks of a server, as operators do.
enum Op {
    /// A write, through this server (forwarded to the leader).
    Write(Command),
    /// `orc operator raft remove-peer <id>`, through this server.
    RemovePeer(u64),
}

/// What decides whether a server's view must be read again: (applied index, term, leads).
type ViewKey = (u64, u64, bool);

/// Acknowledged writes reported by server hosts: (index, job ID).
type Acks = Arc<Mutex<Vec<(u64, String)>>>;

/// The simulated wall clock starts here (2026-01-01T00:00:00Z), whatever the real date.
pub const EPOCH_UNIX_SECS: u64 = 1_767_225_600;

/// A server's clock: turmoil's simulated time, IDs from a generator seeded by the run's seed
/// and the server's ID, scheduling work inline on the host's (simulated) runtime.
fn sim_clock(seed: u64, id: u64) -> Clock {
    let source = SeededSource::new(0, seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15), || {
        turmoil::since_epoch().unwrap_or_default()
    });
    Clock::from_source(Arc::new(source))
}

fn server_config(name: &str, id: u64, all: &[String], seed: u64) -> Config {
    let mut c = Config {
        name: name.into(),
        node_id: Some(id),
        clock: sim_clock(seed, id),
        ..Config::default()
    };
    c.server.enabled = true;
    c.server.bootstrap_expect = all.len() as u32;
    c.server.server_join.retry_join = all.to_vec();
    c.server.server_join.retry_interval = Duration::from_millis(200);
    c.server.min_heartbeat_ttl = Duration::from_secs(2);
    c.server.heartbeat_grace = Duration::from_secs(2);
    c.raft = RaftTiming {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftTiming::default()
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

/// The command a server host runs: a real server, the leader's pipeline, and a queue through
/// which the harness submits operator commands to this server (forwarded to the leader).
async fn server_host(
    slot: Arc<ServerSlot>,
    config: Config,
    seed: u64,
    acks: Acks,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RPC_PORT)).await?;
    let store = slot.store.lock().unwrap().clone();
    // The ID this boot runs under: a new one after a lost-state crash.
    let id = *slot.id.lock().unwrap();
    let config = Config { node_id: Some(id), clock: sim_clock(seed, id), ..config };
    let seams = Seams {
        rpc_listener: Box::new(SimListener(listener)),
        rpc_advertise: format!("{}:{RPC_PORT}", slot.name),
        connector: Arc::new(SimConnector),
        store: Some(store),
    };
    let handle = Server::start(config, seams).await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
    *slot.handle.lock().unwrap() = Some(handle.clone());
    *slot.commands.lock().unwrap() = Some(tx);
    let writer = handle.clone();
    tokio::spawn(async move {
        while let Some(op) = rx.recv().await {
            let command = match op {
                Op::Write(command) => command,
                Op::RemovePeer(id) => {
                    let writer = writer.clone();
                    // A server that is no longer in the configuration (the leader replaced it
                    // when its successor joined at its address) is "unknown": nothing to do.
                    tokio::spawn(async move { writer.remove_peer(&id.to_string()).await });
                    continue;
                }
            };
            let job_id = match &command {
                Command::JobRegister { job, .. } => job.id.clone(),
                Command::JobDeregister { job_id, .. } => job_id.clone(),
                _ => String::new(),
            };
            // Operators do not wait for each other; an unacknowledged write is simply lost.
            let writer = writer.clone();
            let acks = acks.clone();
            tokio::spawn(async move {
                // Only a write that took effect promises the job exists: a stop of a job whose
                // registration was lost is acknowledged as "not found".
                if let Ok(Written { index, outcome: Outcome::JobRegistered { .. } }) =
                    writer.write(command).await
                {
                    acks.lock().unwrap().push((index, job_id));
                }
            });
        }
    });
    server::pipeline::run(handle).await;
    Ok(())
}

/// The lost-state crash: its own random stream, whether it happened yet, and, until the
/// operator saw it gone from the configuration, the Raft ID the wiped server had.
struct Wipe {
    rng: ChaCha8Rng,
    done: bool,
    old: Option<(usize, u64)>,
}

/// Undoes one fault at a simulated time.
#[derive(Debug, Clone)]
enum Heal {
    Repair(String, String),
    RepairOneway(String, String),
    Release(String, String),
    BounceServer(usize),
    BounceAgents(String),
    Latency,
}

/// Runs one simulation. `Err` carries the seed and what broke.
pub fn run(cfg: &SimConfig) -> Result<Report, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    // openraft's election timeouts, drawn on this thread (turmoil runs every host on it).
    server::clock::seed_thread_rng(cfg.seed);
    let base_latency = Duration::from_millis(rng.random_range(1..=10));
    let mut sim = turmoil::Builder::new()
        .rng_seed(cfg.seed)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_SECS))
        .simulation_duration(cfg.fault_phase + cfg.liveness_deadline + Duration::from_secs(30))
        .tick_duration(cfg.tick)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(base_latency)
        .build();

    let names: Vec<String> = (0..cfg.servers).map(|i| format!("s{i}")).collect();
    let addrs: Vec<String> = names.iter().map(|n| format!("{n}:{RPC_PORT}")).collect();
    let acks: Acks = Arc::default();
    let slots: Vec<Arc<ServerSlot>> = names
        .iter()
        .map(|n| {
            Arc::new(ServerSlot {
                name: n.clone(),
                id: Mutex::new(0),
                store: Mutex::new(Arc::new(MemStore::new())),
                handle: Mutex::new(None),
                commands: Mutex::new(None),
            })
        })
        .collect();
    for (i, slot) in slots.iter().enumerate() {
        *slot.id.lock().unwrap() = i as u64 + 1;
        let config = server_config(&names[i], i as u64 + 1, &addrs, cfg.seed);
        let (slot, acks, seed) = (slot.clone(), acks.clone(), cfg.seed);
        sim.host(names[i].as_str(), move || {
            server_host(slot.clone(), config.clone(), seed, acks.clone())
        });
    }

    let control = Arc::new(AgentControl::default());
    let agent_hosts: Vec<String> = (0..cfg.agent_hosts).map(|h| format!("h{h}")).collect();
    // The real agents' data directories live until the run returns.
    let real = cfg.real_agents.then(|| RealAgents::new(cfg.agent_hosts, cfg.seed)).transpose();
    let real = match real {
        Ok(real) => real,
        Err(e) => {
            let reason = format!("the agents' data directory: {e}");
            return Err(Failure { seed: cfg.seed, at: Duration::ZERO, reason, faults: Vec::new() });
        }
    };
    for (h, host) in agent_hosts.iter().enumerate() {
        if let Some(real) = &real {
            let per_host = cfg.agents_per_host;
            real.add_host(&mut sim, host, h, per_host, &addrs, control.clone());
            continue;
        }
        let (addrs, control, per_host, seed) =
            (addrs.clone(), control.clone(), cfg.agents_per_host, cfg.seed);
        sim.host(host.as_str(), move || {
            let (addrs, control) = (addrs.clone(), control.clone());
            async move {
                let mut agents = Vec::new();
                for i in 0..per_host {
                    let id = agent::node_id(h, i);
                    let node = agent::node(&id, &format!("h{h}-{i}"));
                    let agent_seed =
                        seed ^ ((h as u64) << 32 | i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    agents.push(tokio::spawn(agent::run(
                        node,
                        addrs.clone(),
                        agent_seed,
                        control.clone(),
                    )));
                }
                for a in agents {
                    let _ = a.await;
                }
                Ok(())
            }
        });
    }

    let fault_end = cfg.fault_phase;
    let deadline = fault_end + cfg.liveness_deadline;
    let mut faults: Vec<String> = Vec::new();
    let mut heals: Vec<(Duration, Heal)> = Vec::new();
    let mut next_fault = Duration::from_secs(2);
    let mut crashed_server: Option<usize> = None;
    // Whether a crash loses the server's state comes from its own stream, so adding this fault
    // left every other choice of a seed as it was.
    let mut wipe = Wipe {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5749_5045),
        done: !cfg.lost_state,
        old: None,
    };
    let mut crashed_agents: BTreeMap<String, bool> = BTreeMap::new();
    let mut vanished = false;
    let node_ids: Vec<String> = (0..cfg.agent_hosts)
        .flat_map(|h| (0..cfg.agents_per_host).map(move |i| agent::node_id(h, i)))
        .collect();
    let mut workload = Workload::new(cfg.max_jobs, node_ids);
    let command_gap = cfg.fault_phase / (cfg.commands as u32 + 1);
    let mut next_command = Duration::from_secs(2);
    let mut commands_sent = 0;
    let mut checker = Checker::default();
    let mut cache: Vec<Option<(ViewKey, ServerView)>> = vec![None; cfg.servers];
    let mut checks = 0u64;
    // `DefaultHasher::new` has fixed keys: the same on every run of one build.
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    let mut trace_log = trace_log(cfg.seed);
    let mut healed = false;
    let mut next_liveness = fault_end;
    let mut next_removal = Duration::ZERO;
    if cfg.faults {
        control.fail_permille.store(50, Ordering::Relaxed);
    }

    let fail = |at: Duration, reason: String, faults: &[String]| Failure {
        seed: cfg.seed,
        at,
        reason,
        faults: faults.to_vec(),
    };

    loop {
        if let Err(e) = sim.step() {
            return Err(fail(sim.elapsed(), format!("simulation error: {e}"), &faults));
        }
        if let Some(panic) = real.as_ref().and_then(RealAgents::panicked) {
            let reason = format!("a simulated host panicked: {panic}");
            return Err(fail(sim.elapsed(), reason, &faults));
        }
        let now = sim.elapsed();

        // Operators.
        if commands_sent < cfg.commands && now >= next_command {
            let unix = Duration::from_secs(EPOCH_UNIX_SECS) + now;
            let mut command = workload.next(&mut rng, unix.as_nanos() as i64);
            if cfg.real_agents {
                real_agent::adapt(&mut command);
            }
            let running: Vec<usize> =
                (0..cfg.servers).filter(|i| slots[*i].commands.lock().unwrap().is_some()).collect();
            if !running.is_empty() {
                let i = running[rng.random_range(0..running.len())];
                if let Some(tx) = slots[i].commands.lock().unwrap().as_ref() {
                    let _ = tx.send(Op::Write(command));
                }
                commands_sent += 1;
            }
            next_command = now + command_gap;
        }

        // Faults, and their healing.
        heals.sort_by_key(|(at, _)| *at);
        while heals.first().is_some_and(|(at, _)| *at <= now) {
            let (_, heal) = heals.remove(0);
            apply_heal(
                &mut sim,
                &heal,
                &slots,
                &mut crashed_server,
                &mut crashed_agents,
                base_latency,
            );
        }
        if cfg.faults && now < fault_end && now >= next_fault {
            let leader = leader_of(&slots);
            if let Some(desc) = inject(
                &mut sim,
                &mut rng,
                now,
                &names,
                &agent_hosts,
                leader,
                &slots,
                &mut heals,
                &mut crashed_server,
                &mut crashed_agents,
                &mut vanished,
                &mut wipe,
            ) {
                faults.push(format!("{now:?} {desc}"));
            }
            next_fault = now + Duration::from_millis(rng.random_range(500..3_000));
        }
        if now >= fault_end && !healed {
            healed = true;
            control.fail_permille.store(0, Ordering::Relaxed);
            for (_, heal) in std::mem::take(&mut heals) {
                apply_heal(
                    &mut sim,
                    &heal,
                    &slots,
                    &mut crashed_server,
                    &mut crashed_agents,
                    base_latency,
                );
            }
            let everyone: Vec<&String> = names.iter().chain(agent_hosts.iter()).collect();
            for a in &everyone {
                for b in &everyone {
                    if a < b {
                        sim.repair(a.as_str(), b.as_str());
                        sim.release(a.as_str(), b.as_str());
                    }
                }
            }
        }

        // The operator removes a wiped server's old ID once its successor is a voter (Nomad's
        // `nomad operator raft remove-peer`); until then, and while the old ID is listed, ask
        // again every step the leader's configuration shows it (the request is idempotent).
        if let Some((i, old)) = wipe.old {
            let l = leader_of(&slots);
            let leader = l.and_then(|l| slots[l].handle.lock().unwrap().clone());
            if let (Some(l), Some(leader)) = (l, leader) {
                let new = *slots[i].id.lock().unwrap();
                let peers = leader.peers();
                let joined = peers.iter().any(|p| p.id == new && p.voter);
                if joined && peers.iter().all(|p| p.id != old) {
                    wipe.old = None;
                    faults.push(format!("{now:?} old ID {old} of {} is out", slots[i].name));
                } else if joined && now >= next_removal {
                    next_removal = now + Duration::from_millis(500);
                    if let Some(tx) = slots[l].commands.lock().unwrap().as_ref() {
                        let _ = tx.send(Op::RemovePeer(old));
                    }
                }
            }
        }

        // Invariants, whenever something a server shows changed.
        let mut changed = false;
        for (i, slot) in slots.iter().enumerate() {
            let handle = slot.handle.lock().unwrap().clone();
            let Some(h) = handle else {
                changed |= cache[i].take().is_some();
                continue;
            };
            let key = (h.applied_index(), h.term(), h.is_leader());
            if cache[i].as_ref().is_some_and(|(k, _)| *k == key) {
                continue;
            }
            let Ok(state) = futures::executor::block_on(h.read(Consistency::Stale, |s| s.clone()))
            else {
                continue;
            };
            // The state read may be ahead of the index read a moment earlier; the state's own
            // index is the one it is consistent with.
            let view = ServerView {
                server: h.id(),
                term: key.1,
                leader: key.2,
                applied: state.index(),
                state,
            };
            trace(&mut digest, &mut trace_log, now, &view);
            cache[i] = Some((key, view));
            changed = true;
        }
        for (index, job_id) in acks.lock().unwrap().drain(..) {
            checker.acked.record_job(index, "default", &job_id);
            changed = true;
        }
        let views: Vec<ServerView> = cache.iter().flatten().map(|(_, v)| v.clone()).collect();
        if changed {
            checks += 1;
            if let Err(Violation { invariant, detail }) = checker.check(&views) {
                let seen: Vec<String> = views
                    .iter()
                    .map(|v| {
                        format!(
                            "server {} term {} leader {} applied {} jobs {:?}",
                            v.server,
                            v.term,
                            v.leader,
                            v.applied,
                            v.state.jobs().map(|j| (&j.id, j.job_modify_index)).collect::<Vec<_>>()
                        )
                    })
                    .collect();
                return Err(fail(
                    now,
                    format!("invariant {invariant}: {detail}\n  {}", seen.join("\n  ")),
                    &faults,
                ));
            }
        }

        // Liveness, once faults have stopped: every 500 ms, and once more at the deadline, so
        // that a failure names what did not converge.
        if healed && (now >= next_liveness || now >= deadline) {
            next_liveness = now + Duration::from_millis(500);
            let result = if views.len() == cfg.servers {
                membership(&slots)
                    .and_then(|()| liveness::converged(&views, checker.acked.max_index()))
            } else {
                let down: Vec<String> = (0..cfg.servers)
                    .filter(|i| cache[*i].is_none())
                    .map(|i| {
                        let running = slots[i].handle.lock().unwrap().is_some();
                        let why = if running { "state not readable" } else { "not running" };
                        format!("{} ({why})", slots[i].name)
                    })
                    .collect();
                Err(format!("not every server is running: {}", down.join(", ")))
            };
            match result {
                Ok(()) if commands_sent >= cfg.commands => {
                    let drains = |status: &str| {
                        views[0]
                            .state
                            .nodes()
                            .filter(|n| n.last_drain.as_ref().is_some_and(|d| d.status == status))
                            .count()
                    };
                    return Ok(Report {
                        drains_completed: drains("complete"),
                        drains_canceled: drains("canceled"),
                        real_agent_tasks: real.as_ref().map(RealAgents::counts),
                        seed: cfg.seed,
                        faults,
                        acked_writes: checker.acked.jobs.len(),
                        converged_after: now - fault_end,
                        invariant_checks: checks,
                        trace_digest: digest.finish(),
                    });
                }
                Ok(()) if now >= deadline => {
                    let sent = format!("{commands_sent} of {} commands sent", cfg.commands);
                    return Err(fail(now, format!("no convergence: only {sent}"), &faults));
                }
                Ok(()) => {}
                Err(missing) if now >= deadline => {
                    return Err(fail(
                        now,
                        format!("no convergence within {:?}: {missing}", cfg.liveness_deadline),
                        &faults,
                    ));
                }
                Err(_) => {}
            }
        }
    }
}

/// `Ok` once every running server's Raft configuration is exactly the servers running now: a
/// wiped server's successor joined as a voter and its old ID is gone.
fn membership(slots: &[Arc<ServerSlot>]) -> Result<(), String> {
    let ids: Vec<u64> = slots.iter().map(|s| *s.id.lock().unwrap()).collect();
    let mut want = ids.clone();
    want.sort();
    for slot in slots {
        let Some(h) = slot.handle.lock().unwrap().clone() else { continue };
        let mut voters: Vec<u64> = h.peers().iter().filter(|p| p.voter).map(|p| p.id).collect();
        voters.sort();
        let members = h.peers().len();
        if voters != want || members != want.len() {
            let seen: Vec<String> = slots
                .iter()
                .filter_map(|s| s.handle.lock().unwrap().clone().map(|h| (s, h)))
                .map(|(s, h)| {
                    let leader = h.leader().map(|m| m.id);
                    let peers: Vec<(u64, bool)> =
                        h.peers().iter().map(|p| (p.id, p.voter)).collect();
                    format!(
                        "{} (ID {}) term {} leader {leader:?} members {peers:?}",
                        s.name,
                        h.id(),
                        h.term()
                    )
                })
                .collect();
            return Err(format!(
                "server {} has configuration {voters:?} ({members} members), servers are {want:?}; {}",
                slot.name,
                seen.join("; ")
            ));
        }
    }
    Ok(())
}

fn leader_of(slots: &[Arc<ServerSlot>]) -> Option<usize> {
    slots.iter().position(|s| s.handle.lock().unwrap().as_ref().is_some_and(|h| h.is_leader()))
}

#[allow(clippy::too_many_arguments)]
fn inject(
    sim: &mut turmoil::Sim<'_>,
    rng: &mut ChaCha8Rng,
    now: Duration,
    servers: &[String],
    agent_hosts: &[String],
    leader: Option<usize>,
    slots: &[Arc<ServerSlot>],
    heals: &mut Vec<(Duration, Heal)>,
    crashed_server: &mut Option<usize>,
    crashed_agents: &mut BTreeMap<String, bool>,
    vanished: &mut bool,
    wipe: &mut Wipe,
) -> Option<String> {
    let for_ms = |rng: &mut ChaCha8Rng, lo: u64, hi: u64| {
        now + Duration::from_millis(rng.random_range(lo..hi))
    };
    let pick = |rng: &mut ChaCha8Rng, of: &[String]| of[rng.random_range(0..of.len())].clone();
    match rng.random_range(0..8) {
        0 => {
            let l = leader?;
            for (i, other) in servers.iter().enumerate().filter(|(i, _)| *i != l) {
                sim.partition(servers[l].as_str(), other.as_str());
                heals.push((
                    for_ms(rng, 1_000, 5_000),
                    Heal::Repair(servers[l].clone(), servers[i].clone()),
                ));
            }
            Some(format!("isolate leader {}", servers[l]))
        }
        1 => {
            let (a, b) = (pick(rng, servers), pick(rng, servers));
            if a == b {
                return None;
            }
            sim.partition_oneway(a.as_str(), b.as_str());
            heals.push((for_ms(rng, 1_000, 5_000), Heal::RepairOneway(a.clone(), b.clone())));
            Some(format!("drop {a} -> {b}"))
        }
        2 if crashed_server.is_none() => {
            let i = rng.random_range(0..servers.len());
            sim.crash(servers[i].as_str());
            *slots[i].handle.lock().unwrap() = None;
            *slots[i].commands.lock().unwrap() = None;
            *crashed_server = Some(i);
            heals.push((for_ms(rng, 1_000, 6_000), Heal::BounceServer(i)));
            // At most once a run, one server comes back with an empty store, as a server whose
            // data_dir was wiped: under a new Raft ID (`load_or_create_id` finds no `node-id`),
            // joining through retry_join as a new member and catching up from the others; the
            // operator then removes its old ID.
            if !wipe.done && wipe.rng.random_ratio(1, 3) {
                wipe.done = true;
                let old = *slots[i].id.lock().unwrap();
                // Seed-derived, and never one of the first IDs (1..=servers).
                let new = wipe.rng.random_range(1u64 << 32..1u64 << 62);
                *slots[i].id.lock().unwrap() = new;
                *slots[i].store.lock().unwrap() = Arc::new(MemStore::new());
                wipe.old = Some((i, old));
                return Some(format!("crash {} (state lost; back as ID {new})", servers[i]));
            }
            Some(format!("crash {} (state kept)", servers[i]))
        }
        3 => {
            let (a, b) = (pick(rng, servers), pick(rng, servers));
            if a == b {
                return None;
            }
            sim.hold(a.as_str(), b.as_str());
            heals.push((for_ms(rng, 200, 2_000), Heal::Release(a.clone(), b.clone())));
            Some(format!("hold {a} <-> {b}"))
        }
        4 => {
            let h = pick(rng, agent_hosts);
            for s in servers {
                sim.partition(h.as_str(), s.as_str());
                heals.push((for_ms(rng, 1_000, 8_000), Heal::Repair(h.clone(), s.clone())));
            }
            Some(format!("partition agents {h} from the servers"))
        }
        5 => {
            let h = pick(rng, agent_hosts);
            if crashed_agents.contains_key(&h) {
                return None;
            }
            sim.crash(h.as_str());
            crashed_agents.insert(h.clone(), false);
            heals.push((for_ms(rng, 1_000, 6_000), Heal::BounceAgents(h.clone())));
            Some(format!("crash agents {h}"))
        }
        6 if !*vanished && agent_hosts.len() > 2 => {
            let h = pick(rng, agent_hosts);
            if crashed_agents.contains_key(&h) {
                return None;
            }
            sim.crash(h.as_str());
            crashed_agents.insert(h.clone(), true);
            *vanished = true;
            Some(format!("agents {h} vanish for good"))
        }
        7 => {
            let ms = rng.random_range(20..300);
            sim.set_max_message_latency(Duration::from_millis(ms));
            heals.push((for_ms(rng, 500, 4_000), Heal::Latency));
            Some(format!("latency up to {ms} ms"))
        }
        _ => None,
    }
}

fn apply_heal(
    sim: &mut turmoil::Sim<'_>,
    heal: &Heal,
    slots: &[Arc<ServerSlot>],
    crashed_server: &mut Option<usize>,
    crashed_agents: &mut BTreeMap<String, bool>,
    base_latency: Duration,
) {
    match heal {
        Heal::Repair(a, b) => sim.repair(a.as_str(), b.as_str()),
        Heal::RepairOneway(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
        Heal::Release(a, b) => sim.release(a.as_str(), b.as_str()),
        Heal::BounceServer(i) => {
            if *crashed_server == Some(*i) {
                sim.bounce(slots[*i].name.as_str());
                *crashed_server = None;
            }
        }
        Heal::BounceAgents(h) => {
            if crashed_agents.get(h) == Some(&false) {
                sim.bounce(h.as_str());
                crashed_agents.remove(h);
            }
        }
        Heal::Latency => sim.set_max_message_latency(base_latency),
    }
}
