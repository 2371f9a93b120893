//! Registers the services of this node's running allocations: registered once an allocation
//! reports running, deregistered once it stops or is collected.
//!
//! `provider = "consul"` (Nomad's default) goes to the local Consul agent through the `consul`
//! crate's syncer, which never blocks (Consul being down never delays a task) and repairs drift
//! periodically; Consul runs the checks. `provider = "nomad"` (or `"orc"`) goes to orc's own
//! catalogue on the servers ([`CatalogApi`]); the agent runs those checks itself (`checks`
//! crate), writes each instance's health into its registration when it changes, and restarts a
//! task whose checks fail `check_restart.limit` times in a row after `grace`.
//!
//! Not here yet: script checks (TTL updates to Consul), `${...}` interpolation of service
//! fields, allocation health for deployments.

use checks::{CheckHandle, CheckKind, CheckRestartPolicy, CheckRestartTracker, CheckSpec};
use checks::{CheckStatus, CheckUpdate, HttpProbe, Thresholds};
use consul::build::{host_port, registration, Instance};
use consul::ids::{self, Owner};
use consul::{Client, ConsulConfig, Syncer};
use futures::future::BoxFuture;
use model::{
    Allocation, ClientStatus, Job, Node, ServiceCheckResult, ServiceHealth, ServiceRegistration,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the whole Consul state is compared with what should be there (Nomad: 30 s).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The Consul side of the agent's services.
pub struct ConsulServices {
    syncer: Syncer,
    node_address: String,
    /// What is needed to build an allocation's registrations when it reports running.
    allocs: Mutex<BTreeMap<String, (Allocation, Job)>>,
}

impl ConsulServices {
    /// Services for a node reachable at `node_address`; run [`ConsulServices::syncer`]'s loop.
    pub fn new(config: ConsulConfig, node_address: String) -> ConsulServices {
        let syncer = Syncer::new(Client::new(config), SYNC_INTERVAL);
        ConsulServices { syncer, node_address, allocs: Mutex::default() }
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
                let regs = registrations(alloc, job, &self.node_address);
                drop(a);
                self.syncer.set_alloc(alloc_id, regs);
            }
            ClientStatus::Pending => {}
            _ => self.syncer.remove_alloc(alloc_id),
        }
    }

    /// Forgets an allocation (collected): its services go.
    pub fn forget(&self, alloc_id: &str) {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
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
                    let task = if task.is_empty() { c.task_name.as_str() } else { task };
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

/// Both providers, as the client drives them.
#[derive(Default)]
pub struct Services {
    pub consul: Option<ConsulServices>,
    pub native: Option<Arc<NativeServices>>,
}

impl Services {
    pub fn track(&self, alloc: &Allocation, job: &Job) {
        if let Some(c) = &self.consul {
            c.track(alloc, job);
        }
        if let Some(n) = &self.native {
            n.track(alloc, job);
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

    pub fn forget(&self, alloc_id: &str) {
        if let Some(c) = &self.consul {
            c.forget(alloc_id);
        }
        if let Some(n) = &self.native {
            n.forget(alloc_id);
        }
    }
}

/// The Consul registrations of `alloc`'s group and task services.
pub fn registrations(
    alloc: &Allocation,
    job: &Job,
    node_address: &str,
) -> Vec<consul::ServiceRegistration> {
    let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
        return Vec::new();
    };
    let ports: BTreeMap<String, u16> =
        alloc.allocated_resources.shared.ports.iter().map(|p| (p.label.clone(), p.value)).collect();
    let group_services = group.services.iter().map(|s| (Owner::Group(&group.name), s));
    let task_services =
        group.tasks.iter().flat_map(|t| t.services.iter().map(move |s| (Owner::Task(&t.name), s)));
    let mut out = Vec::new();
    for (owner, service) in group_services.chain(task_services) {
        if service.provider != "consul" && !service.provider.is_empty() {
            continue;
        }
        let i = Instance { alloc_id: &alloc.id, owner, service, node_address, ports: &ports };
        match registration(&i) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(alloc = %alloc.id, error = %e, "service not registered"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AllocatedPort, Service, Task, TaskGroup};

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
