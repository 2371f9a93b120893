//! Raft consensus (openraft): the only module that names openraft types.
//!
//! It adapts openraft to orc: the log, vote and snapshots go through the [`Store`] trait, the
//! state machine is [`State`] changed by [`state::apply`], and peers talk over [`rpc`]. Outwards
//! it offers [`RaftNode`], whose API speaks orc's terms (node IDs, addresses, [`Command`],
//! [`Outcome`]) so nothing else depends on openraft's types or its version. It does not decide
//! cluster formation, forwarding or timeouts for clients; the `server` module does.
//!
//! The state machine lives in memory and is made durable only by snapshots: on restart the last
//! snapshot is loaded and openraft re-applies the committed log after it (it persists the
//! committed position through [`Store`] for exactly that).
//!
//! openraft runs with its `single-term-leader` feature: as in standard Raft, a server grants one
//! vote per term and a term has at most one leader, so a log ID's leader is its term alone. (The
//! default would identify leaders by `(term, node ID)` and let two servers lead one term.)

// openraft's StorageError is large by design; boxing it at every call site would only obscure
// the adapter.
#![allow(clippy::result_large_err)]

use crate::codec;
use crate::rpc::{self, RpcError};
use crate::state::{self, Command, Outcome, State};
use crate::store::{MetaKey, Store, StoreError, StoredSnapshot};
use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::error::{
    ClientWriteError, Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, ChangeMembers, Entry, EntryPayload, LogId, LogState, RaftLogReader,
    RaftNetwork, RaftNetworkFactory, RaftSnapshotBuilder, Snapshot, SnapshotMeta, SnapshotPolicy,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::watch;

openraft::declare_raft_types!(
    /// orc's Raft types: log entries carry [`Command`]s (as [`Payload`]s), applying one yields
    /// an [`Outcome`].
    pub TypeConfig:
        D = Payload,
        R = Outcome,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = crate::clock::SeededRuntime,
);

/// What a log entry carries: a [`Command`], kept as the JSON it is stored and sent as.
///
/// An entry is decoded and encoded again at every step of its way: read from the leader's log
/// for each follower, sent, appended to the follower's log, read back for apply. Only the apply
/// needs the command itself. So a payload that arrives as JSON keeps it as it came (serde_json's
/// `RawValue`, which checks the text but builds nothing) and writes those bytes out verbatim,
/// and the command is parsed once, when it is applied. A payload made from a command is
/// serialised once and keeps that JSON. The bytes are exactly those of the serialised
/// `Command`, so the stored and wire formats are unchanged. Encoding only works through
/// serde_json, which is what [`codec`] uses.
#[derive(Clone)]
pub struct Payload(Arc<PayloadInner>);

struct PayloadInner {
    command: Option<Command>,
    json: OnceLock<Box<serde_json::value::RawValue>>,
}

impl Payload {
    fn new(command: Command) -> Payload {
        Payload(Arc::new(PayloadInner { command: Some(command), json: OnceLock::new() }))
    }

    /// The payload's JSON, serialising the command the first time.
    fn json(&self) -> Result<&serde_json::value::RawValue, serde_json::Error> {
        if let Some(json) = self.0.json.get() {
            return Ok(json);
        }
        let command = self.0.command.as_ref().expect("a payload has its command or its JSON");
        let json = serde_json::value::to_raw_value(command)?;
        Ok(self.0.json.get_or_init(|| json))
    }

    /// The command, parsed from the JSON unless the payload was made from it.
    fn into_command(self) -> Result<Command, serde_json::Error> {
        let parse = |inner: &PayloadInner| {
            let json = inner.json.get().expect("a payload has its command or its JSON");
            serde_json::from_str(json.get())
        };
        match Arc::try_unwrap(self.0) {
            Ok(PayloadInner { command: Some(command), .. }) => Ok(command),
            Ok(inner) => parse(&inner),
            Err(shared) => match &shared.command {
                Some(command) => Ok(command.clone()),
                None => parse(&shared),
            },
        }
    }
}

impl Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.0.command, self.0.json.get()) {
            (Some(command), _) => command.fmt(f),
            (None, Some(json)) => f.write_str(json.get()),
            (None, None) => f.write_str("(empty payload)"),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json().map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(Payload(Arc::new(PayloadInner { command: None, json: OnceLock::from(json) })))
    }
}

type Raft = openraft::Raft<TypeConfig>;
type SError = StorageError<u64>;

/// A server in the Raft configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// The address peers reach its RPC port at.
    pub addr: String,
    /// False for a learner still catching up before it may vote.
    pub voter: bool,
}

/// Raft timing and log-compaction settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Take a snapshot after this many log entries since the previous one.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot so slow followers catch up without one.
    pub trailing_logs: u64,
    /// Also take a snapshot once the entries applied since the previous one add up to this many
    /// bytes (as stored), however few they are; 0 turns the size bound off. Counting entries
    /// alone lets the log grow without bound in bytes: a plan of 1,000 allocations is one
    /// entry of about 1.3 MB.
    pub snapshot_threshold_bytes: u64,
    /// At most this many bytes of entries a snapshot already holds stay in the log (besides
    /// the `trailing_logs` limit, whichever keeps fewer); the rest is purged once the snapshot
    /// is taken. `u64::MAX` keeps what `trailing_logs` keeps.
    pub trailing_bytes: u64,
    /// At most this many bytes of entries (as stored) in one AppendEntries, though always at
    /// least one entry. openraft bounds a batch by count only and gives each AppendEntries one
    /// heartbeat interval: a follower a few hundred megabyte-sized plan entries behind was sent
    /// them all at once, timed out, and was sent the same batch again, so it never caught up
    /// and writes failed for want of a quorum.
    pub max_append_bytes: u64,
}

impl Default for RaftTiming {
    /// Tuned to behave like hashicorp/raft's defaults as Nomad uses them, where a follower
    /// campaigns after a random 1–2 s without a leader. openraft waits longer than its election
    /// timeout after hearing from a leader: the leader's lease (equal to the maximum election
    /// timeout) plus a random election timeout. Timeouts of 0.5–1 s therefore give the same
    /// 1.5–2 s detection. Snapshots every 8,192 entries and 10,240 trailing entries are
    /// hashicorp/raft's SnapshotThreshold and TrailingLogs; the byte bounds (orc's own) keep a
    /// log of large plan entries to a few hundred megabytes.
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval_ms: 150,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_threshold: 8192,
            trailing_logs: 10240,
            snapshot_threshold_bytes: 256 << 20,
            trailing_bytes: 64 << 20,
            max_append_bytes: 2 << 20,
        }
    }
}

/// Why a proposal or membership change did not happen here.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// This server is not the leader; `leader` is who it believes is.
    #[error("not the leader")]
    NotLeader { leader: Option<Member> },
    /// Leadership could not be confirmed with a quorum.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// A membership change was refused (another is in progress, or it would be unsafe).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// Raft on this server has stopped (shut down, or a storage failure).
    #[error("raft stopped: {0}")]
    Stopped(String),
}

/// A running Raft member with its state machine.
#[derive(Clone)]
pub struct RaftNode {
    id: u64,
    raft: Raft,
    state: Arc<RwLock<State>>,
    applied: watch::Receiver<u64>,
    /// When a leader's AppendEntries or snapshot was last accepted here (start time until then).
    /// openraft 0.9 reports contact only on the leader (`millis_since_quorum_ack`).
    last_contact: Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl RaftNode {
    /// Starts Raft for server `id`, recovering whatever `store` holds.
    pub async fn start(
        id: u64,
        store: Arc<dyn Store>,
        client: Arc<rpc::Client>,
        timing: &RaftTiming,
    ) -> Result<RaftNode, String> {
        let config = openraft::Config {
            cluster_name: "orc".into(),
            heartbeat_interval: timing.heartbeat_interval_ms,
            election_timeout_min: timing.election_timeout_min_ms,
            election_timeout_max: timing.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(timing.snapshot_threshold),
            max_in_snapshot_log_to_keep: timing.trailing_logs,
            install_snapshot_timeout: 10_000,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| format!("invalid raft configuration: {e}"))?;
        let (applied_tx, applied) = watch::channel(0);
        let state = Arc::new(RwLock::new(State::new()));
        let sizes = Arc::new(
            LogBytes::recover(&*store, timing)
                .map_err(|e| format!("reading the log's entry sizes: {e}"))?,
        );
        let handle = Arc::new(OnceLock::new());
        let sm = StateMachine::recover(store.clone(), state.clone(), applied_tx)
            .map_err(|e| format!("recovering the state machine: {e}"))?
            .with_compaction(sizes.clone(), handle.clone());
        let log = LogStore { store, sizes };
        let raft = Raft::new(id, Arc::new(config), Network { client }, log, sm)
            .await
            .map_err(|e| format!("starting raft: {e}"))?;
        // The state machine asks Raft for size-driven snapshots and purges through this handle;
        // until it is set (recovery inside `Raft::new`) it asks for none.
        let _ = handle.set(raft.clone());
        let last_contact = Arc::new(std::sync::Mutex::new(tokio::time::Instant::now()));
        Ok(RaftNode { id, raft, state, applied, last_contact })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The replicated state as applied on this server.
    pub fn state(&self) -> &Arc<RwLock<State>> {
        &self.state
    }

    /// The index of the last log entry applied on this server; changes wake blocking queries.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// True once this server has a Raft configuration (bootstrapped, joined, or recovered).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(true)
    }

    /// Bootstraps a new cluster whose first configuration is `members` (id → address).
    pub async fn initialize(&self, members: &BTreeMap<u64, String>) -> Result<(), ProposeError> {
        let nodes: BTreeMap<u64, BasicNode> =
            members.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
        self.raft.initialize(nodes).await.map_err(|e| match e {
            RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
            RaftError::APIError(e) => ProposeError::Membership(e.to_string()),
        })
    }

    /// Proposes `command` if this server leads; returns its log index and outcome once applied.
    pub async fn propose(&self, command: Command) -> Result<(u64, Outcome), ProposeError> {
        let payload = Payload::new(command);
        let reply = self.raft.client_write(payload).await.map_err(|e| self.write_error(e))?;
        Ok((reply.log_id.index, reply.data))
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must wait for.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        use openraft::error::CheckIsLeaderError;
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ProposeError::NotLeader { leader: self.member_of(f.leader_id) })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                Err(ProposeError::NoQuorum(q.to_string()))
            }
            Err(RaftError::Fatal(f)) => Err(ProposeError::Stopped(f.to_string())),
        }
    }

    /// Adds a server: first as a learner (so it catches up without affecting quorum), then as
    /// a voter. Must run on the leader. Idempotent for a server already a voter at `addr`.
    pub async fn add_voter(&self, id: u64, addr: &str) -> Result<(), ProposeError> {
        if self.members().iter().any(|m| m.id == id && m.addr == addr && m.voter) {
            return Ok(());
        }
        // As Nomad's leader does: a server at the address of a member with another ID is that
        // member come back without its data (a new ID); the old ID goes before the new one
        // joins, so the two never count as two voters.
        let stale: Vec<u64> =
            self.members().iter().filter(|m| m.addr == addr && m.id != id).map(|m| m.id).collect();
        for old in stale {
            self.remove_member(old).await?;
        }
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| self.write_error(e))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// True if this server is a voter in the configuration it knows.
    pub fn is_voter(&self) -> bool {
        self.members().iter().any(|m| m.id == self.id && m.voter)
    }

    /// Starts an election here now.
    pub async fn elect(&self) -> Result<(), String> {
        self.raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    /// Removes a server from the configuration entirely. Must run on the leader.
    pub async fn remove_member(&self, id: u64) -> Result<(), ProposeError> {
        let members = self.members();
        if !members.iter().any(|m| m.id == id) {
            return Ok(());
        }
        let change = if members.iter().any(|m| m.id == id && m.voter) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft.change_membership(change, false).await.map_err(|e| self.write_error(e))?;
        Ok(())
    }

    /// Milliseconds since this server last heard from the leader: 0 on the leader, Nomad's
    /// `X-Nomad-LastContact`.
    pub fn last_contact_ms(&self) -> u64 {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(self.id) {
            return 0;
        }
        let at = *self.last_contact.lock().unwrap_or_else(|e| e.into_inner());
        at.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
    }

    /// True once this server has applied a configuration that names it: only a committed
    /// configuration is applied, so the cluster agrees it is a member. A configuration that was
    /// only replicated here (a join whose leader lost leadership before committing it) does not
    /// count.
    pub fn in_committed_configuration(&self) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = &metrics.membership_config;
        let applied = metrics.last_applied.map(|l| l.index);
        let at = membership.log_id().map(|l| l.index);
        let named = membership.membership().nodes().any(|(id, _)| *id == self.id);
        named && applied.is_some() && at <= applied
    }

    /// Who this server believes leads, if anyone.
    pub fn leader(&self) -> Option<Member> {
        let leader = self.raft.metrics().borrow().current_leader;
        self.member_of(leader)
    }

    /// The current configuration as this server knows it.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// Raft's current term, for diagnostics.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// Stops Raft. Pending proposals fail with [`ProposeError::Stopped`].
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }

    fn member_of(&self, id: Option<u64>) -> Option<Member> {
        let id = id?;
        self.members().into_iter().find(|m| m.id == id)
    }

    fn write_error(&self, e: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> ProposeError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                let leader = match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => Some(Member { id, addr: node.addr, voter: true }),
                    (id, _) => self.member_of(id),
                };
                ProposeError::NotLeader { leader }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ProposeError::Membership(e.to_string())
            }
            RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
        }
    }

    /// Serves a Raft-internal RPC (`RAFT_METHODS`) from a peer.
    pub fn handle_rpc(
        &self,
        method: &str,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let raft = self.raft.clone();
        let method = method.to_owned();
        let me = self.id;
        let last_contact = self.last_contact.clone();
        let contact = move || {
            *last_contact.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now()
        };
        Box::pin(async move {
            match method.as_str() {
                APPEND => {
                    let req: AppendEntriesRequest<TypeConfig> = addressed(me, &body)?;
                    let resp = raft.append_entries(req).await;
                    // Anything but a higher vote means the sender is the current leader.
                    if matches!(&resp, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_)))
                    {
                        contact();
                    }
                    Ok(encode(&resp))
                }
                VOTE => {
                    let req: VoteRequest<u64> = addressed(me, &body)?;
                    Ok(encode(&raft.vote(req).await))
                }
                SNAPSHOT => {
                    let req: FullSnapshot = addressed(me, &body)?;
                    let snapshot = Snapshot { meta: req.meta, snapshot: Box::new(req.data) };
                    let resp = raft.install_full_snapshot(req.vote, snapshot).await;
                    if resp.is_ok() {
                        contact();
                    }
                    Ok(encode(&resp))
                }
                other => Err(format!("unknown raft method {other}")),
            }
        })
    }
}

/// A Raft message with the ID of the server it is meant for. A server refuses a message meant
/// for another ID: a server whose `data_dir` was wiped comes back on its old address under a new
/// ID, and must not answer, from its empty log, for the ID it had (the leader would see that
/// follower's log go back, which Raft does not allow).
#[derive(Serialize, Deserialize)]
struct To<R> {
    to: u64,
    req: R,
}

fn addressed<R: serde::de::DeserializeOwned>(me: u64, body: &[u8]) -> Result<R, String> {
    let To { to, req } = decode::<To<R>>(body)?;
    if to != me {
        return Err(format!("raft message for server {to} reached server {me}"));
    }
    Ok(req)
}

const APPEND: &str = "raft.AppendEntries";
const VOTE: &str = "raft.Vote";
const SNAPSHOT: &str = "raft.InstallSnapshot";

/// The RPC methods [`RaftNode::handle_rpc`] serves.
pub const RAFT_METHODS: [&str; 3] = [APPEND, VOTE, SNAPSHOT];

#[derive(Serialize, Deserialize)]
struct FullSnapshot {
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, BasicNode>,
    data: Vec<u8>,
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(codec::encode(value))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    codec::decode(bytes).map_err(|e| e.to_string())
}

fn store_err(e: impl std::fmt::Display) -> SError {
    StorageIOError::write(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> SError {
    StorageIOError::read(AnyError::error(e.to_string())).into()
}

/// Runs a blocking store call (a flush) off the async executor, or inline for a store that
/// never waits on a disk (see [`Store::blocks_on_io`]).
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SError> {
    if !store.blocks_on_io() {
        return f().map_err(store_err);
    }
    tokio::task::spawn_blocking(f).await.map_err(store_err)?.map_err(store_err)
}

// ---------------------------------------------------------------------------------------------
// Log storage.

/// The stored size of every entry in this server's log, and the decisions that bound the log in
/// bytes: openraft's snapshot policy counts entries, and a few thousand plan entries of a
/// megabyte each would otherwise stay in memory (or on disk) until enough entries pass.
struct LogBytes {
    inner: Mutex<LogBytesInner>,
    /// `RaftTiming::snapshot_threshold_bytes`.
    threshold: u64,
    /// `RaftTiming::trailing_bytes`.
    trailing: u64,
    /// `RaftTiming::max_append_bytes`.
    max_append: u64,
}

#[derive(Default)]
struct LogBytesInner {
    /// Index → stored size of each entry in the log.
    sizes: BTreeMap<u64, u64>,
    /// The index of the latest snapshot this server has seen land.
    snapshot: u64,
    /// Bytes of the entries applied after `snapshot`.
    applied_since: u64,
    /// A snapshot was asked for and none has landed since.
    requested: bool,
    /// The highest index a purge was asked for through.
    purge_requested: u64,
}

impl LogBytes {
    fn recover(store: &dyn Store, timing: &RaftTiming) -> Result<LogBytes, StoreError> {
        let sizes = store.entries(0..u64::MAX)?.iter().map(|(i, b)| (*i, b.len() as u64)).collect();
        Ok(LogBytes {
            inner: Mutex::new(LogBytesInner { sizes, ..LogBytesInner::default() }),
            threshold: timing.snapshot_threshold_bytes,
            trailing: timing.trailing_bytes,
            max_append: timing.max_append_bytes,
        })
    }

    /// The end (exclusive) of the entries from `start` to send in one AppendEntries: as many as
    /// fit in `max_append_bytes`, at least one, never past `end`.
    fn append_end(&self, start: u64, end: u64) -> u64 {
        let g = self.lock();
        let mut bytes = 0u64;
        for (index, size) in g.sizes.range(start..end) {
            bytes += size;
            if bytes > self.max_append && *index > start {
                return *index;
            }
        }
        end
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBytesInner> {
        // Every update is a single map operation plus counters; a panic cannot leave more than
        // a size estimate wrong, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn appended(&self, entries: &[(u64, Vec<u8>)]) {
        let mut g = self.lock();
        for (index, bytes) in entries {
            g.sizes.insert(*index, bytes.len() as u64);
        }
    }

    fn truncated(&self, from: u64) {
        // Only entries not yet committed, hence never applied, are truncated.
        self.lock().sizes.split_off(&from);
    }

    fn purged(&self, through: u64) {
        let mut g = self.lock();
        g.sizes = g.sizes.split_off(&through.saturating_add(1));
    }

    /// After entries `applied` (the last of them `last_applied`) were applied, with Raft's
    /// latest snapshot at `snapshot`: whether to ask for a snapshot, and through which index
    /// to purge.
    fn after_apply(
        &self,
        applied: &[u64],
        last_applied: u64,
        snapshot: u64,
    ) -> (bool, Option<u64>) {
        let mut g = self.lock();
        let mut purge = None;
        if snapshot > g.snapshot {
            g.snapshot = snapshot;
            g.requested = false;
            g.applied_since = match last_applied > snapshot {
                true => g.sizes.range(snapshot + 1..=last_applied).map(|(_, s)| s).sum(),
                false => 0,
            };
            if self.trailing != u64::MAX {
                let mut kept = 0u64;
                let mut upto = None;
                for (index, size) in g.sizes.range(..=snapshot).rev() {
                    kept += size;
                    if kept > self.trailing {
                        upto = Some(*index);
                        break;
                    }
                }
                if let Some(upto) = upto.filter(|u| *u > g.purge_requested) {
                    g.purge_requested = upto;
                    purge = Some(upto);
                }
            }
        } else {
            let added: u64 = applied
                .iter()
                .filter(|i| **i > g.snapshot)
                .map(|i| g.sizes.get(i).copied().unwrap_or(0))
                .sum();
            g.applied_since += added;
        }
        let snap = self.threshold > 0 && !g.requested && g.applied_since >= self.threshold;
        if snap {
            g.requested = true;
        }
        (snap, purge)
    }

    /// Bytes of the entries in the log.
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.lock().sizes.values().sum()
    }
}

#[derive(Clone)]
struct LogStore {
    store: Arc<dyn Store>,
    sizes: Arc<LogBytes>,
}

fn to_range(range: impl RangeBounds<u64>) -> std::ops::Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SError> {
        self.store
            .entries(to_range(range))
            .map_err(read_err)?
            .iter()
            .map(|(_, bytes)| codec::decode(bytes).map_err(read_err))
            .collect()
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, SError> {
        let end = self.sizes.append_end(start, end);
        self.try_get_log_entries(start..end).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SError> {
        let last_purged_log_id: Option<LogId<u64>> = match self.store.get_meta(MetaKey::LastPurged)
        {
            Ok(Some(bytes)) => Some(codec::decode(&bytes).map_err(read_err)?),
            Ok(None) => None,
            Err(e) => return Err(read_err(e)),
        };
        let last_log_id = match self.store.last_entry().map_err(read_err)? {
            Some((_, bytes)) => {
                Some(codec::decode::<Entry<TypeConfig>>(&bytes).map_err(read_err)?.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SError> {
        self.store.put_meta(MetaKey::Vote, &codec::encode(vote)).map_err(store_err)?;
        // A vote must survive a crash, or this server could vote twice in one term.
        let store = self.store.clone();
        blocking(&self.store, move || store.flush()).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SError> {
        match self.store.get_meta(MetaKey::Vote).map_err(read_err)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SError> {
        // Not flushed: losing it only means re-applying less on restart, and what was committed
        // is re-learned from the leader.
        self.store.put_meta(MetaKey::Committed, &codec::encode(&committed)).map_err(store_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SError> {
        match self.store.get_meta(MetaKey::Committed).map_err(read_err)? {
            Some(bytes) => codec::decode(&bytes).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let encoded: Vec<(u64, Vec<u8>)> =
            entries.into_iter().map(|e| (e.log_id.index, codec::encode(&e))).collect();
        self.store.append(&encoded).map_err(store_err)?;
        self.sizes.appended(&encoded);
        // openraft counts an entry towards commit only after this callback, so acknowledging
        // only after the flush is what makes every acknowledged write survive a crash.
        let store = self.store.clone();
        let flushed = blocking(&self.store, move || store.flush()).await;
        match flushed {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SError> {
        self.store.truncate_from(log_id.index).map_err(store_err)?;
        self.sizes.truncated(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SError> {
        // Record the purge point first: a crash between the two steps then leaves extra entries
        // behind the marker (harmless) rather than a gap in front of it.
        self.store.put_meta(MetaKey::LastPurged, &codec::encode(&log_id)).map_err(store_err)?;
        let store = self.store.clone();
        blocking(&self.store, move || store.flush()).await?;
        self.store.purge_through(log_id.index).map_err(store_err)?;
        self.sizes.purged(log_id.index);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// State machine.

struct StateMachine {
    store: Arc<dyn Store>,
    state: Arc<RwLock<State>>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    applied_tx: watch::Sender<u64>,
    sizes: Option<Arc<LogBytes>>,
    /// This server's Raft, once started: where size-driven snapshots and purges are asked for.
    raft: Arc<OnceLock<Raft>>,
}

/// The state-machine part of a snapshot (the metadata is stored beside it).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    state: state::StateSnapshot,
}

impl StateMachine {
    fn recover(
        store: Arc<dyn Store>,
        state: Arc<RwLock<State>>,
        applied_tx: watch::Sender<u64>,
    ) -> Result<Self, String> {
        let mut sm = StateMachine {
            store,
            state,
            last_applied: None,
            membership: StoredMembership::default(),
            applied_tx,
            sizes: None,
            raft: Arc::new(OnceLock::new()),
        };
        if let Some(stored) = sm.store.snapshot().map_err(|e| e.to_string())? {
            let meta: SnapshotMeta<u64, BasicNode> =
                codec::decode(&stored.meta).map_err(|e| format!("snapshot metadata: {e}"))?;
            sm.load(&meta, &stored.data)?;
        }
        Ok(sm)
    }

    fn with_compaction(mut self, sizes: Arc<LogBytes>, raft: Arc<OnceLock<Raft>>) -> Self {
        self.sizes = Some(sizes);
        self.raft = raft;
        self
    }

    /// Asks Raft for a snapshot when the entries applied since the last one have passed the
    /// size threshold, and for a purge when a new snapshot leaves more than `trailing_bytes`
    /// of its entries in the log. openraft's own policy counts entries only.
    async fn compact_by_size(&self, applied: &[u64]) {
        let (Some(sizes), Some(raft)) = (&self.sizes, self.raft.get()) else { return };
        let Some(last) = self.last_applied else { return };
        let snapshot = raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
        let (snap, purge) = sizes.after_apply(applied, last.index, snapshot);
        // These only queue a command for Raft's core; errors mean Raft is stopping.
        if snap {
            let _ = raft.trigger().snapshot().await;
        }
        if let Some(upto) = purge {
            let _ = raft.trigger().purge_log(upto).await;
        }
    }

    fn load(&mut self, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> Result<(), String> {
        let decoded: SnapshotData =
            codec::decode(data).map_err(|e| format!("snapshot data: {e}"))?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) =
            State::from_snapshot(decoded.state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.applied_tx.send_replace(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }
}

struct SnapshotBuilder {
    store: Arc<dyn Store>,
    meta: SnapshotMeta<u64, BasicNode>,
    /// The state at `meta.last_log_id`, copied out of the live state; taken when built.
    state: Option<state::StateSnapshot>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SError> {
        let state = self.state.take().ok_or_else(|| store_err("snapshot built twice"))?;
        let meta = codec::encode(&self.meta);
        let store = self.store.clone();
        // Encoding a large state takes a while; openraft runs this concurrently with `apply`,
        // and the blocking pool keeps it off the async workers. The snapshot must be durable
        // before openraft purges the log entries it replaces.
        let data = blocking(&self.store, move || {
            let data = codec::encode_compressed(&SnapshotData { state });
            store.save_snapshot(&StoredSnapshot { meta, data: data.clone() })?;
            store.flush()?;
            Ok(data)
        })
        .await?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(data) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), SError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // Commands are parsed before the state is locked, so readers wait only for the applies.
        let mut parsed = Vec::new();
        for entry in entries {
            let payload = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(payload) => {
                    let index = entry.log_id.index;
                    let command = payload
                        .into_command()
                        .map_err(|e| read_err(format!("log entry {index}: {e}")))?;
                    Some(Ok(command))
                }
                EntryPayload::Membership(m) => Some(Err(m)),
            };
            parsed.push((entry.log_id, payload));
        }
        let mut outcomes = Vec::new();
        let mut applied = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for (log_id, payload) in parsed {
                self.last_applied = Some(log_id);
                applied.push(log_id.index);
                outcomes.push(match payload {
                    None => Outcome::Applied,
                    Some(Ok(command)) => state::apply(&mut state, log_id.index, command),
                    Some(Err(m)) => {
                        self.membership = StoredMembership::new(Some(log_id), m);
                        Outcome::Applied
                    }
                });
            }
        }
        if let Some(last) = self.last_applied {
            self.applied_tx.send_replace(last.index);
        }
        self.compact_by_size(&applied).await;
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Copying here, under the read lock, captures exactly the state at `last_applied`; the
        // builder encodes and writes it without holding up `apply`.
        let state = self.state.read().unwrap_or_else(|e| e.into_inner()).to_snapshot();
        let last = self.last_applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            snapshot_id: last
                .map_or_else(|| "0-0".to_owned(), |l| format!("{}-{}", l.leader_id, l.index)),
        };
        SnapshotBuilder { store: self.store.clone(), meta, state: Some(state) }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, SError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), SError> {
        self.load(meta, &snapshot).map_err(store_err)?;
        let stored = StoredSnapshot { meta: codec::encode(meta), data: *snapshot };
        let store = self.store.clone();
        blocking(&self.store, move || {
            store.save_snapshot(&stored)?;
            store.flush()
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SError> {
        match self.store.snapshot().map_err(read_err)? {
            Some(stored) => {
                let meta = codec::decode(&stored.meta).map_err(read_err)?;
                Ok(Some(Snapshot { meta, snapshot: Box::new(stored.data) }))
            }
            None => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Network.

struct Network {
    client: Arc<rpc::Client>,
}

struct Peer {
    client: Arc<rpc::Client>,
    id: u64,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer { client: self.client.clone(), id: target, addr: node.addr.clone() }
    }
}

/// A transport failure as openraft's error type. Timeouts are reported as unreachable too:
/// either way openraft backs off and retries.
fn transport_error<E: std::error::Error>(e: RpcError) -> RPCError<u64, BasicNode, E> {
    match e {
        RpcError::Unreachable { .. } | RpcError::Timeout { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        RpcError::Remote { .. } => RPCError::Network(NetworkError::new(&e)),
    }
}

impl Peer {
    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError> {
        let body = encode(&To { to: self.id, req });
        let reply = self.client.call(&self.addr, method, body, timeout).await?;
        codec::decode(&reply).map_err(|e| RpcError::Remote {
            addr: self.addr.clone(),
            method: method.to_owned(),
            message: format!("undecodable reply: {e}"),
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let reply: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
            self.call(APPEND, &rpc, option.hard_ttl()).await.map_err(transport_error)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.id, e)))
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        // With `generic-snapshot-data` openraft sends snapshots through `full_snapshot` only.
        Err(RPCError::Network(NetworkError::new(&std::io::Error::other(
            "chunked snapshot transfer is not used; snapshots go through full_snapshot",
        ))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let reply: Result<VoteResponse<u64>, RaftError<u64>> =
            self.call(VOTE, &rpc, option.hard_ttl()).await.map_err(transport_error)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.id, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<TypeConfig, Fatal<u64>>> {
        let req = FullSnapshot { vote, meta: snapshot.meta, data: *snapshot.snapshot };
        let call = self.call::<_, Result<SnapshotResponse<u64>, Fatal<u64>>>(
            SNAPSHOT,
            &req,
            option.hard_ttl(),
        );
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = call => reply,
        };
        match reply {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(fatal)) => Err(StreamingError::RemoteError(RemoteError::new(self.id, fatal))),
            Err(e @ (RpcError::Unreachable { .. } | RpcError::Timeout { .. })) => {
                Err(StreamingError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(StreamingError::Network(NetworkError::new(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Seams, Server};
    use crate::store::MemStore;
    use crate::transport::TcpConnector;
    use crate::Config;

    #[test]
    fn a_payload_is_stored_as_its_command_and_passes_through_verbatim() {
        let command = Command::ServiceDeregister { ids: vec!["a\"b".into(), "c".into()] };
        let made = codec::encode(&Payload::new(command.clone()));
        assert_eq!(made, codec::encode(&command), "the stored bytes are the command's");
        let read: Payload = codec::decode(&made).unwrap();
        assert_eq!(codec::encode(&read), made, "written out again verbatim");
        assert_eq!(read.clone().into_command().unwrap(), command);
        assert_eq!(read.into_command().unwrap(), command);
        // Inside an entry, as the log and AppendEntries carry it.
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(2, 0), 9),
            payload: EntryPayload::Normal(Payload::new(command.clone())),
        };
        let bytes = codec::encode(&entry);
        let back: Entry<TypeConfig> = codec::decode(&bytes).unwrap();
        assert_eq!(codec::encode(&back), bytes);
        match back.payload {
            EntryPayload::Normal(p) => assert_eq!(p.into_command().unwrap(), command),
            other => panic!("{other:?}"),
        }
        // A payload that is not a command is an error when applied, not before.
        let odd: Payload =
            codec::decode(&codec::encode(&serde_json::json!({"Type": "Nope"}))).unwrap();
        assert!(odd.into_command().unwrap_err().to_string().contains("Nope"));
    }

    /// A vote as orc wrote it before openraft's `single-term-leader` feature: format version 1,
    /// the leader named by `(term, node_id)`.
    const OLD_VOTE: &[u8] = br#"{"leader_id":{"term":3,"node_id":2},"committed":true}"#;

    #[test]
    fn votes_and_log_ids_have_one_leader_per_term() {
        // A log ID's leader is its term alone: two leaders of one term could not be told apart
        // in the log, which is why openraft then lets only one be elected.
        let id = LogId::new(openraft::CommittedLeaderId::new(7, 2), 9);
        assert_eq!(serde_json::to_string(&id).unwrap(), r#"{"leader_id":7,"index":9}"#);
        let vote = Vote::new_committed(7, 2);
        assert_eq!(
            serde_json::to_string(&vote).unwrap(),
            r#"{"leader_id":{"term":7,"voted_for":2},"committed":true}"#
        );
        // Why old data must be refused rather than read: serde would take an old vote as a vote
        // for nobody, and the server could then vote twice in that term.
        let misread: Vote<u64> = serde_json::from_slice(OLD_VOTE).unwrap();
        assert_eq!(misread.leader_id().voted_for(), None);
    }

    fn sizes(threshold: u64, trailing: u64, entries: &[(u64, u64)]) -> LogBytes {
        let b = LogBytes {
            inner: Mutex::new(LogBytesInner::default()),
            threshold,
            trailing,
            max_append: 1000,
        };
        let encoded: Vec<(u64, Vec<u8>)> =
            entries.iter().map(|(i, n)| (*i, vec![0; *n as usize])).collect();
        b.appended(&encoded);
        b
    }

    #[test]
    fn a_snapshot_is_asked_for_once_the_applied_bytes_pass_the_threshold() {
        let b = sizes(1000, u64::MAX, &[(1, 400), (2, 400), (3, 400), (4, 400)]);
        assert_eq!(b.after_apply(&[1, 2], 2, 0), (false, None), "800 bytes: not yet");
        assert_eq!(b.after_apply(&[3], 3, 0), (true, None), "1,200 bytes: snapshot");
        // Asked once until a snapshot lands, however much more is applied.
        assert_eq!(b.after_apply(&[4], 4, 0), (false, None));
        // A snapshot at 3 lands: only entry 4 (400 bytes) is newer than it.
        assert_eq!(b.after_apply(&[], 4, 3), (false, None));
        b.appended(&[(5, vec![0; 700])]);
        assert_eq!(b.after_apply(&[5], 5, 3), (true, None), "400 + 700 bytes since it");
        // Off: never asks.
        let off = sizes(0, u64::MAX, &[(1, 1 << 30)]);
        assert_eq!(off.after_apply(&[1], 1, 0), (false, None));
    }

    #[test]
    fn a_landed_snapshot_purges_all_but_the_trailing_bytes_of_its_entries() {
        let b = sizes(1000, 500, &[(1, 300), (2, 300), (3, 300), (4, 300), (5, 300)]);
        // Snapshot at 4: entries 4 and 3 (600 bytes) pass 500, so 3 and everything before it go.
        assert_eq!(b.after_apply(&[1, 2, 3, 4, 5], 5, 4), (false, Some(3)));
        b.purged(3);
        assert_eq!(b.total(), 600);
        // The same snapshot seen again asks for nothing more.
        assert_eq!(b.after_apply(&[], 5, 4), (false, None));
        // Truncated entries (never applied) leave the log's sizes too.
        b.truncated(5);
        assert_eq!(b.total(), 300);
        // trailing_bytes = u64::MAX leaves purging to the entry count.
        let keep = sizes(1000, u64::MAX, &[(1, 1 << 20), (2, 1 << 20)]);
        assert_eq!(keep.after_apply(&[1, 2], 2, 2), (false, None));
    }

    #[test]
    fn an_append_carries_at_most_max_append_bytes_but_at_least_one_entry() {
        let b = sizes(0, u64::MAX, &[(1, 400), (2, 400), (3, 400), (4, 5000), (5, 10)]);
        assert_eq!(b.append_end(1, 6), 3, "1 and 2 fit in 1,000 bytes, 3 would not");
        assert_eq!(b.append_end(3, 6), 4);
        assert_eq!(b.append_end(4, 6), 5, "an entry larger than the limit goes alone");
        assert_eq!(b.append_end(5, 6), 6);
        assert_eq!(b.append_end(1, 2), 2, "never past the end asked for");
    }

    /// The configuration and seams of a single server (ID 1) on `store` and a loopback port.
    async fn one_server(store: Arc<MemStore>) -> (Config, Seams) {
        let mut config = Config { node_id: Some(1), ..Config::default() };
        config.server.enabled = true;
        config.server.bootstrap_expect = 1;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let seams = Seams {
            rpc_advertise: listener.local_addr().unwrap().to_string(),
            rpc_listener: Box::new(listener),
            connector: Arc::new(TcpConnector),
            store: Some(store),
        };
        (config, seams)
    }

    /// A server whose log grows by large entries, far fewer than the entry-count thresholds.
    async fn log_after_large_writes(timing: RaftTiming) -> (Arc<MemStore>, u64) {
        let store = Arc::new(MemStore::new());
        let (mut config, seams) = one_server(store.clone()).await;
        config.raft = timing;
        let h = Server::start(config, seams).await.unwrap();
        let write = |i: usize| {
            let mut job = model::Job {
                namespace: "default".into(),
                id: format!("job-{i:03}"),
                ..Default::default()
            };
            // About 4 KB per entry.
            job.meta.insert("pad".into(), "x".repeat(4000));
            h.write(Command::JobRegister { job: Box::new(job), eval: None })
        };
        let mut last = 0;
        for i in 0..100 {
            last = write(i).await.unwrap().index;
        }
        // A snapshot is built in the background and the purge follows an apply after it lands,
        // so keep writing (a bounded number of times) until the log is as small as it may be.
        let bound = 20_000 + 8_000 + 3 * 4_200;
        for i in 100..200 {
            let bytes: usize =
                store.entries(0..u64::MAX).unwrap().iter().map(|(_, b)| b.len()).sum();
            if store.snapshot().unwrap().is_some() && bytes <= bound {
                break;
            }
            last = write(i).await.unwrap().index;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.shutdown().await;
        (store, last)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_compacted_by_bytes_when_few_entries_passed() {
        let counts_only = RaftTiming {
            snapshot_threshold: 100_000,
            trailing_logs: 100_000,
            ..RaftTiming::default()
        };
        let bytes = RaftTiming {
            snapshot_threshold_bytes: 20_000,
            trailing_bytes: 8_000,
            ..counts_only.clone()
        };
        let (store, last) = log_after_large_writes(bytes).await;
        let log = store.entries(0..u64::MAX).unwrap();
        let total: usize = log.iter().map(|(_, b)| b.len()).sum();
        assert!(store.snapshot().unwrap().is_some(), "a snapshot was taken by size");
        assert!(total <= 20_000 + 8_000 + 3 * 4_200, "{total} bytes in {} entries", log.len());
        assert!(log.first().is_some_and(|(i, _)| *i > 1));
        assert_eq!(log.last().map(|(i, _)| *i), Some(last));

        // With the size bounds off, the entry counts alone keep every entry.
        let off =
            RaftTiming { snapshot_threshold_bytes: 0, trailing_bytes: u64::MAX, ..counts_only };
        let (store, last) = log_after_large_writes(off).await;
        let log = store.entries(0..u64::MAX).unwrap();
        assert!(store.snapshot().unwrap().is_none());
        // Raft's log starts at index 0 (the first configuration).
        assert_eq!(log.first().map(|(i, _)| *i), Some(0));
        assert_eq!(log.len() as u64, last + 1);
    }

    #[tokio::test]
    async fn a_server_refuses_a_vote_written_before_single_term_leaders() {
        let store = Arc::new(MemStore::new());
        store.put_meta(MetaKey::Vote, &[&[1u8][..], OLD_VOTE].concat()).unwrap();
        let (config, seams) = one_server(store).await;
        let err = match Server::start(config, seams).await {
            Ok(_) => panic!("a server started on a vote it cannot read"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("remove the server's data directory"), "{err}");
    }
}
