//! `node.WatchAllocs`, the agents' allocation stream, over real gRPC between in-process servers:
//! only the leader serves it (a follower refuses with a hint the client follows), it sends a
//! node's allocations when they change and nothing for other nodes' changes, it resumes from an
//! index, and it ends when its server goes so the agent reconnects to the new leader.

use super::harness::Cluster;
use futures::StreamExt;
use model::{Allocation, Job};
use server::node_endpoint::{
    AllocsReply, NodeClient, NodeRpcError, WatchRequest, NOT_LEADER, WATCH_ALLOCS,
};
use server::rpc::{Client, RpcError};
use server::state::{Command, PlanResults};
use server::transport::TcpConnector;
use server::ServerHandle;
use std::sync::Arc;
use std::time::Duration;

type Watch = futures::stream::BoxStream<'static, Result<AllocsReply, NodeRpcError>>;

const KEEPALIVE: Duration = Duration::from_millis(200);

async fn place(h: &ServerHandle, id: &str, node: &str) {
    let alloc = Allocation {
        id: id.into(),
        namespace: "default".into(),
        job_id: "web".into(),
        node_id: node.into(),
        ..Allocation::default()
    };
    let plan = PlanResults { allocs: vec![alloc], ..PlanResults::default() };
    h.write(Command::PlanResults(plan)).await.unwrap();
}

/// The next message; generous bound, so a slow machine does not fail the test.
async fn next(watch: &mut Watch) -> AllocsReply {
    tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("a message within 20 s")
        .expect("the stream is open")
        .expect("a message, not an error")
}

fn ids(reply: &AllocsReply) -> Vec<&str> {
    reply.allocs.iter().map(|a| a.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_streams_a_nodes_allocations_and_agents_follow_it_across_failover() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let addr = |c: &Cluster, i: usize| c.nodes[i].as_ref().unwrap().addr.clone();
    let (leader_addr, follower_addr) = (addr(&cluster, leader), addr(&cluster, follower));
    let job = Job { namespace: "default".into(), id: "web".into(), ..Job::default() };
    cluster
        .node(leader)
        .write(Command::JobRegister { job: Box::new(job), eval: None })
        .await
        .unwrap();

    // A follower refuses the stream and names the leader.
    let rpc = Client::new(Arc::new(TcpConnector));
    let req = WatchRequest { node_id: "n1".into(), min_index: 0, keepalive_ms: 200 };
    let body = bytes::Bytes::from(server::codec::encode(&req));
    let refused = rpc.stream(&follower_addr, WATCH_ALLOCS, body, Duration::from_secs(10)).await;
    match refused {
        Err(RpcError::Remote { message, .. }) => {
            assert_eq!(message, format!("{NOT_LEADER}{leader_addr}"))
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a follower served the watch"),
    }

    // The client is pointed at the follower first and ends up on the leader.
    let all: Vec<String> = (0..3).map(|i| addr(&cluster, i)).collect();
    let mut servers = vec![follower_addr.clone()];
    servers.extend(all.iter().filter(|a| **a != follower_addr).cloned());
    let agent = NodeClient::new(servers, Arc::new(TcpConnector));
    let mut watch = agent.watch_allocs("n1", 0, KEEPALIVE).await.unwrap();
    let first = next(&mut watch).await;
    assert!(first.allocs.is_empty(), "{:?}", ids(&first));

    place(cluster.node(follower), "a1", "n1").await;
    let reply = next(&mut watch).await;
    assert_eq!(ids(&reply), ["a1"]);
    assert_eq!(reply.jobs.len(), 1, "the job version travels with the allocation");

    // Another node's allocation moves the table's index but sends n1 nothing: the next
    // message is the one about n1's second allocation.
    place(cluster.node(leader), "b1", "n2").await;
    place(cluster.node(leader), "a2", "n1").await;
    let reply = next(&mut watch).await;
    assert_eq!(ids(&reply), ["a1", "a2"]);
    let seen = reply.index;

    // Resuming from an index sends nothing until something changes after it.
    let mut resumed = agent.watch_allocs("n1", seen, KEEPALIVE).await.unwrap();
    drop(watch);
    place(cluster.node(leader), "a3", "n1").await;
    let reply = next(&mut resumed).await;
    assert_eq!(ids(&reply), ["a1", "a2", "a3"]);
    assert!(reply.index > seen);
    let seen = reply.index;

    // The leader goes: the stream ends (closed, or an error), and reopening finds the new one.
    let _killed = cluster.kill(leader).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match resumed.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(r)) => assert_eq!(ids(&r), ["a1", "a2", "a3"]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its server");
    let new_leader = cluster.leader().await;
    let mut watch = loop {
        match agent.watch_allocs("n1", seen, KEEPALIVE).await {
            Ok(w) => break w,
            Err(e) => {
                eprintln!("reopening: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    place(cluster.node(new_leader), "a4", "n1").await;
    let reply = next(&mut watch).await;
    assert_eq!(ids(&reply), ["a1", "a2", "a3", "a4"]);
}
