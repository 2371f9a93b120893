//! Check-runner benchmark: N tcp checks (default 1,000, the seed's 5 s interval and 2 s timeout)
//! on one runtime, as one agent runs them for N service instances; prints the checker's CPU use
//! and resident memory once the checks have settled.
//!
//! `cargo bench -p checks --bench checks` (optional env: `CHECKS_BENCH_N`, default 1000;
//! `CHECKS_BENCH_SECS`, default 30 s measured; `CHECKS_BENCH_INTERVAL_MS`, default 5000).
//! The listeners the checks probe run in a child process (this binary re-executed with
//! `serve N`), so the figures are the checker's alone. Linux only (it reads /proc).

use checks::runner::{spawn, CheckKind, CheckSpec};
use checks::{CheckStatus, Thresholds};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User plus system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After the command come state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, then utime and stime (fields 14 and 15 of the whole line).
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: binds `n` listeners, prints their ports, accepts and drops connections forever.
fn serve(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    rt.unwrap().block_on(async move {
        let mut out = std::io::stdout().lock();
        for _ in 0..n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            writeln!(out, "{}", l.local_addr().unwrap().port()).unwrap();
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            });
        }
        out.flush().unwrap();
        drop(out);
        std::future::pending::<()>().await;
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        serve(args[2].parse().unwrap());
        return;
    }
    let n = env_num("CHECKS_BENCH_N", 1000) as usize;
    let secs = env_num("CHECKS_BENCH_SECS", 30);
    let interval = Duration::from_millis(env_num("CHECKS_BENCH_INTERVAL_MS", 5000));
    let mut child = Command::new(&args[0])
        .args(["serve", &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ports: Vec<u16> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .take(n)
        .map(|l| l.unwrap().parse().unwrap())
        .collect();
    let rss_before = rss_kib();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut handles = Vec::with_capacity(n);
        for (i, port) in ports.iter().enumerate() {
            let spec = CheckSpec {
                id: format!("check-{i}"),
                kind: CheckKind::Tcp { addr: format!("127.0.0.1:{port}") },
                interval,
                timeout: Duration::from_secs(2),
                initial: CheckStatus::Pending,
                thresholds: Thresholds::default(),
            };
            handles.push(spawn(spec, None, tx.clone()));
        }
        // Settle: every check has reported once.
        let mut first = std::collections::BTreeSet::new();
        while first.len() < n {
            let u = rx.recv().await.unwrap();
            first.insert(u.id);
        }
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let (mut results, mut passing) = (0u64, 0u64);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while let Ok(Some(u)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            results += 1;
            passing += u64::from(u.status == CheckStatus::Passing);
        }
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        println!("command: cargo bench -p checks --bench checks (N={n}, interval={interval:?}, timeout=2s, {secs}s measured)");
        println!("tcp checks:            {n}");
        println!("results in window:     {results} ({:.0}/s), passing {passing}", results as f64 / wall.as_secs_f64());
        println!("checker CPU:           {:.2}% of one core ({:?} over {:.1?})", 100.0 * cpu.as_secs_f64() / wall.as_secs_f64(), cpu, wall);
        println!("checker RSS:           {} KiB (before the checks: {} KiB)", rss_kib(), rss_before);
        drop(handles);
    });
    let _ = child.kill();
    let _ = child.wait();
}
