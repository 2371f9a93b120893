//! Fixtures: fake servers behind the agent's `ServerApi` seam, job and allocation builders, a
//! client in a temporary data dir, and waiting helpers.

use agent::client::{ApiError, Client, ClientConfig, NodeAllocs, ServerApi};
use agent::runner::AllocReport;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
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
    /// The `min_index` of every allocation watch the agent opened.
    watch_opens: Vec<u64>,
}

/// Servers in memory: they hand out what tests put in and record what the agent reports.
pub struct FakeServers {
    state: Arc<Mutex<State>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Bumped to end every open allocation watch, as a lost connection or leader does.
    generation: tokio::sync::watch::Sender<u64>,
}

impl FakeServers {
    pub fn new() -> Arc<FakeServers> {
        Arc::new(FakeServers {
            state: Arc::new(Mutex::new(State::default())),
            changed: tokio::sync::watch::channel(0).0,
            generation: tokio::sync::watch::channel(0).0,
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

    /// How many allocation watches the agent has opened.
    pub fn watch_calls(&self) -> u64 {
        self.state.lock().unwrap().watch_opens.len() as u64
    }

    /// The `min_index` of every allocation watch the agent opened, in order.
    pub fn watch_opens(&self) -> Vec<u64> {
        self.state.lock().unwrap().watch_opens.clone()
    }

    /// The servers' current index.
    pub fn index(&self) -> u64 {
        self.state.lock().unwrap().index
    }

    /// Ends every open allocation watch.
    pub fn break_watches(&self) {
        self.generation.send_modify(|g| *g += 1);
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

    fn watch_allocs<'a>(
        &'a self,
        _node_id: &'a str,
        min_index: u64,
        _keepalive: Duration,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<NodeAllocs, ApiError>>, ApiError>> {
        self.state.lock().unwrap().watch_opens.push(min_index);
        let state = self.state.clone();
        let changed = self.changed.subscribe();
        let mut generation = self.generation.subscribe();
        generation.mark_unchanged();
        // As the real servers do: the first message once the index passes `min_index` (0: at
        // once), then one per change; the stream ends when the watches are broken.
        let stream = futures::stream::unfold(
            (state, changed, generation, min_index, min_index == 0),
            |(state, mut changed, mut generation, seen, at_once)| async move {
                if !at_once {
                    tokio::select! {
                        r = changed.wait_for(|i| *i > seen) => { r.ok()?; }
                        _ = generation.changed() => return None,
                    }
                }
                let reply = {
                    let s = state.lock().unwrap();
                    NodeAllocs {
                        index: s.index,
                        allocs: s
                            .allocs
                            .values()
                            .map(|(a, j)| (a.clone(), Some(j.clone())))
                            .collect(),
                    }
                };
                let seen = reply.index;
                Some((Ok(reply), (state, changed, generation, seen, false)))
            },
        );
        Box::pin(async move { Ok(Box::pin(stream) as BoxStream<'static, _>) })
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

/// A free loopback port for a process this test starts (see `testkit::free_port`).
pub fn free_port() -> u16 {
    testkit::free_port()
}
