//! Raft write throughput, failover time and memory of three in-process servers on loopback.
//!
//! `cargo bench -p server --bench raft` (`RAFT_BENCH_WRITES=N` to change the write count). Real
//! sled stores in a temporary directory with an fsync per append batch, gRPC over loopback TCP,
//! Nomad's election timing (1–2 s). Prints figures; asserts nothing about them.

use model::Job;
use server::state::Command;
use server::transport::TcpConnector;
use server::{Config, Seams, Server, ServerHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Member {
    handle: ServerHandle,
    addr: String,
    config: Config,
}

async fn start(config: Config, addr: &str) -> Member {
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let addr = listener.local_addr().unwrap().to_string();
    let seams = Seams {
        rpc_listener: Box::new(listener),
        rpc_advertise: addr.clone(),
        connector: Arc::new(TcpConnector),
        // `RAFT_BENCH_STORE=mem` keeps the log in memory, to separate sled's cost from the rest.
        store: (std::env::var("RAFT_BENCH_STORE").as_deref() == Ok("mem"))
            .then(|| Arc::new(server::store::MemStore::new()) as Arc<dyn server::store::Store>),
    };
    let handle = Server::start(config.clone(), seams).await.unwrap();
    Member { handle, addr, config }
}

fn job(id: String) -> Command {
    let job = Job { namespace: "default".into(), id: id.clone(), name: id, ..Job::default() };
    Command::JobRegister { job: Box::new(job), eval: None }
}

async fn leader_of(members: &[Option<Member>]) -> usize {
    loop {
        for (i, m) in members.iter().enumerate() {
            if m.as_ref().is_some_and(|m| m.handle.is_leader()) {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Writes `n` jobs through `via` with `concurrency` writers; returns (elapsed, latencies).
async fn write_load(
    via: &ServerHandle,
    n: usize,
    concurrency: usize,
    tag: &str,
) -> (Duration, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let h = via.clone();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..n).step_by(concurrency) {
                let t = Instant::now();
                h.write(job(format!("{tag}-{i}"))).await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    (start.elapsed(), all)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let writes: usize =
        std::env::var("RAFT_BENCH_WRITES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let dir = tempfile::TempDir::new().unwrap();
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
    }
    let mut members: Vec<Option<Member>> = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let mut c =
            Config { data_dir: Some(dir.path().join(format!("s{i}"))), ..Config::default() };
        c.server.enabled = true;
        c.server.bootstrap_expect = 3;
        c.server.server_join.retry_join = addrs.clone();
        c.server.server_join.retry_interval = Duration::from_millis(200);
        members.push(Some(start(c, addr).await));
    }
    let formed = Instant::now();
    let leader = leader_of(&members).await;
    println!("leader agreed {:?} after the third server started", formed.elapsed());
    println!("memory with an empty state: VmRSS {} MiB", rss_kib("VmRSS:") / 1024);
    let follower = (leader + 1) % 3;

    println!("\njob registrations (Job of {} bytes encoded), {writes} per row:", {
        let Command::JobRegister { job, .. } = job("x".into()) else { unreachable!() };
        serde_json::to_vec(&job).unwrap().len()
    });
    println!("| via | writers | writes/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (name, via) in [("leader", leader), ("follower (forwarded)", follower)] {
        for concurrency in [1, 16, 64] {
            let h = members[via].as_ref().unwrap().handle.clone();
            let n = if concurrency == 1 { writes / 4 } else { writes };
            let (elapsed, lat) =
                write_load(&h, n, concurrency, &format!("{name}-{concurrency}")).await;
            println!(
                "| {name} | {concurrency} | {:.0} | {:.1} ms | {:.1} ms |",
                n as f64 / elapsed.as_secs_f64(),
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                pct(&lat, 0.99).as_secs_f64() * 1e3
            );
        }
    }

    println!("\nfailover (kill the leader, time until a survivor commits a write):");
    let mut times = Vec::new();
    for round in 0..3 {
        let leader = leader_of(&members).await;
        let killed = members[leader].take().unwrap();
        let survivor = members.iter().flatten().next().unwrap().handle.clone();
        // The clock starts when the leader stops; its listener winds down concurrently, as a
        // crashed process's would not, but it no longer answers Raft.
        let t = Instant::now();
        let stopping = {
            let h = killed.handle.clone();
            tokio::spawn(async move { h.shutdown().await })
        };
        while survivor.leader().is_none_or(|l| l.id == killed.handle.id()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elected = t.elapsed();
        survivor.write(job(format!("failover-{round}"))).await.unwrap();
        let took = t.elapsed();
        stopping.await.unwrap();
        times.push(took);
        println!(
            "  round {round}: new leader known after {elected:?}, write committed after {took:?}"
        );
        members[leader] = Some(start(killed.config.clone(), &killed.addr).await);
        // Let the restarted server catch up before the next round.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    times.sort();
    println!("  median {:?}", times[1]);

    println!(
        "\nmemory of this process (3 servers, {} jobs in each state): VmRSS {} MiB, VmHWM {} MiB",
        members[0]
            .as_ref()
            .unwrap()
            .handle
            .read(server::Consistency::Stale, |s| s.jobs().count())
            .await
            .unwrap(),
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    for m in members.into_iter().flatten() {
        m.handle.shutdown().await;
    }
}
