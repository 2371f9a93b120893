//! The client-agent RPCs every server answers: node register, heartbeat, the watch of a node's
//! allocations (a server-streaming call on the leader, and the older blocking query), and batched
//! allocation status updates; plus the caller side agents use.
//!
//! These ride the same gRPC service as server-to-server traffic (method names `node.*`), with
//! JSON bodies through `codec`. Writes and heartbeats are forwarded to the leader by
//! `ServerHandle`; the allocation watch is a blocking query answered from the server's own
//! (possibly stale) state, as Nomad's `Node.GetClientAllocs` is. This module does not schedule
//! and does not know what the agent does with its allocations.

use crate::codec;
use crate::rpc::{self, RpcError};
use crate::server::{Consistency, Error, ServerHandle};
use crate::state::{AllocClientUpdate, Command, Table};
use crate::transport::Connector;
use bytes::Bytes;
use futures::future::BoxFuture;
use model::{Allocation, EvalStatus, Evaluation, Job, Node, TriggeredBy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
// Tokio's clock, not std's: the simulator (tests/sim) drives it, so timeouts and heartbeat
// TTLs follow simulated time. Outside a paused runtime it is the same monotonic clock.
use tokio::time::Instant;

/// Method names, all under the `node.` prefix the server routes here.
pub const REGISTER: &str = "node.Register";
pub const HEARTBEAT: &str = "node.Heartbeat";
pub const ALLOCS: &str = "node.Allocs";
pub const UPDATE_ALLOCS: &str = "node.UpdateAllocs";
pub const UPSERT_SERVICES: &str = "node.UpsertServices";
/// A blocking read of one service's registrations (templates' `nomadService`).
pub const SERVICES: &str = "node.Services";
/// Server-streaming: the node's allocations, sent whenever they change, with keepalives.
pub const WATCH_ALLOCS: &str = "node.WatchAllocs";

/// The bounds of [`WatchRequest::keepalive_ms`].
const KEEPALIVE_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// `node.WatchAllocs` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchRequest {
    pub node_id: String,
    /// Resume point: the first message comes once the allocation table's index exceeds this
    /// (0, or an index ahead of the server's, which means its state was reset: at once).
    pub min_index: u64,
    /// How often the server sends a keepalive when nothing changes (clamped to 100 ms–60 s).
    pub keepalive_ms: u64,
}

/// One message of `node.WatchAllocs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WatchMessage {
    /// The node's allocations changed (or the stream just opened).
    Allocs(AllocsReply),
    /// Nothing changed; the server is still the leader of a quorum at `index`.
    Keepalive { index: u64 },
}

/// The prefix of the refusal a follower answers `node.WatchAllocs` with; the leader's RPC
/// address follows it (empty when no leader is known).
pub const NOT_LEADER: &str = "not the leader; leader: ";

/// `node.UpsertServices`: the agent's registrations in orc's own service catalogue (with their
/// health), and the IDs of registrations to remove.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ServicesRequest {
    pub upserts: Vec<model::ServiceRegistration>,
    pub deletes: Vec<String>,
}

/// `node.Services`: the registrations of service `name` in `namespace`, answered once the
/// service table's index exceeds `min_index` (0: at once) or after `wait_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ServiceReadRequest {
    pub namespace: String,
    pub name: String,
    pub min_index: u64,
    pub wait_ms: u64,
}

/// Reply to `node.Services`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ServiceReadReply {
    pub index: u64,
    pub services: Vec<model::ServiceRegistration>,
}

/// `node.Register` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub node: Node,
}

/// Reply to a register or heartbeat: when the next heartbeat is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TtlReply {
    pub ttl_ms: u64,
}

/// `node.Heartbeat` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub node_id: String,
}

/// `node.Allocs`: a blocking query for the allocations placed on a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocsRequest {
    pub node_id: String,
    /// Answer once the allocation table's index exceeds this (0 answers at once).
    pub min_index: u64,
    /// How long to hold the query when nothing changed.
    pub wait_ms: u64,
}

/// The node's allocations with the job version each one runs.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AllocsReply {
    pub index: u64,
    pub allocs: Vec<Allocation>,
    /// Keyed by `"<namespace>/<job id>@<version>"`, see [`job_key`].
    pub jobs: BTreeMap<String, Job>,
}

/// The key of the job version an allocation runs, in [`AllocsReply::jobs`].
pub fn job_key(alloc: &Allocation) -> String {
    format!("{}/{}@{}", alloc.namespace, alloc.job_id, alloc.job_version)
}

/// `node.UpdateAllocs`: what the agent observed, batched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateAllocsRequest {
    pub updates: Vec<AllocClientUpdate>,
}

/// Reply to an update: the index it was committed at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexReply {
    pub index: u64,
}

/// True for the `node.*` methods that are server-streaming.
pub fn is_stream(method: &str) -> bool {
    method == WATCH_ALLOCS
}

/// Opens one streaming `node.*` call on `server`.
pub fn open_stream(
    server: ServerHandle,
    method: String,
    body: Bytes,
) -> BoxFuture<'static, Result<crate::rpc::MessageStream, String>> {
    Box::pin(async move {
        if method != WATCH_ALLOCS {
            return Err(format!("unknown stream {method}"));
        }
        let req: WatchRequest = decode(&body)?;
        // Only the leader serves the watch: a follower cut off from the cluster would otherwise
        // keep an agent on a state that no longer moves. The agent follows the hint.
        if !server.is_leader() {
            let leader = server.leader().map(|m| m.addr).unwrap_or_default();
            return Err(format!("{NOT_LEADER}{leader}"));
        }
        let keepalive = Duration::from_millis(
            req.keepalive_ms.clamp(*KEEPALIVE_MS.start(), *KEEPALIVE_MS.end()),
        );
        let watch = Watch {
            server,
            node_id: req.node_id,
            min_index: req.min_index,
            keepalive,
            sent: None,
            next_keepalive: Instant::now() + keepalive,
            done: false,
        };
        Ok(Box::pin(futures::stream::unfold(watch, Watch::next)) as crate::rpc::MessageStream)
    })
}

/// The state of one `node.WatchAllocs` stream on the leader.
struct Watch {
    server: ServerHandle,
    node_id: String,
    /// The allocation table's index last looked at.
    min_index: u64,
    keepalive: Duration,
    /// What was last sent: each allocation's ID and modify index.
    sent: Option<Vec<(String, u64)>>,
    next_keepalive: Instant,
    done: bool,
}

impl Watch {
    async fn next(mut self) -> Option<(Result<Bytes, String>, Watch)> {
        if self.done {
            return None;
        }
        loop {
            if !self.server.is_leader() {
                self.done = true;
                return Some((Err("this server lost the leadership".into()), self));
            }
            let index = self
                .server
                .read(Consistency::Stale, |s| s.table_index(Table::Allocs))
                .await
                .unwrap_or(0);
            let reset = self.min_index > index;
            if index > self.min_index || reset || (self.min_index == 0 && self.sent.is_none()) {
                self.min_index = index;
                let reply = match node_allocs_now(&self.server, &self.node_id).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.done = true;
                        return Some((Err(e.to_string()), self));
                    }
                };
                let signature: Vec<(String, u64)> =
                    reply.allocs.iter().map(|a| (a.id.clone(), a.modify_index)).collect();
                if self.sent.as_ref() != Some(&signature) {
                    self.sent = Some(signature);
                    self.next_keepalive = Instant::now() + self.keepalive;
                    return Some((Ok(encode(&WatchMessage::Allocs(reply))), self));
                }
            }
            let now = Instant::now();
            if now >= self.next_keepalive {
                self.next_keepalive = now + self.keepalive;
                // A leader cut off from its quorum still believes it leads; a read-index
                // round proves it does, or ends the stream so the agent finds the new one.
                if let Err(e) = self.server.read(Consistency::Consistent, |_| ()).await {
                    self.done = true;
                    return Some((Err(e.to_string()), self));
                }
                return Some((Ok(encode(&WatchMessage::Keepalive { index })), self));
            }
            let applied = self.server.applied_index();
            self.server.wait_for_index(applied + 1, self.next_keepalive - now).await;
        }
    }
}

/// Serves one `node.*` call on `server`.
pub fn handle(
    server: ServerHandle,
    method: String,
    body: Bytes,
) -> BoxFuture<'static, Result<Bytes, String>> {
    Box::pin(async move {
        let reply = match method.as_str() {
            REGISTER => {
                let req: RegisterRequest = decode(&body)?;
                let ttl = server.register_node(req.node).await.map_err(|e| e.to_string())?;
                encode(&TtlReply { ttl_ms: ttl.as_millis() as u64 })
            }
            HEARTBEAT => {
                let req: HeartbeatRequest = decode(&body)?;
                let ttl = server.heartbeat(&req.node_id).await.map_err(|e| e.to_string())?;
                encode(&TtlReply { ttl_ms: ttl.as_millis() as u64 })
            }
            ALLOCS => {
                let req: AllocsRequest = decode(&body)?;
                encode(&node_allocs(&server, &req).await.map_err(|e| e.to_string())?)
            }
            UPDATE_ALLOCS => {
                let req: UpdateAllocsRequest = decode(&body)?;
                let index = update_allocs(&server, req.updates).await.map_err(|e| e.to_string())?;
                encode(&IndexReply { index })
            }
            UPSERT_SERVICES => {
                let req: ServicesRequest = decode(&body)?;
                let index = upsert_services(&server, req).await.map_err(|e| e.to_string())?;
                encode(&IndexReply { index })
            }
            SERVICES => {
                let req: ServiceReadRequest = decode(&body)?;
                encode(&read_services(&server, &req).await.map_err(|e| e.to_string())?)
            }
            other => return Err(format!("unknown method {other}")),
        };
        Ok(reply)
    })
}

/// Answers `node.Services` from this server's (possibly stale) state, as a blocking query on
/// the service table.
async fn read_services(
    server: &ServerHandle,
    req: &ServiceReadRequest,
) -> Result<ServiceReadReply, Error> {
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(300_000));
    loop {
        let reply = server
            .read(Consistency::Stale, |s| ServiceReadReply {
                index: s.table_index(Table::Services),
                services: s
                    .services()
                    .filter(|r| r.service_name == req.name && r.namespace == req.namespace)
                    .cloned()
                    .collect(),
            })
            .await?;
        let now = Instant::now();
        if reply.index > req.min_index || req.min_index == 0 || now >= deadline {
            return Ok(reply);
        }
        let applied = server.applied_index();
        server.wait_for_index(applied + 1, deadline - now).await;
    }
}

/// Commits service upserts, then deletions; returns the last index written.
async fn upsert_services(server: &ServerHandle, req: ServicesRequest) -> Result<u64, Error> {
    let mut index = 0;
    if !req.upserts.is_empty() {
        index = server.write(Command::ServiceRegister { services: req.upserts }).await?.index;
    }
    if !req.deletes.is_empty() {
        index = server.write(Command::ServiceDeregister { ids: req.deletes }).await?.index;
    }
    Ok(index)
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    codec::decode(body).map_err(|e| e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(codec::encode(value))
}

/// Answers when the allocation table moved past `min_index`, or after `wait_ms` with what is
/// there. Reads are stale: any server answers, and the agent only needs eventual delivery.
async fn node_allocs(server: &ServerHandle, req: &AllocsRequest) -> Result<AllocsReply, Error> {
    let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(300_000));
    loop {
        let index = server.read(Consistency::Stale, |s| s.table_index(Table::Allocs)).await?;
        let now = Instant::now();
        if index > req.min_index || req.min_index == 0 || now >= deadline {
            return node_allocs_now(server, &req.node_id).await;
        }
        let applied = server.applied_index();
        server.wait_for_index(applied + 1, deadline - now).await;
    }
}

/// The node's allocations and the job versions they run, as this server has them now.
async fn node_allocs_now(server: &ServerHandle, node_id: &str) -> Result<AllocsReply, Error> {
    server
        .read(Consistency::Stale, |s| {
            let mut reply =
                AllocsReply { index: s.table_index(Table::Allocs), ..Default::default() };
            for alloc in s.allocs_by_node(node_id) {
                let key = job_key(alloc);
                if let std::collections::btree_map::Entry::Vacant(slot) = reply.jobs.entry(key) {
                    let job = s
                        .job_versions(&alloc.namespace, &alloc.job_id)
                        .into_iter()
                        .find(|j| j.version == alloc.job_version)
                        .or_else(|| s.job(&alloc.namespace, &alloc.job_id));
                    if let Some(job) = job {
                        slot.insert(job.clone());
                    }
                }
                reply.allocs.push(alloc.clone());
            }
            reply
        })
        .await
}

/// Commits the agent's reports. An allocation that turned `failed` gets an `alloc-failure`
/// evaluation for its job, which is how the scheduler learns to reschedule it.
async fn update_allocs(
    server: &ServerHandle,
    updates: Vec<AllocClientUpdate>,
) -> Result<u64, Error> {
    let clock = server.clock().clone();
    let evals = server
        .read(Consistency::Stale, |s| {
            let mut evals: BTreeMap<(String, String), Evaluation> = BTreeMap::new();
            for u in &updates {
                if u.client_status != model::ClientStatus::Failed {
                    continue;
                }
                let Some(alloc) = s.alloc(&u.alloc_id) else { continue };
                // Reported failed twice (a retried batch) must not reschedule twice.
                if alloc.client_status == model::ClientStatus::Failed {
                    continue;
                }
                let job = s.job(&alloc.namespace, &alloc.job_id);
                let key = (alloc.namespace.clone(), alloc.job_id.clone());
                evals.entry(key).or_insert_with(|| Evaluation {
                    id: clock.uuid(),
                    namespace: alloc.namespace.clone(),
                    priority: job.map_or(50, |j| j.priority),
                    job_type: job.map(|j| j.job_type).unwrap_or_default(),
                    triggered_by: TriggeredBy::AllocFailure,
                    job_id: alloc.job_id.clone(),
                    status: EvalStatus::Pending,
                    create_time: u.modify_time,
                    modify_time: u.modify_time,
                    ..Evaluation::default()
                });
            }
            evals.into_values().collect::<Vec<_>>()
        })
        .await?;
    let written = server.write(Command::AllocClientUpdate { updates, evals }).await?;
    Ok(written.index)
}

/// Decodes a `node.WatchAllocs` stream, drops keepalives, and ends it with an error after three
/// keepalive periods of silence.
fn watch_stream(
    stream: futures::stream::BoxStream<'static, Result<Bytes, RpcError>>,
    client: Arc<rpc::Client>,
    addr: String,
    keepalive: Duration,
) -> futures::stream::BoxStream<'static, Result<AllocsReply, NodeRpcError>> {
    use futures::StreamExt;
    let silence = keepalive.clamp(
        Duration::from_millis(*KEEPALIVE_MS.start()),
        Duration::from_millis(*KEEPALIVE_MS.end()),
    ) * 3
        // The leader's keepalive waits on a read-index round, bounded by its request timeout.
        + Duration::from_secs(10);
    let state = (stream, client, addr, false);
    Box::pin(futures::stream::unfold(state, move |(mut stream, client, addr, done)| async move {
        if done {
            return None;
        }
        loop {
            let item = match tokio::time::timeout(silence, stream.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => return None,
                Err(_) => {
                    client.forget(&addr);
                    let e = NodeRpcError::Unreachable(format!(
                        "{addr}: no message on the allocation watch within {} ms",
                        silence.as_millis()
                    ));
                    return Some((Err(e), (stream, client, addr, true)));
                }
            };
            let message = match item {
                Ok(bytes) => codec::decode::<WatchMessage>(&bytes)
                    .map_err(|e| NodeRpcError::Remote(e.to_string())),
                Err(RpcError::Remote { message, .. }) => Err(NodeRpcError::Remote(message)),
                Err(e) => Err(NodeRpcError::Unreachable(e.to_string())),
            };
            match message {
                Ok(WatchMessage::Keepalive { .. }) => continue,
                Ok(WatchMessage::Allocs(reply)) => {
                    return Some((Ok(reply), (stream, client, addr, false)))
                }
                Err(e) => return Some((Err(e), (stream, client, addr, true))),
            }
        }
    }))
}

/// Why an agent's call to the servers failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeRpcError {
    /// No server answered; the agent keeps retrying with backoff.
    #[error("no server reachable: {0}")]
    Unreachable(String),
    /// A server answered with an error.
    #[error("server refused: {0}")]
    Remote(String),
}

/// The agent's side: calls `node.*` on the configured servers, moving to the next server when
/// one is unreachable. Any server answers every call (writes are forwarded to the leader).
pub struct NodeClient {
    client: Arc<rpc::Client>,
    servers: Vec<String>,
    /// Index into `servers` of the one that answered last.
    current: Mutex<usize>,
}

impl NodeClient {
    /// A client for the servers at `servers` (`host:port` of their RPC listeners).
    pub fn new(servers: Vec<String>, connector: Arc<dyn Connector>) -> Self {
        NodeClient {
            client: Arc::new(rpc::Client::new(connector)),
            servers,
            current: Mutex::new(0),
        }
    }

    async fn call<Req: Serialize, Rep: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Rep, NodeRpcError> {
        if self.servers.is_empty() {
            return Err(NodeRpcError::Unreachable("no servers configured".into()));
        }
        let body = encode(req);
        let start = *self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for step in 0..self.servers.len() {
            let i = (start + step) % self.servers.len();
            let addr = &self.servers[i];
            match self.client.call(addr, method, body.clone(), timeout).await {
                Ok(bytes) => {
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = i;
                    return codec::decode(&bytes).map_err(|e| NodeRpcError::Remote(e.to_string()));
                }
                Err(RpcError::Remote { message, .. }) => {
                    // "no leader" and "no quorum" are worth another server's try; anything
                    // else is the answer.
                    if message.contains("no cluster leader") || message.contains("no quorum") {
                        last = message;
                        continue;
                    }
                    return Err(NodeRpcError::Remote(message));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(NodeRpcError::Unreachable(last))
    }

    /// Registers the node; returns the heartbeat TTL.
    pub async fn register(&self, node: &Node) -> Result<Duration, NodeRpcError> {
        let reply: TtlReply = self
            .call(REGISTER, &RegisterRequest { node: node.clone() }, Duration::from_secs(10))
            .await?;
        Ok(Duration::from_millis(reply.ttl_ms))
    }

    /// Heartbeats; returns the next TTL.
    pub async fn heartbeat(&self, node_id: &str) -> Result<Duration, NodeRpcError> {
        let req = HeartbeatRequest { node_id: node_id.to_owned() };
        let reply: TtlReply = self.call(HEARTBEAT, &req, Duration::from_secs(10)).await?;
        Ok(Duration::from_millis(reply.ttl_ms))
    }

    /// Waits up to `wait` for the node's allocations to change past `min_index`.
    pub async fn allocs(
        &self,
        node_id: &str,
        min_index: u64,
        wait: Duration,
    ) -> Result<AllocsReply, NodeRpcError> {
        let req = AllocsRequest {
            node_id: node_id.to_owned(),
            min_index,
            wait_ms: wait.as_millis() as u64,
        };
        self.call(ALLOCS, &req, wait + Duration::from_secs(10)).await
    }

    /// Opens `node.WatchAllocs` on the leader: tries the server that answered last, follows a
    /// follower's leader hint, and otherwise moves on through the configured servers. The
    /// stream yields the node's allocations whenever they change; keepalives are consumed here,
    /// and a stream silent for three keepalive periods (a peer lost in a partition) ends with
    /// an error, so the caller reconnects.
    pub async fn watch_allocs(
        &self,
        node_id: &str,
        min_index: u64,
        keepalive: Duration,
    ) -> Result<futures::stream::BoxStream<'static, Result<AllocsReply, NodeRpcError>>, NodeRpcError>
    {
        if self.servers.is_empty() {
            return Err(NodeRpcError::Unreachable("no servers configured".into()));
        }
        let req = WatchRequest {
            node_id: node_id.to_owned(),
            min_index,
            keepalive_ms: keepalive.as_millis() as u64,
        };
        let body = encode(&req);
        let start = *self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut hint: Option<String> = None;
        let mut last = String::new();
        let mut step = 0;
        // Each configured server once, plus one hop to a hinted leader per refusal.
        let mut budget = self.servers.len() * 2;
        while budget > 0 {
            budget -= 1;
            let addr = match hint.take() {
                Some(a) => a,
                None => {
                    if step >= self.servers.len() {
                        break;
                    }
                    step += 1;
                    self.servers[(start + step - 1) % self.servers.len()].clone()
                }
            };
            match self
                .client
                .stream(&addr, WATCH_ALLOCS, body.clone(), Duration::from_secs(10))
                .await
            {
                Ok(stream) => {
                    if let Some(i) = self.servers.iter().position(|s| *s == addr) {
                        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = i;
                    }
                    return Ok(watch_stream(stream, self.client.clone(), addr, keepalive));
                }
                Err(RpcError::Remote { message, .. }) => {
                    if let Some(leader) = message.strip_prefix(NOT_LEADER) {
                        if !leader.is_empty() && leader != addr {
                            hint = Some(leader.to_owned());
                        }
                        last = message;
                        continue;
                    }
                    if message.contains("no cluster leader") || message.contains("no quorum") {
                        last = message;
                        continue;
                    }
                    return Err(NodeRpcError::Remote(message));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(NodeRpcError::Unreachable(last))
    }

    /// Upserts and deletes registrations in the service catalogue.
    pub async fn upsert_services(&self, req: &ServicesRequest) -> Result<u64, NodeRpcError> {
        let reply: IndexReply = self.call(UPSERT_SERVICES, req, Duration::from_secs(10)).await?;
        Ok(reply.index)
    }

    /// Waits up to `wait` for service `name`'s registrations to change past `min_index`.
    pub async fn services(
        &self,
        namespace: &str,
        name: &str,
        min_index: u64,
        wait: Duration,
    ) -> Result<ServiceReadReply, NodeRpcError> {
        let req = ServiceReadRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            min_index,
            wait_ms: wait.as_millis() as u64,
        };
        self.call(SERVICES, &req, wait + Duration::from_secs(10)).await
    }

    /// Commits a batch of allocation reports.
    pub async fn update_allocs(
        &self,
        updates: Vec<AllocClientUpdate>,
    ) -> Result<u64, NodeRpcError> {
        let reply: IndexReply = self
            .call(UPDATE_ALLOCS, &UpdateAllocsRequest { updates }, Duration::from_secs(10))
            .await?;
        Ok(reply.index)
    }
}
