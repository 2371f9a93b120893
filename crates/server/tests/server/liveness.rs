//! Node liveness: heartbeats keep nodes ready; silence past TTL plus grace marks them down with
//! evaluations to replace their allocations; a new leader gives every node one fresh TTL.

use super::harness::Cluster;
use model::{Allocation, EvalStatus, Job, Node, NodeStatus, TriggeredBy};
use server::state::{Command, PlanResults};
use server::{Config, Consistency, ServerHandle};
use std::time::{Duration, Instant};

fn heartbeat_settings(ttl_ms: u64, grace_ms: u64) -> impl Fn(&mut Config) {
    move |c: &mut Config| {
        c.server.min_heartbeat_ttl = Duration::from_millis(ttl_ms);
        c.server.heartbeat_grace = Duration::from_millis(grace_ms);
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        datacenter: "dc1".into(),
        status: NodeStatus::Initializing,
        ..Node::default()
    }
}

async fn status(h: &ServerHandle, node_id: &str) -> Option<NodeStatus> {
    h.read(Consistency::Stale, |s| s.node(node_id).map(|n| n.status)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_marked_down_and_its_allocations_get_evaluations() {
    let cluster = Cluster::start_with(3, heartbeat_settings(300, 300)).await;
    let leader = cluster.leader().await;
    let follower = cluster.node(cluster.other_than(leader)).clone();

    assert!(matches!(follower.heartbeat("ghost").await, Err(server::Error::UnknownNode(_))));
    let ttl = follower.register_node(node("n1")).await.unwrap();
    assert!(ttl >= Duration::from_millis(300) && ttl < Duration::from_millis(600), "{ttl:?}");
    assert_eq!(status(cluster.node(leader), "n1").await, Some(NodeStatus::Ready));

    let job = Job { namespace: "default".into(), id: "web".into(), priority: 70, ..Job::default() };
    follower.write(Command::JobRegister { job: Box::new(job), eval: None }).await.unwrap();
    let alloc = Allocation {
        id: "a1".into(),
        namespace: "default".into(),
        job_id: "web".into(),
        node_id: "n1".into(),
        ..Allocation::default()
    };
    let plan = PlanResults { allocs: vec![alloc], ..PlanResults::default() };
    follower.write(Command::PlanResults(plan)).await.unwrap();

    // Heartbeating keeps the node ready well past several TTLs.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        follower.heartbeat("n1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(cluster.node(leader), "n1").await, Some(NodeStatus::Ready));

    // Silence: down within TTL + grace (+ the leader's 100 ms check period).
    let silent_since = Instant::now();
    while status(cluster.node(leader), "n1").await != Some(NodeStatus::Down) {
        assert!(silent_since.elapsed() < Duration::from_secs(3), "node not marked down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(silent_since.elapsed() >= Duration::from_millis(300), "not before its TTL");
    let evals = cluster
        .node(leader)
        .read(Consistency::Consistent, |s| {
            s.evals_by_job("default", "web").into_iter().cloned().collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(evals.len(), 1, "{evals:?}");
    assert_eq!(evals[0].triggered_by, TriggeredBy::NodeUpdate);
    assert_eq!((evals[0].status, evals[0].priority), (EvalStatus::Pending, 70));
    assert_eq!(evals[0].node_id, "n1");

    // A heartbeat brings it back.
    follower.heartbeat("n1").await.unwrap();
    let now =
        follower.read(Consistency::Consistent, |s| s.node("n1").map(|n| n.status)).await.unwrap();
    assert_eq!(now, Some(NodeStatus::Ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_gives_nodes_one_fresh_ttl_not_minutes() {
    let mut cluster = Cluster::start_with(3, heartbeat_settings(1000, 1000)).await;
    let leader = cluster.leader().await;
    let survivor = cluster.node(cluster.other_than(leader)).clone();
    survivor.register_node(node("alive")).await.unwrap();
    survivor.register_node(node("dead")).await.unwrap();

    // "alive" keeps heartbeating through the failover; "dead" stops when the leader dies.
    let beating = {
        let h = survivor.clone();
        tokio::spawn(async move {
            loop {
                let _ = h.heartbeat("alive").await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let _killed = cluster.kill(leader).await;
    let killed_at = Instant::now();
    loop {
        assert_ne!(status(&survivor, "alive").await, Some(NodeStatus::Down), "a live node flapped");
        if status(&survivor, "dead").await == Some(NodeStatus::Down) {
            break;
        }
        // Election (< 1 s) + at most 2 × TTL (stagger) + grace, nowhere near Nomad's 5 minutes.
        assert!(killed_at.elapsed() < Duration::from_secs(8), "silent node not marked down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // "alive" stays ready for a while after "dead" went down.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(status(&survivor, "alive").await, Some(NodeStatus::Ready));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    beating.abort();
}
