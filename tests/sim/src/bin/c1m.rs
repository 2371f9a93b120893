//! The C1M-shaped scale run (a benchmark, not a test): real servers in this process on loopback
//! TCP and `MemStore`, the real pipeline (broker, workers, plan applier, Raft), N registered
//! nodes, J jobs of C allocations each (20 MHz, 32 MB, one dynamic port). Measures the time
//! until every allocation is placed and committed, then until every node acked its allocations
//! running, and the peak RSS of this process, which holds every server. The nodes are
//! registered, not run: each round (every 50 ms, the agent's report batching) every node with
//! new allocations commits one `AllocClientUpdate` of them, the write a real agent's
//! `node.UpdateAllocs` batch makes, submitted to the leader directly; `--bulk-acks` instead
//! acks across nodes in writes of 2,000.
//!
//! ```text
//! cargo run --release -p sim --bin c1m -- [--servers 3] [--nodes 5000] [--jobs 1000]
//!     [--count 1000] [--bulk-acks] [--heartbeat-ms 150] [--snapshot-mb 256] [--trailing-mb 64]
//! ```

use model::{ClientStatus, JobType};
use server::raft::RaftTiming;
use server::state::{AllocClientUpdate, Command};
use server::store::MemStore;
use server::transport::TcpConnector;
use server::{Config, Consistency, Seams, Server, ServerHandle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut servers, mut nodes, mut jobs, mut count) = (3usize, 5000usize, 1000usize, 1000u32);
    let mut ack = Ack::PerNode;
    let mut timing = RaftTiming::default();
    let mut bulk = Vec::new();
    while let Some(a) = args.next() {
        if a == "--bulk-acks" {
            ack = Ack::Bulk;
            continue;
        }
        let v: usize = args.next().and_then(|v| v.parse().ok()).expect("a number after each flag");
        match a.as_str() {
            "--servers" => servers = v,
            "--nodes" => nodes = v,
            "--jobs" => jobs = v,
            "--count" => count = v as u32,
            // Raft's heartbeat interval, which is also how long openraft gives an AppendEntries.
            "--heartbeat-ms" => timing.heartbeat_interval_ms = v as u64,
            // Raft's size bounds in MiB; 0 turns one off.
            "--snapshot-mb" => timing.snapshot_threshold_bytes = (v as u64) << 20,
            "--trailing-mb" => {
                timing.trailing_bytes = if v == 0 { u64::MAX } else { (v as u64) << 20 }
            }
            _ => panic!("unknown flag {a}"),
        }
    }
    let handles = start(servers, &timing).await;
    let leader = wait_leader(&handles).await;
    for n in 0..nodes {
        let mut node =
            sim::agent::node(&format!("{n:08x}-0000-4000-8000-000000000000"), &format!("n{n}"));
        node.status = model::NodeStatus::Ready;
        leader.write(Command::NodeRegister { node: Box::new(node) }).await.expect("node registers");
    }
    let started = Instant::now();
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    for j in 0..jobs {
        let mut job = sim::workload::job(&format!("c1m-{j}"), JobType::Service, count);
        let t = &mut job.task_groups[0].tasks[0];
        if let Some(r) = t.resources.as_mut() {
            r.cpu = 20;
            r.memory_mb = 32;
        }
        let eval = model::Evaluation {
            id: sim::workload::uuid(&mut rng),
            namespace: "default".into(),
            job_id: job.id.clone(),
            priority: 50,
            triggered_by: model::TriggeredBy::JobRegister,
            status: model::EvalStatus::Pending,
            ..model::Evaluation::default()
        };
        leader
            .write(Command::JobRegister { job: Box::new(job), eval: Some(Box::new(eval)) })
            .await
            .expect("job registers");
    }
    let want = jobs * count as usize;
    let mut placed_at = None;
    let mut acked = 0usize;
    let mut ack_writes = 0usize;
    // The leader's index up to which every pending allocation has been acked.
    let mut seen = 0u64;
    let mut report = Instant::now();
    loop {
        // Allocations written since the last round that are still pending, per node: the
        // agents' reports. A round's writes are all committed (and applied on the leader, which
        // answers only then) before the next round reads, so nothing is acked twice.
        let (placed, index, pending) = leader
            .read(Consistency::Stale, |s| {
                let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
                let mut add = |a: &model::Allocation| {
                    if a.client_status == ClientStatus::Pending {
                        pending.entry(a.node_id.clone()).or_default().push(a.id.clone());
                    }
                };
                match s.changed_since(seen) {
                    Some(changed) => {
                        changed.allocs.iter().filter_map(|id| s.alloc(id)).for_each(&mut add)
                    }
                    None => s.allocs().for_each(&mut add),
                }
                (s.alloc_count(), s.index(), pending)
            })
            .await
            .expect("stale reads always answer");
        seen = index;
        if placed >= want && placed_at.is_none() {
            placed_at = Some(started.elapsed());
        }
        let mut writes = tokio::task::JoinSet::new();
        for ids in pending.into_values() {
            match ack {
                Ack::PerNode => drop(writes.spawn(ack_write(leader.clone(), ids))),
                Ack::Bulk => bulk.extend(ids),
            }
        }
        if ack == Ack::Bulk {
            for chunk in std::mem::take(&mut bulk).chunks(BULK_ACKS) {
                writes.spawn(ack_write(leader.clone(), chunk.to_vec()));
            }
        }
        while let Some(done) = writes.join_next().await {
            acked += done.expect("an ack write does not panic");
            ack_writes += 1;
        }
        if report.elapsed() >= Duration::from_secs(10) {
            report = Instant::now();
            eprintln!(
                "t={:.0}s placed={placed} acked={acked} ack_writes={ack_writes} index={index} rss_mb={}",
                started.elapsed().as_secs_f64(),
                rss_mb("VmRSS:")
            );
        }
        if placed_at.is_some() && acked >= want {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            eprintln!("gave up after 1800 s: placed {placed} of {want}, acked {acked}");
            break;
        }
        // The agent's report batching interval.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placed_s = placed_at.unwrap_or(started.elapsed()).as_secs_f64();
    let running_s = started.elapsed().as_secs_f64();
    let placed = leader.read(Consistency::Stale, |s| s.alloc_count()).await.unwrap_or(0);
    eprintln!(
        "servers={servers} nodes={nodes} jobs={jobs} count={count} ack={ack:?} ack_writes={ack_writes} all_placed_s={placed_s:.1} all_running_s={running_s:.1}"
    );
    println!(
        "placed={placed} seconds={placed_s:.1} placements_per_sec={:.0} peak_rss_mb={}",
        placed as f64 / placed_s,
        rss_mb("VmHWM:")
    );
    std::process::exit(0);
}

/// How the simulated agents report their allocations running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// One write per node per round with that node's new allocations, as each real agent
    /// batches its reports into one `node.UpdateAllocs`.
    PerNode,
    /// Writes of up to [`BULK_ACKS`] updates across nodes (the earlier, agent-less shape).
    Bulk,
}

const BULK_ACKS: usize = 2_000;

/// Commits one batch of "running" reports; returns how many.
async fn ack_write(leader: ServerHandle, ids: Vec<String>) -> usize {
    let n = ids.len();
    let updates = ids
        .into_iter()
        .map(|alloc_id| AllocClientUpdate {
            alloc_id,
            client_status: ClientStatus::Running,
            client_description: String::new(),
            task_states: Default::default(),
            deployment_status: None,
            modify_time: 0,
        })
        .collect();
    leader.write(Command::AllocClientUpdate { updates, evals: vec![] }).await.expect("acks commit");
    n
}

async fn start(n: usize, timing: &RaftTiming) -> Vec<ServerHandle> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("loopback binds"));
    }
    let addrs: Vec<String> =
        listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let mut handles = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let mut c =
            Config { name: format!("s{i}"), node_id: Some(i as u64 + 1), ..Config::default() };
        c.server.enabled = true;
        c.server.bootstrap_expect = n as u32;
        c.server.server_join.retry_join = addrs.clone();
        c.server.server_join.retry_interval = Duration::from_millis(100);
        // Nodes here never heartbeat; they must not expire during the run.
        c.server.min_heartbeat_ttl = Duration::from_secs(3600);
        // Production timing: openraft gives an AppendEntries one heartbeat interval.
        c.raft = timing.clone();
        c.request_timeout = Duration::from_secs(60);
        let seams = Seams {
            rpc_listener: Box::new(listener),
            rpc_advertise: addrs[i].clone(),
            connector: Arc::new(TcpConnector),
            store: Some(Arc::new(MemStore::new())),
        };
        let h = Server::start(c, seams).await.expect("server starts");
        tokio::spawn(server::pipeline::run(h.clone()));
        handles.push(h);
    }
    handles
}

async fn wait_leader(handles: &[ServerHandle]) -> ServerHandle {
    loop {
        if let Some(h) = handles.iter().find(|h| h.is_leader()) {
            return h.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// This process's resident set (`VmRSS:`) or its peak (`VmHWM:`) in MiB, all servers
/// together, from /proc on Linux; 0 elsewhere.
fn rss_mb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
