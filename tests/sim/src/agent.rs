//! Simulated agents: fake client nodes that speak the server's real node RPCs (`NodeClient`:
//! register, heartbeat, the blocking allocation watch, batched allocation updates) over the
//! simulated network. Their "tasks" run, fail or complete as the seeded agent decides; there is
//! no driver and no allocation runner here (the real agent crate is not used).

use crate::net::SimConnector;
use model::{
    Allocation, ClientStatus, DesiredStatus, DriverInfo, JobType, Node, NodeStatus, TaskEvent,
    TaskState,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use server::node_endpoint::NodeClient;
use server::state::AllocClientUpdate;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The driver every simulated node offers and every simulated job asks for.
pub const DRIVER: &str = "sim";

/// Knobs the harness turns while the simulation runs.
#[derive(Debug, Default)]
pub struct AgentControl {
    /// Per mille of started service allocations the agent reports failed (faults phase only).
    pub fail_permille: AtomicU32,
}

/// The ID of agent `i` on simulated host `h`.
pub fn node_id(h: usize, i: usize) -> String {
    format!("{h:08x}-0000-4000-8000-{i:012x}")
}

/// The node a simulated agent registers: room for many small allocations.
pub fn node(id: &str, name: &str) -> Node {
    let mut n = Node {
        id: id.into(),
        name: name.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Initializing,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 4_000;
    n.node_resources.memory.memory_mb = 8_192;
    n.node_resources.disk.disk_mb = 100_000;
    n.node_resources.min_dynamic_port = 20_000;
    n.node_resources.max_dynamic_port = 32_000;
    n.drivers
        .insert(DRIVER.into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n.computed_class = n.compute_class();
    n
}

/// Unix nanoseconds of simulated time.
fn now_nanos() -> i64 {
    turmoil::since_epoch().map_or(0, |d| d.as_nanos() as i64)
}

/// Runs one simulated agent until its host crashes: registers, heartbeats, and answers its
/// allocations.
pub async fn run(node: Node, servers: Vec<String>, seed: u64, control: Arc<AgentControl>) {
    let client = Arc::new(NodeClient::new(servers, Arc::new(SimConnector)));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ttl = loop {
        match client.register(&node).await {
            Ok(ttl) => break ttl,
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let heartbeats = tokio::spawn(heartbeat(client.clone(), node.clone(), ttl));
    watch(&client, &node.id, &mut rng, &control).await;
    heartbeats.abort();
}

async fn heartbeat(client: Arc<NodeClient>, node: Node, mut ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match client.heartbeat(&node.id).await {
            Ok(next) => ttl = next,
            // A server that lost this node (state lost, or garbage-collected) is told again.
            Err(e) if e.to_string().contains("is not registered") => {
                if let Ok(next) = client.register(&node).await {
                    ttl = next;
                }
            }
            Err(_) => ttl = ttl.min(Duration::from_secs(3)),
        }
    }
}

/// What this agent last reported for each allocation.
type Reported = BTreeMap<String, ClientStatus>;

async fn watch(client: &NodeClient, node_id: &str, rng: &mut ChaCha8Rng, control: &AgentControl) {
    let mut reported = Reported::new();
    // Batch allocations finish some time after they start: alloc ID → unix nanos.
    let mut finishes: BTreeMap<String, i64> = BTreeMap::new();
    // Stopped allocations whose tasks are being killed: alloc ID → (kill sent, exit).
    let mut kills: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut min_index = 0;
    loop {
        let reply = match client.allocs(node_id, min_index, Duration::from_secs(1)).await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // A restarted server may answer with a lower index; start over rather than wait on it.
        min_index = if reply.index < min_index { 0 } else { reply.index };
        let now = now_nanos();
        let mut updates = Vec::new();
        for a in &reply.allocs {
            // The servers' terminal verdict (lost, say) is final even if this agent last said
            // running: a real agent stops such an allocation and does not report it again.
            let last = reported.get(&a.id).copied().unwrap_or(a.client_status);
            if last.is_terminal() || a.client_status.is_terminal() {
                continue;
            }
            let batch = reply
                .jobs
                .get(&server::node_endpoint::job_key(a))
                .is_some_and(|j| j.job_type == JobType::Batch);
            let next = match a.desired_status {
                // A task that never started has nothing to kill.
                DesiredStatus::Stop | DesiredStatus::Evict if last == ClientStatus::Pending => {
                    Some(ClientStatus::Complete)
                }
                // As the real runner: a stopped (or migrated, by a drain) allocation's tasks
                // get their kill signal and exit some time later (up to kill_timeout), then
                // the allocation reports complete. A restarted agent starts the kill again.
                DesiredStatus::Stop | DesiredStatus::Evict => {
                    let (_, at) = *kills
                        .entry(a.id.clone())
                        .or_insert_with(|| (now, now + rng.random_range(0..1_500) * 1_000_000));
                    (at <= now).then_some(ClientStatus::Complete)
                }
                DesiredStatus::Run if last == ClientStatus::Pending => {
                    let fail =
                        rng.random_range(0..1000) < control.fail_permille.load(Ordering::Relaxed);
                    if batch {
                        finishes
                            .insert(a.id.clone(), now + rng.random_range(200..3_000) * 1_000_000);
                    }
                    Some(if fail { ClientStatus::Failed } else { ClientStatus::Running })
                }
                DesiredStatus::Run => {
                    // A restarted agent has forgotten when its batch work finishes.
                    if batch && !finishes.contains_key(&a.id) {
                        finishes
                            .insert(a.id.clone(), now + rng.random_range(200..3_000) * 1_000_000);
                    }
                    match finishes.get(&a.id) {
                        Some(&at) if at <= now => Some(ClientStatus::Complete),
                        _ => None,
                    }
                }
            };
            if let Some(status) = next.filter(|s| *s != last) {
                let killed = kills.get(&a.id).map(|(sent, _)| *sent);
                updates.push(update(a, status, now, killed));
            }
        }
        if updates.is_empty() {
            continue;
        }
        if client.update_allocs(updates.clone()).await.is_ok() {
            for u in updates {
                if u.client_status.is_terminal() {
                    finishes.remove(&u.alloc_id);
                    kills.remove(&u.alloc_id);
                }
                reported.insert(u.alloc_id, u.client_status);
            }
        }
    }
}

/// The update an agent sends; `killed` (when the kill was sent) when the server stopped a
/// running allocation, whose tasks then carry the runner's "Killing" and "Killed" events.
fn update(
    a: &Allocation,
    status: ClientStatus,
    now: i64,
    killed: Option<i64>,
) -> AllocClientUpdate {
    let failed = status == ClientStatus::Failed;
    let state = if status == ClientStatus::Running { "running" } else { "dead" };
    let event = |kind: &str, time: i64, message: &str| TaskEvent {
        event_type: kind.into(),
        time,
        message: message.into(),
        display_message: message.into(),
        ..TaskEvent::default()
    };
    let events = match killed {
        Some(sent) => vec![
            event("Killing", sent, "Sent interrupt. Waiting 5s before force killing"),
            event("Killed", now, "Task successfully killed"),
        ],
        None => Vec::new(),
    };
    let task_states = a
        .allocated_resources
        .tasks
        .keys()
        .map(|t| {
            let ts = TaskState {
                state: state.into(),
                failed,
                events: events.clone(),
                ..TaskState::default()
            };
            (t.clone(), ts)
        })
        .collect();
    // The runner's descriptions (`agent::runner::describe`).
    let description = match status {
        ClientStatus::Pending => "No tasks have started",
        ClientStatus::Running => "Tasks are running",
        ClientStatus::Complete => "All tasks have completed",
        ClientStatus::Failed => "Failed tasks",
        ClientStatus::Lost => "Allocation lost",
        ClientStatus::Unknown => "Unknown",
    };
    AllocClientUpdate {
        alloc_id: a.id.clone(),
        client_status: status,
        client_description: description.into(),
        task_states,
        deployment_status: None,
        modify_time: now,
    }
}
