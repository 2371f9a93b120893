//! A new agent on the data directory of one that stopped: what it does with the allocations the
//! previous one left behind (their state files stay until the servers forget them).

use crate::harness::*;
use model::{ClientStatus, JobType};
use std::time::Duration;

/// A finished allocation is reloaded as finished: its runner sees every task dead and answers
/// as a finished allocation does. (It used to panic, its main tasks being skipped as finished
/// yet awaited: found by the simulator's real agents, seed 1010 with `--real-agents`.)
#[tokio::test]
async fn a_finished_allocation_left_on_disk_is_reloaded_as_finished() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let first = client(servers.clone(), dir.path(), None).await;
    let done = job("done", JobType::Batch, vec![sh_task("t", "exit 0")]);
    let a = alloc(&done, &[]);
    servers.place(a.clone(), done);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete);
    first.shutdown();

    let second = client(servers.clone(), dir.path(), None).await;
    assert_eq!(second.restart(&a.id, None).await, Err("allocation is not running".to_string()));
    let r = servers.last(&a.id).unwrap();
    assert_eq!(r.client_status, ClientStatus::Complete);
    assert_eq!(events(&r, "t"), ["Received", "Task Setup", "Started", "Terminated"]);
    second.shutdown();
}

/// What the previous agent recorded but never reported (it stopped while the servers were
/// unreachable) is reported by the next one: here, servers that still believe the allocation
/// runs hear that it completed. (Found by the simulator's real agents, --ci seed 1122: a batch
/// allocation running for good on the servers after its host was cut off, then crashed.)
#[tokio::test]
async fn a_reloaded_allocation_is_reported_again() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let first = client(servers.clone(), dir.path(), None).await;
    let done = job("done", JobType::Batch, vec![sh_task("t", "exit 0")]);
    let a = alloc(&done, &[]);
    servers.place(a.clone(), done.clone());
    servers.wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal()).await;
    first.shutdown();

    let unaware = FakeServers::new();
    let mut running = a.clone();
    running.client_status = ClientStatus::Running;
    unaware.place(running, done);
    let second = client(unaware.clone(), dir.path(), None).await;
    let r = unaware
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete);
    assert_eq!(events(&r, "t"), ["Received", "Task Setup", "Started", "Terminated"]);
    second.shutdown();
}
