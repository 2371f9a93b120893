//! `GET /v1/event/stream`: Nomad's event stream as ndjson, one `{"Index":N,"Events":[…]}` line
//! per applied change that matches the request's topics (`topic=Service:web`, `Job:*`, `*`),
//! and a `{}` line every heartbeat interval (30 s, as Nomad) so clients and proxies know the
//! stream is alive.
//!
//! Events are derived once per server, by comparing the state after each applied index with
//! what has already been reported: of the objects the state's change journal names (a whole
//! table only when the journal no longer reaches back), those whose modify index moved are
//! upserts, and objects
//! removed since are taken from the state's journal of removals (each as it last was), so a
//! deletion is reported at the index that made it, even for an object created and removed
//! between two looks. Nothing in the state machine knows about streams. The consequence of
//! looking rather than listening: an object changed several times between two looks is
//! reported once, in its latest version. Derived events go into a [`Buffer`] of the last [`EVENT_BUFFER_SIZE`]
//! indexes (Nomad's `event_buffer_size` default); every stream reads from it and filters, and
//! `index=N` replays the buffered events after N (from the oldest buffered one when N has
//! left the buffer, as Nomad does) before following live ones.

use super::ApiError;
use super::{query_options, Ctx, Pairs};
use crate::server::Consistency;
use crate::state::{ChangedIds, Removed, State, Table};
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use model::{Allocation, Evaluation, Job, Node, ServiceRegistration};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How many indexes' worth of events a server keeps for replay (Nomad's `event_buffer_size`).
pub(crate) const EVENT_BUFFER_SIZE: usize = 100;

/// The most `topic` parameters a request may give.
const MAX_TOPICS: usize = 64;
/// The longest topic filter key, in bytes.
const MAX_FILTER_KEY_LEN: usize = 256;

/// The topics orc emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Topic {
    Job,
    Allocation,
    Evaluation,
    Node,
    Service,
}

const TOPICS: [Topic; 5] =
    [Topic::Job, Topic::Allocation, Topic::Evaluation, Topic::Node, Topic::Service];

impl Topic {
    fn name(self) -> &'static str {
        match self {
            Topic::Job => "Job",
            Topic::Allocation => "Allocation",
            Topic::Evaluation => "Evaluation",
            Topic::Node => "Node",
            Topic::Service => "Service",
        }
    }

    fn table(self) -> Table {
        match self {
            Topic::Job => Table::Jobs,
            Topic::Allocation => Table::Allocs,
            Topic::Evaluation => Table::Evals,
            Topic::Node => Table::Nodes,
            Topic::Service => Table::Services,
        }
    }
}

/// Which events a stream wants: per topic, `None` for every key or the set of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    topics: BTreeMap<Topic, Option<BTreeSet<String>>>,
    namespace: String,
}

/// Parses the `topic` parameters (`Topic:FilterKey`; default `*:*`). Nomad topics orc does not
/// have (ACL, deployments, CSI, …) are accepted and simply never produce events.
pub(crate) fn parse_topics(values: &[&str], namespace: &str) -> Result<Subscription, ApiError> {
    if values.len() > MAX_TOPICS {
        return Err(ApiError::BadRequest(format!("at most {MAX_TOPICS} topics per stream")));
    }
    let mut sub = Subscription { namespace: namespace.to_owned(), ..Subscription::default() };
    let all: Vec<&str> = if values.is_empty() { vec!["*:*"] } else { values.to_vec() };
    for v in all {
        let (topic, key) = v.split_once(':').unwrap_or((v, "*"));
        if key.is_empty() || key.len() > MAX_FILTER_KEY_LEN {
            return Err(ApiError::BadRequest(format!(
                "invalid topic {v:?}: the filter key must be 1 to {MAX_FILTER_KEY_LEN} bytes"
            )));
        }
        if topic.is_empty() || !topic.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*') {
            return Err(ApiError::BadRequest(format!("invalid topic {v:?}")));
        }
        for t in TOPICS.iter().filter(|t| topic == "*" || t.name() == topic) {
            let entry = sub.topics.entry(*t).or_insert_with(|| Some(BTreeSet::new()));
            if key == "*" {
                *entry = None;
            } else if let Some(keys) = entry {
                keys.insert(key.to_owned());
            }
        }
    }
    Ok(sub)
}

/// One event, in Nomad's shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Event {
    pub topic: &'static str,
    #[serde(rename = "Type")]
    pub event_type: &'static str,
    pub key: String,
    pub namespace: String,
    pub filter_keys: Vec<String>,
    pub index: u64,
    pub payload: Value,
}

/// What a stream has already reported, per topic: each object's modify index (and, for
/// services, the registration itself, which a deregistration event carries when the state's
/// journal of removals no longer reaches back far enough).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    seen: BTreeMap<Topic, BTreeMap<String, u64>>,
    services: BTreeMap<String, ServiceRegistration>,
    table_index: BTreeMap<Topic, u64>,
    /// The state index of the last look: removals after it are yet to be reported.
    looked: u64,
}

impl Tracker {
    /// Starts tracking `state`: with `replay_after` 0, only later changes are reported;
    /// otherwise objects modified after it are reported by the first [`Tracker::events`].
    pub fn new(sub: &Subscription, state: &State, replay_after: u64) -> Tracker {
        let mut t = Tracker {
            looked: if replay_after == 0 { state.index() } else { replay_after },
            ..Tracker::default()
        };
        for topic in sub.topics.keys() {
            let seen = t.seen.entry(*topic).or_default();
            for_each(state, *topic, |id, modify_index, _| {
                if replay_after == 0 || modify_index <= replay_after {
                    seen.insert(id.to_owned(), modify_index);
                }
            });
            if replay_after == 0 {
                t.table_index.insert(*topic, state.table_index(topic.table()));
            }
            if *topic == Topic::Service {
                t.services = state.services().map(|s| (s.id.clone(), s.clone())).collect();
            }
        }
        t
    }

    /// The events that take the stream from what it has seen to `state`, in index order.
    ///
    /// An object removed since the last look is reported from the state's journal of removals:
    /// its last version (unless already reported) and then its removal, at the index that
    /// removed it. Only when the journal no longer reaches back that far are removals found by
    /// comparison, at the table's index.
    pub fn events(&mut self, sub: &Subscription, state: &State) -> Vec<Event> {
        let removed = state.removed_since(self.looked);
        let changed = state.changed_since(self.looked);
        let last_look = std::mem::replace(&mut self.looked, state.index());
        let mut out = Vec::new();
        for (topic, keys) in &sub.topics {
            let table_index = state.table_index(topic.table());
            if self.table_index.get(topic) == Some(&table_index) {
                continue;
            }
            self.table_index.insert(*topic, table_index);
            let seen = self.seen.entry(*topic).or_default();
            let mut events = Vec::new();
            for (at, r) in removed.iter().flatten().filter(|(_, r)| topic_of(r) == *topic) {
                let (id, modify_index) = identity(r);
                // A version older than the last look was reported then (or is older than
                // what a replay asked for).
                if seen.remove(&id) != Some(modify_index) && modify_index > last_look {
                    events.push(removed_event(r, None));
                }
                self.services.remove(&id);
                events.push(removed_event(r, Some(*at)));
            }
            let gone: Vec<String> = match &changed {
                // The journal names what changed since the last look: only those are read.
                Some(changed) => {
                    let mut gone = Vec::new();
                    for key in changed_keys(changed, *topic) {
                        match lookup(state, *topic, &key) {
                            Some((modify_index, ev)) if seen.get(&key) != Some(&modify_index) => {
                                seen.insert(key, modify_index);
                                events.push(ev);
                            }
                            Some(_) => {}
                            None if seen.contains_key(&key) => gone.push(key),
                            None => {}
                        }
                    }
                    gone
                }
                // Too far behind for the journal: compare the whole table.
                None => {
                    let mut present = BTreeSet::new();
                    for_each(state, *topic, |id, modify_index, ev| {
                        present.insert(id.to_owned());
                        if seen.get(id) != Some(&modify_index) {
                            seen.insert(id.to_owned(), modify_index);
                            events.push(ev());
                        }
                    });
                    seen.keys().filter(|id| !present.contains(*id)).cloned().collect()
                }
            };
            for id in gone {
                seen.remove(&id);
                let last = if *topic == Topic::Service { self.services.remove(&id) } else { None };
                events.push(deletion(*topic, &id, last, table_index));
            }
            if *topic == Topic::Service {
                for e in &events {
                    if e.event_type == "ServiceRegistration" {
                        if let Some(s) = state.service(&e.key) {
                            self.services.insert(s.id.clone(), s.clone());
                        }
                    }
                }
            }
            out.extend(events.into_iter().filter(|e| wanted(sub, keys.as_ref(), e)));
        }
        out.sort_by_key(|e| e.index);
        out
    }
}

/// The keys (as [`Tracker::seen`] holds them) of `topic`'s objects the journal names.
fn changed_keys(changed: &ChangedIds<'_>, topic: Topic) -> Vec<String> {
    let owned = |ids: &BTreeSet<&str>| ids.iter().map(|id| (*id).to_owned()).collect();
    match topic {
        Topic::Job => changed.jobs.iter().map(|(ns, id)| format!("{ns}\u{0}{id}")).collect(),
        Topic::Allocation => owned(&changed.allocs),
        Topic::Evaluation => owned(&changed.evals),
        Topic::Node => owned(&changed.nodes),
        Topic::Service => owned(&changed.services),
    }
}

/// One object of `topic` by its key: its modify index and its event, if it is in the state.
fn lookup(state: &State, topic: Topic, key: &str) -> Option<(u64, Event)> {
    match topic {
        Topic::Job => {
            let (ns, id) = key.split_once('\u{0}')?;
            state.job(ns, id).map(|j| (j.modify_index, job_event(j)))
        }
        Topic::Allocation => state.alloc(key).map(|a| (a.modify_index, alloc_event(a))),
        Topic::Evaluation => state.eval(key).map(|e| (e.modify_index, eval_event(e))),
        Topic::Node => state.node(key).map(|n| (n.modify_index, node_event(n))),
        Topic::Service => state
            .service(key)
            .map(|s| (s.modify_index, service_event("ServiceRegistration", s, s.modify_index))),
    }
}

fn topic_of(r: &Removed) -> Topic {
    match r {
        Removed::Job(_) => Topic::Job,
        Removed::Eval(_) => Topic::Evaluation,
        Removed::Alloc(_) => Topic::Allocation,
        Removed::Node(_) => Topic::Node,
        Removed::Service(_) => Topic::Service,
    }
}

/// A removed object's key in [`Tracker::seen`] and its last modify index.
fn identity(r: &Removed) -> (String, u64) {
    match r {
        Removed::Job(j) => (job_key(j), j.modify_index),
        Removed::Eval(e) => (e.id.clone(), e.modify_index),
        Removed::Alloc(a) => (a.id.clone(), a.modify_index),
        Removed::Node(n) => (n.id.clone(), n.modify_index),
        Removed::Service(s) => (s.id.clone(), s.modify_index),
    }
}

/// The event of a removed object: its last version when `removed_at` is `None`, otherwise its
/// removal at that index.
fn removed_event(r: &Removed, removed_at: Option<u64>) -> Event {
    let mut e = match r {
        Removed::Job(j) => job_event(j),
        Removed::Eval(e) => eval_event(e),
        Removed::Alloc(a) => alloc_event(a),
        Removed::Node(n) => node_event(n),
        Removed::Service(s) => service_event("ServiceRegistration", s, s.modify_index),
    };
    if let Some(at) = removed_at {
        e.index = at;
        e.event_type = match r {
            Removed::Job(_) => "JobDeregistered",
            Removed::Eval(_) => "EvaluationDeleted",
            Removed::Alloc(_) => "AllocationDeleted",
            Removed::Node(_) => "NodeDeregistration",
            Removed::Service(_) => "ServiceDeregistration",
        };
    }
    e
}

fn wanted(sub: &Subscription, keys: Option<&BTreeSet<String>>, e: &Event) -> bool {
    let ns_ok = sub.namespace == "*" || e.namespace.is_empty() || e.namespace == sub.namespace;
    let key_ok =
        keys.is_none_or(|k| k.contains(&e.key) || e.filter_keys.iter().any(|f| k.contains(f)));
    ns_ok && key_ok
}

/// Jobs share IDs across namespaces.
fn job_key(j: &Job) -> String {
    format!("{}\u{0}{}", j.namespace, j.id)
}

fn job_event(j: &Job) -> Event {
    Event {
        topic: "Job",
        event_type: if j.stop { "JobDeregistered" } else { "JobRegistered" },
        key: j.id.clone(),
        namespace: j.namespace.clone(),
        filter_keys: Vec::new(),
        index: j.modify_index,
        payload: json!({ "Job": j }),
    }
}

fn alloc_event(a: &Allocation) -> Event {
    Event {
        topic: "Allocation",
        event_type: "AllocationUpdated",
        key: a.id.clone(),
        namespace: a.namespace.clone(),
        filter_keys: vec![a.job_id.clone()],
        index: a.modify_index,
        payload: json!({ "Allocation": a }),
    }
}

fn eval_event(e: &Evaluation) -> Event {
    Event {
        topic: "Evaluation",
        event_type: "EvaluationUpdated",
        key: e.id.clone(),
        namespace: e.namespace.clone(),
        filter_keys: vec![e.job_id.clone()],
        index: e.modify_index,
        payload: json!({ "Evaluation": e }),
    }
}

fn node_event(n: &Node) -> Event {
    Event {
        topic: "Node",
        event_type: "NodeRegistration",
        key: n.id.clone(),
        namespace: String::new(),
        filter_keys: Vec::new(),
        index: n.modify_index,
        payload: json!({ "Node": n }),
    }
}

/// Calls `f(id, modify_index, make_event)` for every object of `topic`.
fn for_each(state: &State, topic: Topic, mut f: impl FnMut(&str, u64, &dyn Fn() -> Event)) {
    match topic {
        Topic::Job => {
            for j in state.jobs() {
                f(&job_key(j), j.modify_index, &|| job_event(j));
            }
        }
        Topic::Allocation => {
            for a in state.allocs() {
                f(&a.id, a.modify_index, &|| alloc_event(a));
            }
        }
        Topic::Evaluation => {
            for e in state.evals() {
                f(&e.id, e.modify_index, &|| eval_event(e));
            }
        }
        Topic::Node => {
            for n in state.nodes() {
                f(&n.id, n.modify_index, &|| node_event(n));
            }
        }
        Topic::Service => {
            for s in state.services() {
                f(&s.id, s.modify_index, &|| {
                    service_event("ServiceRegistration", s, s.modify_index)
                });
            }
        }
    }
}

fn service_event(event_type: &'static str, s: &ServiceRegistration, index: u64) -> Event {
    Event {
        topic: "Service",
        event_type,
        key: s.id.clone(),
        namespace: s.namespace.clone(),
        filter_keys: vec![s.job_id.clone(), s.service_name.clone()],
        index,
        payload: json!({ "Service": s }),
    }
}

/// The event for an object found gone by comparison, at (or before) `index`: all that is left of
/// it is its ID (and a service's last registration, which the tracker keeps).
fn deletion(topic: Topic, id: &str, last: Option<ServiceRegistration>, index: u64) -> Event {
    if let Some(s) = last {
        return service_event("ServiceDeregistration", &s, index);
    }
    let (event_type, payload) = match topic {
        Topic::Job => {
            let (ns, job) = id.split_once('\u{0}').unwrap_or(("", id));
            return Event {
                topic: "Job",
                event_type: "JobDeregistered",
                key: job.to_owned(),
                namespace: ns.to_owned(),
                filter_keys: Vec::new(),
                index,
                payload: json!({ "Job": { "ID": job, "Namespace": ns } }),
            };
        }
        Topic::Allocation => ("AllocationDeleted", json!({ "Allocation": { "ID": id } })),
        Topic::Evaluation => ("EvaluationDeleted", json!({ "Evaluation": { "ID": id } })),
        Topic::Node => ("NodeDeregistration", json!({ "Node": { "ID": id } })),
        Topic::Service => ("ServiceDeregistration", json!({ "Service": { "ID": id } })),
    };
    Event {
        topic: topic.name(),
        event_type,
        key: id.to_owned(),
        namespace: String::new(),
        filter_keys: Vec::new(),
        index,
        payload,
    }
}

/// The events of one index.
type Batch = (u64, Arc<Vec<Event>>);

/// A server's recent events: the last [`EVENT_BUFFER_SIZE`] indexes that produced any, fed by
/// one task that follows the applied index (started with the first stream, or at once when
/// the router is built on a runtime).
pub(crate) struct Buffer {
    batches: Mutex<VecDeque<Batch>>,
    capacity: usize,
    /// The index of the newest batch, or the index the feeder has caught up with.
    latest: watch::Sender<u64>,
    started: std::sync::Once,
}

impl Buffer {
    pub fn new(capacity: usize) -> Arc<Buffer> {
        Arc::new(Buffer {
            batches: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            latest: watch::channel(0).0,
            started: std::sync::Once::new(),
        })
    }

    /// Starts the feeder for `handle` once (it ends when the buffer is dropped). Must run on a
    /// tokio runtime.
    pub fn start(self: &Arc<Self>, handle: &crate::server::ServerHandle) {
        self.started.call_once(|| {
            tokio::spawn(feed(Arc::downgrade(self), handle.clone()));
        });
    }

    /// Appends events (in index order), one batch per index, dropping the oldest beyond
    /// capacity; `caught_up` is the applied index they were derived at.
    fn push(&self, events: Vec<Event>, caught_up: u64) {
        let mut b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let mut events = events.into_iter().peekable();
        while let Some(first) = events.next() {
            let index = first.index;
            let mut batch = vec![first];
            while let Some(e) = events.next_if(|e| e.index == index) {
                batch.push(e);
            }
            b.push_back((index, Arc::new(batch)));
            if b.len() > self.capacity {
                b.pop_front();
            }
        }
        drop(b);
        self.latest.send_if_modified(|l| {
            let moved = caught_up > *l;
            *l = (*l).max(caught_up);
            moved
        });
    }

    /// The buffered batches after `index`; all of them when `index` is older than the buffer.
    fn after(&self, index: u64) -> Vec<Batch> {
        let b = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        b.iter().filter(|(i, _)| *i > index).cloned().collect()
    }
}

/// Derives every event of every topic and namespace into the buffer, until it is dropped.
async fn feed(buffer: Weak<Buffer>, handle: crate::server::ServerHandle) {
    let sub = match parse_topics(&[], "*") {
        Ok(s) => s,
        Err(_) => return,
    };
    let Ok(mut tracker) = handle.read(Consistency::Stale, |s| Tracker::new(&sub, s, 0)).await
    else {
        return;
    };
    let mut seen = handle.applied_index();
    match buffer.upgrade() {
        Some(b) => b.push(Vec::new(), seen),
        None => return,
    }
    loop {
        let applied = handle.wait_for_index(seen + 1, Duration::from_secs(1)).await;
        let Some(b) = buffer.upgrade() else { return };
        if applied <= seen {
            continue;
        }
        seen = applied;
        let Ok(events) = handle.read(Consistency::Stale, |s| tracker.events(&sub, s)).await else {
            return;
        };
        b.push(events, seen);
    }
}

/// `GET /v1/event/stream`.
pub async fn stream(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Response, ApiError> {
    let q = query_options(&pairs)?;
    let topics: Vec<&str> =
        pairs.iter().filter(|(k, _)| k == "topic").map(|(_, v)| v.as_str()).collect();
    let sub = parse_topics(&topics, &q.namespace)?;
    let buffer = ctx.events.clone();
    buffer.start(&ctx.handle);
    let mut latest = buffer.latest.subscribe();
    // Without an index the stream starts now: the feeder has derived everything up to the
    // applied index before it reports it.
    let applied = ctx.handle.applied_index();
    if q.min_index == 0 {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), latest.wait_for(|l| *l >= applied)).await;
    }
    let mut cursor = if q.min_index > 0 { q.min_index } else { *latest.borrow() };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let heartbeat = ctx.config.event_heartbeat;
    tokio::spawn(async move {
        let mut next_heartbeat = Instant::now() + heartbeat;
        loop {
            latest.borrow_and_update();
            for (index, events) in buffer.after(cursor) {
                cursor = index;
                let keys = |t: &str| sub.topics.iter().find(|(k, _)| k.name() == t);
                let mine: Vec<&Event> = events
                    .iter()
                    .filter(|e| keys(e.topic).is_some_and(|(_, k)| wanted(&sub, k.as_ref(), e)))
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                let line = json!({ "Index": index, "Events": mine });
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                if tx.send(bytes).await.is_err() {
                    return;
                }
            }
            let remaining = next_heartbeat.saturating_duration_since(Instant::now());
            tokio::select! {
                changed = latest.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(remaining) => {}
                _ = tx.closed() => return,
            }
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + heartbeat;
                if tx.send(b"{}\n".to_vec()).await.is_err() {
                    return;
                }
            }
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(bytes::Bytes::from(b)), rx))
    });
    let mut resp = Body::from_stream(body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{apply, Command};

    fn svc(id: &str, name: &str, ns: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            service_name: name.into(),
            namespace: ns.into(),
            job_id: "job".into(),
            ..ServiceRegistration::default()
        }
    }

    #[test]
    fn topics_parse_with_filter_keys_and_bounds() {
        let s = parse_topics(&["Service:web", "Service:api", "Job:*"], "default").unwrap();
        assert_eq!(s.topics.len(), 2);
        assert_eq!(
            s.topics[&Topic::Service],
            Some(BTreeSet::from(["web".to_string(), "api".to_string()]))
        );
        assert_eq!(s.topics[&Topic::Job], None);
        assert_eq!(parse_topics(&[], "default").unwrap().topics.len(), 5);
        assert_eq!(parse_topics(&["ACLToken"], "default").unwrap().topics.len(), 0);
        assert!(parse_topics(&["Service:"], "default").is_err());
        assert!(parse_topics(&["Ser\nvice"], "default").is_err());
        assert!(parse_topics(&["Job"; 65], "default").is_err());
    }

    #[test]
    fn service_changes_become_registration_and_deregistration_events() {
        let mut state = State::new();
        let mut index = 0;
        let mut run = |state: &mut State, c: Command| {
            index += 1;
            apply(state, index, c);
        };
        run(&mut state, Command::ServiceRegister { services: vec![svc("old", "web", "default")] });
        let sub = parse_topics(&["Service:web"], "default").unwrap();
        let mut t = Tracker::new(&sub, &state, 0);
        assert_eq!(t.events(&sub, &state), []);

        run(
            &mut state,
            Command::ServiceRegister {
                services: vec![
                    svc("a", "web", "default"),
                    svc("b", "api", "default"),
                    svc("c", "web", "prod"),
                ],
            },
        );
        run(&mut state, Command::ServiceDeregister { ids: vec!["old".into()] });
        let got: Vec<(&str, String, u64)> =
            t.events(&sub, &state).into_iter().map(|e| (e.event_type, e.key, e.index)).collect();
        assert_eq!(
            got,
            [("ServiceRegistration", "a".into(), 2), ("ServiceDeregistration", "old".into(), 3)]
        );
        assert_eq!(t.events(&sub, &state), [], "nothing new, nothing sent");

        // A replay from index 1 reports what changed after it, still filtered: the removal of
        // a registration older than the replay included.
        let mut replay = Tracker::new(&sub, &state, 1);
        let keys: Vec<String> = replay.events(&sub, &state).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["a", "old"]);
        let e = &Tracker::new(&sub, &state, 1).events(&sub, &state)[0];
        let v = serde_json::to_value(e).unwrap();
        assert_eq!(v["Topic"], "Service");
        assert_eq!(v["FilterKeys"], json!(["job", "web"]));
        assert_eq!(v["Payload"]["Service"]["ServiceName"], "web");
    }

    #[test]
    fn an_object_created_and_removed_between_two_looks_is_reported_both_ways() {
        let mut state = State::new();
        let sub = parse_topics(&["Service:*", "Node:*"], "default").unwrap();
        let mut t = Tracker::new(&sub, &state, 0);
        apply(
            &mut state,
            1,
            Command::ServiceRegister { services: vec![svc("a", "web", "default")] },
        );
        apply(&mut state, 2, Command::ServiceDeregister { ids: vec!["a".into()] });
        let node = model::Node { id: "n1".into(), ..model::Node::default() };
        apply(&mut state, 3, Command::NodeRegister { node: Box::new(node.clone()) });
        apply(&mut state, 4, Command::NodeDeregister { node_id: "n1".into() });
        // Registered again under the same ID: removal, then the new registration.
        apply(&mut state, 5, Command::NodeRegister { node: Box::new(node) });
        let got: Vec<(&str, String, u64)> =
            t.events(&sub, &state).into_iter().map(|e| (e.event_type, e.key, e.index)).collect();
        assert_eq!(
            got,
            [
                ("ServiceRegistration", "a".into(), 1),
                ("ServiceDeregistration", "a".into(), 2),
                ("NodeRegistration", "n1".into(), 3),
                ("NodeDeregistration", "n1".into(), 4),
                ("NodeRegistration", "n1".into(), 5),
            ]
        );
        assert_eq!(t.events(&sub, &state), []);

        // Once reported, a removal carries the object as it last was, filter keys included.
        apply(
            &mut state,
            6,
            Command::ServiceRegister { services: vec![svc("b", "web", "default")] },
        );
        assert_eq!(t.events(&sub, &state).len(), 1);
        apply(&mut state, 7, Command::ServiceDeregister { ids: vec!["b".into()] });
        let got = t.events(&sub, &state);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].event_type, got[0].index), ("ServiceDeregistration", 7));
        assert_eq!(got[0].filter_keys, ["job", "web"]);
    }

    /// The journal path (read what changed) and the comparison path (scan every table) report
    /// the same upserts.
    #[test]
    fn reading_the_journal_reports_what_comparing_tables_reports() {
        use crate::state::PlanResults;
        use model::{Allocation, Evaluation, Job, Node};
        let mut state = State::new();
        let job = |id: &str| Job { id: id.into(), namespace: "default".into(), ..Job::default() };
        let eval = |id: &str, job: &str| Evaluation {
            id: id.into(),
            job_id: job.into(),
            namespace: "default".into(),
            ..Evaluation::default()
        };
        let alloc = |id: &str, node: &str| Allocation {
            id: id.into(),
            job_id: "web".into(),
            namespace: "default".into(),
            node_id: node.into(),
            ..Allocation::default()
        };
        let node = |id: &str| Node { id: id.into(), ..Node::default() };
        let mut index = 0;
        let mut run = |state: &mut State, c: Command| {
            index += 1;
            apply(state, index, c);
        };
        run(&mut state, Command::NodeRegister { node: Box::new(node("n1")) });
        run(&mut state, Command::JobRegister { job: Box::new(job("old")), eval: None });
        let sub = parse_topics(&[], "default").unwrap();
        let mut by_journal = Tracker::new(&sub, &state, 0);
        let mut by_scan = Tracker::new(&sub, &state, 0);
        run(
            &mut state,
            Command::JobRegister {
                job: Box::new(job("web")),
                eval: Some(Box::new(eval("e1", "web"))),
            },
        );
        run(&mut state, Command::NodeRegister { node: Box::new(node("n2")) });
        run(
            &mut state,
            Command::PlanResults(PlanResults {
                eval_id: "e1".into(),
                allocs: vec![alloc("a1", "n1"), alloc("a2", "n2")],
                stops: vec![],
                evals: vec![],
            }),
        );
        run(&mut state, Command::ServiceRegister { services: vec![svc("s1", "web", "default")] });
        run(
            &mut state,
            Command::JobDeregister {
                namespace: "default".into(),
                job_id: "old".into(),
                eval: None,
            },
        );
        let summary = |events: Vec<Event>| -> Vec<(&'static str, &'static str, String, u64)> {
            let mut v: Vec<_> =
                events.into_iter().map(|e| (e.topic, e.event_type, e.key, e.index)).collect();
            v.sort();
            v
        };
        let journal = summary(by_journal.events(&sub, &state));
        // A state rebuilt from a snapshot has no journal before its index: the tracker scans.
        let rebuilt = State::from_snapshot(state.to_snapshot());
        assert!(rebuilt.changed_since(2).is_none());
        let scan = summary(by_scan.events(&sub, &rebuilt));
        assert_eq!(journal, scan);
        let kinds: BTreeSet<&str> = journal.iter().map(|e| e.1).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "AllocationUpdated",
                "EvaluationUpdated",
                "JobDeregistered",
                "JobRegistered",
                "NodeRegistration",
                "ServiceRegistration",
            ])
        );
    }

    #[test]
    fn removals_older_than_the_journal_are_found_by_comparison() {
        let mut state = State::new();
        let services: Vec<ServiceRegistration> =
            (0..5000).map(|i| svc(&format!("s{i}"), "web", "default")).collect();
        apply(&mut state, 1, Command::ServiceRegister { services });
        let sub = parse_topics(&["Service:*"], "default").unwrap();
        let mut t = Tracker::new(&sub, &state, 0);
        let ids: Vec<String> = (0..5000).map(|i| format!("s{i}")).collect();
        apply(&mut state, 2, Command::ServiceDeregister { ids });
        let got = t.events(&sub, &state);
        assert_eq!(got.len(), 5000);
        assert!(got.iter().all(|e| e.event_type == "ServiceDeregistration" && e.index == 2));
        assert!(got.iter().all(|e| e.payload["Service"]["ServiceName"] == "web"));
    }

    #[test]
    fn the_buffer_keeps_the_last_indexes_and_replays_after_one() {
        let b = Buffer::new(2);
        let ev = |key: &str, index: u64| {
            service_event("ServiceRegistration", &svc(key, "web", "default"), index)
        };
        b.push(vec![ev("a", 3), ev("b", 3), ev("c", 4)], 4);
        b.push(Vec::new(), 5);
        b.push(vec![ev("d", 6)], 6);
        assert_eq!(*b.latest.borrow(), 6);
        let keys = |after: u64| -> Vec<(u64, Vec<String>)> {
            b.after(after)
                .into_iter()
                .map(|(i, e)| (i, e.iter().map(|e| e.key.clone()).collect()))
                .collect()
        };
        // Index 3 left the buffer (capacity 2): a replay from before it starts at the oldest.
        assert_eq!(keys(0), [(4, vec!["c".to_string()]), (6, vec!["d".to_string()])]);
        assert_eq!(keys(4), [(6, vec!["d".to_string()])]);
        assert_eq!(keys(6), []);
    }
}
