//! The C1M-shaped scale run (a benchmark, not a test): real servers in this process on loopback
//! TCP and `MemStore`, the real pipeline (broker, workers, plan applier, Raft), N registered
//! nodes, J jobs of C allocations each (20 MHz, 32 MB, one dynamic port). Measures the time
//! until every allocation is placed and committed, then until simulated agents acked them all
//! running (bulk `AllocClientUpdate` writes, no per-node agents), and the peak RSS of this
//! process, which holds every server.
//!
//! `cargo run --release -p sim --bin c1m -- [--servers 3] [--nodes 5000] [--jobs 1000] [--count 1000]`

use model::{ClientStatus, JobType};
use server::raft::RaftTiming;
use server::state::{AllocClientUpdate, Command};
use server::store::MemStore;
use server::transport::TcpConnector;
use server::{Config, Consistency, Seams, Server, ServerHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut servers, mut nodes, mut jobs, mut count) = (3usize, 5000usize, 1000usize, 1000u32);
    while let Some(a) = args.next() {
        let v: usize = args.next().and_then(|v| v.parse().ok()).expect("a number after each flag");
        match a.as_str() {
            "--servers" => servers = v,
            "--nodes" => nodes = v,
            "--jobs" => jobs = v,
            "--count" => count = v as u32,
            _ => panic!("unknown flag {a}"),
        }
    }
    let handles = start(servers).await;
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
    let mut acked = std::collections::BTreeSet::new();
    loop {
        let (placed, pending): (usize, Vec<String>) = leader
            .read(Consistency::Stale, |s| {
                let pending = s
                    .allocs()
                    .filter(|a| a.client_status == ClientStatus::Pending && !acked.contains(&a.id))
                    .map(|a| a.id.clone())
                    .take(20_000)
                    .collect();
                (s.alloc_count(), pending)
            })
            .await
            .expect("stale reads always answer");
        if placed >= want && placed_at.is_none() {
            placed_at = Some(started.elapsed());
        }
        if !pending.is_empty() {
            let updates = pending
                .iter()
                .map(|id| AllocClientUpdate {
                    alloc_id: id.clone(),
                    client_status: ClientStatus::Running,
                    client_description: String::new(),
                    task_states: Default::default(),
                    deployment_status: None,
                    modify_time: 0,
                })
                .collect();
            leader
                .write(Command::AllocClientUpdate { updates, evals: vec![] })
                .await
                .expect("acks commit");
            acked.extend(pending);
        }
        if placed_at.is_some() && acked.len() >= want {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            eprintln!("gave up after 900 s: placed {placed} of {want}, acked {}", acked.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let placed_s = placed_at.unwrap_or(started.elapsed()).as_secs_f64();
    let running_s = started.elapsed().as_secs_f64();
    let placed = leader.read(Consistency::Stale, |s| s.alloc_count()).await.unwrap_or(0);
    eprintln!(
        "servers={servers} nodes={nodes} jobs={jobs} count={count} all_placed_s={placed_s:.1} all_running_s={running_s:.1}"
    );
    println!(
        "placed={placed} seconds={placed_s:.1} placements_per_sec={:.0} peak_rss_mb={}",
        placed as f64 / placed_s,
        peak_rss_mb()
    );
    std::process::exit(0);
}

async fn start(n: usize) -> Vec<ServerHandle> {
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
        c.raft = RaftTiming {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            ..RaftTiming::default()
        };
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

/// Peak resident set of this process (all servers), from /proc on Linux, 0 elsewhere.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
