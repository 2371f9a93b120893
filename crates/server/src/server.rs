//! A running server: cluster formation, leader forwarding, consistent and stale reads, blocking
//! waits, and membership operations, over the `raft` module.
//!
//! This module owns the server's request semantics: any server accepts writes and forwards them
//! to the leader; a request that finds no leader or no quorum fails with a clear error within
//! `Config::request_timeout` instead of hanging. It does not speak openraft's types (the `raft`
//! module does), bind sockets (listeners and connectors are passed in as [`Seams`]), or serve
//! HTTP.

use crate::codec;
use crate::config::Config;
use crate::heartbeat::Timers;
use crate::raft::{Member, ProposeError, RaftNode};
use crate::rpc::{self, RpcError};
use crate::state::{Command, Outcome, State};
use crate::store::{MemStore, SledStore, Store, StoreError};
use crate::transport::{Connector, Listener, TcpConnector};
use bytes::Bytes;
use futures::future::BoxFuture;
use model::{EvalStatus, Evaluation, Node, NodeStatus, TriggeredBy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, not std's: the simulator (tests/sim) drives it, so timeouts and heartbeat
// TTLs follow simulated time. Outside a paused runtime it is the same monotonic clock.
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Errors a request can end with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "no cluster leader: none was elected within {waited_ms} ms; check that a majority of \
         servers is running and can reach each other"
    )]
    NoLeader { waited_ms: u128 },
    #[error(
        "no quorum: the leader at {leader} could not commit within {waited_ms} ms, so a majority \
         of servers is unreachable from it; the request was not acknowledged and may or may not \
         take effect once the servers reconnect"
    )]
    NoQuorum { leader: String, waited_ms: u128 },
    #[error("membership change refused: {0}")]
    Membership(String),
    #[error("server not found: {0}")]
    UnknownServer(String),
    #[error("node {0} is not registered; register it first")]
    UnknownNode(String),
    #[error("server stopped: {0}")]
    Stopped(String),
    #[error("this server does not lead: {0}")]
    NotLeader(String),
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("listening for server RPC on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Raft(String),
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: the leader confirms its leadership with a quorum and the read waits until
    /// this server has applied everything committed before it. Nomad's default.
    Consistent,
    /// Whatever this server has applied; may lag the leader. Nomad's `?stale`.
    Stale,
}

/// An acknowledged write: committed by a quorum and applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The Raft log index of the write: wait for this index to read your own write anywhere.
    pub index: u64,
    pub outcome: Outcome,
}

/// Liveness of a server as seen from the one asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Alive,
    Failed,
}

/// A row of `orc server members` / `orc operator raft list-peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMember {
    pub id: u64,
    pub addr: String,
    /// The server's configured name, region and datacenter as it reports them; empty for a
    /// server that did not answer.
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub voter: bool,
    pub leader: bool,
    pub status: MemberStatus,
}

/// What a server needs from outside: how peers reach it, and how it reaches them.
pub struct Seams {
    /// Accepts server-to-server RPC.
    pub rpc_listener: Box<dyn Listener>,
    /// The address peers use to reach `rpc_listener`.
    pub rpc_advertise: String,
    pub connector: Arc<dyn Connector>,
    /// Overrides the store chosen from `Config::data_dir` (the simulator passes its own).
    pub store: Option<Arc<dyn Store>>,
}

impl Seams {
    /// Plain TCP on `bind_addr:ports.rpc`, advertising `advertise.rpc` or the bound address.
    pub async fn tcp(config: &Config) -> std::io::Result<Seams> {
        let listener =
            tokio::net::TcpListener::bind((config.bind_addr.as_str(), config.ports.rpc)).await?;
        let local = listener.local_addr()?;
        let advertise = match &config.advertise.rpc {
            Some(a) => a.clone(),
            None if local.ip().is_unspecified() => {
                return Err(std::io::Error::other(format!(
                    "bind_addr {} is not an address other servers can reach; set advertise {{ rpc = \"<ip>:{}\" }}",
                    config.bind_addr,
                    local.port()
                )))
            }
            None => local.to_string(),
        };
        Ok(Seams {
            rpc_listener: Box::new(listener),
            rpc_advertise: advertise,
            connector: Arc::new(TcpConnector),
            store: None,
        })
    }
}

/// Starts servers.
pub struct Server;

impl Server {
    /// Starts a server: recovers (or creates) its store, starts Raft and the RPC listener, and
    /// begins joining or bootstrapping the cluster in the background.
    pub async fn start(config: Config, seams: Seams) -> Result<ServerHandle, StartError> {
        let (store, id): (Arc<dyn Store>, u64) = match (&seams.store, &config.data_dir) {
            (Some(store), _) => (store.clone(), config.node_id.unwrap_or_else(random_id)),
            (None, Some(dir)) => {
                let dir = dir.join("server");
                let id = match config.node_id {
                    Some(id) => id,
                    None => load_or_create_id(&dir)?,
                };
                (Arc::new(open_sled(&dir.join("raft"))?), id)
            }
            (None, None) => (Arc::new(MemStore::new()), config.node_id.unwrap_or_else(random_id)),
        };
        let client = Arc::new(rpc::Client::new(seams.connector.clone()));
        let raft = RaftNode::start(id, store, client.clone(), &config.raft)
            .await
            .map_err(StartError::Raft)?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let inner = Arc::new(Inner {
            id,
            addr: seams.rpc_advertise.clone(),
            config,
            raft,
            client,
            known: Mutex::new(BTreeMap::new()),
            timers: Mutex::new(Timers::default()),
            shutdown_tx: Mutex::new(Some(shutdown_tx)),
            tasks: Mutex::new(Vec::new()),
        });
        let handler: Arc<dyn rpc::Handler> = Arc::new(Handler(inner.clone()));
        let listener = seams.rpc_listener;
        let serve = tokio::spawn(async move {
            let shutdown = async {
                let _ = shutdown_rx.await;
            };
            if let Err(e) = rpc::serve(listener, handler, shutdown).await {
                tracing::error!(error = %e, "server RPC listener failed");
            }
        });
        let form = tokio::spawn(form_cluster(inner.clone()));
        let liveness = tokio::spawn(track_liveness(inner.clone()));
        let ties = tokio::spawn(break_split_votes(inner.clone()));
        inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).extend([serve, form, liveness, ties]);
        tracing::info!(id, addr = %inner.addr, "server started");
        Ok(ServerHandle { inner })
    }
}

/// Runs a complete server agent on plain TCP until `shutdown` resolves, then stops it: Raft and
/// forwarding on `ports.rpc`, the HTTP API on `ports.http`, and the leader's scheduling
/// pipeline. What `orc agent` runs.
pub async fn run_until(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let listen_err = |port: u16| {
        let addr = format!("{}:{port}", config.bind_addr);
        move |source| StartError::Listen { addr, source }
    };
    let seams = Seams::tcp(&config).await.map_err(listen_err(config.ports.rpc))?;
    let http_listener =
        tokio::net::TcpListener::bind((config.bind_addr.as_str(), config.ports.http))
            .await
            .map_err(listen_err(config.ports.http))?;
    let http_addr = http_listener.local_addr().map_err(listen_err(config.ports.http))?;
    let rpc_addr = seams.rpc_advertise.clone();
    let http_config = crate::http::HttpConfig::from_server(&config);
    let handle = Server::start(config, seams).await?;
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let http =
        tokio::spawn(crate::http::serve(http_listener, handle.clone(), http_config, async {
            let _ = http_stopped.await;
        }));
    let pipeline = tokio::spawn(crate::pipeline::run(handle.clone()));
    tracing::info!(rpc = %rpc_addr, http = %http_addr, id = handle.id(), "server agent running");
    shutdown.await;
    tracing::info!("shutting down");
    pipeline.abort();
    let _ = stop_http.send(());
    // Open HTTP keep-alive connections must not hold the shutdown up.
    let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
    handle.shutdown().await;
    Ok(())
}

fn open_sled(dir: &Path) -> Result<SledStore, StartError> {
    // A server restarted in the same process may find the previous instance's files still
    // locked for a moment; `SledStore::open` waits for that.
    Ok(SledStore::open(dir)?)
}

/// A random server ID. The process's hasher keys are random, which is all an ID needs.
fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// The server's identity survives restarts in `data_dir/server/node-id`, so a restarted
/// server rejoins as itself.
fn load_or_create_id(dir: &Path) -> Result<u64, StartError> {
    let path = dir.join("node-id");
    let io = |source| StartError::DataDir { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| io(std::io::Error::other(format!("node-id is not a number: {e}")))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = random_id();
            let tmp = dir.join("node-id.tmp");
            std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

struct Inner {
    id: u64,
    addr: String,
    config: Config,
    raft: RaftNode,
    client: Arc<rpc::Client>,
    /// Servers learned through joins: address → ID.
    known: Mutex<BTreeMap<String, u64>>,
    /// Heartbeat deadlines; armed only while this server leads.
    timers: Mutex<Timers>,
    shutdown_tx: Mutex<Option<oneshot::Sender<()>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A handle on a running server. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Inner>,
}

// ---------------------------------------------------------------------------------------------
// Server-to-server messages (beyond Raft's own).

const HELLO: &str = "server.Hello";
const LEADER: &str = "server.Leader";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    id: u64,
    addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HelloReply {
    id: u64,
    addr: String,
    initialized: bool,
    known: Vec<(String, u64)>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    datacenter: String,
}

/// Work only the leader may do; forwarded there by any server.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum LeaderRequest {
    Write(Command),
    ReadIndex,
    AddVoter { id: u64, addr: String },
    RemoveMember { id: u64 },
    Heartbeat { node_id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum LeaderReply {
    Written { index: u64, outcome: Outcome },
    ReadIndex(u64),
    Done,
    HeartbeatTtl { ttl_ms: u64 },
    UnknownNode,
}

/// Why one attempt at leader work failed.
enum Attempt {
    Propose(ProposeError),
    Rpc(RpcError),
    TimedOut,
}

impl Inner {
    /// Does leader work here, without forwarding (the caller forwards).
    async fn on_leader(&self, req: LeaderRequest) -> Result<LeaderReply, ProposeError> {
        match req {
            LeaderRequest::Write(command) => self
                .raft
                .propose(command)
                .await
                .map(|(index, outcome)| LeaderReply::Written { index, outcome }),
            LeaderRequest::ReadIndex => self.raft.read_index().await.map(LeaderReply::ReadIndex),
            LeaderRequest::AddVoter { id, addr } => {
                self.raft.add_voter(id, &addr).await.map(|()| LeaderReply::Done)
            }
            LeaderRequest::RemoveMember { id } => {
                self.raft.remove_member(id).await.map(|()| LeaderReply::Done)
            }
            LeaderRequest::Heartbeat { node_id } => self.on_heartbeat(node_id).await,
        }
    }

    /// A node's heartbeat, on the leader: marks it ready if it was not, and re-arms its timer.
    async fn on_heartbeat(&self, node_id: String) -> Result<LeaderReply, ProposeError> {
        if self.raft.leader().is_none_or(|m| m.id != self.id) {
            return Err(ProposeError::NotLeader { leader: self.raft.leader() });
        }
        let (status, count) = {
            let state = self.raft.state().read().unwrap_or_else(|e| e.into_inner());
            (state.node(&node_id).map(|n| n.status), state.nodes().count())
        };
        let Some(status) = status else { return Ok(LeaderReply::UnknownNode) };
        if status != NodeStatus::Ready {
            let command = Command::NodeStatus {
                node_id: node_id.clone(),
                status: NodeStatus::Ready,
                status_description: String::new(),
                evals: Vec::new(),
            };
            self.raft.propose(command).await?;
        }
        let heartbeat = self.config.heartbeat();
        let ttl = heartbeat.ttl(&node_id, count);
        self.timers.lock().unwrap_or_else(|e| e.into_inner()).arm(
            &node_id,
            Instant::now(),
            ttl,
            heartbeat.grace,
        );
        Ok(LeaderReply::HeartbeatTtl { ttl_ms: ttl.as_millis() as u64 })
    }

    fn is_leader(&self) -> bool {
        self.raft.leader().is_some_and(|m| m.id == self.id)
    }

    /// Marks a silent node down, with a `node-update` evaluation for every job that has live
    /// allocations on it so the scheduler replaces them.
    async fn mark_down(&self, node_id: &str) {
        let command = {
            let state = self.raft.state().read().unwrap_or_else(|e| e.into_inner());
            let Some(node) = state.node(node_id) else { return };
            if node.status == NodeStatus::Down {
                return;
            }
            let clock = &self.config.clock;
            let now = clock.unix_nanos();
            let mut jobs = BTreeMap::new();
            for alloc in state.allocs_by_node(node_id) {
                if !alloc.is_terminal() {
                    jobs.insert((alloc.namespace.clone(), alloc.job_id.clone()), ());
                }
            }
            let evals = jobs
                .into_keys()
                .map(|(namespace, job_id)| {
                    let job = state.job(&namespace, &job_id);
                    Evaluation {
                        id: clock.uuid(),
                        priority: job.map_or(50, |j| j.priority),
                        job_type: job.map(|j| j.job_type).unwrap_or_default(),
                        triggered_by: TriggeredBy::NodeUpdate,
                        job_id,
                        namespace,
                        node_id: node_id.to_owned(),
                        node_modify_index: node.modify_index,
                        status: EvalStatus::Pending,
                        create_time: now,
                        modify_time: now,
                        ..Evaluation::default()
                    }
                })
                .collect();
            Command::NodeStatus {
                node_id: node_id.to_owned(),
                status: NodeStatus::Down,
                status_description: "node heartbeat missed".into(),
                evals,
            }
        };
        match self.raft.propose(command).await {
            Ok(_) => tracing::warn!(node_id, "node missed its heartbeat; marked down"),
            // Leadership moved on; the new leader re-arms every node's timer.
            Err(e) => tracing::info!(node_id, error = %e, "could not mark node down"),
        }
    }

    /// Runs leader work on whichever server leads, retrying across elections until
    /// `request_timeout`.
    async fn leader_call(&self, req: LeaderRequest) -> Result<LeaderReply, Error> {
        let timeout = self.config.request_timeout;
        let start = Instant::now();
        let mut seen_leader: Option<String> = None;
        loop {
            let remaining = timeout.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(gave_up(seen_leader, timeout));
            }
            let leader = self.raft.leader();
            let attempt = match &leader {
                Some(m) if m.id != self.id => {
                    seen_leader = Some(m.addr.clone());
                    self.remote_leader(&m.addr, &req, remaining).await
                }
                _ => {
                    if leader.is_some() {
                        seen_leader = Some(self.addr.clone());
                    }
                    match tokio::time::timeout(remaining, self.on_leader(req.clone())).await {
                        Ok(reply) => reply.map_err(Attempt::Propose),
                        Err(_) => Err(Attempt::TimedOut),
                    }
                }
            };
            match attempt {
                Ok(reply) => return Ok(reply),
                Err(Attempt::TimedOut) => return Err(gave_up(seen_leader, timeout)),
                Err(Attempt::Propose(ProposeError::Membership(m))) => {
                    return Err(Error::Membership(m))
                }
                Err(Attempt::Propose(ProposeError::Stopped(s))) if leader.is_none() => {
                    return Err(Error::Stopped(s))
                }
                // Not the leader (any more), leader unreachable, or leadership unconfirmed:
                // wait for the election to settle and try again.
                Err(Attempt::Propose(e)) => {
                    tracing::debug!(error = %e, "leader work refused; retrying")
                }
                Err(Attempt::Rpc(e)) => tracing::debug!(error = %e, "forwarding failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
        }
    }

    async fn remote_leader(
        &self,
        addr: &str,
        req: &LeaderRequest,
        timeout: Duration,
    ) -> Result<LeaderReply, Attempt> {
        let reply = self
            .client
            .call(addr, LEADER, Bytes::from(codec::encode(req)), timeout)
            .await
            .map_err(|e| match e {
                RpcError::Timeout { .. } => Attempt::TimedOut,
                e => Attempt::Rpc(e),
            })?;
        let decoded: Result<LeaderReply, ProposeError> = codec::decode(&reply).map_err(|e| {
            Attempt::Rpc(RpcError::Remote {
                addr: addr.to_owned(),
                method: LEADER.to_owned(),
                message: format!("undecodable reply: {e}"),
            })
        })?;
        decoded.map_err(Attempt::Propose)
    }

    async fn hello(&self, addr: &str, timeout: Duration) -> Result<HelloReply, RpcError> {
        let req = Hello { id: self.id, addr: self.addr.clone() };
        let reply =
            self.client.call(addr, HELLO, Bytes::from(codec::encode(&req)), timeout).await?;
        codec::decode(&reply).map_err(|e| RpcError::Remote {
            addr: addr.to_owned(),
            method: HELLO.to_owned(),
            message: format!("undecodable reply: {e}"),
        })
    }

    fn learn(&self, addr: String, id: u64) {
        if addr != self.addr {
            self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, id);
        }
    }
}

fn gave_up(seen_leader: Option<String>, timeout: Duration) -> Error {
    match seen_leader {
        Some(leader) => Error::NoQuorum { leader, waited_ms: timeout.as_millis() },
        None => Error::NoLeader { waited_ms: timeout.as_millis() },
    }
}

struct Handler(Arc<Inner>);

impl rpc::Handler for Handler {
    fn is_stream(&self, method: &str) -> bool {
        crate::node_endpoint::is_stream(method)
    }

    fn stream(
        &self,
        method: String,
        body: Bytes,
    ) -> BoxFuture<'static, Result<rpc::MessageStream, String>> {
        crate::node_endpoint::open_stream(ServerHandle { inner: self.0.clone() }, method, body)
    }

    fn handle(&self, method: String, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>> {
        let inner = self.0.clone();
        if method.starts_with("raft.") {
            return inner.raft.handle_rpc(&method, body);
        }
        if method.starts_with("node.") {
            return crate::node_endpoint::handle(ServerHandle { inner }, method, body);
        }
        Box::pin(async move {
            match method.as_str() {
                HELLO => {
                    let hello: Hello = codec::decode(&body).map_err(|e| e.to_string())?;
                    inner.learn(hello.addr, hello.id);
                    let known = inner
                        .known
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(a, i)| (a.clone(), *i))
                        .collect();
                    let reply = HelloReply {
                        id: inner.id,
                        addr: inner.addr.clone(),
                        initialized: inner.raft.is_initialized().await,
                        known,
                        name: inner.config.name.clone(),
                        region: inner.config.region.clone(),
                        datacenter: inner.config.datacenter.clone(),
                    };
                    Ok(Bytes::from(codec::encode(&reply)))
                }
                LEADER => {
                    let req: LeaderRequest = codec::decode(&body).map_err(|e| e.to_string())?;
                    let reply = inner.on_leader(req).await;
                    Ok(Bytes::from(codec::encode(&reply)))
                }
                other => Err(format!("unknown method {other}")),
            }
        })
    }
}

/// On the leader, declares nodes down once they miss their heartbeat. A server that becomes
/// leader arms every live node's timer afresh with one TTL plus grace; one that loses
/// leadership forgets its timers.
async fn track_liveness(inner: Arc<Inner>) {
    let mut was_leader = false;
    loop {
        let leader = inner.is_leader();
        if leader && !was_leader {
            let heartbeat = inner.config.heartbeat();
            let live: Vec<String> = {
                let state = inner.raft.state().read().unwrap_or_else(|e| e.into_inner());
                state
                    .nodes()
                    .filter(|n| n.status != NodeStatus::Down)
                    .map(|n| n.id.clone())
                    .collect()
            };
            let count = live.len();
            let now = Instant::now();
            let mut timers = inner.timers.lock().unwrap_or_else(|e| e.into_inner());
            timers.clear();
            for id in &live {
                timers.arm(id, now, heartbeat.ttl(id, count), heartbeat.grace);
            }
            tracing::info!(nodes = count, "leading: heartbeat timers armed");
        } else if !leader && was_leader {
            inner.timers.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        was_leader = leader;
        if leader {
            let expired =
                inner.timers.lock().unwrap_or_else(|e| e.into_inner()).expire(Instant::now());
            for node_id in expired {
                inner.mark_down(&node_id).await;
            }
        }
        // Deadlines are seconds apart in practice; checking ten times a second is plenty.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Breaks split votes that would repeat for good. openraft 0.9 draws a server's election
/// timeout once, at start, and checks it on a tick of 1.5 heartbeat intervals; two servers
/// left without a leader (the third down or replaced) whose timeouts end on the same tick
/// both stand in every term, vote for themselves, and never elect (seen in the simulator,
/// whose servers start on one instant: seeds 1001 and 1038 with `--ci --lost-state`). A
/// server that has seen no leader for two checks a maximum election timeout apart stands
/// once more after a random delay within one election timeout (drawn from `clock::ThreadRng`,
/// seeded in a simulation), so that one of the two asks first.
async fn break_split_votes(inner: Arc<Inner>) {
    use rand08::RngCore;
    let max = inner.config.raft.election_timeout_max_ms.max(1);
    let mut leaderless = 0u32;
    loop {
        tokio::time::sleep(Duration::from_millis(max)).await;
        let stuck = inner.raft.leader().is_none() && inner.raft.is_voter();
        leaderless = if stuck { leaderless + 1 } else { 0 };
        if leaderless < 2 {
            continue;
        }
        let jitter = crate::clock::ThreadRng.next_u64() % max;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        if inner.raft.leader().is_none() {
            tracing::info!(id = inner.id, "no leader for a while; standing for election");
            if let Err(e) = inner.raft.elect().await {
                tracing::debug!(error = %e, "could not stand for election");
            }
        }
        leaderless = 0;
    }
}

/// Retry rounds a server waits in a configuration not yet committed with it before asking the
/// cluster to add it again.
const UNCOMMITTED_ROUNDS: u32 = 5;

/// Joins or bootstraps the cluster, retrying `retry_join` until this server is part of a
/// committed Raft configuration. The cluster bootstraps once `bootstrap_expect` servers know of each other;
/// exactly one of them, the one with the lowest address, initialises it with all of them, so
/// two servers can never bootstrap two clusters from the same set.
async fn form_cluster(inner: Arc<Inner>) {
    let expect = inner.config.server.bootstrap_expect.max(1) as usize;
    let joins: Vec<String> =
        inner.config.join_addrs().into_iter().filter(|a| *a != inner.addr).collect();
    let interval = inner.config.server.server_join.retry_interval;
    let retry_max = inner.config.server.server_join.retry_max;
    let mut attempt = 0u32;
    let mut uncommitted_rounds = 0u32;
    loop {
        let initialized = inner.raft.is_initialized().await;
        if initialized {
            if inner.raft.in_committed_configuration() {
                tracing::info!(id = inner.id, "server is part of a cluster configuration");
                return;
            }
            // A configuration is here but not committed with this server in it: a bootstrap
            // whose first election is under way, or a join cut short (the leader that began
            // adding this server lost leadership before committing it, and the cluster still
            // names whoever had this address before). Give it a few rounds, then ask again.
            uncommitted_rounds += 1;
            if uncommitted_rounds < UNCOMMITTED_ROUNDS {
                tokio::time::sleep(interval).await;
                continue;
            }
            uncommitted_rounds = 0;
        }
        let mut targets = joins.clone();
        targets.extend(inner.known.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned());
        targets.sort();
        targets.dedup();
        let mut initialized_peer = None;
        for addr in &targets {
            match inner.hello(addr, Duration::from_secs(2)).await {
                Ok(reply) => {
                    inner.learn(reply.addr.clone(), reply.id);
                    for (a, i) in reply.known {
                        inner.learn(a, i);
                    }
                    if reply.initialized {
                        initialized_peer = Some(reply.addr);
                    }
                }
                Err(e) => tracing::debug!(addr, error = %e, "join attempt failed"),
            }
        }
        if let Some(peer) = initialized_peer {
            // A cluster exists: ask it (through any member, which forwards to the leader) to
            // add this server. Being added replicates the configuration here.
            let req = LeaderRequest::AddVoter { id: inner.id, addr: inner.addr.clone() };
            let mut reply = inner.remote_leader(&peer, &req, Duration::from_secs(10)).await;
            // A member that does not lead names the leader: ask it there (this server is not
            // in the configuration yet, so it cannot learn the leader from Raft).
            if let Err(Attempt::Propose(ProposeError::NotLeader { leader: Some(leader) })) = &reply
            {
                if leader.addr != peer {
                    let at = leader.addr.clone();
                    reply = inner.remote_leader(&at, &req, Duration::from_secs(10)).await;
                }
            }
            match reply {
                Ok(_) => tracing::info!(peer, "joined the cluster"),
                Err(Attempt::Propose(e)) => {
                    tracing::info!(peer, error = %e, "join refused; retrying")
                }
                Err(_) => tracing::info!(peer, "join request did not complete; retrying"),
            }
        } else if !initialized {
            let mut candidates: BTreeMap<String, u64> =
                inner.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
            candidates.insert(inner.addr.clone(), inner.id);
            if candidates.len() >= expect {
                if candidates.keys().next() == Some(&inner.addr) {
                    let members: BTreeMap<u64, String> =
                        candidates.iter().map(|(a, i)| (*i, a.clone())).collect();
                    match inner.raft.initialize(&members).await {
                        Ok(()) => tracing::info!(?members, "bootstrapped the cluster"),
                        Err(e) => tracing::warn!(error = %e, "bootstrap failed; retrying"),
                    }
                    continue;
                }
            } else {
                tracing::info!(
                    known = candidates.len(),
                    expect,
                    "waiting for servers to bootstrap"
                );
            }
        }
        attempt += 1;
        if retry_max > 0 && attempt >= retry_max {
            tracing::error!(attempt, "giving up joining the cluster (retry_max reached)");
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

impl ServerHandle {
    /// This server's Raft ID.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The configuration this server runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The wall clock and ID generator everything this server stamps or invents reads.
    pub fn clock(&self) -> &crate::clock::Clock {
        &self.inner.config.clock
    }

    /// The live state, for the pipeline's incremental cluster view, which must read it without
    /// an await between the read and its own update.
    pub(crate) fn state_lock(&self) -> &Arc<std::sync::RwLock<State>> {
        self.inner.raft.state()
    }

    /// The address peers reach this server at.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Commits `command` through the leader (forwarding if this server does not lead) and
    /// returns once it is committed by a quorum and applied on the leader.
    pub async fn write(&self, command: Command) -> Result<Written, Error> {
        match self.inner.leader_call(LeaderRequest::Write(command)).await? {
            LeaderReply::Written { index, outcome } => Ok(Written { index, outcome }),
            other => Err(Error::Stopped(format!("leader answered a write with {other:?}"))),
        }
    }

    /// Commits `command` through this server's own Raft, only while it leads: never forwarded,
    /// never retried elsewhere. The leader's own work (plan results, evaluation updates, drain
    /// steps) goes through here, as Nomad's leader applies its own writes: a write a deposed
    /// leader made must not land in a newer leader's term, whose pipeline may already have done
    /// the same work (two plans of one evaluation committed: the simulator's small seed 1109).
    /// An entry proposed here either is in the log of every later leader, which applies it
    /// before its pipeline starts ([`ServerHandle::leader_barrier`]), or is dropped.
    pub async fn write_as_leader(&self, command: Command) -> Result<Written, Error> {
        let timeout = self.inner.config.request_timeout;
        let call = self.inner.on_leader(LeaderRequest::Write(command));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(LeaderReply::Written { index, outcome })) => Ok(Written { index, outcome }),
            Ok(Ok(other)) => Err(Error::Stopped(format!("a write answered with {other:?}"))),
            Ok(Err(ProposeError::Stopped(s))) => Err(Error::Stopped(s)),
            Ok(Err(e)) => Err(Error::NotLeader(e.to_string())),
            Err(_) => Err(gave_up(Some(self.inner.addr.clone()), timeout)),
        }
    }

    /// On a new leader, before its pipeline reads the state: confirms leadership with a quorum
    /// and waits until everything committed before this term (the previous leader's last
    /// writes included) is applied here. Returns the applied index.
    pub async fn leader_barrier(&self) -> Result<u64, Error> {
        let timeout = self.inner.config.request_timeout;
        let index = match tokio::time::timeout(timeout, self.inner.raft.read_index()).await {
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(Error::NotLeader(e.to_string())),
            Err(_) => return Err(gave_up(Some(self.inner.addr.clone()), timeout)),
        };
        let applied = self.wait_for_index(index, timeout).await;
        if applied < index {
            return Err(gave_up(Some(self.inner.addr.clone()), timeout));
        }
        Ok(applied)
    }

    /// Reads the state with the requested consistency.
    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&State) -> T,
    ) -> Result<T, Error> {
        if consistency == Consistency::Consistent {
            let start = Instant::now();
            let index = match self.inner.leader_call(LeaderRequest::ReadIndex).await? {
                LeaderReply::ReadIndex(i) => i,
                other => {
                    return Err(Error::Stopped(format!("leader answered a read with {other:?}")))
                }
            };
            let remaining = self.inner.config.request_timeout.saturating_sub(start.elapsed());
            if self.wait_for_index(index, remaining).await < index {
                return Err(Error::NoQuorum {
                    leader: self.leader().map(|m| m.addr).unwrap_or_default(),
                    waited_ms: self.inner.config.request_timeout.as_millis(),
                });
            }
        }
        let state = self.inner.raft.state().read().unwrap_or_else(|e| e.into_inner());
        Ok(f(&state))
    }

    /// Waits until this server has applied log index `index`, or `timeout` passes. Returns the
    /// applied index, which is below `index` only on timeout. The basis of blocking queries.
    pub async fn wait_for_index(&self, index: u64, timeout: Duration) -> u64 {
        let mut applied = self.inner.raft.applied();
        let start = Instant::now();
        let wait = applied.wait_for(|a| *a >= index);
        let closed = matches!(tokio::time::timeout(timeout, wait).await, Ok(Err(_)));
        if closed {
            // Raft has stopped (a store failure, or shutdown): nothing will be applied again.
            // Waiting out the timeout keeps callers that poll in a loop (the pipeline, blocking
            // queries) from spinning on an instant return.
            tokio::time::sleep(timeout.saturating_sub(start.elapsed())).await;
        }
        let current = *applied.borrow();
        current
    }

    /// The last log index applied on this server.
    pub fn applied_index(&self) -> u64 {
        *self.inner.raft.applied().borrow()
    }

    /// Milliseconds since this server last heard from the leader (0 on the leader).
    pub fn last_contact_ms(&self) -> u64 {
        self.inner.raft.last_contact_ms()
    }

    /// The leader this server knows of.
    pub fn leader(&self) -> Option<Member> {
        self.inner.raft.leader()
    }

    /// This server's current Raft term (the simulator checks one leader per term).
    pub fn term(&self) -> u64 {
        self.inner.raft.term()
    }

    /// True if this server is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader().is_some_and(|m| m.id == self.inner.id)
    }

    /// The Raft configuration as this server knows it (`orc operator raft list-peers`).
    pub fn peers(&self) -> Vec<Member> {
        self.inner.raft.members()
    }

    /// The servers with their liveness, probed from here (`orc server members`).
    pub async fn members(&self) -> Vec<ServerMember> {
        let leader = self.leader().map(|m| m.id);
        let mut out = Vec::new();
        for m in self.peers() {
            let (status, name, region, datacenter) = if m.id == self.inner.id {
                let c = &self.inner.config;
                (MemberStatus::Alive, c.name.clone(), c.region.clone(), c.datacenter.clone())
            } else {
                match self.inner.hello(&m.addr, Duration::from_millis(500)).await {
                    Ok(r) => (MemberStatus::Alive, r.name, r.region, r.datacenter),
                    Err(_) => (MemberStatus::Failed, String::new(), String::new(), String::new()),
                }
            };
            out.push(ServerMember {
                id: m.id,
                addr: m.addr,
                name,
                region,
                datacenter,
                voter: m.voter,
                leader: leader == Some(m.id),
                status,
            });
        }
        out
    }

    /// Adds the server listening at `addr` as a voter.
    pub async fn add_peer(&self, addr: &str) -> Result<(), Error> {
        let reply = self
            .inner
            .hello(addr, Duration::from_secs(2))
            .await
            .map_err(|e| Error::UnknownServer(e.to_string()))?;
        self.inner.leader_call(LeaderRequest::AddVoter { id: reply.id, addr: reply.addr }).await?;
        Ok(())
    }

    /// Removes a server, named by ID or address, from the configuration
    /// (`orc operator raft remove-peer`).
    pub async fn remove_peer(&self, id_or_addr: &str) -> Result<(), Error> {
        let member = self
            .peers()
            .into_iter()
            .find(|m| m.addr == id_or_addr || m.id.to_string() == id_or_addr)
            .ok_or_else(|| {
                Error::UnknownServer(format!("no server {id_or_addr} in the configuration"))
            })?;
        self.inner.leader_call(LeaderRequest::RemoveMember { id: member.id }).await?;
        Ok(())
    }

    /// Registers (or re-registers) a client node and starts tracking its heartbeats. Returns the
    /// TTL within which the node must heartbeat again.
    pub async fn register_node(&self, node: Node) -> Result<Duration, Error> {
        let node_id = node.id.clone();
        self.write(Command::NodeRegister { node: Box::new(node) }).await?;
        self.heartbeat(&node_id).await
    }

    /// A client's heartbeat (Nomad's `Node.UpdateStatus`): forwarded to the leader, which marks
    /// the node ready if needed and re-arms its timer. Returns the next TTL.
    pub async fn heartbeat(&self, node_id: &str) -> Result<Duration, Error> {
        let req = LeaderRequest::Heartbeat { node_id: node_id.to_owned() };
        match self.inner.leader_call(req).await? {
            LeaderReply::HeartbeatTtl { ttl_ms } => Ok(Duration::from_millis(ttl_ms)),
            LeaderReply::UnknownNode => Err(Error::UnknownNode(node_id.to_owned())),
            other => Err(Error::Stopped(format!("leader answered a heartbeat with {other:?}"))),
        }
    }

    /// Stops the server: Raft, the RPC listener (freeing its port) and background tasks.
    pub async fn shutdown(&self) {
        self.inner.raft.shutdown().await;
        if let Some(tx) = self.inner.shutdown_tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
        let tasks: Vec<JoinHandle<()>> =
            self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
        for mut task in tasks {
            // The listener shuts down gracefully; a peer holding a connection open must not
            // keep a stopped server alive.
            if tokio::time::timeout(Duration::from_millis(500), &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}
