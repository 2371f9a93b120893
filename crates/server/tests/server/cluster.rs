//! Three servers: forwarding, failover without losing acknowledged writes, catch-up after
//! restart, membership changes, and a minority that refuses writes instead of hanging.

use super::harness::{job, stale_job_ids, Cluster};
use server::server::MemberStatus;
use server::{Consistency, Error};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_survive_leader_failure_and_restart_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    assert_eq!(cluster.node(follower).peers().len(), 3);

    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let id = format!("before-{i:02}");
        cluster.node(follower).write(job(&id)).await.expect("forwarded write");
        acknowledged.push(id);
    }

    let killed = cluster.kill(leader).await;
    let survivor = cluster.other_than(leader);
    let mut last_index = 0;
    for i in 0..20 {
        let id = format!("after-{i:02}");
        last_index =
            cluster.node(survivor).write(job(&id)).await.expect("new leader accepts").index;
        acknowledged.push(id);
    }
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);

    acknowledged.sort();
    for (_, h) in cluster.running() {
        let jobs = h
            .read(Consistency::Consistent, |s| s.jobs().map(|j| j.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(jobs, acknowledged, "no acknowledged write is lost");
    }

    cluster.restart(leader, killed).await;
    let restarted = cluster.node(leader);
    assert!(
        restarted.wait_for_index(last_index, Duration::from_secs(15)).await >= last_index,
        "the restarted server catches up"
    );
    assert_eq!(stale_job_ids(restarted).await, acknowledged);
    // Writes through the restarted server are forwarded to the new leader.
    restarted.write(job("via-restarted")).await.unwrap();
}

/// The leader's own writes (plans, evaluation updates, drain steps) are never forwarded: on a
/// server that does not lead, `write_as_leader` fails and nothing is committed anywhere, so a
/// deposed leader's pipeline cannot land work in a newer leader's term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_only_writes_are_refused_on_a_follower_and_never_forwarded() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let err = cluster.node(follower).write_as_leader(job("from-follower")).await.unwrap_err();
    assert!(matches!(err, Error::NotLeader(_)), "{err:?}");
    let index = cluster.node(leader).write_as_leader(job("from-leader")).await.unwrap().index;
    assert!(cluster.node(leader).leader_barrier().await.unwrap() >= index);
    assert!(matches!(cluster.node(follower).leader_barrier().await, Err(Error::NotLeader(_))));
    for (_, h) in cluster.running() {
        let jobs = h
            .read(Consistency::Consistent, |s| s.jobs().map(|j| j.id.clone()).collect::<Vec<_>>())
            .await
            .unwrap();
        assert_eq!(jobs, ["from-leader"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_refuses_writes_with_a_clear_error() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.node(leader).write(job("first")).await.unwrap();
    let a = cluster.other_than(leader);
    let _a = cluster.kill(a).await;
    let b = cluster.other_than(leader);
    let _b = cluster.kill(b).await;

    let started = Instant::now();
    let err = cluster.node(leader).write(job("lost")).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err, Error::NoQuorum { .. } | Error::NoLeader { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("no quorum") || err.to_string().contains("no cluster leader"));
    assert!(waited < Duration::from_secs(8), "gave up after {waited:?}, not hanging");
    let read = cluster.node(leader).read(Consistency::Consistent, |s| s.jobs().count()).await;
    assert!(read.is_err(), "a consistent read needs a quorum too");
    // A stale read still answers from local state.
    assert_eq!(stale_job_ids(cluster.node(leader)).await, vec!["first"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_is_reported_and_removed_and_a_new_server_joins() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let dead = cluster.other_than(leader);
    let dead_node = cluster.kill(dead).await;

    let members = cluster.node(leader).members().await;
    assert_eq!(members.len(), 3);
    let row = members.iter().find(|m| m.addr == dead_node.addr).unwrap();
    assert_eq!(row.status, MemberStatus::Failed);
    assert!(members.iter().filter(|m| m.status == MemberStatus::Alive).count() == 2);
    assert!(members.iter().any(|m| m.leader));
    // Live servers report their own region and datacenter; a dead one reports nothing.
    assert!(members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .all(|m| m.region == "global" && m.datacenter == "dc1"));
    assert_eq!(row.region, "");

    // Remove by address, through a follower (forwarded to the leader).
    let follower = cluster.other_than(leader);
    let via = if follower == dead { leader } else { follower };
    cluster.node(via).remove_peer(&dead_node.addr).await.unwrap();
    let peers = cluster.node(leader).peers();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p.addr != dead_node.addr));
    cluster.node(leader).write(job("two-servers")).await.unwrap();
    assert!(matches!(
        cluster.node(leader).remove_peer("no-such-server").await,
        Err(Error::UnknownServer(_))
    ));

    // A fresh server joins through retry_join and becomes a voter.
    let dir = tempfile::TempDir::new().unwrap();
    let join = vec![cluster.nodes[leader].as_ref().unwrap().addr.clone()];
    let config = super::harness::config(dir.path().join("new"), &join, 3);
    let new = super::harness::start(config, "127.0.0.1:0").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cluster.node(leader).peers().iter().any(|p| p.id == new.handle.id() && p.voter) {
        assert!(
            Instant::now() < deadline,
            "new server did not join: {:?}",
            cluster.node(leader).peers()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let w = new.handle.write(job("via-new")).await.unwrap();
    assert!(new.handle.wait_for_index(w.index, Duration::from_secs(5)).await >= w.index);
    assert_eq!(stale_job_ids(&new.handle).await, vec!["two-servers", "via-new"]);
    new.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_servers_tolerate_two_failures() {
    let mut cluster = Cluster::start(5).await;
    let first_leader = cluster.leader().await;
    cluster.node(cluster.other_than(first_leader)).write(job("before")).await.unwrap();

    // Kill the leader and one follower: three of five remain, still a quorum.
    let killed_leader = cluster.kill(first_leader).await;
    let follower = cluster.other_than(first_leader);
    let killed_follower = cluster.kill(follower).await;
    let survivor = cluster.running().map(|(i, _)| i).next().unwrap();
    let w = cluster.node(survivor).write(job("after")).await.expect("three of five commit");
    assert_ne!(cluster.leader().await, first_leader);

    cluster.restart(first_leader, killed_leader).await;
    cluster.restart(follower, killed_follower).await;
    for (_, h) in cluster.running() {
        assert!(h.wait_for_index(w.index, Duration::from_secs(15)).await >= w.index);
        assert_eq!(stale_job_ids(h).await, vec!["after", "before"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_a_compacted_log_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.raft.snapshot_threshold = 10;
        c.raft.trailing_logs = 0;
    })
    .await;
    let leader = cluster.leader().await;
    let behind = cluster.other_than(leader);
    let stopped = cluster.kill(behind).await;
    let mut last = 0;
    let mut written = Vec::new();
    for i in 0..60 {
        let id = format!("job-{i:02}");
        last = cluster.node(leader).write(job(&id)).await.unwrap().index;
        written.push(id);
    }
    // Give the leader time to snapshot and purge what the stopped follower lacks.
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.restart(behind, stopped).await;
    let h = cluster.node(behind);
    assert!(h.wait_for_index(last, Duration::from_secs(15)).await >= last, "caught up");
    assert_eq!(stale_job_ids(h).await, written);
    // It keeps following normally afterwards.
    let w = cluster.node(leader).write(job("zz-after")).await.unwrap();
    assert!(h.wait_for_index(w.index, Duration::from_secs(5)).await >= w.index);
    assert_eq!(stale_job_ids(h).await.len(), 61);
}

/// A server whose data directory was wiped comes back on its old address under a new ID (its
/// `node-id` file is gone) and joins through retry_join; as Nomad's leader does, the leader
/// replaces the old ID registered at that address, and Raft messages meant for the old ID are
/// refused by the new server instead of being answered from its empty log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_rejoins_under_a_new_id_and_replaces_its_old_self() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let wiped = cluster.other_than(leader);
    for i in 0..10 {
        cluster.node(leader).write(job(&format!("before-{i}"))).await.unwrap();
    }
    let old = cluster.kill(wiped).await;
    let old_id = old.handle.id();
    std::fs::remove_dir_all(old.config.data_dir.as_ref().unwrap()).unwrap();
    let last = cluster.node(leader).write(job("while-down")).await.unwrap().index;

    let new = super::harness::start(old.config.clone(), &old.addr).await;
    let new_id = new.handle.id();
    assert_ne!(new_id, old_id, "a wiped data_dir means a new identity");
    cluster.nodes[wiped] = Some(new);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let peers = cluster.node(leader).peers();
        let replaced = peers.len() == 3
            && peers.iter().any(|p| p.id == new_id && p.voter && p.addr == old.addr)
            && peers.iter().all(|p| p.id != old_id);
        if replaced {
            break;
        }
        assert!(Instant::now() < deadline, "old ID {old_id} not replaced by {new_id}: {peers:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejoined = cluster.node(wiped);
    assert!(rejoined.wait_for_index(last, Duration::from_secs(15)).await >= last);
    let mut jobs = stale_job_ids(rejoined).await;
    jobs.sort();
    assert_eq!(jobs.len(), 11);
    assert!(jobs.contains(&"while-down".to_string()));
    // The leader survived it and the cluster still takes writes through the new server.
    let w = cluster.node(wiped).write(job("via-rejoined")).await.unwrap();
    assert!(cluster.node(leader).wait_for_index(w.index, Duration::from_secs(5)).await >= w.index);
    assert!(cluster.node(leader).is_leader() || cluster.leader().await != leader);
}
