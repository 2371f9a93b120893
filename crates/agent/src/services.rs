//! Registers the services of this node's running allocations: registered once an allocation
//! reports running, deregistered once it stops or is collected.
//!
//! `provider = "consul"` (Nomad's default) goes to the local Consul agent through the `consul`
//! crate's syncer, which never blocks (Consul being down never delays a task) and repairs drift
//! periodically; Consul runs the checks. `provider = "nomad"` (or `"orc"`) goes to orc's own
//! catalogue on the servers ([`CatalogApi`]); the agent runs those checks itself (`checks`
//! crate), writes each instance's health into its registration when it changes, and restarts a
//! task whose checks fail `check_restart.limit` times in a row after `grace`. For Consul's
//! checks the agent polls the local Consul agent's `/v1/agent/checks`, as Nomad's check watcher
//! does, and feeds the same `check_restart` logic.
//!
//! It also decides each allocation's health for deployments (`DeploymentStatus.Healthy`,
//! `checks::health`): tasks from the runner's reports, checks from both providers, the verdict
//! sent back to the servers with the allocation's next report.
//!
//! Service blocks are interpolated on the node before either provider sees them, as Nomad's
//! client does: `${NOMAD_*}` from the task's environment (the group's, for group services),
//! `${attr.*}`, `${node.*}` and `${meta.*}` from the node.
//!
//! Script checks (Consul services only: Nomad's own catalogue runs http and tcp checks) run
//! inside the task through its driver's exec (the client passes an [`ExecFn`]); the agent
//! reports each result to the check's TTL in Consul (`PUT /v1/agent/check/update/:id`), as
//! Nomad does.

use crate::runner::AllocReport;
use crate::taskenv::{FsIsolation, TaskDirs, TaskEnv, TaskEnvInput};
use checks::{AllocHealth, HealthMode, HealthParams, TasksView};
use checks::{CheckHandle, CheckKind, CheckRestartPolicy, CheckRestartTracker, CheckSpec};
use checks::{CheckStatus, CheckUpdate, HttpProbe, Thresholds};
use consul::build::{host_port, registration, Instance};
use consul::ids::{self, Owner};
use consul::{Client, ConsulConfig, Syncer};
use futures::future::BoxFuture;
use model::{
    AllocDeploymentStatus, Allocation, ClientStatus, Job, JobType, Node, Service,
    ServiceCheckResult, ServiceHealth, ServiceRegistration, Task, TaskGroup,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the whole Consul state is compared with what should be there (Nomad: 30 s).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// How often the agent reads Consul's check statuses (Nomad's check watcher: about 1 s).
pub const CONSUL_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One check registered in Consul, as the agent watches it.
struct WatchedCheck {
    check_id: String,
    /// The task `check_restart` restarts.
    task: String,
    interval: Duration,
    /// The tracker, and when it last counted a failure: Consul's status is read more often
    /// than the check runs, so a failure is counted at most once per interval.
    restart: Option<(CheckRestartTracker, Option<Instant>)>,
}

/// The Consul side of the agent's services.
pub struct ConsulServices {
    syncer: Syncer,
    node_address: String,
    /// What is needed to build an allocation's registrations when it reports running.
    allocs: Mutex<BTreeMap<String, (Allocation, Job)>>,
    /// The checks of each registered allocation.
    checks: Mutex<BTreeMap<String, Vec<WatchedCheck>>>,
    /// Check ID → status, from the last read of Consul's checks.
    statuses: Mutex<BTreeMap<String, String>>,
    restart: Mutex<Option<RestartFn>>,
    exec: Mutex<Option<ExecFn>>,
    /// The script checks the agent runs for each allocation, reported to Consul's TTL checks.
    scripts: Mutex<BTreeMap<String, Vec<CheckHandle>>>,
}

impl ConsulServices {
    /// Services for a node reachable at `node_address`; run [`ConsulServices::syncer`]'s loop.
    pub fn new(config: ConsulConfig, node_address: String) -> ConsulServices {
        let syncer = Syncer::new(Client::new(config), SYNC_INTERVAL);
        ConsulServices {
            syncer,
            node_address,
            allocs: Mutex::default(),
            checks: Mutex::default(),
            statuses: Mutex::default(),
            restart: Mutex::new(None),
            exec: Mutex::new(None),
            scripts: Mutex::default(),
        }
    }

    /// Starts the script checks of an allocation's registrations (once), each reporting to its
    /// TTL check in Consul.
    fn start_scripts(&self, alloc_id: &str, scripts: Vec<(String, String, CheckSpec)>) {
        let mut running = self.scripts.lock().unwrap_or_else(|e| e.into_inner());
        if scripts.is_empty() || running.contains_key(alloc_id) {
            return;
        }
        let mut handles = Vec::new();
        for (check_id, task, spec) in scripts {
            let (tx, mut rx) = mpsc::unbounded_channel::<CheckUpdate>();
            let exec = script_exec(&self.exec, alloc_id, &task);
            handles.push(checks::runner::spawn(spec, exec, tx));
            let syncer = self.syncer.clone();
            tokio::spawn(async move {
                // Consul applies the check's thresholds to what it is told: send raw results.
                while let Some(u) = rx.recv().await {
                    syncer.report_ttl(&check_id, u.result.as_str(), &u.output);
                }
            });
        }
        running.insert(alloc_id.to_owned(), handles);
    }

    /// Sets how `check_restart` restarts a task.
    pub fn set_restart(&self, f: RestartFn) {
        *self.restart.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// True when every Consul check of the allocation passed at the last read (or it has none).
    fn checks_passing(&self, alloc_id: &str) -> bool {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = checks.get(alloc_id) else { return true };
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().all(|c| statuses.get(&c.check_id).is_some_and(|s| s == "passing"))
    }

    /// Reads Consul's check statuses once and applies `check_restart`.
    async fn poll(&self) {
        if self.checks.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            return;
        }
        let client = self.syncer.client().clone();
        let read = tokio::task::spawn_blocking(move || client.checks()).await;
        let Ok(Ok(checks)) = read else {
            // Consul unreachable: keep the last statuses; nothing is restarted on no news.
            return;
        };
        let statuses: BTreeMap<String, String> =
            checks.into_iter().map(|(id, c)| (id, c.status)).collect();
        let now = Instant::now();
        let mut restarts = Vec::new();
        {
            let mut watched = self.checks.lock().unwrap_or_else(|e| e.into_inner());
            for (alloc_id, list) in watched.iter_mut() {
                for c in list.iter_mut() {
                    let Some((tracker, last)) = c.restart.as_mut() else { continue };
                    let Some(status) =
                        statuses.get(&c.check_id).and_then(|s| CheckStatus::parse(s))
                    else {
                        continue;
                    };
                    let failing = matches!(status, CheckStatus::Critical | CheckStatus::Warning);
                    if failing && last.is_some_and(|t| now.duration_since(t) < c.interval) {
                        continue;
                    }
                    *last = failing.then_some(now);
                    if tracker.observe(status, now) {
                        *last = None;
                        restarts.push((alloc_id.clone(), c.task.clone(), c.check_id.clone()));
                    }
                }
            }
        }
        *self.statuses.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
        let f = self.restart.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (alloc_id, task, check) in restarts {
            tracing::info!(alloc = %alloc_id, task = %task, check = %check, "check_restart: restarting the task");
            if let Some(f) = &f {
                f(&alloc_id, &task);
            }
        }
    }

    pub fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// Remembers an allocation this agent runs.
    pub fn track(&self, alloc: &Allocation, job: &Job) {
        let mut a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        a.insert(alloc.id.clone(), (alloc.clone(), job.clone()));
    }

    /// Follows an allocation's status: running → registered, anything terminal → deregistered.
    pub fn status(&self, alloc_id: &str, status: ClientStatus) {
        match status {
            ClientStatus::Running => {
                let a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
                let Some((alloc, job)) = a.get(alloc_id) else { return };
                let regs = registrations_with_checks(alloc, job, &self.node_address);
                drop(a);
                let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
                if !checks.contains_key(alloc_id) {
                    let now = Instant::now();
                    let watched = regs
                        .iter()
                        .flat_map(|(_, w)| w.iter())
                        .map(|(check_id, task, interval, policy, _)| WatchedCheck {
                            check_id: check_id.clone(),
                            task: task.clone(),
                            interval: *interval,
                            restart: policy.map(|p| (CheckRestartTracker::new(p, now), None)),
                        })
                        .collect::<Vec<_>>();
                    if !watched.is_empty() {
                        checks.insert(alloc_id.to_owned(), watched);
                    }
                }
                drop(checks);
                let scripts = regs
                    .iter()
                    .flat_map(|(_, w)| w.iter())
                    .filter_map(|(check_id, task, _, _, script)| {
                        Some((check_id.clone(), task.clone(), script.clone()?))
                    })
                    .collect();
                self.syncer.set_alloc(alloc_id, regs.into_iter().map(|(r, _)| r).collect());
                self.start_scripts(alloc_id, scripts);
            }
            ClientStatus::Pending => {}
            _ => {
                self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
                self.scripts.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
                self.syncer.remove_alloc(alloc_id);
            }
        }
    }

    /// Forgets an allocation (collected): its services go.
    pub fn forget(&self, alloc_id: &str) {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        self.checks.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        self.scripts.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        self.syncer.remove_alloc(alloc_id);
    }
}

/// Writes to orc's service catalogue on the servers.
pub trait CatalogApi: Send + Sync {
    fn write(
        &self,
        upserts: Vec<ServiceRegistration>,
        deletes: Vec<String>,
    ) -> BoxFuture<'_, Result<(), String>>;

    /// Reads service `name`'s registrations in `namespace` once the catalogue's index passes
    /// `min_index` (0: at once), or after `wait`; returns the index and the registrations
    /// (templates' `nomadService`). A catalogue that cannot be read says so.
    fn read<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
        _min_index: u64,
        _wait: std::time::Duration,
    ) -> BoxFuture<'a, Result<(u64, Vec<ServiceRegistration>), String>> {
        Box::pin(async { Err("this catalogue cannot be read".to_string()) })
    }
}

/// A [`CatalogApi`] in the client's configuration.
#[derive(Clone)]
pub struct CatalogHandle(pub Arc<dyn CatalogApi>);

impl std::fmt::Debug for CatalogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogHandle")
    }
}

/// Restarts one task of an allocation (`check_restart`).
pub type RestartFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Runs a command inside a running task: (allocation, task, command, args) → its exit code and
/// output, or why it could not run.
pub type ExecFn = Arc<
    dyn Fn(&str, &str, &str, &[String]) -> BoxFuture<'static, Result<(Option<i32>, String), String>>
        + Send
        + Sync,
>;

/// A script check's way into its task.
struct TaskExec {
    exec: ExecFn,
    alloc_id: String,
    task: String,
}

impl checks::ScriptExec for TaskExec {
    fn exec(&self, command: &str, args: &[String]) -> BoxFuture<'static, checks::ScriptOutcome> {
        let run = (self.exec)(&self.alloc_id, &self.task, command, args);
        Box::pin(async move {
            match run.await {
                Ok((exit_code, output)) => checks::ScriptOutcome { exit_code, output },
                Err(e) => checks::ScriptOutcome { exit_code: None, output: e },
            }
        })
    }
}

fn script_exec(
    exec: &Mutex<Option<ExecFn>>,
    alloc_id: &str,
    task: &str,
) -> Option<Arc<dyn checks::ScriptExec>> {
    let exec = exec.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
    Some(Arc::new(TaskExec { exec, alloc_id: alloc_id.to_owned(), task: task.to_owned() }))
}

/// One registration and what its checks last said.
struct Registered {
    reg: ServiceRegistration,
    /// Check name → (task to restart, restart tracker).
    restart: BTreeMap<String, (String, CheckRestartTracker)>,
}

struct Running {
    regs: BTreeMap<String, Registered>,
    _checks: Vec<CheckHandle>,
}

/// orc's own catalogue: registrations with health, checks run here.
pub struct NativeServices {
    node: Node,
    node_address: String,
    allocs: Mutex<BTreeMap<String, (Allocation, Job)>>,
    running: Mutex<BTreeMap<String, Running>>,
    checks_tx: mpsc::UnboundedSender<CheckUpdate>,
    writes_tx: mpsc::UnboundedSender<(Vec<ServiceRegistration>, Vec<String>)>,
    restart: Mutex<Option<RestartFn>>,
}

fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn health(s: CheckStatus) -> ServiceHealth {
    match s {
        CheckStatus::Pending => ServiceHealth::Pending,
        CheckStatus::Passing => ServiceHealth::Passing,
        CheckStatus::Warning => ServiceHealth::Warning,
        CheckStatus::Critical => ServiceHealth::Critical,
    }
}

impl NativeServices {
    /// Starts the catalogue side; the returned tasks apply check results and write to the
    /// servers (retrying until they answer).
    pub fn start(
        api: Arc<dyn CatalogApi>,
        node: Node,
        node_address: String,
    ) -> (Arc<NativeServices>, Vec<tokio::task::JoinHandle<()>>) {
        let (checks_tx, checks_rx) = mpsc::unbounded_channel();
        let (writes_tx, writes_rx) = mpsc::unbounded_channel();
        let me = Arc::new(NativeServices {
            node,
            node_address,
            allocs: Mutex::default(),
            running: Mutex::default(),
            checks_tx,
            writes_tx,
            restart: Mutex::new(None),
        });
        let tasks = vec![
            tokio::spawn(apply_checks(Arc::downgrade(&me), checks_rx)),
            tokio::spawn(write_loop(api, writes_rx)),
        ];
        (me, tasks)
    }

    /// Sets how `check_restart` restarts a task.
    pub fn set_restart(&self, f: RestartFn) {
        *self.restart.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    pub fn track(&self, alloc: &Allocation, job: &Job) {
        let mut a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        a.insert(alloc.id.clone(), (alloc.clone(), job.clone()));
    }

    /// An in-place update of an allocation (a new job version, same tasks): while it runs,
    /// its registrations follow the new version's services, re-registered only if they changed.
    pub fn update(&self, alloc: &Allocation, job: &Job) {
        let old = self
            .allocs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(alloc.id.clone(), (alloc.clone(), job.clone()));
        let changed = old.is_none_or(|(_, old_job)| {
            service_blocks(&old_job, &alloc.task_group) != service_blocks(job, &alloc.task_group)
        });
        let running =
            self.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&alloc.id);
        if changed && running {
            // The write loop merges the deletion with the upserts that follow it.
            self.deregister(&alloc.id);
            self.register(alloc, job);
        }
    }

    /// Running → registered with pending health and its checks started; terminal → removed.
    pub fn status(&self, alloc_id: &str, status: ClientStatus) {
        match status {
            ClientStatus::Running => {
                if self.running.lock().unwrap_or_else(|e| e.into_inner()).contains_key(alloc_id) {
                    return;
                }
                let a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
                let Some((alloc, job)) = a.get(alloc_id).cloned() else { return };
                drop(a);
                self.register(&alloc, &job);
            }
            ClientStatus::Pending => {}
            _ => self.deregister(alloc_id),
        }
    }

    pub fn forget(&self, alloc_id: &str) {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        self.deregister(alloc_id);
    }

    /// True when every check of the allocation's catalogue registrations passes (or it has none).
    fn checks_passing(&self, alloc_id: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = running.get(alloc_id) else { return true };
        r.regs.values().all(|r| r.reg.checks.iter().all(|c| c.status == ServiceHealth::Passing))
    }

    fn deregister(&self, alloc_id: &str) {
        let gone = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        if let Some(r) = gone {
            let _ = self.writes_tx.send((Vec::new(), r.regs.into_keys().collect()));
        }
    }

    fn register(&self, alloc: &Allocation, job: &Job) {
        let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
            return;
        };
        let ports: BTreeMap<String, u16> = alloc
            .allocated_resources
            .shared
            .ports
            .iter()
            .map(|p| (p.label.clone(), p.value))
            .collect();
        let port_of = |label: &str| ports.get(label).copied().or_else(|| label.parse().ok());
        let services = group
            .services
            .iter()
            .map(|s| (Owner::Group(&group.name), s, s.task_name.as_str()))
            .chain(group.tasks.iter().flat_map(|t| {
                t.services.iter().map(move |s| (Owner::Task(&t.name), s, t.name.as_str()))
            }));
        let now = Instant::now();
        let mut running = Running { regs: BTreeMap::new(), _checks: Vec::new() };
        for (owner, s, task) in services {
            if s.provider != "nomad" {
                continue;
            }
            let address =
                if s.address.is_empty() { self.node_address.clone() } else { s.address.clone() };
            let port = port_of(&s.port_label).unwrap_or(0);
            let id = ids::service_id(&alloc.id, owner, &s.name, &s.port_label);
            let mut reg = ServiceRegistration {
                id: id.clone(),
                service_name: s.name.clone(),
                namespace: job.namespace.clone(),
                node_id: self.node.id.clone(),
                datacenter: self.node.datacenter.clone(),
                job_id: job.id.clone(),
                alloc_id: alloc.id.clone(),
                tags: s.tags.clone(),
                address: address.clone(),
                port,
                health: if s.checks.is_empty() {
                    ServiceHealth::Passing
                } else {
                    ServiceHealth::Pending
                },
                ..ServiceRegistration::default()
            };
            let mut restart = BTreeMap::new();
            for c in &s.checks {
                let check_port =
                    if c.port_label.is_empty() { Some(port) } else { port_of(&c.port_label) };
                let target = host_port(&address, check_port.unwrap_or(0));
                let check_task = if task.is_empty() { c.task_name.as_str() } else { task };
                // Nomad's own catalogue runs only http and tcp checks; jobspec refuses others.
                let kind = match c.check_type.as_str() {
                    "tcp" => CheckKind::Tcp { addr: target },
                    "http" => match HttpProbe::new(
                        &target,
                        &c.protocol,
                        &c.method,
                        &c.path,
                        &c.header,
                        &c.body,
                    ) {
                        Ok(p) => CheckKind::Http(p),
                        Err(e) => {
                            tracing::warn!(alloc = %alloc.id, check = %c.name, error = %e, "check not run");
                            continue;
                        }
                    },
                    other => {
                        tracing::warn!(alloc = %alloc.id, check = %c.name, kind = other, "check type not run by the agent");
                        continue;
                    }
                };
                reg.checks.push(ServiceCheckResult {
                    name: c.name.clone(),
                    status: ServiceHealth::Pending,
                    output: String::new(),
                    timestamp: unix_nanos(),
                });
                if let Some(cr) = c.check_restart.as_ref().or(s.check_restart.as_ref()) {
                    let task = check_task;
                    let policy = CheckRestartPolicy {
                        limit: cr.limit,
                        grace: cr.grace,
                        ignore_warnings: cr.ignore_warnings,
                    };
                    restart.insert(
                        c.name.clone(),
                        (task.to_owned(), CheckRestartTracker::new(policy, now)),
                    );
                }
                let spec = CheckSpec {
                    id: format!("{}\n{id}\n{}", alloc.id, c.name),
                    kind,
                    interval: c.interval,
                    timeout: c.timeout,
                    initial: CheckStatus::Pending,
                    thresholds: Thresholds {
                        success_before_passing: c.success_before_passing,
                        failures_before_warning: c.failures_before_warning,
                        failures_before_critical: c.failures_before_critical,
                    },
                };
                running._checks.push(checks::runner::spawn(spec, None, self.checks_tx.clone()));
            }
            running.regs.insert(id, Registered { reg, restart });
        }
        if running.regs.is_empty() {
            return;
        }
        let upserts = running.regs.values().map(|r| r.reg.clone()).collect();
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(alloc.id.clone(), running);
        let _ = self.writes_tx.send((upserts, Vec::new()));
    }

    /// Applies one check result: the instance's health is the worst of its checks; a change is
    /// written to the servers; `check_restart` may restart the task.
    fn apply(&self, u: CheckUpdate) {
        let mut parts = u.id.splitn(3, '\n');
        let (Some(alloc_id), Some(reg_id), Some(check)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let mut restart_task = None;
        let mut changed = None;
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let Some(r) = running.get_mut(alloc_id).and_then(|r| r.regs.get_mut(reg_id)) else {
                return;
            };
            let status = health(u.status);
            if let Some(c) = r.reg.checks.iter_mut().find(|c| c.name == check) {
                let moved = c.status != status;
                c.status = status;
                c.output = u.output.clone();
                c.timestamp = unix_nanos();
                let worst = r.reg.checks.iter().fold(CheckStatus::Passing, |w, c| {
                    w.worst(match c.status {
                        ServiceHealth::Passing => CheckStatus::Passing,
                        ServiceHealth::Warning => CheckStatus::Warning,
                        ServiceHealth::Pending => CheckStatus::Pending,
                        ServiceHealth::Critical => CheckStatus::Critical,
                    })
                });
                let h = health(worst);
                if moved || h != r.reg.health {
                    r.reg.health = h;
                    changed = Some(r.reg.clone());
                }
            }
            if let Some((task, tracker)) = r.restart.get_mut(check) {
                if tracker.observe(u.status, u.at) {
                    restart_task = Some(task.clone());
                }
            }
        }
        if let Some(reg) = changed {
            let _ = self.writes_tx.send((vec![reg], Vec::new()));
        }
        if let Some(task) = restart_task {
            tracing::info!(alloc = %alloc_id, task = %task, check = %check, "check_restart: restarting the task");
            let f = self.restart.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(f) = f {
                f(alloc_id, &task);
            }
        }
    }
}

async fn apply_checks(me: Weak<NativeServices>, mut rx: mpsc::UnboundedReceiver<CheckUpdate>) {
    while let Some(u) = rx.recv().await {
        let Some(me) = me.upgrade() else { return };
        me.apply(u);
    }
}

/// Sends catalogue writes in order, merging what queues up meanwhile, retrying until a server
/// takes them.
async fn write_loop(
    api: Arc<dyn CatalogApi>,
    mut rx: mpsc::UnboundedReceiver<(Vec<ServiceRegistration>, Vec<String>)>,
) {
    let mut upserts: BTreeMap<String, ServiceRegistration> = BTreeMap::new();
    let mut deletes: Vec<String> = Vec::new();
    let mut retry = Duration::from_millis(250);
    loop {
        if upserts.is_empty() && deletes.is_empty() {
            let Some((u, d)) = rx.recv().await else { return };
            merge(&mut upserts, &mut deletes, u, d);
        }
        while let Ok((u, d)) = rx.try_recv() {
            merge(&mut upserts, &mut deletes, u, d);
        }
        let batch: Vec<ServiceRegistration> = upserts.values().cloned().collect();
        match api.write(batch, deletes.clone()).await {
            Ok(()) => {
                upserts.clear();
                deletes.clear();
                retry = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing service registrations failed; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A deletion cancels an earlier upsert of the same ID; a later upsert cancels a deletion.
fn merge(
    upserts: &mut BTreeMap<String, ServiceRegistration>,
    deletes: &mut Vec<String>,
    u: Vec<ServiceRegistration>,
    d: Vec<String>,
) {
    for id in d {
        upserts.remove(&id);
        if !deletes.contains(&id) {
            deletes.push(id);
        }
    }
    for r in u {
        deletes.retain(|id| *id != r.id);
        upserts.insert(r.id.clone(), r);
    }
}

/// How often allocation health is re-evaluated.
const HEALTH_TICK: Duration = Duration::from_millis(250);

/// One allocation whose health is being decided.
struct Health {
    tracker: AllocHealth,
    /// Task → (lifecycle hook, sidecar), from the job.
    lifecycles: BTreeMap<String, (String, bool)>,
    /// The runner's last report, re-sent with the verdict.
    last: Option<AllocReport>,
    status: Option<AllocDeploymentStatus>,
    /// The servers stopped the allocation: its tasks dying says nothing of its health, so no
    /// verdict is decided any more (Nomad's health hook stops watching before the kill).
    stopping: bool,
}

/// Both providers, and allocation health, as the client drives them.
#[derive(Default)]
pub struct Services {
    pub consul: Option<ConsulServices>,
    pub native: Option<Arc<NativeServices>>,
    health: Mutex<BTreeMap<String, Health>>,
    /// Where a health verdict goes: the client's report queue.
    reports: Mutex<Option<mpsc::UnboundedSender<AllocReport>>>,
    /// What service blocks are interpolated with: the node, its region, `<data_dir>/alloc`.
    env: Mutex<Option<(Node, String, PathBuf)>>,
    /// What health verdicts are stamped with (the client's clock).
    pub(crate) clock: crate::clock::Clock,
}

/// The environment `${...}` in a service block resolves against: the task's, or for a group
/// service the group's (no task variables), as Nomad builds it.
fn service_env(
    alloc: &Allocation,
    job: &Job,
    group: &TaskGroup,
    task: Option<&Task>,
    (node, region, alloc_root): &(Node, String, PathBuf),
) -> TaskEnv {
    let group_task = Task::default();
    let t = task.unwrap_or(&group_task);
    let alloc_dir = alloc_root.join(&alloc.id);
    let task_dir = alloc_dir.join(&t.name);
    let dirs = TaskDirs {
        alloc_dir: alloc_dir.join("alloc").display().to_string(),
        local_dir: task_dir.join("local").display().to_string(),
        secrets_dir: task_dir.join("secrets").display().to_string(),
    };
    let isolation = if t.driver == "pot" { FsIsolation::Image } else { FsIsolation::None };
    let host_ip =
        node.attributes.get("unique.network.ip-address").map_or("127.0.0.1", String::as_str);
    let mut env = TaskEnv::build(&TaskEnvInput {
        node,
        region,
        job,
        group,
        task: t,
        alloc,
        dirs: &dirs,
        isolation,
        host_ip,
    });
    if task.is_none() {
        for k in ["NOMAD_TASK_NAME", "NOMAD_TASK_DIR", "NOMAD_SECRETS_DIR"] {
            env.env.remove(k);
        }
    }
    env
}

/// A service block with every field Nomad interpolates resolved against `env`.
pub fn interpolate_service(s: &Service, env: &TaskEnv) -> Service {
    let i = |t: &String| env.interpolate(t);
    let list = |v: &[String]| v.iter().map(i).collect::<Vec<_>>();
    let map = |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| (i(k), i(v))).collect();
    let mut out = s.clone();
    out.name = i(&s.name);
    out.tags = list(&s.tags);
    out.canary_tags = list(&s.canary_tags);
    out.meta = map(&s.meta);
    out.canary_meta = map(&s.canary_meta);
    out.port_label = i(&s.port_label);
    out.address = i(&s.address);
    for c in &mut out.checks {
        c.name = i(&c.name);
        c.command = i(&c.command);
        c.args = list(&c.args);
        c.path = i(&c.path);
        c.protocol = i(&c.protocol);
        c.port_label = i(&c.port_label);
        c.method = i(&c.method);
        c.body = i(&c.body);
        c.tls_server_name = i(&c.tls_server_name);
        for values in c.header.values_mut() {
            *values = list(values);
        }
    }
    out
}

/// `job` with the services of `alloc`'s group interpolated for that allocation.
pub fn interpolate_job(alloc: &Allocation, job: &Job, env: &(Node, String, PathBuf)) -> Job {
    let mut out = job.clone();
    let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
        return out;
    };
    let Some(g) = out.task_groups.iter_mut().find(|g| g.name == alloc.task_group) else {
        return out;
    };
    if !group.services.is_empty() {
        let e = service_env(alloc, job, group, None, env);
        g.services = group.services.iter().map(|s| interpolate_service(s, &e)).collect();
    }
    for (t, orig) in g.tasks.iter_mut().zip(&group.tasks) {
        if !orig.services.is_empty() {
            let e = service_env(alloc, job, group, Some(orig), env);
            t.services = orig.services.iter().map(|s| interpolate_service(s, &e)).collect();
        }
    }
    out
}

/// The health settings of an allocation's group, or `None` when the agent does not decide its
/// health: Nomad watches only service jobs, and `health_check = "manual"` leaves it to the
/// operator. The group's `update` block decides, else its `migrate` block, else Nomad's
/// defaults (checks, 10s, 5m).
pub fn health_params(job: &Job, group: &TaskGroup) -> Option<HealthParams> {
    if job.job_type != JobType::Service {
        return None;
    }
    let (check, min_healthy_time, healthy_deadline) = match (&group.update, &group.migrate) {
        (Some(u), _) => (u.health_check.as_str(), u.min_healthy_time, u.healthy_deadline),
        (None, Some(m)) => (m.health_check.as_str(), m.min_healthy_time, m.healthy_deadline),
        (None, None) => ("checks", Duration::from_secs(10), Duration::from_secs(300)),
    };
    let mode = match check {
        "manual" => return None,
        "task_states" => HealthMode::TaskStates,
        _ => HealthMode::Checks,
    };
    Some(HealthParams { mode, min_healthy_time, healthy_deadline })
}

/// The tasks of a report as health sees them (Nomad's rules: poststop tasks are ignored,
/// prestart and poststart tasks that are not sidecars may finish successfully, any other
/// finished or failed task makes the allocation unhealthy).
fn tasks_view(r: &AllocReport, lifecycles: &BTreeMap<String, (String, bool)>) -> TasksView {
    if r.client_status.is_terminal() {
        return TasksView::Failed;
    }
    let mut restarts = 0;
    let mut all_running = true;
    for (name, (hook, sidecar)) in lifecycles {
        if hook == "poststop" {
            continue;
        }
        let Some(st) = r.task_states.get(name) else {
            all_running = false;
            continue;
        };
        if st.failed {
            return TasksView::Failed;
        }
        let ephemeral = (hook == "prestart" || hook == "poststart") && !sidecar;
        match st.state.as_str() {
            "running" => restarts += st.restarts,
            "dead" if ephemeral => {}
            "dead" => return TasksView::Failed,
            _ => all_running = false,
        }
    }
    if all_running {
        TasksView::Running { restarts }
    } else {
        TasksView::NotRunning
    }
}

impl Services {
    /// Both providers; allocation health is decided once [`Services::run`] runs.
    pub fn new(consul: Option<ConsulServices>, native: Option<Arc<NativeServices>>) -> Services {
        Services { consul, native, ..Services::default() }
    }

    /// Sets how script checks run inside tasks (Consul services; Nomad's own catalogue has
    /// no script checks).
    pub fn set_exec(&self, f: ExecFn) {
        if let Some(c) = &self.consul {
            *c.exec.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        }
    }

    /// Sets how `check_restart` restarts a task, for both providers.
    pub fn set_restart(&self, f: RestartFn) {
        if let Some(c) = &self.consul {
            c.set_restart(f.clone());
        }
        if let Some(n) = &self.native {
            n.set_restart(f);
        }
    }

    /// The job with its service blocks interpolated for `alloc`; `None` before `set_env`.
    fn interpolated(&self, alloc: &Allocation, job: &Job) -> Option<Job> {
        let env = self.env.lock().unwrap_or_else(|e| e.into_inner()).clone();
        env.map(|e| interpolate_job(alloc, job, &e))
    }

    /// Sets what service blocks are interpolated with (before any allocation is tracked).
    pub fn set_env(&self, node: &Node, region: &str, alloc_root: PathBuf) {
        *self.env.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((node.clone(), region.to_owned(), alloc_root));
    }

    pub fn track(&self, alloc: &Allocation, job: &Job) {
        let interpolated = self.interpolated(alloc, job);
        let services_job = interpolated.as_ref().unwrap_or(job);
        if let Some(c) = &self.consul {
            c.track(alloc, services_job);
        }
        if let Some(n) = &self.native {
            n.track(alloc, services_job);
        }
        let decided = alloc.deployment_status.as_ref().is_some_and(|d| d.healthy.is_some());
        let group = job.task_groups.iter().find(|g| g.name == alloc.task_group);
        let params = group.and_then(|g| health_params(job, g));
        if let (Some(group), Some(params), false) = (group, params, decided) {
            let lifecycles = group
                .tasks
                .iter()
                .map(|t| {
                    let l = t.lifecycle.as_ref();
                    let hook = l.map(|l| l.hook.clone()).unwrap_or_default();
                    (t.name.clone(), (hook, l.is_some_and(|l| l.sidecar)))
                })
                .collect();
            let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            h.entry(alloc.id.clone()).or_insert_with(|| Health {
                tracker: AllocHealth::new(params, crate::clock::instant()),
                lifecycles,
                last: None,
                status: None,
                stopping: false,
            });
        }
    }

    /// Follows one of the runner's reports on its way to the servers: services are registered
    /// or deregistered, health sees the tasks, and the report carries the health verdict.
    ///
    /// A verdict (the only report that arrives with a deployment status) is a copy of the last
    /// report observed before it was decided; a report observed since, say the task stopping,
    /// is newer, so the verdict goes out on that one and never brings back an older status:
    /// neither re-registering a stopped allocation's services nor telling the servers it runs.
    pub fn observe(&self, r: &mut AllocReport) {
        if r.deployment_status.is_some() {
            let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = health.get(&r.alloc_id).and_then(|h| h.last.as_ref()) {
                *r = AllocReport {
                    deployment_status: r.deployment_status.take(),
                    modify_time: r.modify_time.max(last.modify_time),
                    ..last.clone()
                };
            }
        }
        self.status(&r.alloc_id, r.client_status);
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = health.get_mut(&r.alloc_id) {
            h.tracker.tasks(tasks_view(r, &h.lifecycles), crate::clock::instant());
            if r.deployment_status.is_none() {
                r.deployment_status = h.status.clone();
            }
            h.last = Some(r.clone());
        }
    }

    /// Decides allocation health and reads Consul's checks, until the agent stops. A verdict
    /// is sent to `reports` as a copy of the allocation's last report.
    pub async fn run(self: Arc<Self>, reports: mpsc::UnboundedSender<AllocReport>) {
        *self.reports.lock().unwrap_or_else(|e| e.into_inner()) = Some(reports);
        let mut tick = tokio::time::interval(HEALTH_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll: Option<Instant> = None;
        loop {
            tick.tick().await;
            if let Some(c) = &self.consul {
                if last_poll.is_none_or(|t| t.elapsed() >= CONSUL_POLL_INTERVAL) {
                    last_poll = Some(Instant::now());
                    c.poll().await;
                }
            }
            self.decide_health();
        }
    }

    fn checks_passing(&self, alloc_id: &str) -> bool {
        self.native.as_ref().is_none_or(|n| n.checks_passing(alloc_id))
            && self.consul.as_ref().is_none_or(|c| c.checks_passing(alloc_id))
    }

    fn decide_health(&self) {
        let now = crate::clock::instant();
        let ids: Vec<String> = {
            let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let undecided = h.iter().filter(|(_, h)| h.status.is_none() && !h.stopping);
            undecided.map(|(id, _)| id.clone()).collect()
        };
        for id in ids {
            let passing = self.checks_passing(&id);
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let Some(h) = health.get_mut(&id) else { continue };
            h.tracker.checks(passing, now);
            let Some(healthy) = h.tracker.verdict(now) else { continue };
            tracing::info!(alloc = %id, healthy, "allocation health decided");
            let status = AllocDeploymentStatus {
                healthy: Some(healthy),
                timestamp: self.clock.unix_nanos(),
                ..AllocDeploymentStatus::default()
            };
            h.status = Some(status.clone());
            let Some(mut report) = h.last.clone() else { continue };
            drop(health);
            report.deployment_status = Some(status);
            report.modify_time = self.clock.unix_nanos();
            if let Some(tx) = self.reports.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = tx.send(report);
            }
        }
    }

    /// An in-place update of a running allocation: both providers see the new job version
    /// (Consul's registrations are recomputed on the runner's next report).
    pub fn update(&self, alloc: &Allocation, job: &Job) {
        let interpolated = self.interpolated(alloc, job);
        let job = interpolated.as_ref().unwrap_or(job);
        if let Some(c) = &self.consul {
            c.track(alloc, job);
        }
        if let Some(n) = &self.native {
            n.update(alloc, job);
        }
    }

    pub fn status(&self, alloc_id: &str, status: ClientStatus) {
        if let Some(c) = &self.consul {
            c.status(alloc_id, status);
        }
        if let Some(n) = &self.native {
            n.status(alloc_id, status);
        }
    }

    /// The servers stopped the allocation and its tasks are being killed: its health is no
    /// longer decided.
    pub fn stopping(&self, alloc_id: &str) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = health.get_mut(alloc_id) {
            h.stopping = true;
        }
    }

    pub fn forget(&self, alloc_id: &str) {
        if let Some(c) = &self.consul {
            c.forget(alloc_id);
        }
        if let Some(n) = &self.native {
            n.forget(alloc_id);
        }
        self.health.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
    }
}

/// A group's and its tasks' service blocks, to tell whether an update changed them.
fn service_blocks(job: &Job, group: &str) -> serde_json::Value {
    let g = job.task_groups.iter().find(|g| g.name == group);
    let tasks: Vec<_> =
        g.map(|g| g.tasks.iter().map(|t| &t.services).collect()).unwrap_or_default();
    serde_json::json!([g.map(|g| &g.services), tasks])
}

/// The Consul registrations of `alloc`'s group and task services.
pub fn registrations(
    alloc: &Allocation,
    job: &Job,
    node_address: &str,
) -> Vec<consul::ServiceRegistration> {
    registrations_with_checks(alloc, job, node_address).into_iter().map(|(r, _)| r).collect()
}

/// A check the agent watches in Consul: (check ID, task, interval, `check_restart`, and for a
/// script check what the agent runs for its TTL).
type CheckWatch = (String, String, Duration, Option<CheckRestartPolicy>, Option<CheckSpec>);

/// [`registrations`], each with what the agent watches of its checks.
fn registrations_with_checks(
    alloc: &Allocation,
    job: &Job,
    node_address: &str,
) -> Vec<(consul::ServiceRegistration, Vec<CheckWatch>)> {
    let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
        return Vec::new();
    };
    let ports: BTreeMap<String, u16> =
        alloc.allocated_resources.shared.ports.iter().map(|p| (p.label.clone(), p.value)).collect();
    let group_services =
        group.services.iter().map(|s| (Owner::Group(&group.name), s, s.task_name.as_str()));
    let task_services = group
        .tasks
        .iter()
        .flat_map(|t| t.services.iter().map(move |s| (Owner::Task(&t.name), s, t.name.as_str())));
    let mut out = Vec::new();
    for (owner, service, task) in group_services.chain(task_services) {
        if service.provider != "consul" && !service.provider.is_empty() {
            continue;
        }
        let i = Instance { alloc_id: &alloc.id, owner, service, node_address, ports: &ports };
        match registration(&i) {
            Ok(r) => {
                // `registration` builds one Consul check per check block, in order.
                let watched = service
                    .checks
                    .iter()
                    .zip(&r.checks)
                    .map(|(c, reg)| {
                        let policy = c.check_restart.as_ref().or(service.check_restart.as_ref());
                        let task = if task.is_empty() { c.task_name.as_str() } else { task };
                        let script = (c.check_type == "script").then(|| CheckSpec {
                            id: reg.check_id.clone(),
                            kind: CheckKind::Script {
                                command: c.command.clone(),
                                args: c.args.clone(),
                            },
                            interval: c.interval,
                            timeout: c.timeout,
                            initial: CheckStatus::Pending,
                            thresholds: Thresholds::default(),
                        });
                        (
                            reg.check_id.clone(),
                            task.to_owned(),
                            c.interval,
                            policy.map(|cr| CheckRestartPolicy {
                                limit: cr.limit,
                                grace: cr.grace,
                                ignore_warnings: cr.ignore_warnings,
                            }),
                            script,
                        )
                    })
                    .collect();
                out.push((r, watched));
            }
            Err(e) => tracing::warn!(alloc = %alloc.id, error = %e, "service not registered"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AllocatedPort, Service, Task, TaskGroup, TaskState};

    /// Health tracking for one allocation `id` of a service job with one task, `t`.
    fn tracked(services: &Services, id: &str) {
        let job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                tasks: vec![Task { name: "t".into(), ..Task::default() }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        let alloc = Allocation { id: id.into(), task_group: "g".into(), ..Allocation::default() };
        services.track(&alloc, &job);
    }

    /// A runner's report on allocation `id`, its task `t` in state `task`.
    fn report(id: &str, status: ClientStatus, task: &str, at: i64) -> AllocReport {
        AllocReport {
            alloc_id: id.into(),
            client_status: status,
            client_description: String::new(),
            task_states: [("t".into(), TaskState { state: task.into(), ..TaskState::default() })]
                .into(),
            deployment_status: None,
            modify_time: at,
        }
    }

    #[test]
    fn a_stopping_allocation_gets_no_health_verdict() {
        let services = Services::new(None, None);
        for id in ["killed", "stopped"] {
            tracked(&services, id);
            services.observe(&mut report(id, ClientStatus::Running, "running", 1));
        }
        // Both allocations' tasks die; only "stopped" was stopped by the servers.
        services.stopping("stopped");
        services.observe(&mut report("killed", ClientStatus::Running, "dead", 2));
        services.observe(&mut report("stopped", ClientStatus::Running, "dead", 2));
        services.decide_health();
        let health = services.health.lock().unwrap();
        let verdict = |id: &str| health[id].status.as_ref().and_then(|d| d.healthy);
        assert_eq!(verdict("killed"), Some(false));
        assert_eq!(verdict("stopped"), None);
    }

    #[test]
    fn a_verdict_decided_on_an_older_report_goes_out_on_the_newer_one() {
        let services = Services::new(None, None);
        tracked(&services, "a1");
        services.observe(&mut report("a1", ClientStatus::Running, "running", 1));
        // Health is decided on the running report; the task stops before the verdict is seen.
        let mut verdict = report("a1", ClientStatus::Running, "running", 3);
        verdict.deployment_status =
            Some(AllocDeploymentStatus { healthy: Some(true), ..Default::default() });
        services.observe(&mut report("a1", ClientStatus::Complete, "dead", 2));
        services.observe(&mut verdict);
        assert_eq!(verdict.client_status, ClientStatus::Complete);
        assert_eq!(verdict.task_states["t"].state, "dead");
        assert_eq!(verdict.deployment_status.and_then(|d| d.healthy), Some(true));
        assert_eq!(verdict.modify_time, 3);
    }

    #[test]
    fn consul_services_of_the_group_and_its_tasks_with_host_ports() {
        let svc = |name: &str, provider: &str| Service {
            name: name.into(),
            port_label: "http".into(),
            provider: provider.into(),
            ..Service::default()
        };
        let job = Job {
            id: "nginx-minipot".into(),
            task_groups: vec![TaskGroup {
                name: "group1".into(),
                services: vec![svc("group-svc", "consul")],
                tasks: vec![Task {
                    name: "www1".into(),
                    services: vec![svc("hello-web", "consul"), svc("native", "nomad")],
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        let mut alloc =
            Allocation { id: "a1".into(), task_group: "group1".into(), ..Allocation::default() };
        alloc.allocated_resources.shared.ports =
            vec![AllocatedPort { label: "http".into(), value: 23456, ..AllocatedPort::default() }];
        let regs = registrations(&alloc, &job, "10.0.0.5");
        let got: Vec<(&str, &str, u16)> =
            regs.iter().map(|r| (r.id.as_str(), r.address.as_str(), r.port)).collect();
        assert_eq!(
            got,
            [
                ("_nomad-task-a1-group-group1-group-svc-http", "10.0.0.5", 23456),
                ("_nomad-task-a1-www1-hello-web-http", "10.0.0.5", 23456),
            ]
        );
    }
}
