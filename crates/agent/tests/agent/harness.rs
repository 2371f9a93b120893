//! Fixtures: fake servers behind the agent's `ServerApi` seam, job and allocation builders, a
//! client in a temporary data dir, and waiting helpers.

use agent::client::{ApiError, Client, ClientConfig, NodeAllocs, ServerApi};
use agent::runner::AllocReport;
use futures::future::BoxFuture;
use model::{
    AllocatedPort, Allocation, ClientStatus, DesiredStatus, Job, JobType, Node, RestartPolicy,
    Task, TaskGroup,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    index: u64,
    allocs: BTreeMap<String, (Allocation, Job)>,
    reports: Vec<AllocReport>,
    nodes: Vec<Node>,
    watch_calls: u64,
}

/// Servers in memory: they hand out what tests put in and record what the agent reports.
pub struct FakeServers {
    state: Mutex<State>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl FakeServers {
    pub fn new() -> Arc<FakeServers> {
        Arc::new(FakeServers {
            state: Mutex::new(State::default()),
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    fn bump(&self, s: &mut State) {
        s.index += 1;
        self.changed.send_replace(s.index);
    }

    /// Places an allocation on the node.
    pub fn place(&self, alloc: Allocation, job: Job) {
        let mut s = self.state.lock().unwrap();
        s.allocs.insert(alloc.id.clone(), (alloc, job));
        self.bump(&mut s);
    }

    /// Sets an allocation's desired status to stop, as a job stop does.
    pub fn stop(&self, alloc_id: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some((a, _)) = s.allocs.get_mut(alloc_id) {
            a.desired_status = DesiredStatus::Stop;
        }
        self.bump(&mut s);
    }

    /// The last report about `alloc_id`.
    pub fn last(&self, alloc_id: &str) -> Option<AllocReport> {
        let s = self.state.lock().unwrap();
        s.reports.iter().rev().find(|r| r.alloc_id == alloc_id).cloned()
    }

    /// How many allocation watches the agent has made.
    pub fn watch_calls(&self) -> u64 {
        self.state.lock().unwrap().watch_calls
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.state.lock().unwrap().nodes.clone()
    }

    /// Waits until the last report about `alloc_id` satisfies `f`.
    pub async fn wait_report(
        &self,
        alloc_id: &str,
        limit: Duration,
        f: impl Fn(&AllocReport) -> bool,
    ) -> AllocReport {
        let start = Instant::now();
        loop {
            if let Some(r) = self.last(alloc_id) {
                if f(&r) {
                    return r;
                }
            }
            assert!(
                start.elapsed() < limit,
                "no matching report for {alloc_id} within {limit:?}; last: {:#?}",
                self.last(alloc_id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl ServerApi for FakeServers {
    fn register<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Duration, ApiError>> {
        self.state.lock().unwrap().nodes.push(node.clone());
        Box::pin(async { Ok(Duration::from_secs(10)) })
    }

    fn heartbeat<'a>(&'a self, _node_id: &'a str) -> BoxFuture<'a, Result<Duration, ApiError>> {
        Box::pin(async { Ok(Duration::from_secs(10)) })
    }

    fn allocs<'a>(
        &'a self,
        _node_id: &'a str,
        min_index: u64,
        wait: Duration,
    ) -> BoxFuture<'a, Result<NodeAllocs, ApiError>> {
        Box::pin(async move {
            self.state.lock().unwrap().watch_calls += 1;
            // As the real servers do, index 0 means "answer now" rather than "block".
            if min_index > 0 {
                let mut rx = self.changed.subscribe();
                let _ = tokio::time::timeout(wait, rx.wait_for(|i| *i > min_index)).await;
            }
            let s = self.state.lock().unwrap();
            Ok(NodeAllocs {
                index: s.index,
                allocs: s.allocs.values().map(|(a, j)| (a.clone(), Some(j.clone()))).collect(),
            })
        })
    }

    fn update_allocs(&self, reports: Vec<AllocReport>) -> BoxFuture<'_, Result<(), ApiError>> {
        let mut s = self.state.lock().unwrap();
        for r in &reports {
            if let Some((a, _)) = s.allocs.get_mut(&r.alloc_id) {
                a.client_status = r.client_status;
            }
        }
        s.reports.extend(reports);
        self.bump(&mut s);
        Box::pin(async { Ok(()) })
    }
}

/// A raw_exec task running `sh -c script`.
pub fn sh_task(name: &str, script: &str) -> Task {
    Task {
        name: name.into(),
        driver: "raw_exec".into(),
        config: BTreeMap::from([
            ("command".to_string(), serde_json::json!("/bin/sh")),
            ("args".to_string(), serde_json::json!(["-c", script])),
        ]),
        kill_timeout: Some(Duration::from_secs(2)),
        ..Task::default()
    }
}

/// A fast restart policy for tests.
pub fn policy(attempts: u32) -> RestartPolicy {
    RestartPolicy {
        interval: Duration::from_secs(60),
        attempts,
        delay: Duration::from_millis(100),
        mode: "fail".into(),
        render_templates: false,
    }
}

/// A one-group job of `tasks`.
pub fn job(id: &str, job_type: JobType, tasks: Vec<Task>) -> Job {
    Job {
        id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        job_type,
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count: 1,
            tasks,
            restart_policy: Some(policy(0)),
            ..TaskGroup::default()
        }],
        ..Job::default()
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// An allocation of `job`'s group with the given ports.
pub fn alloc(job: &Job, ports: &[(&str, u16)]) -> Allocation {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut a = Allocation {
        id: format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n),
        namespace: "default".into(),
        name: format!("{}.g[0]", job.id),
        job_id: job.id.clone(),
        task_group: "g".into(),
        desired_status: DesiredStatus::Run,
        client_status: ClientStatus::Pending,
        ..Allocation::default()
    };
    for (label, port) in ports {
        a.allocated_resources.shared.ports.push(AllocatedPort {
            label: (*label).into(),
            value: *port,
            to: 0,
            host_ip: "127.0.0.1".into(),
        });
    }
    a
}

/// A client with raw_exec in its own data dir.
pub async fn client(
    servers: Arc<FakeServers>,
    dir: &std::path::Path,
    pot: Option<agent::pot::PotDriverConfig>,
) -> Client {
    let mut config = ClientConfig::new(dir.to_path_buf());
    config.raw_exec_enabled = true;
    config.node.network_interface = Some("lo".into());
    config.watch_wait = Duration::from_secs(5);
    config.gc_interval = Duration::from_millis(500);
    config.pot = pot;
    Client::start(config, servers).await.unwrap()
}

/// Polls `f` until it is true.
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The event types of a task, in order.
pub fn events(r: &AllocReport, task: &str) -> Vec<String> {
    r.task_states
        .get(task)
        .map_or_else(Vec::new, |s| s.events.iter().map(|e| e.event_type.clone()).collect())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
