//! Idle memory and CPU of a whole server agent (Raft, HTTP API, scheduling pipeline: what
//! `orc agent -server` runs, `server::server::run_until`) in its own process, release build.
//! The benchmark re-executes itself as the server process, waits until it leads and answers
//! HTTP, lets it settle, then reads its VmRSS and CPU time from /proc. Prints figures; no
//! pass/fail.
//!
//! Two modes, as an operator would start them: in memory (`orc agent -dev`'s server half: no
//! data_dir, log and snapshots in memory) and with a data_dir (sled, fsync on).
//! IDLE_BENCH_SETTLE_S (5): seconds to wait before measuring; IDLE_BENCH_SAMPLE_S (10): seconds
//! over which CPU is measured.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "ORC_IDLE_BENCH_CHILD";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A free loopback port for a process this test starts (see `testkit::free_port`).
fn free_port() -> u16 {
    testkit::free_port()
}

/// The child: one server agent until its stdin closes (the parent exiting or killing it).
fn run_child(spec: &str) {
    let mut parts = spec.split(',');
    let http: u16 = parts.next().unwrap().parse().unwrap();
    let rpc: u16 = parts.next().unwrap().parse().unwrap();
    let data_dir = parts.next().filter(|d| !d.is_empty()).map(std::path::PathBuf::from);
    let mut config =
        server::Config { bind_addr: "127.0.0.1".into(), data_dir, ..server::Config::default() };
    config.server.enabled = true;
    config.server.bootstrap_expect = 1;
    config.ports.http = http;
    config.ports.rpc = rpc;
    // The runtime `orc agent` builds.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime
        .block_on(server::server::run_until(config, async {
            // Stdin closes when the parent goes away.
            let _ = tokio::task::spawn_blocking(|| {
                let mut buf = [0u8; 1];
                let _ = std::io::Read::read(&mut std::io::stdin(), &mut buf);
            })
            .await;
        }))
        .unwrap();
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User plus system CPU time of the process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    num(11) + num(12)
}

fn measure(label: &str, data_dir: Option<&std::path::Path>, settle: u64, sample: u64) {
    let (http, rpc) = (free_port(), free_port());
    let spec =
        format!("{http},{rpc},{}", data_dir.map(|d| d.display().to_string()).unwrap_or_default());
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, spec)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let leader = loop {
        let reply = agent
            .get(&format!("http://127.0.0.1:{http}/v1/status/leader"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|mut r| r.body_mut().read_to_string().ok());
        match reply {
            Some(body) if body.trim() != "\"\"" => break started.elapsed(),
            _ if started.elapsed() > Duration::from_secs(30) => {
                panic!("{label}: no leader in 30 s")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    std::thread::sleep(Duration::from_secs(settle));
    let rss_settled = status_kb(pid, "VmRSS:");
    let cpu_before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(sample));
    let cpu = cpu_ticks(pid) - cpu_before;
    let rss = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    println!(
        "{label}: leader and HTTP after {leader:.2?}; idle VmRSS {:.1} MiB after {settle} s, {:.1} MiB after {} s (VmHWM {:.1} MiB); CPU {:.2} % of one core over {sample} s",
        rss_settled as f64 / 1024.0,
        rss as f64 / 1024.0,
        settle + sample,
        hwm as f64 / 1024.0,
        cpu as f64 / sample as f64,
    );
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    let settle = env_num("IDLE_BENCH_SETTLE_S", 5);
    let sample = env_num("IDLE_BENCH_SAMPLE_S", 10);
    println!("cargo bench -p server --bench idle   # settle={settle}s sample={sample}s");
    measure("server in memory (dev mode)", None, settle, sample);
    let dir = tempfile::TempDir::new().unwrap();
    measure("server with data_dir (sled)", Some(dir.path()), settle, sample);
}
