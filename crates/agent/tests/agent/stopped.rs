//! Allocations the servers stopped before the agent ever ran them.

use crate::harness::*;
use model::{ClientStatus, DesiredStatus, JobType};
use std::time::Duration;

/// Stopped before it ran here (a scale-down or drain that overtook the placement): reported
/// complete with its tasks dead, and nothing started. It used to stay pending on the servers
/// for good (found by the simulator's real agents: a drained node that "still ran" it).
#[tokio::test]
async fn an_allocation_stopped_before_it_ran_is_reported_complete_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let j = job("late", JobType::Service, vec![sh_task("t", "sleep 30")]);
    let mut a = alloc(&j, &[]);
    a.desired_status = DesiredStatus::Stop;
    servers.place(a.clone(), j);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete);
    assert_eq!(r.task_states["t"].state, "dead");
    assert!(!r.task_states["t"].failed);
    assert!(r.task_states["t"].events.is_empty(), "{:?}", r.task_states["t"].events);
    assert!(c.alloc_dir(&a.id).is_none(), "a runner was created for it");
    c.shutdown();
}
