//! The replicated state machine: [`State`], the [`Command`]s that change it, and the pure
//! [`apply`] function that Raft runs on every server in log order.
//!
//! `apply` does no IO, reads no clock and draws no random numbers: anything non-deterministic (IDs,
//! timestamps, the evaluations a change triggers) is decided by whoever builds the command, so
//! every server computes the same state from the same log. Deciding *whether* a change is wise
//! (plan verification, validation of user input) is the caller's job; `apply` only refuses what
//! would corrupt the state (a missing node, an eligible draining node).

use model::{
    AllocDeploymentStatus, Allocation, ClientStatus, DesiredStatus, DrainMetadata, DrainStrategy,
    Evaluation, Job, Node, NodeEvent, NodeStatus, SchedulingEligibility, ServiceRegistration,
    TaskState,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

mod id;
mod row;
pub use id::Id;
pub use row::Row;

/// How many versions of a job are kept, as Nomad's `JobTrackedVersions`.
pub const JOB_TRACKED_VERSIONS: usize = 6;

/// A job's identity: namespace and ID.
pub type JobKey = (String, String);

/// The tables of the state, each with its own modify index for blocking queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Jobs,
    Evals,
    Allocs,
    Nodes,
    Services,
}

/// Everything the servers agree on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    index: u64,
    table_index: BTreeMap<Table, u64>,
    // Every stored object is a shared `Row`: the current version of a job is the same object as
    // its entry in the version history, the leader's scheduler view holds the allocations and
    // jobs of this state rather than copies, and a snapshot copies pointers, not objects.
    jobs: BTreeMap<JobKey, Row<Job>>,
    job_versions: BTreeMap<JobKey, BTreeMap<u64, Row<Job>>>,
    evals: BTreeMap<String, Row<Evaluation>>,
    evals_by_job: BTreeMap<JobKey, BTreeSet<String>>,
    allocs: BTreeMap<Id, Row<Allocation>>,
    allocs_by_node: BTreeMap<String, BTreeSet<Id>>,
    allocs_by_job: BTreeMap<JobKey, BTreeSet<Id>>,
    /// Allocations per job and task group by client status, kept as allocations change so a job
    /// listing does not read every allocation. Derived, like the other indexes.
    summaries: BTreeMap<JobKey, BTreeMap<String, AllocCounts>>,
    nodes: BTreeMap<String, Row<Node>>,
    services: BTreeMap<String, Row<ServiceRegistration>>,
    journal: Journal,
}

/// The IDs of what changed at each recent index, so the leader's scheduler view and the event
/// stream catch up by looking at what changed instead of scanning every row. Bounded, and not part of
/// the state's content: it is not snapshotted and does not take part in comparisons.
#[derive(Debug, Clone, Default)]
struct Journal {
    entries: std::collections::VecDeque<(u64, Changed)>,
    /// The journal covers every change at indexes above this one.
    floor: u64,
    /// The objects removed at each recent index, as they last were, so the event stream reports
    /// a deletion exactly, even of an object created and removed between two of its looks.
    removed: std::collections::VecDeque<(u64, Removed)>,
    /// `removed` covers every removal at indexes above this one.
    removed_floor: u64,
}

/// An object that left the state, as it last was.
#[derive(Debug, Clone)]
pub enum Removed {
    Job(Row<Job>),
    Eval(Row<Evaluation>),
    Alloc(Row<Allocation>),
    Node(Row<Node>),
    Service(Row<ServiceRegistration>),
}

impl PartialEq for Journal {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
enum Changed {
    Alloc(String),
    Eval(String),
    Job(JobKey),
    Node(String),
    Service(String),
}

/// Changes kept: enough for the leader's view to fall behind by many commits.
const JOURNAL_ENTRIES: usize = 100_000;

/// Removed objects kept. They are whole objects, so fewer: a garbage collection that removes
/// more at once leaves the event stream to find those deletions by comparison.
const REMOVED_ENTRIES: usize = 4_096;

impl Journal {
    fn note(&mut self, index: u64, c: Changed) {
        if self.entries.len() >= JOURNAL_ENTRIES {
            if let Some((i, _)) = self.entries.pop_front() {
                self.floor = self.floor.max(i);
            }
        }
        self.entries.push_back((index, c));
    }

    fn note_removed(&mut self, index: u64, r: Removed) {
        if self.removed.len() >= REMOVED_ENTRIES {
            if let Some((i, _)) = self.removed.pop_front() {
                self.removed_floor = self.removed_floor.max(i);
            }
        }
        self.removed.push_back((index, r));
    }
}

/// What was written (or removed) after some index (see [`State::changed_since`]).
#[derive(Debug, Default)]
pub struct ChangedIds<'a> {
    pub allocs: BTreeSet<&'a str>,
    pub evals: BTreeSet<&'a str>,
    /// Jobs as (namespace, ID).
    pub jobs: BTreeSet<(&'a str, &'a str)>,
    pub nodes: BTreeSet<&'a str>,
    pub services: BTreeSet<&'a str>,
}

/// How many allocations of one task group are in each client status (Nomad's `TaskGroupSummary`
/// without the queued count, which comes from the job's latest evaluation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocCounts {
    pub pending: u64,
    pub running: u64,
    pub complete: u64,
    pub failed: u64,
    pub lost: u64,
    pub unknown: u64,
}

impl AllocCounts {
    fn slot(&mut self, status: ClientStatus) -> &mut u64 {
        match status {
            ClientStatus::Pending => &mut self.pending,
            ClientStatus::Running => &mut self.running,
            ClientStatus::Complete => &mut self.complete,
            ClientStatus::Failed => &mut self.failed,
            ClientStatus::Lost => &mut self.lost,
            ClientStatus::Unknown => &mut self.unknown,
        }
    }
}

/// Counts `a` in (`add`) or out of its job's summary.
fn count(
    summaries: &mut BTreeMap<JobKey, BTreeMap<String, AllocCounts>>,
    a: &Allocation,
    add: bool,
) {
    let key = (a.namespace.clone(), a.job_id.clone());
    let groups = summaries.entry(key.clone()).or_default();
    let counts = groups.entry(a.task_group.clone()).or_default();
    let slot = counts.slot(a.client_status);
    if add {
        *slot += 1;
        return;
    }
    debug_assert!(*slot > 0, "summary of {key:?} lost count of {}", a.id);
    *slot = slot.saturating_sub(1);
    if *counts == AllocCounts::default() {
        groups.remove(&a.task_group);
        if groups.is_empty() {
            summaries.remove(&key);
        }
    }
}

/// A change to the state: exactly what a Raft log entry carries.
///
/// Every command is idempotent apart from indexes: applying it a second time leaves the same
/// content. Forwarding relies on this when it retries a write whose first attempt may have
/// committed before the leader died.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type")]
pub enum Command {
    /// Registers a new job or a new version of one, with the evaluation it triggers.
    JobRegister {
        job: Box<Job>,
        eval: Option<Box<Evaluation>>,
    },
    /// Registers a job only if its current `job_modify_index` is `job_modify_index` (0: only if
    /// the job does not exist): the API's `EnforceIndex` check-and-set, decided in log order so
    /// two racing submissions cannot both pass.
    JobRegisterIfIndex {
        job: Box<Job>,
        eval: Option<Box<Evaluation>>,
        job_modify_index: u64,
    },
    /// Stops a job (`stop = true`, a new version), keeping its history.
    JobDeregister {
        namespace: String,
        job_id: String,
        eval: Option<Box<Evaluation>>,
    },
    /// Removes a job and its version history. Its allocations stay until garbage collection.
    JobPurge {
        namespace: String,
        job_id: String,
        eval: Option<Box<Evaluation>>,
    },
    /// Creates or updates evaluations.
    EvalUpsert {
        evals: Vec<Evaluation>,
    },
    /// Garbage collection: removes evaluations and allocations.
    EvalDelete {
        eval_ids: Vec<String>,
        alloc_ids: Vec<String>,
    },
    /// The committed part of a scheduler's plan.
    PlanResults(PlanResults),
    /// What agents report about their allocations, with any evaluations that follow from it.
    AllocClientUpdate {
        updates: Vec<AllocClientUpdate>,
        evals: Vec<Evaluation>,
    },
    /// An agent registers (or re-registers) its node.
    NodeRegister {
        node: Box<Node>,
    },
    NodeDeregister {
        node_id: String,
    },
    /// Liveness change: heartbeat resumed, or TTL expired.
    NodeStatus {
        node_id: String,
        status: NodeStatus,
        status_description: String,
        evals: Vec<Evaluation>,
    },
    NodeEligibility {
        node_id: String,
        eligibility: SchedulingEligibility,
        evals: Vec<Evaluation>,
    },
    /// Starts (`drain = Some`) or ends (`None`) a drain.
    NodeDrain {
        node_id: String,
        drain: Option<DrainStrategy>,
        mark_eligible: bool,
        evals: Vec<Evaluation>,
        /// Appended to the node's events (the oldest beyond [`model::MAX_NODE_EVENTS`] go).
        #[serde(default)]
        event: Option<Box<NodeEvent>>,
        /// Replaces the node's `LastDrain` when set.
        #[serde(default)]
        last_drain: Option<Box<DrainMetadata>>,
    },
    /// The drainer ends a drain (`drain = None`, the node stays ineligible), decided in log
    /// order: refused while the node still holds live work the drainer has not marked for
    /// migration (system work too, unless the drain ignores it). A plan verified before the
    /// drain began can commit after the drainer last looked, so only the state at this entry's
    /// index can tell that nothing is left.
    NodeDrainComplete {
        node_id: String,
        event: Option<Box<NodeEvent>>,
        last_drain: Option<Box<DrainMetadata>>,
    },
    /// Nomad's `AllocUpdateDesiredTransition`: the drainer marks allocations for migration, with
    /// the evaluations that make the scheduler move them.
    AllocDesiredTransition {
        alloc_ids: Vec<String>,
        migrate: bool,
        evals: Vec<Evaluation>,
    },
    ServiceRegister {
        services: Vec<ServiceRegistration>,
    },
    ServiceDeregister {
        ids: Vec<String>,
    },
}

/// The part of a plan the plan applier verified and commits.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanResults {
    /// The evaluation the plan was computed for.
    pub eval_id: String,
    /// New allocations, and in-place updates of existing ones (client-owned fields are kept).
    pub allocs: Vec<Allocation>,
    pub stops: Vec<AllocStop>,
    /// Evaluations the scheduler created: blocked evals, follow-ups for delayed reschedules.
    pub evals: Vec<Evaluation>,
}

/// A server-side stop of an allocation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AllocStop {
    pub alloc_id: String,
    pub desired_description: String,
    /// Set when the server also decides the client status, e.g. `lost` for a down node.
    pub client_status: Option<ClientStatus>,
    /// The follow-up evaluation that will reschedule this allocation later, if any.
    pub followup_eval_id: Option<String>,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// An agent's report about one allocation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AllocClientUpdate {
    pub alloc_id: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    pub deployment_status: Option<AllocDeploymentStatus>,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// What applying a command did. Refusals are data, so every server records the same outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Applied,
    JobRegistered { job_version: u64, job_modify_index: u64 },
    NotFound { what: String },
    Rejected { reason: String },
}

/// A drain command's node event (kept to the last `MAX_NODE_EVENTS`) and its `LastDrain`.
fn record_drain(
    node: &mut Node,
    index: u64,
    event: Option<Box<NodeEvent>>,
    last_drain: Option<Box<DrainMetadata>>,
) {
    if let Some(mut e) = event {
        e.create_index = index;
        node.events.push(*e);
        let excess = node.events.len().saturating_sub(model::MAX_NODE_EVENTS);
        node.events.drain(..excess);
    }
    if let Some(last) = last_drain {
        node.last_drain = Some(*last);
    }
}

/// Applies `command`, the log entry at `index`, to `state`. `index` must exceed every index
/// applied before; it becomes the modify index of everything the command touches.
pub fn apply(state: &mut State, index: u64, command: Command) -> Outcome {
    debug_assert!(index > state.index, "log index {index} applied after {}", state.index);
    match command {
        Command::JobRegister { job, eval } => state.register_job(index, *job, eval.map(|e| *e)),
        Command::JobRegisterIfIndex { job, eval, job_modify_index } => {
            let current = state.job(&job.namespace, &job.id).map(|j| j.job_modify_index);
            let refusal = match current {
                Some(_) if job_modify_index == 0 => {
                    Some("Enforcing job modify index 0: job already exists".to_owned())
                }
                Some(c) if c != job_modify_index => Some(format!(
                    "Enforcing job modify index {job_modify_index}: job exists with conflicting \
                     job modify index: {c}"
                )),
                None if job_modify_index != 0 => Some(format!(
                    "Enforcing job modify index {job_modify_index}: job does not exist"
                )),
                _ => None,
            };
            match refusal {
                Some(reason) => Outcome::Rejected { reason },
                None => state.register_job(index, *job, eval.map(|e| *e)),
            }
        }
        Command::JobDeregister { namespace, job_id, eval } => {
            let key = (namespace, job_id);
            let Some(mut job) = state.jobs.get(&key).map(|j| Job::clone(j)) else {
                return not_found_job(&key);
            };
            job.stop = true;
            state.register_job(index, job, eval.map(|e| *e))
        }
        Command::JobPurge { namespace, job_id, eval } => {
            let key = (namespace, job_id);
            let Some(job) = state.jobs.remove(&key) else {
                return not_found_job(&key);
            };
            state.journal.note_removed(index, Removed::Job(job));
            state.job_versions.remove(&key);
            state.touch_job(key, index);
            state.upsert_evals(index, eval.map(|e| *e));
            Outcome::Applied
        }
        Command::EvalUpsert { evals } => {
            let jobs = state.upsert_evals(index, evals);
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::EvalDelete { eval_ids, alloc_ids } => {
            let mut jobs = BTreeSet::new();
            for id in eval_ids {
                if let Some(eval) = state.evals.remove(&id) {
                    state.journal.note(index, Changed::Eval(id.clone()));
                    state.journal.note_removed(index, Removed::Eval(eval.clone()));
                    let key = (eval.namespace.clone(), eval.job_id.clone());
                    remove_from_index(&mut state.evals_by_job, &key, &id);
                    jobs.insert(key);
                    state.touch(Table::Evals, index);
                }
            }
            for id in alloc_ids {
                if let Some(alloc) = state.allocs.remove(id.as_str()) {
                    count(&mut state.summaries, &alloc, false);
                    state.journal.note(index, Changed::Alloc(id.clone()));
                    state.journal.note_removed(index, Removed::Alloc(alloc.clone()));
                    let key = (alloc.namespace.clone(), alloc.job_id.clone());
                    remove_from_index(&mut state.allocs_by_job, &key, &id);
                    remove_from_index(&mut state.allocs_by_node, &alloc.node_id, &id);
                    jobs.insert(key);
                    state.touch(Table::Allocs, index);
                }
            }
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::PlanResults(plan) => state.apply_plan(index, plan),
        Command::AllocClientUpdate { updates, evals } => {
            let mut jobs = BTreeSet::new();
            for u in updates {
                // An agent may report on an allocation that was garbage-collected meanwhile;
                // Nomad ignores such reports and so do we.
                let Some(alloc) = state.allocs.get_mut(u.alloc_id.as_str()) else { continue };
                state.journal.note(index, Changed::Alloc(u.alloc_id.clone()));
                count(&mut state.summaries, alloc, false);
                alloc.client_status = u.client_status;
                count(&mut state.summaries, alloc, true);
                alloc.client_description = u.client_description;
                alloc.task_states = u.task_states;
                if let Some(mut d) = u.deployment_status {
                    // Written once by the agent; a report that only repeats it keeps the index.
                    d.modify_index = match &alloc.deployment_status {
                        Some(old) if old.healthy == d.healthy && old.timestamp == d.timestamp => {
                            old.modify_index
                        }
                        _ => index,
                    };
                    alloc.deployment_status = Some(d);
                }
                alloc.modify_time = u.modify_time;
                alloc.modify_index = index;
                jobs.insert((alloc.namespace.clone(), alloc.job_id.clone()));
                state.touch(Table::Allocs, index);
            }
            jobs.extend(state.upsert_evals(index, evals));
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::NodeRegister { node } => {
            let mut node = *node;
            if let Some(existing) = state.nodes.get(&node.id) {
                // Eligibility and drain belong to operators, not to the agent re-registering.
                node.create_index = existing.create_index;
                node.scheduling_eligibility = existing.scheduling_eligibility;
                node.drain = existing.drain;
                node.drain_strategy = existing.drain_strategy.clone();
                node.last_drain = existing.last_drain.clone();
                node.events = existing.events.clone();
            } else {
                node.create_index = index;
            }
            node.computed_class = node.compute_class();
            node.modify_index = index;
            let id = node.id.clone();
            state.nodes.insert(id.clone(), Row::new(node));
            state.touch_node(id, index);
            Outcome::Applied
        }
        Command::NodeDeregister { node_id } => {
            let Some(node) = state.nodes.remove(&node_id) else {
                return Outcome::NotFound { what: format!("node {node_id}") };
            };
            state.journal.note_removed(index, Removed::Node(node));
            state.touch_node(node_id, index);
            Outcome::Applied
        }
        Command::NodeStatus { node_id, status, status_description, evals } => {
            let Some(node) = state.nodes.get_mut(&node_id) else {
                return Outcome::NotFound { what: format!("node {node_id}") };
            };
            node.status = status;
            node.status_description = status_description;
            node.modify_index = index;
            state.touch_node(node_id.clone(), index);
            if status == NodeStatus::Down {
                // A down node's allocations are lost, and nobody is left to deregister their
                // services: the servers remove them, as Nomad does.
                let gone: Vec<String> = state
                    .services
                    .values()
                    .filter(|s| s.node_id == node_id)
                    .map(|s| s.id.clone())
                    .collect();
                for id in gone {
                    state.remove_service(index, &id);
                }
            }
            let jobs = state.upsert_evals(index, evals);
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::NodeEligibility { node_id, eligibility, evals } => {
            let Some(node) = state.nodes.get_mut(&node_id) else {
                return Outcome::NotFound { what: format!("node {node_id}") };
            };
            if node.drain && eligibility == SchedulingEligibility::Eligible {
                return Outcome::Rejected {
                    reason:
                        "can not set node's scheduling eligibility to eligible while it is draining"
                            .into(),
                };
            }
            node.scheduling_eligibility = eligibility;
            node.modify_index = index;
            state.touch_node(node_id, index);
            let jobs = state.upsert_evals(index, evals);
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::NodeDrain { node_id, drain, mark_eligible, evals, event, last_drain } => {
            let Some(node) = state.nodes.get_mut(&node_id) else {
                return Outcome::NotFound { what: format!("node {node_id}") };
            };
            record_drain(node, index, event, last_drain);
            node.drain = drain.is_some();
            if drain.is_some() {
                node.scheduling_eligibility = SchedulingEligibility::Ineligible;
            } else if mark_eligible {
                node.scheduling_eligibility = SchedulingEligibility::Eligible;
            }
            node.drain_strategy = drain;
            node.modify_index = index;
            state.touch_node(node_id, index);
            let jobs = state.upsert_evals(index, evals);
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::NodeDrainComplete { node_id, event, last_drain } => {
            let Some(node) = state.nodes.get(&node_id) else {
                return Outcome::NotFound { what: format!("node {node_id}") };
            };
            let Some(strategy) = &node.drain_strategy else {
                return Outcome::Rejected { reason: format!("node {node_id} is not draining") };
            };
            let ignore_system = strategy.ignore_system_jobs;
            let unmarked = state.allocs_by_node(&node_id).into_iter().find(|a| {
                let system = || {
                    state
                        .job(&a.namespace, &a.job_id)
                        .is_some_and(|j| j.job_type == model::JobType::System)
                };
                let kept = ignore_system && system();
                !(a.is_terminal() || a.desired_transition.should_migrate() || kept)
            });
            if let Some(a) = unmarked {
                return Outcome::Rejected {
                    reason: format!(
                        "node {node_id} still runs allocation {} not marked for migration",
                        a.id
                    ),
                };
            }
            let node = state.nodes.get_mut(&node_id).expect("looked up above");
            record_drain(node, index, event, last_drain);
            node.drain = false;
            node.drain_strategy = None;
            node.modify_index = index;
            state.touch_node(node_id, index);
            Outcome::Applied
        }
        Command::AllocDesiredTransition { alloc_ids, migrate, evals } => {
            let mut jobs = BTreeSet::new();
            for id in alloc_ids {
                let Some(alloc) = state.allocs.get_mut(id.as_str()) else { continue };
                state.journal.note(index, Changed::Alloc(id));
                alloc.desired_transition.migrate = Some(migrate);
                alloc.modify_index = index;
                jobs.insert((alloc.namespace.clone(), alloc.job_id.clone()));
                state.touch(Table::Allocs, index);
            }
            jobs.extend(state.upsert_evals(index, evals));
            state.refresh_job_status(index, jobs);
            Outcome::Applied
        }
        Command::ServiceRegister { services } => {
            for mut s in services {
                s.create_index = state.services.get(&s.id).map_or(index, |e| e.create_index);
                s.modify_index = index;
                let id = s.id.clone();
                state.services.insert(id.clone(), Row::new(s));
                state.touch_service(id, index);
            }
            Outcome::Applied
        }
        Command::ServiceDeregister { ids } => {
            for id in ids {
                state.remove_service(index, &id);
            }
            Outcome::Applied
        }
    }
}

fn not_found_job(key: &JobKey) -> Outcome {
    Outcome::NotFound { what: format!("job {:?} in namespace {:?}", key.1, key.0) }
}

fn remove_from_index<K: Ord + Clone, I: Ord + std::borrow::Borrow<str>>(
    index: &mut BTreeMap<K, BTreeSet<I>>,
    key: &K,
    id: &str,
) {
    if let Some(ids) = index.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// The job with every server-maintained field cleared, for "did the specification change".
fn spec_of(job: &Job) -> Job {
    Job {
        status: String::new(),
        status_description: String::new(),
        stable: false,
        version: 0,
        submit_time: 0,
        create_index: 0,
        modify_index: 0,
        job_modify_index: 0,
        ..job.clone()
    }
}

impl State {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest modify index of any table: the `X-Nomad-Index` of a query across tables.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The highest modify index of one table (0 if it never changed).
    pub fn table_index(&self, table: Table) -> u64 {
        self.table_index.get(&table).copied().unwrap_or(0)
    }

    pub fn job(&self, namespace: &str, id: &str) -> Option<&Job> {
        self.jobs.get(&(namespace.to_owned(), id.to_owned())).map(|j| &**j)
    }

    /// All jobs, ordered by namespace then ID.
    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().map(|j| &**j)
    }

    /// The tracked versions of a job, newest first.
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<&Job> {
        self.job_versions
            .get(&(namespace.to_owned(), id.to_owned()))
            .map(|v| v.values().rev().map(|j| &**j).collect())
            .unwrap_or_default()
    }

    pub fn eval(&self, id: &str) -> Option<&Evaluation> {
        self.evals.get(id).map(|e| &**e)
    }

    pub fn evals(&self) -> impl Iterator<Item = &Evaluation> {
        self.evals.values().map(|e| &**e)
    }

    pub fn evals_by_job(&self, namespace: &str, job_id: &str) -> Vec<&Evaluation> {
        self.ids_to(&self.evals_by_job, &(namespace.to_owned(), job_id.to_owned()), &self.evals)
    }

    pub fn alloc(&self, id: &str) -> Option<&Allocation> {
        self.allocs.get(id).map(|a| &**a)
    }

    /// An allocation as the state holds it, to share rather than copy (the scheduler's view).
    pub fn alloc_row(&self, id: &str) -> Option<&Row<Allocation>> {
        self.allocs.get(id)
    }

    /// Every allocation as the state holds it, by ID.
    pub fn alloc_rows(&self) -> impl Iterator<Item = &Row<Allocation>> {
        self.allocs.values()
    }

    /// A job as the state holds it.
    pub fn job_row(&self, namespace: &str, id: &str) -> Option<&Row<Job>> {
        self.jobs.get(&(namespace.to_owned(), id.to_owned()))
    }

    /// The tracked versions of a job as the state holds them, newest first.
    pub fn job_version_rows(&self, namespace: &str, id: &str) -> Vec<&Row<Job>> {
        self.job_versions
            .get(&(namespace.to_owned(), id.to_owned()))
            .map(|v| v.values().rev().collect())
            .unwrap_or_default()
    }

    /// The allocations and evaluations written (or removed) at indexes above `since`, or `None`
    /// when that is older than the journal remembers and the caller must scan.
    pub fn changed_since(&self, since: u64) -> Option<ChangedIds<'_>> {
        if since < self.journal.floor {
            return None;
        }
        let mut out = ChangedIds::default();
        for (i, c) in self.journal.entries.iter().rev() {
            if *i <= since {
                break;
            }
            match c {
                Changed::Alloc(id) => out.allocs.insert(id.as_str()),
                Changed::Eval(id) => out.evals.insert(id.as_str()),
                Changed::Job((ns, id)) => out.jobs.insert((ns.as_str(), id.as_str())),
                Changed::Node(id) => out.nodes.insert(id.as_str()),
                Changed::Service(id) => out.services.insert(id.as_str()),
            };
        }
        Some(out)
    }

    /// The objects removed at indexes above `since`, oldest first, each with the index that
    /// removed it; `None` when that is older than the journal remembers.
    pub fn removed_since(&self, since: u64) -> Option<Vec<(u64, &Removed)>> {
        if since < self.journal.removed_floor {
            return None;
        }
        let newer = self.journal.removed.iter().rev().take_while(|(i, _)| *i > since);
        let mut out: Vec<(u64, &Removed)> = newer.map(|(i, r)| (*i, r)).collect();
        out.reverse();
        Some(out)
    }

    /// Number of allocations, terminal ones included.
    pub fn alloc_count(&self) -> usize {
        self.allocs.len()
    }

    /// Every allocation, by ID.
    pub fn allocs(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.values().map(|a| &**a)
    }

    pub fn allocs_by_node(&self, node_id: &str) -> Vec<&Allocation> {
        self.ids_to(&self.allocs_by_node, &node_id.to_owned(), &self.allocs)
    }

    /// The job's allocations per task group and client status, old versions' groups included;
    /// kept up to date by `apply`, so reading it costs nothing per allocation.
    pub fn job_alloc_counts(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> Option<&BTreeMap<String, AllocCounts>> {
        self.summaries.get(&(namespace.to_owned(), job_id.to_owned()))
    }

    pub fn allocs_by_job(&self, namespace: &str, job_id: &str) -> Vec<&Allocation> {
        self.ids_to(&self.allocs_by_job, &(namespace.to_owned(), job_id.to_owned()), &self.allocs)
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id).map(|n| &**n)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().map(|n| &**n)
    }

    pub fn service(&self, id: &str) -> Option<&ServiceRegistration> {
        self.services.get(id).map(|s| &**s)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceRegistration> {
        self.services.values().map(|s| &**s)
    }

    fn ids_to<'a, K: Ord, I: Ord + std::borrow::Borrow<str>, T>(
        &'a self,
        index: &'a BTreeMap<K, BTreeSet<I>>,
        key: &K,
        table: &'a BTreeMap<I, Row<T>>,
    ) -> Vec<&'a T> {
        index
            .get(key)
            .map(|ids| {
                ids.iter().filter_map(|id| table.get::<str>(id.borrow()).map(|r| &**r)).collect()
            })
            .unwrap_or_default()
    }

    fn remove_service(&mut self, index: u64, id: &str) {
        if let Some(s) = self.services.remove(id) {
            self.journal.note_removed(index, Removed::Service(s));
            self.touch_service(id.to_owned(), index);
        }
    }

    /// Every write to the jobs, nodes and services tables goes through these three, so the
    /// journal names each changed object (allocations and evaluations are noted where they are
    /// written).
    fn touch_job(&mut self, key: JobKey, index: u64) {
        self.journal.note(index, Changed::Job(key));
        self.touch(Table::Jobs, index);
    }

    fn touch_node(&mut self, id: String, index: u64) {
        self.journal.note(index, Changed::Node(id));
        self.touch(Table::Nodes, index);
    }

    fn touch_service(&mut self, id: String, index: u64) {
        self.journal.note(index, Changed::Service(id));
        self.touch(Table::Services, index);
    }

    fn touch(&mut self, table: Table, index: u64) {
        self.table_index.insert(table, index);
        self.index = index;
    }

    fn register_job(&mut self, index: u64, mut job: Job, eval: Option<Evaluation>) -> Outcome {
        let key = (job.namespace.clone(), job.id.clone());
        match self.jobs.get(&key) {
            Some(existing) => {
                job.create_index = existing.create_index;
                if spec_of(existing) == spec_of(&job) {
                    job.version = existing.version;
                    job.job_modify_index = existing.job_modify_index;
                    job.submit_time = existing.submit_time;
                    job.stable = existing.stable;
                } else {
                    job.version = existing.version + 1;
                    job.job_modify_index = index;
                    job.stable = false;
                }
            }
            None => {
                job.create_index = index;
                job.version = 0;
                job.job_modify_index = index;
                job.stable = false;
            }
        }
        job.modify_index = index;
        let outcome = Outcome::JobRegistered {
            job_version: job.version,
            job_modify_index: job.job_modify_index,
        };
        let job = Row::new(job);
        let versions = self.job_versions.entry(key.clone()).or_default();
        versions.insert(job.version, job.clone());
        while versions.len() > JOB_TRACKED_VERSIONS {
            versions.pop_first();
        }
        self.jobs.insert(key.clone(), job);
        self.touch_job(key.clone(), index);
        let eval = eval.map(|mut e| {
            e.job_modify_index = self.jobs[&key].job_modify_index;
            e
        });
        self.upsert_evals(index, eval);
        self.refresh_job_status(index, [key]);
        outcome
    }

    /// Upserts evaluations; returns the jobs they belong to.
    fn upsert_evals(
        &mut self,
        index: u64,
        evals: impl IntoIterator<Item = Evaluation>,
    ) -> BTreeSet<JobKey> {
        let mut jobs = BTreeSet::new();
        for mut eval in evals {
            eval.create_index = self.evals.get(&eval.id).map_or(index, |e| e.create_index);
            eval.modify_index = index;
            let key = (eval.namespace.clone(), eval.job_id.clone());
            self.evals_by_job.entry(key.clone()).or_default().insert(eval.id.clone());
            self.journal.note(index, Changed::Eval(eval.id.clone()));
            self.evals.insert(eval.id.clone(), Row::new(eval));
            jobs.insert(key);
            self.touch(Table::Evals, index);
        }
        jobs
    }

    fn apply_plan(&mut self, index: u64, plan: PlanResults) -> Outcome {
        let mut jobs = BTreeSet::new();
        for mut alloc in plan.allocs {
            match self.allocs.get(alloc.id.as_str()) {
                Some(existing) => {
                    // An in-place update changes what the servers want; what the agent
                    // reported stays until the agent says otherwise.
                    alloc.create_index = existing.create_index;
                    alloc.create_time = existing.create_time;
                    alloc.client_status = existing.client_status;
                    alloc.client_description = existing.client_description.clone();
                    alloc.task_states = existing.task_states.clone();
                    // Only the drainer marks allocations for migration: the plan's copy of the
                    // allocation was read before, and would undo a mark made since.
                    alloc.desired_transition = existing.desired_transition.clone();
                    // Nor does it bring back an allocation stopped since that copy was read:
                    // desired status only moves forward.
                    if existing.desired_status != DesiredStatus::Run {
                        alloc.desired_status = existing.desired_status;
                        alloc.desired_description = existing.desired_description.clone();
                    }
                    if existing.node_id != alloc.node_id {
                        let old_node = existing.node_id.clone();
                        remove_from_index(&mut self.allocs_by_node, &old_node, &alloc.id);
                    }
                }
                None => alloc.create_index = index,
            }
            alloc.modify_index = index;
            alloc.alloc_modify_index = index;
            if let Some(existing) = self.allocs.get(alloc.id.as_str()) {
                count(&mut self.summaries, existing, false);
            }
            count(&mut self.summaries, &alloc, true);
            let key = (alloc.namespace.clone(), alloc.job_id.clone());
            self.allocs_by_node
                .entry(alloc.node_id.clone())
                .or_default()
                .insert(Id::new(&alloc.id));
            self.allocs_by_job.entry(key.clone()).or_default().insert(Id::new(&alloc.id));
            jobs.insert(key);
            self.journal.note(index, Changed::Alloc(alloc.id.clone()));
            self.allocs.insert(Id::new(&alloc.id), Row::new(alloc));
            self.touch(Table::Allocs, index);
        }
        for stop in plan.stops {
            let Some(alloc) = self.allocs.get_mut(stop.alloc_id.as_str()) else { continue };
            self.journal.note(index, Changed::Alloc(stop.alloc_id.clone()));
            alloc.desired_status = DesiredStatus::Stop;
            alloc.desired_description = stop.desired_description;
            if let Some(status) = stop.client_status {
                count(&mut self.summaries, alloc, false);
                alloc.client_status = status;
                count(&mut self.summaries, alloc, true);
            }
            if let Some(followup) = stop.followup_eval_id {
                alloc.followup_eval_id = followup;
            }
            alloc.modify_time = stop.modify_time;
            alloc.modify_index = index;
            alloc.alloc_modify_index = index;
            jobs.insert((alloc.namespace.clone(), alloc.job_id.clone()));
            self.touch(Table::Allocs, index);
        }
        jobs.extend(self.upsert_evals(index, plan.evals));
        self.refresh_job_status(index, jobs);
        Outcome::Applied
    }

    /// Recomputes the status of jobs whose allocations or evaluations changed, as Nomad's
    /// `getJobStatus`: running while any allocation is live, pending while any evaluation is
    /// outstanding, dead once it has run (or was stopped) and nothing is left.
    fn refresh_job_status(&mut self, index: u64, jobs: impl IntoIterator<Item = JobKey>) {
        for key in jobs {
            let Some(job) = self.jobs.get(&key) else { continue };
            let allocs = self.allocs_by_job.get(&key);
            let evals = self.evals_by_job.get(&key);
            let live_alloc = allocs
                .into_iter()
                .flatten()
                .filter_map(|id| self.allocs.get(id))
                .any(|a| !a.is_terminal());
            let open_eval =
                evals.into_iter().flatten().filter_map(|id| self.evals.get(id)).any(|e| {
                    matches!(e.status, model::EvalStatus::Pending | model::EvalStatus::Blocked)
                });
            let has_history = allocs.is_some_and(|a| !a.is_empty());
            let status = if live_alloc {
                "running"
            } else if open_eval {
                "pending"
            } else if job.stop || has_history {
                "dead"
            } else {
                "pending"
            };
            if job.status != status {
                let job = self.jobs.get_mut(&key).expect("checked above");
                job.status = status.to_owned();
                job.modify_index = index;
                // The current version in the history stays the same object as the job.
                let current = job.clone();
                if let Some(v) =
                    self.job_versions.get_mut(&key).and_then(|v| v.get_mut(&current.version))
                {
                    *v = current;
                }
                self.touch_job(key, index);
            }
        }
    }

    /// The persisted form of the state (see [`crate::codec`] for the framing).
    pub fn to_snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            index: self.index,
            table_index: self.table_index.iter().map(|(t, i)| (*t, *i)).collect(),
            jobs: self.jobs.values().cloned().collect(),
            job_versions: self.job_versions.values().flat_map(|v| v.values().cloned()).collect(),
            evals: self.evals.values().cloned().collect(),
            allocs: self.allocs.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
            services: self.services.values().cloned().collect(),
        }
    }

    /// Rebuilds a state, with its secondary indexes, from its persisted form.
    pub fn from_snapshot(s: StateSnapshot) -> State {
        let mut state = State {
            index: s.index,
            table_index: s.table_index.into_iter().collect(),
            journal: Journal { floor: s.index, removed_floor: s.index, ..Journal::default() },
            ..State::default()
        };
        for job in s.jobs {
            state.jobs.insert((job.namespace.clone(), job.id.clone()), job);
        }
        for job in s.job_versions {
            let key = (job.namespace.clone(), job.id.clone());
            // The persisted form lists the current version twice; held once again here.
            let job = match state.jobs.get(&key) {
                Some(current) if current.version == job.version && **current == *job => {
                    current.clone()
                }
                _ => job,
            };
            state.job_versions.entry(key).or_default().insert(job.version, job);
        }
        for eval in s.evals {
            state
                .evals_by_job
                .entry((eval.namespace.clone(), eval.job_id.clone()))
                .or_default()
                .insert(eval.id.clone());
            state.evals.insert(eval.id.clone(), eval);
        }
        for alloc in s.allocs {
            state
                .allocs_by_node
                .entry(alloc.node_id.clone())
                .or_default()
                .insert(Id::new(&alloc.id));
            state
                .allocs_by_job
                .entry((alloc.namespace.clone(), alloc.job_id.clone()))
                .or_default()
                .insert(Id::new(&alloc.id));
            count(&mut state.summaries, &alloc, true);
            state.allocs.insert(Id::new(&alloc.id), alloc);
        }
        for node in s.nodes {
            state.nodes.insert(node.id.clone(), node);
        }
        for service in s.services {
            state.services.insert(service.id.clone(), service);
        }
        state
    }
}

/// The persisted form of [`State`]: flat tables, without the secondary indexes (those are rebuilt
/// on load, so they can never disagree with the tables on disk).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub index: u64,
    pub table_index: Vec<(Table, u64)>,
    pub jobs: Vec<Row<Job>>,
    pub job_versions: Vec<Row<Job>>,
    pub evals: Vec<Row<Evaluation>>,
    pub allocs: Vec<Row<Allocation>>,
    pub nodes: Vec<Row<Node>>,
    pub services: Vec<Row<ServiceRegistration>>,
}

#[cfg(test)]
mod tests;
