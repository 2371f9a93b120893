//! Starting, stopping and restarting in-process servers on loopback for the tests.

use model::Job;
use server::raft::RaftTiming;
use server::state::Command;
use server::transport::TcpConnector;
use server::{Config, Consistency, Seams, Server, ServerHandle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Raft timing scaled down so elections take well under a second.
pub fn fast_raft() -> RaftTiming {
    RaftTiming {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..RaftTiming::default()
    }
}

pub struct Node {
    pub handle: ServerHandle,
    pub addr: String,
    pub config: Config,
}

/// A cluster of servers sharing one temporary directory.
pub struct Cluster {
    pub nodes: Vec<Option<Node>>,
    _dir: TempDir,
}

pub fn config(data_dir: PathBuf, join: &[String], expect: u32) -> Config {
    let mut c = Config { data_dir: Some(data_dir), ..Config::default() };
    c.server.enabled = true;
    c.server.bootstrap_expect = expect;
    c.server.server_join.retry_join = join.to_vec();
    c.server.server_join.retry_interval = Duration::from_millis(100);
    c.raft = fast_raft();
    c.request_timeout = Duration::from_secs(5);
    c
}

/// Starts a server on `addr` (`127.0.0.1:0` for a fresh port). Rebinding a port a stopped
/// server just released can fail for a moment, so binding retries briefly.
pub async fn start(config: Config, addr: &str) -> Node {
    let deadline = Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap().to_string();
    let seams = Seams {
        rpc_listener: Box::new(listener),
        rpc_advertise: addr.clone(),
        connector: Arc::new(TcpConnector),
        store: None,
    };
    let handle = Server::start(config.clone(), seams).await.expect("server starts");
    Node { handle, addr, config }
}

impl Cluster {
    /// Starts `n` servers that find each other through `retry_join` and bootstrap together.
    pub async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// As [`Cluster::start`], with `tweak` applied to every server's configuration.
    pub async fn start_with(n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        let dir = TempDir::new().unwrap();
        // Choose ports first so every server's retry_join can list all of them.
        let addrs: Vec<String> =
            (0..n).map(|_| format!("127.0.0.1:{}", testkit::free_port())).collect();
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let mut c = config(dir.path().join(format!("s{i}")), &addrs, n as u32);
            tweak(&mut c);
            nodes.push(Some(start(c, addr).await));
        }
        Cluster { nodes, _dir: dir }
    }

    pub fn node(&self, i: usize) -> &ServerHandle {
        &self.nodes[i].as_ref().expect("server is running").handle
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &ServerHandle)> {
        self.nodes.iter().enumerate().filter_map(|(i, n)| n.as_ref().map(|n| (i, &n.handle)))
    }

    /// Waits until every running server agrees on one leader; returns its position.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let leaders: Vec<Option<u64>> =
                self.running().map(|(_, h)| h.leader().map(|m| m.id)).collect();
            if let Some(Some(id)) = leaders.first() {
                if leaders.iter().all(|l| *l == Some(*id)) {
                    if let Some((i, _)) = self.running().find(|(_, h)| h.id() == *id) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Any running server other than `not`.
    pub fn other_than(&self, not: usize) -> usize {
        self.running().map(|(i, _)| i).find(|i| *i != not).expect("another server runs")
    }

    /// Stops server `i` as abruptly as an in-process test can: Raft stops, the listener closes.
    pub async fn kill(&mut self, i: usize) -> Node {
        let node = self.nodes[i].take().expect("server is running");
        node.handle.shutdown().await;
        node
    }

    /// Restarts a stopped server on its old address from its own data directory.
    pub async fn restart(&mut self, i: usize, node: Node) {
        let restarted = start(node.config.clone(), &node.addr).await;
        assert_eq!(restarted.handle.id(), node.handle.id(), "identity survives in data_dir");
        self.nodes[i] = Some(restarted);
    }
}

pub fn job(id: &str) -> Command {
    let job = Job { namespace: "default".into(), id: id.into(), name: id.into(), ..Job::default() };
    Command::JobRegister { job: Box::new(job), eval: None }
}

/// The IDs of all jobs a server has applied, without consulting the leader.
pub async fn stale_job_ids(h: &ServerHandle) -> Vec<String> {
    h.read(Consistency::Stale, |s| s.jobs().map(|j| j.id.clone()).collect()).await.unwrap()
}
