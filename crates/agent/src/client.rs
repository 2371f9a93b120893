//! The node lifecycle: fingerprint, register, heartbeat at the TTL the servers return, watch the
//! node's allocations (a stream from the leader, resumed by index after a reconnect), run the reconciler's actions,
//! batch allocation reports back, re-adopt tasks after a restart, sweep orphaned pots and collect
//! terminal allocation directories. How servers are reached is the `ServerApi` seam; the agent
//! never schedules.

use crate::driver::raw_exec::RawExec;
use crate::driver::Driver;
use crate::fingerprint::{self, NodeConfig};
use crate::pot::{PotDriver, PotDriverConfig};
use crate::reconcile::{self, Action, Local};
use crate::runner::{self, AllocCommand, AllocHandle, AllocReport, RunnerEnv};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use model::{Allocation, Job, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Why a call to the servers failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("servers unreachable: {0}")]
    Unreachable(String),
    /// The servers do not know this node (e.g. after they lost their state): register again.
    #[error("node is not registered")]
    UnknownNode,
    #[error("{0}")]
    Other(String),
}

/// The allocations placed on this node, each with the job version it runs.
#[derive(Debug, Clone, Default)]
pub struct NodeAllocs {
    pub index: u64,
    pub allocs: Vec<(Allocation, Option<Job>)>,
}

/// How the agent talks to the servers (gRPC in production; anything in tests).
pub trait ServerApi: Send + Sync + 'static {
    /// Registers the node; returns the heartbeat TTL.
    fn register<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Duration, ApiError>>;
    /// Heartbeats; returns the next TTL.
    fn heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Duration, ApiError>>;
    /// Opens the watch of the node's allocations: the stream yields them whenever they change,
    /// first once the servers' index passes `min_index` (0: at once). The servers send a
    /// keepalive every `keepalive`; the stream ends (or yields an error) when the connection
    /// or the leader it is served by is lost, and the agent reopens it from the last index.
    fn watch_allocs<'a>(
        &'a self,
        node_id: &'a str,
        min_index: u64,
        keepalive: Duration,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<NodeAllocs, ApiError>>, ApiError>>;
    /// Sends a batch of allocation reports.
    fn update_allocs(&self, reports: Vec<AllocReport>) -> BoxFuture<'_, Result<(), ApiError>>;
}

/// The client's configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub data_dir: PathBuf,
    pub node: NodeConfig,
    pub region: String,
    pub raw_exec_enabled: bool,
    /// The pot driver, if enabled (it is only used when `pot version -q` answers).
    pub pot: Option<PotDriverConfig>,
    /// How often the servers send a keepalive on the allocation watch when nothing changes.
    pub watch_keepalive: Duration,
    /// How often orphaned pots are swept.
    pub gc_interval: Duration,
    /// The local Consul agent, for services with `provider = "consul"`; `None`: not registered.
    pub consul: Option<consul::ConsulConfig>,
    /// orc's own catalogue, for services with `provider = "nomad"`; `None`: not registered.
    pub catalog: Option<crate::services::CatalogHandle>,
    /// Drivers registered beside raw_exec and pot (a simulation's fake driver), each offered
    /// when its `fingerprint` answers; a name already taken by raw_exec or pot is refused.
    pub drivers: Vec<Arc<dyn Driver>>,
    /// The host's facts, when fixed (a simulated host); `None`: fingerprinted from the machine.
    pub facts: Option<fingerprint::HostFacts>,
    /// What task events and reports are stamped with.
    pub clock: crate::clock::Clock,
}

/// Drivers print as their names (in `ClientConfig`'s debug output).
impl std::fmt::Debug for dyn Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Driver({})", self.name())
    }
}

impl ClientConfig {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        ClientConfig {
            data_dir,
            node: NodeConfig { datacenter: "dc1".into(), ..NodeConfig::default() },
            region: "global".into(),
            raw_exec_enabled: false,
            pot: None,
            watch_keepalive: Duration::from_secs(10),
            gc_interval: Duration::from_secs(60),
            consul: None,
            catalog: None,
            drivers: Vec::new(),
            facts: None,
            clock: crate::clock::Clock::system(),
        }
    }
}

struct Entry {
    handle: AllocHandle,
    /// The job version the runner was last given.
    job_version: u64,
}

/// A running client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<dyn ServerApi>,
    env: Arc<RunnerEnv>,
    node: Mutex<Node>,
    runners: Mutex<BTreeMap<String, Entry>>,
    pot: Option<Arc<PotDriver>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    services: Arc<crate::services::Services>,
}

/// Errors starting the client.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("driver {0:?} is registered twice")]
    DuplicateDriver(String),
}

fn load_or_create_node_id(dir: &std::path::Path) -> std::io::Result<String> {
    let path = dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let a = h.finish();
    h.write_u8(7);
    let b = h.finish();
    let id = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    );
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

impl Client {
    /// Starts the client: fingerprints, re-adopts persisted allocations, and begins registering,
    /// heartbeating, watching and reporting in the background.
    pub async fn start(
        config: ClientConfig,
        api: Arc<dyn ServerApi>,
    ) -> Result<Client, StartError> {
        let client_dir = config.data_dir.join("client");
        let state_root = client_dir.join("allocs");
        let alloc_root = config.data_dir.join("alloc");
        for dir in [&client_dir, &state_root, &alloc_root] {
            std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut node_config = config.node.clone();
        if node_config.id.is_empty() {
            node_config.id = load_or_create_node_id(&client_dir).map_err(|source| {
                StartError::DataDir { path: client_dir.display().to_string(), source }
            })?;
        }

        let mut drivers: BTreeMap<String, Arc<dyn Driver>> = BTreeMap::new();
        let mut infos = BTreeMap::new();
        let raw_exec: Arc<dyn Driver> = Arc::new(RawExec::new(config.raw_exec_enabled));
        if let Some(info) = raw_exec.fingerprint().await {
            infos.insert("raw_exec".to_string(), info);
            drivers.insert("raw_exec".into(), raw_exec);
        }
        let mut pot = None;
        if let Some(pot_config) = &config.pot {
            let mut pot_config = pot_config.clone();
            if pot_config.state_dir.as_os_str().is_empty() {
                pot_config.state_dir = client_dir.clone();
            }
            let driver = Arc::new(PotDriver::new(pot_config));
            match driver.fingerprint().await {
                Some(info) => {
                    infos.insert("pot".to_string(), info);
                    drivers.insert("pot".into(), driver.clone());
                    pot = Some(driver);
                }
                None => tracing::info!("pot driver disabled: `pot version -q` did not answer"),
            }
        }
        for driver in &config.drivers {
            let name = driver.name();
            if drivers.contains_key(name) || infos.contains_key(name) {
                return Err(StartError::DuplicateDriver(name.into()));
            }
            match driver.fingerprint().await {
                Some(info) => {
                    infos.insert(name.to_string(), info);
                    drivers.insert(name.into(), driver.clone());
                }
                None => tracing::info!(driver = name, "driver disabled: fingerprint found nothing"),
            }
        }
        let facts = config.facts.clone().unwrap_or_else(|| {
            fingerprint::host_facts(&config.data_dir, node_config.network_interface.as_deref())
        });
        let node = fingerprint::build_node(&node_config, &facts, infos);

        let address = node
            .attributes
            .get("unique.network.ip-address")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".into());
        let mut service_tasks = Vec::new();
        let native = config.catalog.clone().map(|c| {
            let (native, tasks) =
                crate::services::NativeServices::start(c.0, node.clone(), address.clone());
            service_tasks.extend(tasks);
            native
        });
        let mut services = crate::services::Services::new(
            config.consul.clone().map(|c| crate::services::ConsulServices::new(c, address)),
            native,
        );
        services.clock = config.clock.clone();
        let services = Arc::new(services);
        services.set_env(&node, &config.region, alloc_root.clone());
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        // Allocation health verdicts go out with the runner's reports.
        service_tasks.push(tokio::spawn(services.clone().run(reports_tx.clone())));
        let env = Arc::new(RunnerEnv {
            drivers,
            node: node.clone(),
            region: config.region.clone(),
            alloc_root,
            state_root: state_root.clone(),
            reports: reports_tx,
            template_sources: crate::templates::Sources {
                nomad: config.catalog.clone().map(|c| c.0),
                consul: config.consul.clone(),
            },
            clock: config.clock.clone(),
        });
        let inner = Arc::new(Inner {
            api,
            env: env.clone(),
            node: Mutex::new(node),
            runners: Mutex::new(BTreeMap::new()),
            pot,
            tasks: Mutex::new(Vec::new()),
            services: services.clone(),
        });

        // Re-adopt before watching, so an allocation the servers still want is never started
        // a second time.
        for persisted in runner::load_persisted(&state_root) {
            let id = persisted.alloc.id.clone();
            let job_version = persisted.alloc.job_version;
            tracing::info!(alloc = %id, "re-adopting allocation");
            services.track(&persisted.alloc, &persisted.job);
            let handle = runner::spawn(env.clone(), persisted);
            inner
                .runners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Entry { handle, job_version });
        }

        let client = Client { inner: inner.clone() };
        let mut tasks = vec![
            tokio::spawn(heartbeat_loop(inner.clone())),
            tokio::spawn(watch_loop(inner.clone(), config.watch_keepalive)),
            tokio::spawn(report_loop(inner.clone(), reports_rx)),
            tokio::spawn(gc_loop(inner.clone(), config.gc_interval)),
        ];
        if let Some(c) = &services.consul {
            tasks.push(tokio::spawn(c.syncer().clone().run(std::future::pending())));
        }
        tasks.extend(service_tasks);
        {
            // check_restart restarts one task through its allocation's runner.
            let weak = Arc::downgrade(&inner);
            services.set_restart(Arc::new(move |alloc_id: &str, task: &str| {
                let Some(inner) = weak.upgrade() else { return };
                let runners = inner.runners.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = runners.get(alloc_id) {
                    let (reply, _) = tokio::sync::oneshot::channel();
                    let _ = e
                        .handle
                        .commands
                        .send(AllocCommand::Restart { task: Some(task.to_owned()), reply });
                }
            }));
            // Script checks run inside their task through its allocation's runner.
            let weak = Arc::downgrade(&inner);
            services.set_exec(Arc::new(
                move |alloc_id: &str, task: &str, command: &str, args: &[String]| {
                    let (reply, rx) = tokio::sync::oneshot::channel();
                    let sent = weak.upgrade().is_some_and(|inner| {
                        let runners = inner.runners.lock().unwrap_or_else(|e| e.into_inner());
                        runners.get(alloc_id).is_some_and(|e| {
                            let cmd = AllocCommand::Exec {
                                task: task.to_owned(),
                                command: command.to_owned(),
                                args: args.to_vec(),
                                reply,
                            };
                            e.handle.commands.send(cmd).is_ok()
                        })
                    });
                    Box::pin(async move {
                        if !sent {
                            return Err("the allocation is not running here".to_string());
                        }
                        let out = rx.await.map_err(|_| "the allocation runner went away")?;
                        out.map(|o| (o.exit_code, o.output))
                    })
                },
            ));
        }
        inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend(tasks);
        Ok(client)
    }

    /// The node as registered.
    pub fn node(&self) -> Node {
        self.inner.node.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The directory of a known allocation (the only directories the fs API serves from).
    pub fn alloc_dir(&self, alloc_id: &str) -> Option<PathBuf> {
        let known =
            self.inner.runners.lock().unwrap_or_else(|e| e.into_inner()).contains_key(alloc_id);
        known.then(|| self.inner.env.alloc_root.join(alloc_id))
    }

    /// Restarts a task (or all) of a running allocation.
    pub async fn restart(&self, alloc_id: &str, task: Option<String>) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(alloc_id, AllocCommand::Restart { task, reply })?;
        rx.await.map_err(|_| "allocation runner went away".to_string())?
    }

    /// Signals a task (or all) of a running allocation.
    pub async fn signal(
        &self,
        alloc_id: &str,
        task: Option<String>,
        signal: String,
    ) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.send(alloc_id, AllocCommand::Signal { task, signal, reply })?;
        rx.await.map_err(|_| "allocation runner went away".to_string())?
    }

    fn send(&self, alloc_id: &str, cmd: AllocCommand) -> Result<(), String> {
        let runners = self.inner.runners.lock().unwrap_or_else(|e| e.into_inner());
        let entry =
            runners.get(alloc_id).ok_or_else(|| format!("unknown allocation {alloc_id}"))?;
        entry.handle.commands.send(cmd).map_err(|_| "allocation runner went away".to_string())
    }

    /// Stops every allocation and waits up to `timeout` for their tasks to die (dev mode's
    /// shutdown, whose state would otherwise be lost with tasks still running).
    pub async fn stop_all(&self, timeout: Duration) {
        let mut waits = Vec::new();
        for e in self.inner.runners.lock().unwrap_or_else(|e| e.into_inner()).values_mut() {
            let _ = e.handle.commands.send(AllocCommand::Stop);
            e.handle.stopping = true;
            waits.push(e.handle.done.clone());
        }
        let all = futures::future::join_all(
            waits.iter_mut().map(|w| async move { w.wait_for(|d| *d).await.map(|_| ()) }),
        );
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// Stops the agent's background work, leaving tasks running (they are re-adopted on the
    /// next start), as Nomad's client does on shutdown.
    pub fn shutdown(&self) {
        for task in self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// Exponential backoff with a cap.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((250u64 << attempt.min(5)).min(5_000))
}

async fn register(inner: &Inner) -> Duration {
    let mut attempt = 0;
    loop {
        let node = inner.node.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match inner.api.register(&node).await {
            Ok(ttl) => {
                tracing::info!(node = %node.id, ttl_ms = ttl.as_millis() as u64, "node registered");
                return ttl;
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering the node failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

async fn heartbeat_loop(inner: Arc<Inner>) {
    let node_id = inner.node.lock().unwrap_or_else(|e| e.into_inner()).id.clone();
    let mut ttl = register(&inner).await;
    let mut attempt = 0;
    loop {
        // Heartbeat at half the TTL, so one lost heartbeat (or a failover) leaves time to retry.
        tokio::time::sleep(if attempt == 0 { ttl / 2 } else { backoff(attempt) }).await;
        match inner.api.heartbeat(&node_id).await {
            Ok(next) => {
                ttl = next;
                attempt = 0;
            }
            Err(ApiError::UnknownNode) => {
                ttl = register(&inner).await;
                attempt = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed; retrying");
                attempt += 1;
            }
        }
    }
}

async fn watch_loop(inner: Arc<Inner>, keepalive: Duration) {
    let node_id = inner.node.lock().unwrap_or_else(|e| e.into_inner()).id.clone();
    let mut index = 0;
    let mut attempt = 0;
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    loop {
        match inner.api.watch_allocs(&node_id, index, keepalive).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(reply) => {
                            attempt = 0;
                            index = reply.index;
                            let mut desired = Vec::new();
                            for (alloc, job) in reply.allocs {
                                if let Some(job) = job {
                                    jobs.insert(alloc.id.clone(), job);
                                }
                                desired.push(alloc);
                            }
                            apply(&inner, &desired, &mut jobs).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "allocation watch broke; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "opening the allocation watch failed; retrying"),
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

async fn apply(inner: &Arc<Inner>, desired: &[Allocation], jobs: &mut BTreeMap<String, Job>) {
    let local: BTreeMap<String, Local> = inner
        .runners
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(id, e)| {
            let local = Local {
                stopping: e.handle.stopping,
                done: *e.handle.done.borrow(),
                job_version: e.job_version,
            };
            (id.clone(), local)
        })
        .collect();
    for action in reconcile::reconcile(desired, &local) {
        match action {
            Action::Run(id) => {
                let Some(alloc) = desired.iter().find(|a| a.id == id).cloned() else { continue };
                let Some(job) = jobs.get(&id).cloned() else {
                    tracing::warn!(alloc = %id, "allocation arrived without its job; skipping");
                    continue;
                };
                tracing::info!(alloc = %id, job = %job.id, "starting allocation");
                inner.services.track(&alloc, &job);
                let job_version = alloc.job_version;
                let handle = runner::spawn(inner.env.clone(), runner::new_alloc(alloc, job));
                inner
                    .runners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, Entry { handle, job_version });
            }
            Action::Update(id) => {
                let Some(alloc) = desired.iter().find(|a| a.id == id).cloned() else { continue };
                let Some(job) = jobs.get(&id).filter(|j| j.version == alloc.job_version).cloned()
                else {
                    tracing::warn!(alloc = %id, "updated allocation arrived without its job");
                    continue;
                };
                tracing::info!(alloc = %id, version = job.version, "updating allocation in place");
                inner.services.update(&alloc, &job);
                let mut runners = inner.runners.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = runners.get_mut(&id) {
                    e.job_version = alloc.job_version;
                    let _ = e
                        .handle
                        .commands
                        .send(AllocCommand::Update { alloc: Box::new(alloc), job: Box::new(job) });
                }
            }
            Action::Stop(id) => {
                tracing::info!(alloc = %id, "stopping allocation");
                inner.services.stopping(&id);
                let mut runners = inner.runners.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = runners.get_mut(&id) {
                    let _ = e.handle.commands.send(AllocCommand::Stop);
                    e.handle.stopping = true;
                }
            }
            Action::Discard(id) => {
                let Some(alloc) = desired.iter().find(|a| a.id == id) else { continue };
                tracing::info!(alloc = %id, "allocation stopped before it ran here; reporting it complete");
                let job = jobs.remove(&id);
                let group = job
                    .as_ref()
                    .and_then(|j| j.task_groups.iter().find(|g| g.name == alloc.task_group));
                let tasks: Vec<String> = match group {
                    Some(g) => g.tasks.iter().map(|t| t.name.clone()).collect(),
                    None => alloc.allocated_resources.tasks.keys().cloned().collect(),
                };
                let dead = || model::TaskState { state: "dead".into(), ..Default::default() };
                let report = AllocReport {
                    alloc_id: id,
                    client_status: model::ClientStatus::Complete,
                    client_description: runner::describe(model::ClientStatus::Complete).into(),
                    task_states: tasks.into_iter().map(|t| (t, dead())).collect(),
                    deployment_status: None,
                    modify_time: inner.env.clock.unix_nanos(),
                };
                let _ = inner.env.reports.send(report);
            }
            Action::Gc(id) => {
                tracing::info!(alloc = %id, "collecting allocation directory");
                inner.services.forget(&id);
                inner.runners.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                jobs.remove(&id);
                let _ = std::fs::remove_dir_all(inner.env.alloc_root.join(&id));
                let _ = std::fs::remove_file(runner::state_file(&inner.env.state_root, &id));
            }
        }
    }
}

/// Registers or deregisters an allocation's services as its status changes, and adds the
/// allocation's health to the report once it is decided.
fn service_status(inner: &Inner, r: &mut AllocReport) {
    inner.services.observe(r);
}

async fn report_loop(inner: Arc<Inner>, mut reports: mpsc::UnboundedReceiver<AllocReport>) {
    let mut pending: BTreeMap<String, AllocReport> = BTreeMap::new();
    let mut attempt = 0;
    loop {
        if pending.is_empty() {
            match reports.recv().await {
                Some(mut r) => {
                    service_status(&inner, &mut r);
                    pending.insert(r.alloc_id.clone(), r);
                }
                None => return,
            }
        }
        // Batch what arrives within 50 ms (Nomad batches client updates every 200 ms; a
        // shorter window keeps `orc run` snappy).
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(mut r) = reports.try_recv() {
            service_status(&inner, &mut r);
            pending.insert(r.alloc_id.clone(), r);
        }
        let batch: Vec<AllocReport> = pending.values().cloned().collect();
        match inner.api.update_allocs(batch).await {
            Ok(()) => {
                pending.clear();
                attempt = 0;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reporting allocation status failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Sweeps pots this agent created that no allocation's running task owns.
async fn gc_loop(inner: Arc<Inner>, interval: Duration) {
    let Some(pot) = inner.pot.clone() else { return };
    // Give re-adopted runners a moment to record which pots they own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        let live: BTreeSet<String> = runner::load_persisted(&inner.env.state_root)
            .into_iter()
            .flat_map(|p| p.handles.into_values().map(|h| h.pot_name))
            .filter(|n| !n.is_empty())
            .collect();
        let swept = pot.sweep(&live).await;
        if !swept.is_empty() {
            tracing::warn!(?swept, "destroyed orphaned pots");
        }
        tokio::time::sleep(interval).await;
    }
}
