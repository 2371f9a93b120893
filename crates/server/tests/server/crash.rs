//! A server process killed with SIGKILL in the middle of writes loses none it acknowledged.
//!
//! The test binary plays both parts: run normally, the test re-executes itself (this test
//! only) with `ORC_CRASH_CHILD` set; the child runs a sled-backed server and several concurrent
//! writers and prints `ACK <job>` after each acknowledged write. The parent kills the child with
//! SIGKILL mid-stream, restarts a server from the same data directory in-process, and checks
//! that every acknowledged job is there.

use super::harness::{config, job, stale_job_ids, start};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "ORC_CRASH_CHILD";
const TEST_NAME: &str = "crash::sigkill_mid_writes_loses_no_acknowledged_write";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_writes_loses_no_acknowledged_write() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return child(dir.into()).await;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let data_dir = dir.path().join("s");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = Vec::new();
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest prints `test <name> ... ` without a newline before the test's own output.
        if let Some((_, a)) = line.split_once("ADDR ") {
            addr = Some(a.trim().to_owned());
        }
        if let Some(id) = line.strip_prefix("ACK ") {
            acknowledged.push(id.to_owned());
            if acknowledged.len() == 150 {
                // `Child::kill` sends SIGKILL on Unix: no destructors, no flush on exit.
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 150, "the child acknowledged writes before being killed");

    let restarted =
        start(config(data_dir, &[], 1), &addr.expect("child printed its address")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !restarted.handle.is_leader() {
        assert!(std::time::Instant::now() < deadline, "restarted server did not become leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Leadership implies the committed log is applied locally after this no-op write.
    restarted.handle.write(job("after-restart")).await.unwrap();
    let present = stale_job_ids(&restarted.handle).await;
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !present.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost after SIGKILL: {missing:?}");
    restarted.handle.shutdown().await;
}

/// The child: a single sled-backed server and four writers, until it is killed.
async fn child(data_dir: std::path::PathBuf) {
    let node = start(config(data_dir, &[], 1), "127.0.0.1:0").await;
    println!("ADDR {}", node.addr);
    let mut writers = Vec::new();
    for w in 0..4 {
        let h = node.handle.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let id = format!("w{w}-{i:05}");
                h.write(job(&id)).await.expect("write");
                println!("ACK {id}");
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
}
