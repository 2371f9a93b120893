//! Scheduling throughput through the leader's whole pipeline (broker, workers, plan applier,
//! Raft commit) on a C1M-shaped subset, and the server's memory with that state. Prints its
//! figures and the command that produced them; no pass/fail.
//!
//! PIPELINE_BENCH_NODES (5000), PIPELINE_BENCH_JOBS (10000), PIPELINE_BENCH_COUNT (10 per job),
//! PIPELINE_BENCH_WORKERS (0 = one per core).

use model::{
    DriverInfo, EvalStatus, Evaluation, Job, Node, NodeStatus, Resources, Task, TaskGroup,
    TriggeredBy,
};
use server::broker::BrokerConfig;
use server::pipeline::{self, PipelineConfig};
use server::state::Command;
use server::transport::TcpConnector;
use server::{Config, Consistency, Seams, Server};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn id(kind: u64, i: u64) -> String {
    format!("{i:08x}-{kind:04x}-4000-8000-{i:012x}")
}

fn node(i: u64) -> Node {
    let mut n = Node {
        id: id(1, i),
        name: format!("node-{i}"),
        datacenter: format!("dc{}", i % 3),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        node_class: if i % 4 == 0 { "large".into() } else { String::new() },
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 8000;
    n.node_resources.memory.memory_mb = 16_384;
    n.node_resources.disk.disk_mb = 100_000;
    n.attributes.insert("kernel.name".into(), "freebsd".into());
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n
}

fn register(i: u64, count: u32) -> Command {
    let mut job = Job {
        id: format!("job-{i}"),
        namespace: "default".into(),
        datacenters: vec!["dc0".into(), "dc1".into(), "dc2".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: "pot".into(),
                resources: Some(Resources { cpu: 100, memory_mb: 128, ..Resources::default() }),
                ..Task::default()
            }],
            ..TaskGroup::default()
        }],
        ..Job::default()
    };
    job.canonicalize();
    let now = pipeline_now();
    let eval = Evaluation {
        id: id(2, i),
        namespace: "default".into(),
        job_id: job.id.clone(),
        priority: 50,
        triggered_by: TriggeredBy::JobRegister,
        status: EvalStatus::Pending,
        create_time: now,
        modify_time: now,
        ..Evaluation::default()
    };
    Command::JobRegister { job: Box::new(job), eval: Some(Box::new(eval)) }
}

fn pipeline_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let nodes = env("PIPELINE_BENCH_NODES", 5000) as u64;
    let jobs = env("PIPELINE_BENCH_JOBS", 10_000) as u64;
    let count = env("PIPELINE_BENCH_COUNT", 10) as u32;
    let workers = env("PIPELINE_BENCH_WORKERS", 0);
    println!("cargo bench -p server --bench pipeline   # nodes={nodes} jobs={jobs} count={count}");
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc.local_addr().unwrap().to_string();
    let mut config = Config::default();
    config.server.enabled = true;
    config.server.num_schedulers = workers as u32;
    let seams = Seams {
        rpc_listener: Box::new(rpc),
        rpc_advertise: addr,
        connector: Arc::new(TcpConnector),
        store: None,
    };
    let handle = Server::start(config, seams).await.unwrap();
    while !handle.is_leader() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pc = PipelineConfig::of(&handle);
    pc.broker = BrokerConfig::default();
    let workers = pc.workers;
    let pipe = tokio::spawn(pipeline::run_with(handle.clone(), pc));
    println!("idle single server with its pipeline: VmRSS {} MiB", rss_mib("VmRSS:"));

    let writers = 32u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..nodes).step_by(writers as usize) {
                h.write(Command::NodeRegister { node: Box::new(node(i)) }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!("{nodes} nodes registered in {:.2?}", start.elapsed());

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let h = handle.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..jobs).step_by(writers as usize) {
                h.write(register(i, count)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let registered = start.elapsed();
    let (done, latencies) = loop {
        let (open, placed, lat) = handle
            .read(Consistency::Stale, |s| {
                let open = s.evals().filter(|e| matches!(e.status, EvalStatus::Pending)).count();
                let lat: Vec<i64> = s
                    .evals()
                    .filter(|e| e.status == EvalStatus::Complete)
                    .map(|e| e.modify_time - e.create_time)
                    .collect();
                (open, s.alloc_count(), lat)
            })
            .await
            .unwrap();
        if open == 0 && lat.len() as u64 >= jobs {
            break (placed, lat);
        }
        handle.wait_for_index(handle.applied_index() + 1, Duration::from_millis(200)).await;
    };
    let elapsed = start.elapsed();
    let mut lat = latencies;
    lat.sort_unstable();
    let p = |q: f64| Duration::from_nanos(lat[((lat.len() - 1) as f64 * q) as usize].max(0) as u64);
    println!(
        "{jobs} jobs × {count} registered in {registered:.2?} (32 writers); all evaluated and committed after {elapsed:.2?}"
    );
    println!(
        "workers {workers}: {:.0} evals/s, {:.0} placements/s committed; eval latency (create→complete) p50 {:.2?} p99 {:.2?}",
        jobs as f64 / elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
    );
    println!(
        "memory with {nodes} nodes, {done} allocations, {jobs} jobs: VmRSS {} MiB, VmHWM {} MiB",
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    pipe.abort();
    handle.shutdown().await;
}
