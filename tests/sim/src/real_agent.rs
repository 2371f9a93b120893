//! Real agents in the simulation (`SimConfig::real_agents`): every simulated host runs several
//! real `agent::client::Client`s (allocation runner, restart policy, health, report batching,
//! re-adoption) against the real servers over simulated TCP (`server::agent_api` over
//! `NodeClient` with `SimConnector`), each with its own data directory under one temporary
//! directory per run, fixed host facts, the simulated clock, and the fake driver `sim`.
//!
//! The `sim` driver's tasks live here, on the harness side, per host ([`HostTasks`]), so they
//! outlive the agents: a crashed host's agents are dropped with its runtime, and the agents
//! started when it comes back re-adopt from their state files whatever "still runs". A task
//! runs until killed; fails (exit 1 after a seeded delay) with the harness's fault-phase
//! probability; exits 0 after a seeded delay when its job says `run_for_ms = [lo, hi]` (batch
//! jobs, see [`adapt`]); and exits up to 1.5 s after its kill signal. What the agents do is the
//! real code's business; nothing here reports to the servers.

use crate::agent::{self, AgentControl, DRIVER};
use crate::net::SimConnector;
use ::agent::client::{Client, ClientConfig};
use ::agent::clock::Clock;
use ::agent::driver::{Driver, DriverError, ExitResult, Handle, TaskSpec};
use ::agent::fingerprint::HostFacts;
use futures::future::BoxFuture;
use model::{DriverInfo, JobType, RestartPolicy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use server::agent_api::GrpcServers;
use server::node_endpoint::NodeClient;
use server::state::Command;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the servers send a keepalive on a real agent's allocation watch (a production
/// agent: 10 s). The agent gives up on a stream silent for three of them, so a connection
/// left dead by a partition is noticed within the fault phase's time scale.
const WATCH_KEEPALIVE: Duration = Duration::from_secs(1);

/// Unix nanoseconds of simulated time.
fn now_nanos() -> i64 {
    turmoil::since_epoch().map_or(0, |d| d.as_nanos() as i64)
}

/// One task of the `sim` driver.
#[derive(Debug)]
struct SimTask {
    /// When it exits (simulated unix nanoseconds), if it is going to.
    exit_at: Option<i64>,
    exit: ExitResult,
}

/// The tasks of one simulated host, kept by the harness across the host's crashes.
#[derive(Debug)]
pub struct HostTasks {
    host: usize,
    /// `<run dir>/h<host>`: the agents' data directories are under it.
    dir: PathBuf,
    tasks: Mutex<BTreeMap<u32, SimTask>>,
    /// Wakes the waiters when a task's exit time changes (kill signal, hard kill).
    changed: Notify,
    next_pid: AtomicU64,
    /// How many times the host started (its agents' random streams differ per life).
    lives: AtomicU64,
    counts: Arc<Counts>,
}

/// What the real agents did with the `sim` driver in one run, over every host.
#[derive(Debug, Default)]
pub struct Counts {
    /// Task starts (restarts included).
    pub started: AtomicU64,
    /// Tasks an agent restarted on a crashed host re-adopted (`recover` found them running).
    pub readopted: AtomicU64,
    /// Tasks an agent restarted on a crashed host found gone (they exited meanwhile).
    pub gone: AtomicU64,
}

impl HostTasks {
    /// The task `pid`'s exit, if it has exited by now.
    fn exited(&self, pid: u32) -> Option<ExitResult> {
        let tasks = self.tasks.lock().unwrap();
        match tasks.get(&pid) {
            None => Some(ExitResult { exit_code: -1, signal: 0, unknown: true }),
            Some(t) if t.exit_at.is_some_and(|at| at <= now_nanos()) => Some(t.exit.clone()),
            Some(_) => None,
        }
    }

    /// Makes task `pid` exit at `at` with `exit`, unless it exits earlier anyway.
    fn exit_by(&self, pid: u32, at: i64, exit: ExitResult) {
        if let Some(t) = self.tasks.lock().unwrap().get_mut(&pid) {
            if t.exit_at.is_none_or(|x| x > at) {
                t.exit_at = Some(at);
                t.exit = exit;
            }
        }
        self.changed.notify_waiters();
    }
}

/// The fake driver: `driver = "sim"`.
pub struct SimDriver {
    tasks: Arc<HostTasks>,
    control: Arc<AgentControl>,
    rng: Mutex<ChaCha8Rng>,
}

fn pid_of(handle: &Handle) -> Result<u32, DriverError> {
    if handle.driver == DRIVER {
        Ok(handle.pid)
    } else {
        Err(DriverError(format!("not a {DRIVER} task: {handle:?}")))
    }
}

/// The `run_for_ms = [lo, hi]` of a task's config.
fn run_for(spec: &TaskSpec) -> Option<(i64, i64)> {
    let range = spec.config.get("run_for_ms")?.as_array()?;
    let lo = range.first()?.as_i64()?;
    let hi = range.get(1)?.as_i64()?;
    (0 <= lo && lo < hi).then_some((lo, hi))
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn fingerprint(&self) -> BoxFuture<'_, Option<DriverInfo>> {
        Box::pin(async move {
            Some(DriverInfo {
                attributes: BTreeMap::new(),
                detected: true,
                healthy: true,
                health_description: "Healthy".into(),
            })
        })
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<Handle, DriverError>> {
        Box::pin(async move {
            let now = now_nanos();
            let ms = 1_000_000;
            let (exit_at, exit) = {
                let mut rng = self.rng.lock().unwrap();
                let fail =
                    rng.random_range(0..1000) < self.control.fail_permille.load(Ordering::Relaxed);
                if fail {
                    let at = now + rng.random_range(100..2_000) * ms;
                    (Some(at), ExitResult { exit_code: 1, ..ExitResult::default() })
                } else if let Some((lo, hi)) = run_for(spec) {
                    (Some(now + rng.random_range(lo..hi) * ms), ExitResult::default())
                } else {
                    (None, ExitResult::default())
                }
            };
            let pid = self.tasks.next_pid.fetch_add(1, Ordering::Relaxed) as u32;
            self.tasks.counts.started.fetch_add(1, Ordering::Relaxed);
            self.tasks.tasks.lock().unwrap().insert(pid, SimTask { exit_at, exit });
            Ok(Handle {
                driver: DRIVER.into(),
                pid,
                start_time: format!("{}/{}/{now}", spec.alloc_id, spec.task_name),
                pot_name: String::new(),
            })
        })
    }

    fn wait<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ExitResult> {
        Box::pin(async move {
            let Ok(pid) = pid_of(handle) else {
                return ExitResult { exit_code: -1, signal: 0, unknown: true };
            };
            loop {
                // Registered before the state is read, so a change in between is not missed.
                let changed = self.tasks.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if let Some(exit) = self.tasks.exited(pid) {
                    return exit;
                }
                let exit_at = self.tasks.tasks.lock().unwrap().get(&pid).and_then(|t| t.exit_at);
                match exit_at {
                    Some(at) => {
                        let left = Duration::from_nanos((at - now_nanos()).max(0) as u64);
                        tokio::select! {
                            () = tokio::time::sleep(left) => {}
                            () = &mut changed => {}
                        }
                    }
                    None => changed.await,
                }
            }
        })
    }

    fn signal<'a>(
        &'a self,
        handle: &'a Handle,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let pid = pid_of(handle)?;
            if signal == "SIGINT" || signal == "SIGTERM" || signal == "SIGKILL" {
                // As the fake agents' tasks: gone up to 1.5 s after the kill signal.
                let delay = self.rng.lock().unwrap().random_range(0..1_500) * 1_000_000;
                let exit = ExitResult { exit_code: 130, signal: 0, unknown: false };
                self.tasks.exit_by(pid, now_nanos() + delay, exit);
            }
            Ok(())
        })
    }

    fn kill<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(pid) = pid_of(handle) {
                let exit = ExitResult { exit_code: 0, signal: 9, unknown: false };
                self.tasks.exit_by(pid, now_nanos(), exit);
            }
        })
    }

    fn destroy<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(pid) = pid_of(handle) {
                self.tasks.tasks.lock().unwrap().remove(&pid);
            }
        })
    }

    fn recover<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let running = pid_of(handle).is_ok_and(|pid| self.tasks.exited(pid).is_none());
            let counts = &self.tasks.counts;
            (if running { &counts.readopted } else { &counts.gone })
                .fetch_add(1, Ordering::Relaxed);
            running
        })
    }
}

thread_local! {
    /// Panics on this thread since the current run started: turmoil runs every host on the
    /// thread that steps the simulation, and tokio swallows a spawned task's panic, so an
    /// agent's would otherwise go unnoticed.
    static PANICS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records every panic in `PANICS` of its thread, then reports it as before.
fn watch_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|p| p.borrow_mut().push(info.to_string()));
            previous(info);
        }));
    });
    PANICS.with(|p| p.borrow_mut().clear());
}

/// The real agents of one run: their data directories and every host's tasks.
pub struct RealAgents {
    /// Removed (with every agent's state) when the run ends.
    _dir: tempfile::TempDir,
    hosts: Vec<Arc<HostTasks>>,
    counts: Arc<Counts>,
    /// The run's seed: each agent's driver draws from a stream derived from it.
    seed: u64,
}

impl RealAgents {
    /// A temporary directory for a run of `seed` with `hosts` simulated agent hosts.
    pub fn new(hosts: usize, seed: u64) -> std::io::Result<Self> {
        watch_panics();
        let dir = tempfile::Builder::new().prefix("orc-sim-agents-").tempdir()?;
        let counts = Arc::new(Counts::default());
        let hosts = (0..hosts)
            .map(|host| {
                Arc::new(HostTasks {
                    host,
                    dir: dir.path().join(format!("h{host}")),
                    tasks: Mutex::new(BTreeMap::new()),
                    changed: Notify::new(),
                    next_pid: AtomicU64::new(1),
                    lives: AtomicU64::new(0),
                    counts: counts.clone(),
                })
            })
            .collect();
        Ok(RealAgents { _dir: dir, hosts, counts, seed })
    }

    /// The first panic on the simulation's thread (an agent's, or a server's) since the run
    /// started.
    pub fn panicked(&self) -> Option<String> {
        PANICS.with(|p| p.borrow().first().cloned())
    }

    /// What the agents did with their tasks so far: (started, re-adopted, gone).
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (get(&c.started), get(&c.readopted), get(&c.gone))
    }

    /// Adds simulated host `name` (number `h`) running `per_host` real agents against
    /// `servers`. A restarted host starts new agents on the same data directories.
    pub fn add_host(
        &self,
        sim: &mut turmoil::Sim<'_>,
        name: &str,
        h: usize,
        per_host: usize,
        servers: &[String],
        control: Arc<AgentControl>,
    ) {
        let seed = self.seed;
        let (tasks, servers) = (self.hosts[h].clone(), servers.to_vec());
        sim.host(name, move || {
            let (tasks, servers, control) = (tasks.clone(), servers.clone(), control.clone());
            async move {
                let life = tasks.lives.fetch_add(1, Ordering::Relaxed);
                let mut clients = Vec::new();
                for i in 0..per_host {
                    let driver_seed = seed
                        ^ ((h as u64) << 40 | (i as u64) << 20 | life)
                            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    let driver = SimDriver {
                        tasks: tasks.clone(),
                        control: control.clone(),
                        rng: Mutex::new(ChaCha8Rng::seed_from_u64(driver_seed)),
                    };
                    let config = config(&tasks, i, Arc::new(driver));
                    let node = NodeClient::new(servers.clone(), Arc::new(SimConnector));
                    let client = Client::start(config, Arc::new(GrpcServers::new(node))).await?;
                    clients.push(client);
                }
                // The agents work in their own tasks until the host crashes.
                futures::future::pending::<()>().await;
                drop(clients);
                Ok(())
            }
        });
    }
}

/// The configuration of agent `i` on a host: its node ID from the harness (`agent::node_id`),
/// the node shape of the fake agents (4 × 1 GHz, 8 GiB), the simulated clock, the `sim` driver.
fn config(tasks: &HostTasks, i: usize, driver: Arc<dyn Driver>) -> ClientConfig {
    let h = tasks.host;
    let mut config = ClientConfig::new(tasks.dir.join(format!("agent-{i}")));
    config.node.id = agent::node_id(h, i);
    config.node.name = Some(format!("h{h}-{i}"));
    config.watch_keepalive = WATCH_KEEPALIVE;
    config.drivers = vec![driver];
    config.facts = Some(HostFacts {
        hostname: format!("h{h}-{i}"),
        kernel_name: "freebsd".into(),
        kernel_version: "14.3-RELEASE".into(),
        arch: "amd64".into(),
        os_name: "freebsd".into(),
        os_version: "14.3-RELEASE".into(),
        cores: 4,
        mhz_per_core: 1_000,
        cpu_model: "simulated".into(),
        memory_mb: 8_192,
        disk_mb: 100_000,
        ip: format!("10.0.{h}.{}", i + 1),
    });
    config.clock = Clock::from_source(Arc::new(now_nanos));
    config
}

/// What a job needs to run on real agents: batch tasks exit 0 after 200 ms to 3 s (the fake
/// agents' completion delay), and a failed task is restarted once after 1 s before its
/// allocation fails and is rescheduled, so both the agent's restart policy and the servers'
/// rescheduling run.
pub fn adapt(command: &mut Command) {
    let Command::JobRegister { job, .. } = command else { return };
    let batch = job.job_type == JobType::Batch;
    for group in &mut job.task_groups {
        group.restart_policy = Some(RestartPolicy {
            interval: Duration::from_secs(300),
            attempts: 1,
            delay: Duration::from_secs(1),
            mode: "fail".into(),
            render_templates: false,
        });
        for task in &mut group.tasks {
            task.restart_policy = None;
            if batch {
                task.config.insert("run_for_ms".into(), serde_json::json!([200, 3_000]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_jobs_run_for_a_while_and_every_job_restarts_once() {
        let mut batch = Command::JobRegister {
            job: Box::new(crate::workload::job("b", JobType::Batch, 1)),
            eval: None,
        };
        adapt(&mut batch);
        let Command::JobRegister { job, .. } = &batch else { unreachable!() };
        let task = &job.task_groups[0].tasks[0];
        assert_eq!(task.config["run_for_ms"], serde_json::json!([200, 3_000]));
        assert_eq!(job.task_groups[0].restart_policy.as_ref().unwrap().attempts, 1);
        let mut service = Command::JobRegister {
            job: Box::new(crate::workload::job("s", JobType::Service, 1)),
            eval: None,
        };
        adapt(&mut service);
        let Command::JobRegister { job, .. } = &service else { unreachable!() };
        assert!(!job.task_groups[0].tasks[0].config.contains_key("run_for_ms"));
    }
}
