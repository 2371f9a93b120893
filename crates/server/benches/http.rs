//! HTTP API benchmark: read throughput of `GET /v1/jobs` and `GET /v1/allocations` with 10,000
//! allocations, and the fan-out of 1,000 blocking queries woken by one change.
//!
//! `cargo bench -p server --bench http` (optional env: `HTTP_BENCH_SECS`, default 5 s per read
//! run; `HTTP_BENCH_CONNS`, default 8 connections; `HTTP_BENCH_WATCHERS`, default 1,000).
//! A dev server (in-memory store, one voter) on loopback; the load generator is a minimal
//! HTTP/1.1 keep-alive client on the same runtime, so the figures include the client's cost.

use model::{
    AllocatedResources, Allocation, ClientStatus, DriverInfo, Evaluation, Job, Node, NodeStatus,
    Task, TaskGroup,
};
use server::state::{AllocClientUpdate, Command, PlanResults};
use server::ServerHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "support/mod.rs"]
mod support;
use support::{env_num, start};

const JOBS: usize = 100;
const ALLOCS_PER_JOB: usize = 100;

fn uuid(kind: u32, i: usize) -> String {
    format!("{kind:08x}-0000-4000-8000-{i:012x}")
}

/// 100 nodes, 100 jobs and 10,000 running allocations, written as the pipeline would.
async fn load(h: &ServerHandle) {
    for n in 0..100 {
        let mut node = Node {
            id: uuid(1, n),
            name: format!("node-{n}"),
            datacenter: "dc1".into(),
            status: NodeStatus::Ready,
            ..Node::default()
        };
        node.node_resources.cpu.cpu_shares = 64_000;
        node.node_resources.memory.memory_mb = 256_000;
        node.drivers.insert(
            "pot".into(),
            DriverInfo { detected: true, healthy: true, ..Default::default() },
        );
        h.write(Command::NodeRegister { node: Box::new(node) }).await.unwrap();
    }
    for j in 0..JOBS {
        let mut job = Job {
            id: format!("job-{j:04}"),
            task_groups: vec![TaskGroup {
                name: "web".into(),
                count: ALLOCS_PER_JOB as u32,
                tasks: vec![Task { name: "nginx".into(), driver: "pot".into(), ..Task::default() }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        job.canonicalize();
        h.write(Command::JobRegister { job: Box::new(job), eval: None }).await.unwrap();
        let allocs = (0..ALLOCS_PER_JOB)
            .map(|i| {
                let k = j * ALLOCS_PER_JOB + i;
                Allocation {
                    id: uuid(2, k),
                    namespace: "default".into(),
                    eval_id: uuid(3, j),
                    name: model::alloc_name(&format!("job-{j:04}"), "web", i as u32),
                    node_id: uuid(1, k % 100),
                    node_name: format!("node-{}", k % 100),
                    job_id: format!("job-{j:04}"),
                    task_group: "web".into(),
                    allocated_resources: AllocatedResources::default(),
                    client_status: ClientStatus::Running,
                    create_time: 1,
                    modify_time: 1,
                    ..Allocation::default()
                }
            })
            .collect();
        let eval = Evaluation {
            id: uuid(3, j),
            namespace: "default".into(),
            job_id: format!("job-{j:04}"),
            ..Evaluation::default()
        };
        h.write(Command::PlanResults(PlanResults {
            eval_id: uuid(3, j),
            allocs,
            stops: vec![],
            evals: vec![eval],
        }))
        .await
        .unwrap();
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    stream: BufReader<TcpStream>,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn { stream: BufReader::new(s), body: Vec::new() }
    }

    /// Sends a GET and reads the reply; returns the status and the body length.
    async fn get(&mut self, path: &str) -> (u16, usize) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.stream.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        self.body.resize(len, 0);
        self.stream.read_exact(&mut self.body).await.unwrap();
        (status, len)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Hammers `path` from `conns` connections for `secs`; prints requests/s and latency.
async fn throughput(addr: &str, path: &str, conns: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let addr = addr.to_owned();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(&addr).await;
            let mut lat = Vec::new();
            let mut bytes = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let (status, len) = c.get(&path).await;
                assert_eq!(status, 200, "{path}");
                lat.push(t.elapsed());
                bytes = len;
            }
            (lat, bytes)
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (lat, b) = t.await.unwrap();
        all.extend(lat);
        bytes = b;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    println!(
        "| `GET {path}` | {conns} | {:.0} | {:.1} | {:.1} | {:.1} KiB |",
        all.len() as f64 / elapsed,
        percentile(&all, 0.5).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
        bytes as f64 / 1024.0,
    );
}

/// Parks `n` blocking queries on one job's allocations, changes one allocation, and measures
/// how long after the change each watcher gets its reply.
async fn fan_out(h: &ServerHandle, addr: &str, n: usize) {
    let mut probe = Conn::open(addr).await;
    probe.get("/v1/job/job-0042/allocations").await;
    let index = h.applied_index();
    let path = format!("/v1/job/job-0042/allocations?index={index}&wait=120s");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(Conn::open(addr).await);
    }
    let (tx, rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::new();
    for mut c in conns {
        let path = path.clone();
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _) = c.get(&path).await;
            let done = Instant::now();
            let changed = (*rx.borrow()).expect("no watcher returns before the change");
            (status, done.saturating_duration_since(changed))
        }));
    }
    // Let every watcher reach the server and park.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = tasks.iter().filter(|t| t.is_finished()).count();
    let update = AllocClientUpdate {
        alloc_id: uuid(2, 42 * ALLOCS_PER_JOB),
        client_status: ClientStatus::Running,
        client_description: "changed".into(),
        modify_time: 2,
        ..AllocClientUpdate::default()
    };
    tx.send(Some(Instant::now())).unwrap();
    h.write(Command::AllocClientUpdate { updates: vec![update], evals: vec![] }).await.unwrap();
    let mut lat = Vec::new();
    for t in tasks {
        let (status, l) = t.await.unwrap();
        assert_eq!(status, 200);
        lat.push(l);
    }
    lat.sort();
    println!(
        "| {n} watchers on `/v1/job/job-0042/allocations?index=N` | {early} | {:.1} | {:.1} | {:.1} |",
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let secs = env_num("HTTP_BENCH_SECS", 5);
        let conns = env_num("HTTP_BENCH_CONNS", 8) as usize;
        let watchers = env_num("HTTP_BENCH_WATCHERS", 1000) as usize;
        let (h, addr) = start().await;
        let t = Instant::now();
        load(&h).await;
        println!("loaded {JOBS} jobs, {} allocations, 100 nodes in {:.1} s", JOBS * ALLOCS_PER_JOB, t.elapsed().as_secs_f64());
        println!();
        println!("| request | connections | requests/s | p50 ms | p99 ms | reply size |");
        println!("|---|---|---|---|---|---|");
        for path in [
            "/v1/jobs",
            "/v1/jobs?stale",
            "/v1/allocations",
            "/v1/allocations?stale",
            "/v1/allocations?stale&per_page=100",
            "/v1/job/job-0042/allocations?stale",
            "/v1/job/job-0042",
        ] {
            throughput(&addr, path, conns, secs).await;
        }
        println!();
        println!("| blocking queries | returned before the change | p50 ms after the change | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        fan_out(&h, &addr, watchers).await;
    });
}
