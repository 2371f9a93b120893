//! One server: dev mode in memory, and persistence with snapshots and log compaction.

use super::harness::{fast_raft, job, start};
use server::state::Outcome;
use server::store::{SledStore, Store};
use server::transport::TcpConnector;
use server::{Config, Consistency, Seams, Server};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_server_bootstraps_alone_and_serves_reads_and_blocking_waits() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = Config { raft: fast_raft(), ..Config::default() };
    config.server.enabled = true;
    let seams = Seams {
        rpc_listener: Box::new(listener),
        rpc_advertise: addr,
        connector: Arc::new(TcpConnector),
        store: None,
    };
    let h = Server::start(config, seams).await.unwrap();

    let w = h.write(job("web")).await.unwrap();
    assert_eq!(w.outcome, Outcome::JobRegistered { job_version: 0, job_modify_index: w.index });
    let again = h.write(job("web")).await.unwrap();
    assert!(again.index > w.index);

    // A blocking wait returns at once for an applied index and times out for a future one.
    assert!(h.wait_for_index(again.index, Duration::from_secs(1)).await >= again.index);
    let start = std::time::Instant::now();
    assert!(
        h.wait_for_index(again.index + 100, Duration::from_millis(200)).await < again.index + 100
    );
    assert!(start.elapsed() >= Duration::from_millis(200));

    // A waiter is woken by a later write.
    let waiter = {
        let h = h.clone();
        let target = again.index + 1;
        tokio::spawn(async move { h.wait_for_index(target, Duration::from_secs(10)).await })
    };
    let third = h.write(job("api")).await.unwrap();
    assert!(waiter.await.unwrap() >= third.index);

    let jobs = h
        .read(Consistency::Consistent, |s| s.jobs().map(|j| j.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(jobs, vec!["api", "web"]);
    assert!(h.is_leader());
    assert_eq!(h.peers().len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_from_snapshot_and_compacted_log() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = super::harness::config(dir.path().join("s"), &[], 1);
    config.raft.snapshot_threshold = 10;
    config.raft.trailing_logs = 2;
    let node = start(config.clone(), "127.0.0.1:0").await;
    let mut last = 0;
    for i in 0..45 {
        last = node.handle.write(job(&format!("job-{i:02}"))).await.unwrap().index;
    }
    // Snapshots are built in the background; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.handle.shutdown().await;
    drop(node.handle);

    {
        let store = SledStore::open(&dir.path().join("s/server/raft")).unwrap();
        let snapshot = store.snapshot().unwrap();
        assert!(snapshot.is_some(), "a snapshot was taken");
        let first = store.entries(0..u64::MAX).unwrap().first().map(|(i, _)| *i);
        assert!(first.is_some_and(|i| i > 1), "the log was compacted: first entry {first:?}");
    }

    let restarted = start(config, &node.addr).await;
    assert!(restarted.handle.wait_for_index(last, Duration::from_secs(10)).await >= last);
    let jobs = super::harness::stale_job_ids(&restarted.handle).await;
    assert_eq!(jobs.len(), 45);
    // And it still accepts writes after recovering.
    restarted.handle.write(job("after")).await.unwrap();
    restarted.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_seams_advertise_the_bound_address_and_refuse_unroutable_binds() {
    let mut config = Config { bind_addr: "127.0.0.1".into(), ..Config::default() };
    config.ports.rpc = 0;
    let seams = Seams::tcp(&config).await.unwrap();
    assert!(seams.rpc_advertise.starts_with("127.0.0.1:"), "{}", seams.rpc_advertise);
    assert!(!seams.rpc_advertise.ends_with(":0"));

    config.bind_addr = "0.0.0.0".into();
    let err = Seams::tcp(&config).await.err().expect("0.0.0.0 cannot be advertised");
    assert!(err.to_string().contains("advertise"), "{err}");
    config.advertise.rpc = Some("10.1.2.3:4647".into());
    assert_eq!(Seams::tcp(&config).await.unwrap().rpc_advertise, "10.1.2.3:4647");
}
