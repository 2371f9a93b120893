//! The leader's scheduling pipeline, as Nomad's (reference §4.1): the replicated evaluations feed
//! an evaluation [`Broker`]; scheduler workers ([`crate::worker`]) take evaluations from it and
//! run [`scheduler::schedule`] on a shared [`Cluster`] view; the plan applier
//! ([`crate::plan_apply`]) re-verifies each plan against the latest state and commits its
//! feasible part; [`Blocked`] evaluations wait for capacity; delayed ones wait in the broker.
//!
//! Everything here lives only while this server leads and is rebuilt from the replicated state
//! by the next leader; nothing in it is persisted. The [`Cluster`] view is kept incrementally:
//! each refresh copies only what changed since the index it last saw, because rebuilding the
//! scheduler's state per evaluation costs more than scheduling at scale. This module does not
//! decide placements (the scheduler does) nor liveness (the server's heartbeat tracker does).

use crate::blocked::{Blocked, Freed};
use crate::broker::{Broker, BrokerConfig};
use crate::server::ServerHandle;
use crate::state::{AllocStop, Command, PlanResults, State, Table};
use model::{EvalStatus, Evaluation, NodeStatus, SchedulingEligibility, TriggeredBy};
use scheduler::{ClusterState, EvalContext, Plan, PlanVerdict};
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// The scheduler's view of the replicated state: every node, allocation and tracked job version.
/// Built from scratch; the pipeline keeps a [`Cluster`] up to date instead.
pub fn cluster_state(state: &State) -> ClusterState {
    let mut cluster = Cluster::default();
    cluster.sync(state);
    cluster.state
}

/// The seed of an evaluation's random choices: fixed by its ID and the snapshot, so a retry on
/// a newer snapshot sees a fresh node order, as in Nomad.
pub(crate) fn seed_for(eval_id: &str, index: u64) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(eval_id.as_bytes());
    h.write_u64(index);
    h.finish()
}

/// Computes the plan for `eval` against `state`, and the command that commits it and completes
/// the evaluation, without the broker: what `job plan` (a dry run) shows.
pub fn process(state: &State, eval: &Evaluation, now: i64) -> (Plan, Command) {
    let cs = cluster_state(state);
    let job = state.job(&eval.namespace, &eval.job_id);
    let ctx = EvalContext {
        eval: eval.clone(),
        now_unix_nanos: now,
        seed: seed_for(&eval.id, state.index()),
        algorithm: scheduler::Algorithm::default(),
    };
    let plan = scheduler::schedule(&cs, job, &ctx);
    let verdict = scheduler::verify_plan(&cs, &plan);
    let mut finish = completion(&plan, eval, state.index(), now);
    finish.splice(0..0, superseded_blocked(state, eval, now));
    let command = Command::PlanResults(results(&plan, &verdict, eval, Some(finish), now));
    (plan, command)
}

/// Blocked evaluations of the job other than `eval`: an evaluation reconsiders the whole job, so
/// they are cancelled, as Nomad's blocked-evals tracker keeps at most one per job.
pub(crate) fn superseded_blocked(state: &State, eval: &Evaluation, now: i64) -> Vec<Evaluation> {
    state
        .evals_by_job(&eval.namespace, &eval.job_id)
        .into_iter()
        .filter(|old| old.status == EvalStatus::Blocked && old.id != eval.id)
        .map(|old| {
            let mut old = old.clone();
            old.status = EvalStatus::Canceled;
            old.status_description = format!("superseded by evaluation {}", eval.id);
            old.modify_time = now;
            old
        })
        .collect()
}

/// The evaluations that complete `eval` once its plan is fully committed: the evaluation itself
/// with the scheduler's metrics, its blocked evaluation and follow-ups.
pub(crate) fn completion(
    plan: &Plan,
    eval: &Evaluation,
    snapshot: u64,
    now: i64,
) -> Vec<Evaluation> {
    let mut evals: Vec<Evaluation> = plan.followup_evals.clone();
    let mut done = eval.clone();
    done.status = EvalStatus::Complete;
    done.status_description.clear();
    done.failed_tg_allocs = plan.failed_tg_allocs.clone();
    done.queued_allocations = plan.queued_allocations.clone();
    done.snapshot_index = snapshot;
    done.modify_time = now;
    if let Some(b) = &plan.blocked_eval {
        let mut b = b.clone();
        b.snapshot_index = snapshot;
        done.blocked_eval = b.id.clone();
        evals.push(b);
    }
    evals.push(done);
    evals
}

/// The command committing the part of `plan` that `verdict` accepted, with `finish` (the
/// evaluations completing it) only when all of it was accepted.
pub(crate) fn results(
    plan: &Plan,
    verdict: &PlanVerdict,
    eval: &Evaluation,
    finish: Option<Vec<Evaluation>>,
    now: i64,
) -> PlanResults {
    let accepted = |node: &String| verdict.accepted_nodes.contains(node);
    let allocs = plan
        .node_allocation
        .iter()
        .filter(|(n, _)| accepted(n))
        .flat_map(|(_, a)| a.iter().cloned())
        .collect();
    let stops = plan
        .node_update
        .iter()
        .filter(|(n, _)| accepted(n))
        .flat_map(|(_, s)| s.iter())
        .map(|s| AllocStop {
            alloc_id: s.alloc_id.clone(),
            desired_description: s.desired_description.clone(),
            client_status: s.client_status,
            followup_eval_id: None,
            modify_time: now,
        })
        .collect();
    let evals = if verdict.is_complete() { finish.unwrap_or_default() } else { Vec::new() };
    PlanResults { eval_id: eval.id.clone(), allocs, stops, evals }
}

/// The scheduler's state kept in step with the replicated [`State`], and the index it reflects.
#[derive(Debug, Default)]
pub struct Cluster {
    pub state: ClusterState,
    pub index: u64,
    /// Stamps and names the evaluations the view creates (rolling-update continuations).
    pub clock: crate::clock::Clock,
}

/// What a [`Cluster::sync`] saw change, for the broker and the blocked tracker.
#[derive(Debug, Default)]
pub struct Changes {
    /// Evaluations that became pending.
    pub pending: Vec<Evaluation>,
    /// Evaluations that became blocked.
    pub blocked: Vec<Evaluation>,
    /// Evaluations that finished (complete, failed, cancelled).
    pub finished: Vec<Evaluation>,
    /// Where capacity appeared.
    pub freed: Freed,
    /// Evaluations to create because a new allocation of a job in the middle of a rolling
    /// update became healthy: the scheduler paces destructive updates on health.
    pub rollout: Vec<Evaluation>,
    /// `node-update` evaluations for jobs left with a live allocation on a down node that no
    /// evaluation created since will replace (see [`Cluster::sync`]).
    pub lost: Vec<Evaluation>,
}

impl Cluster {
    /// Copies into the cluster view what changed in `s` since the last sync, using each table's
    /// modify index to skip unchanged tables and each row's to skip unchanged rows.
    pub fn sync(&mut self, s: &State) -> Changes {
        let since = self.index;
        let mut changes =
            Changes { freed: Freed { index: s.index(), ..Freed::default() }, ..Changes::default() };
        if s.index() <= since {
            return changes;
        }
        let changed = |t: Table| s.table_index(t) > since;
        if changed(Table::Jobs) {
            // Versions and allocations are shared with the state, not copied: the view holds
            // pointers to the state's objects (a later change in the state copies its row).
            for j in s.jobs().filter(|j| j.modify_index > since) {
                for v in s.job_version_rows(&j.namespace, &j.id) {
                    if v.modify_index > since {
                        self.state.insert_job_version_shared(v.shared().clone());
                    }
                }
                if let Some(row) = s.job_row(&j.namespace, &j.id) {
                    self.state.insert_job_version_shared(row.shared().clone());
                }
            }
        }
        // Nodes that went down and allocations that changed on down nodes: their jobs need an
        // evaluation that sees both, or the allocations are never replaced.
        let mut down_nodes: Vec<String> = Vec::new();
        let mut on_down: Vec<String> = Vec::new();
        if changed(Table::Nodes) {
            let mut present = 0;
            for n in s.nodes() {
                present += 1;
                if n.modify_index <= since {
                    continue;
                }
                if n.status == NodeStatus::Down {
                    down_nodes.push(n.id.clone());
                }
                if n.status == NodeStatus::Ready
                    && n.scheduling_eligibility == SchedulingEligibility::Eligible
                {
                    changes.freed.classes.insert(n.compute_class());
                }
                self.state.upsert_node(n.clone());
            }
            // The scheduler's view never forgets a node (its index must stay stable), so a
            // deregistered node stays as a down one and its allocations count as lost.
            if present < self.state.nodes().len() {
                let gone: Vec<_> = self
                    .state
                    .nodes()
                    .iter()
                    .filter(|n| n.status != NodeStatus::Down && s.node(&n.id).is_none())
                    .cloned()
                    .collect();
                for mut n in gone {
                    n.status = NodeStatus::Down;
                    self.state.upsert_node(n);
                }
            }
        }
        // The journal names what changed; without it (a fresh view, or one far behind) every
        // row is looked at.
        let journal = if since == 0 { None } else { s.changed_since(since) };
        if changed(Table::Allocs) {
            let mut healthy = BTreeSet::new();
            let mut upsert = |cs: &mut ClusterState,
                              a: &crate::state::Row<model::Allocation>,
                              changes: &mut Changes| {
                if !a.is_terminal()
                    && s.node(&a.node_id).is_some_and(|n| n.status == NodeStatus::Down)
                {
                    on_down.push(a.id.clone());
                }
                let before = cs.alloc(&a.id);
                let was_live = before.is_some_and(|b| !b.is_terminal());
                if was_live && a.is_terminal() {
                    if let Some(n) = cs.node_idx(&a.node_id) {
                        changes.freed.classes.insert(cs.class_name(cs.node_class(n)).to_owned());
                    }
                }
                let was_healthy = before
                    .and_then(|b| b.deployment_status.as_ref())
                    .and_then(|d| d.healthy)
                    .unwrap_or(false);
                let is_healthy =
                    a.deployment_status.as_ref().and_then(|d| d.healthy).unwrap_or(false);
                if is_healthy && !was_healthy {
                    healthy.insert((a.namespace.clone(), a.job_id.clone()));
                }
                cs.upsert_alloc_shared(a.shared().clone());
            };
            match &journal {
                Some(j) => {
                    for id in &j.allocs {
                        match s.alloc_row(id) {
                            Some(a) => upsert(&mut self.state, a, &mut changes),
                            None => {
                                self.state.remove_alloc(id);
                            }
                        }
                    }
                }
                None => {
                    for a in s.alloc_rows().filter(|a| a.modify_index > since) {
                        upsert(&mut self.state, a, &mut changes);
                    }
                    if self.state.alloc_count() > s.alloc_count() {
                        let gone: Vec<String> = self
                            .state
                            .allocs()
                            .filter(|a| s.alloc(&a.id).is_none())
                            .map(|a| a.id.clone())
                            .collect();
                        for id in gone {
                            self.state.remove_alloc(&id);
                        }
                    }
                }
            }
            for (ns, job_id) in healthy {
                if let Some(e) = self.rollout_eval(s, &ns, &job_id) {
                    changes.rollout.push(e);
                }
            }
        }
        changes.lost = self.lost_evals(s, &down_nodes, &on_down);
        if changed(Table::Evals) {
            let mut classify = |e: &Evaluation| match e.status {
                EvalStatus::Pending => changes.pending.push(e.clone()),
                EvalStatus::Blocked => changes.blocked.push(e.clone()),
                _ => changes.finished.push(e.clone()),
            };
            match &journal {
                Some(j) => j.evals.iter().filter_map(|id| s.eval(id)).for_each(&mut classify),
                None => s.evals().filter(|e| e.modify_index > since).for_each(&mut classify),
            }
        }
        self.index = s.index();
        changes
    }

    /// A `node-update` evaluation for each job with a live allocation on a down node and no
    /// evaluation created at or after both the node went down and the allocation was last
    /// written. The evaluations a node's `Down` status is written with are computed from the
    /// state just before it, so a plan committed in between (placed on the node while it was
    /// still ready) would otherwise leave its allocation lost and never replaced.
    fn lost_evals(&self, s: &State, down_nodes: &[String], on_down: &[String]) -> Vec<Evaluation> {
        let mut uncovered: std::collections::BTreeMap<(String, String), (String, u64)> =
            Default::default();
        let by_node = down_nodes.iter().flat_map(|n| {
            s.allocs_by_node(n).into_iter().map(|a| (a.id.clone(), a.node_id.clone()))
        });
        let changed =
            on_down.iter().filter_map(|id| s.alloc(id)).map(|a| (a.id.clone(), a.node_id.clone()));
        for (alloc_id, node_id) in by_node.chain(changed) {
            let Some(a) = s.alloc(&alloc_id).filter(|a| !a.is_terminal()) else { continue };
            let Some(node) = s.node(&node_id).filter(|n| n.status == NodeStatus::Down) else {
                continue;
            };
            let since = node.modify_index.max(a.modify_index);
            let covered = s.evals_by_job(&a.namespace, &a.job_id).iter().any(|e| {
                e.create_index >= since
                    && matches!(
                        e.status,
                        EvalStatus::Pending | EvalStatus::Blocked | EvalStatus::Complete
                    )
            });
            if !covered {
                let key = (a.namespace.clone(), a.job_id.clone());
                uncovered.entry(key).or_insert((node.id.clone(), node.modify_index));
            }
        }
        let now = self.clock.unix_nanos();
        uncovered
            .into_iter()
            .map(|((namespace, job_id), (node_id, node_modify_index))| {
                let job = s.job(&namespace, &job_id);
                Evaluation {
                    id: self.clock.uuid(),
                    priority: job.map_or(50, |j| j.priority),
                    job_type: job.map(|j| j.job_type).unwrap_or_default(),
                    triggered_by: TriggeredBy::NodeUpdate,
                    namespace,
                    job_id,
                    node_id,
                    node_modify_index,
                    status: EvalStatus::Pending,
                    create_time: now,
                    modify_time: now,
                    ..Evaluation::default()
                }
            })
            .collect()
    }

    /// An evaluation continuing a rolling update, when the job still runs allocations of an
    /// older version and has no evaluation pending already.
    fn rollout_eval(&self, s: &State, namespace: &str, job_id: &str) -> Option<Evaluation> {
        let job = s.job(namespace, job_id)?;
        let cs = &self.state;
        let behind = cs.allocs_by_job(namespace, job_id).iter().any(|&slot| {
            let a = cs.alloc_at(slot);
            a.job_version < job.version && !a.is_terminal()
        });
        let queued =
            s.evals_by_job(namespace, job_id).iter().any(|e| e.status == EvalStatus::Pending);
        if !behind || job.stop || queued {
            return None;
        }
        let now = self.clock.unix_nanos();
        Some(Evaluation {
            id: self.clock.uuid(),
            namespace: namespace.to_owned(),
            priority: job.priority,
            job_type: job.job_type,
            triggered_by: TriggeredBy::RollingUpdate,
            job_id: job_id.to_owned(),
            job_modify_index: job.job_modify_index,
            status: EvalStatus::Pending,
            create_time: now,
            modify_time: now,
            ..Evaluation::default()
        })
    }
}

/// Pipeline settings.
#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Scheduler workers.
    pub workers: usize,
    pub broker: BrokerConfig,
}

impl PipelineConfig {
    /// The settings a server's configuration asks for.
    pub fn of(handle: &ServerHandle) -> Self {
        let n = handle.config().server.num_schedulers as usize;
        let workers = if n == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            n
        };
        PipelineConfig { workers, broker: handle.config().broker() }
    }
}

/// A plan handed to the plan applier, with what completes its evaluation when it commits whole.
pub(crate) struct Submission {
    pub plan: Plan,
    pub eval: Evaluation,
    pub finish: Vec<Evaluation>,
    pub reply: tokio::sync::oneshot::Sender<Result<PlanVerdict, crate::Error>>,
}

/// Everything the leader's pipeline tasks share.
pub(crate) struct Leader {
    pub handle: ServerHandle,
    pub cluster: RwLock<Cluster>,
    pub broker: Mutex<Broker>,
    pub blocked: Mutex<Blocked>,
    /// Wakes workers when evaluations become ready.
    pub ready: Notify,
    /// Writes the pipeline decided on (cancellations, failures, new evaluations), made by the
    /// leader loop so no worker waits on them.
    pub outbox: Mutex<Vec<Evaluation>>,
    pub wake: Notify,
    pub plans: mpsc::Sender<Submission>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Leader {
    /// Brings the cluster view up to the applied state and feeds what changed to the broker and
    /// the blocked tracker. Returns the index the view now reflects.
    pub fn refresh(&self) -> u64 {
        let (changes, index) = {
            // The view's lock is taken before the state's: workers hold only the view's while
            // scheduling, and Raft's apply only the state's, so neither waits on a scheduler.
            let mut cluster = self.cluster.write().unwrap_or_else(|e| e.into_inner());
            let state = self.handle.state_lock().read().unwrap_or_else(|e| e.into_inner());
            if state.index() <= cluster.index {
                return cluster.index;
            }
            (cluster.sync(&state), cluster.index)
        };
        self.feed(changes);
        index
    }

    fn feed(&self, changes: Changes) {
        let now = self.handle.clock().unix_nanos();
        let mut outbox = Vec::new();
        let mut retry = Vec::new();
        {
            let mut blocked = lock(&self.blocked);
            for e in &changes.finished {
                blocked.untrack(&e.namespace, &e.job_id, &e.id);
            }
            for e in changes.blocked {
                let (now_ready, superseded) = blocked.block(e);
                retry.extend(now_ready);
                if let Some(mut old) = superseded {
                    old.status = EvalStatus::Canceled;
                    old.status_description = "superseded by a newer blocked evaluation".into();
                    old.modify_time = now;
                    outbox.push(old);
                }
            }
            if !changes.freed.classes.is_empty() {
                retry.extend(blocked.unblock(&changes.freed));
            }
        }
        outbox.extend(changes.rollout);
        outbox.extend(changes.lost);
        let ready = {
            let mut broker = lock(&self.broker);
            for e in changes.pending.into_iter().chain(retry) {
                broker.enqueue(e, now);
            }
            broker.ready_len()
        };
        if ready > 0 {
            for _ in 0..ready {
                self.ready.notify_one();
            }
        }
        if !outbox.is_empty() {
            lock(&self.outbox).extend(outbox);
            self.wake.notify_one();
        }
    }

    /// Queues evaluation writes for the leader loop.
    pub fn send(&self, evals: Vec<Evaluation>) {
        if !evals.is_empty() {
            lock(&self.outbox).extend(evals);
            self.wake.notify_one();
        }
    }
}

/// Marks evaluations the broker gave up on as failed, each with a follow-up that retries the
/// job later, as Nomad's leader does for evaluations past the delivery limit.
pub(crate) fn failed_with_followups(
    failed: Vec<Evaluation>,
    limit: u32,
    clock: &crate::clock::Clock,
) -> Vec<Evaluation> {
    let now = clock.unix_nanos();
    let mut out = Vec::new();
    for mut e in failed {
        let mut follow = e.clone();
        follow.id = clock.uuid();
        follow.triggered_by = TriggeredBy::FailedFollowUp;
        follow.status = EvalStatus::Pending;
        follow.status_description.clear();
        follow.previous_eval = e.id.clone();
        follow.wait_until = now + 60_000_000_000;
        follow.create_time = now;
        follow.modify_time = now;
        e.status = EvalStatus::Failed;
        e.status_description = format!("evaluation reached delivery limit ({limit})");
        e.next_eval = follow.id.clone();
        e.modify_time = now;
        out.push(e);
        out.push(follow);
    }
    out
}

/// Runs the pipeline until the task is aborted: while this server leads, a broker, the blocked
/// tracker, `workers` scheduler workers and the plan applier, all rebuilt from the replicated
/// state at each election; elsewhere, waits.
pub async fn run(handle: ServerHandle) {
    let config = PipelineConfig::of(&handle);
    run_with(handle, config).await
}

/// [`run`] with explicit settings.
pub async fn run_with(handle: ServerHandle, config: PipelineConfig) {
    loop {
        if handle.is_leader() {
            lead(&handle, config).await;
        } else {
            // Winning an election commits a blank entry, so the applied index moves.
            let applied = handle.applied_index();
            handle.wait_for_index(applied + 1, Duration::from_millis(250)).await;
        }
    }
}

async fn lead(handle: &ServerHandle, config: PipelineConfig) {
    // What the previous leader committed, this pipeline must see before it schedules anything.
    if let Err(e) = handle.leader_barrier().await {
        // Not confirmed (no quorum, or deposed meanwhile): try again later, not in a loop that
        // would redial the followers without pause.
        tracing::debug!(error = %e, "leadership not confirmed; pipeline not started");
        tokio::time::sleep(Duration::from_millis(250)).await;
        return;
    }
    let (plans, plan_rx) = mpsc::channel(config.workers.max(1) * 2);
    let leader = Arc::new(Leader {
        handle: handle.clone(),
        cluster: RwLock::new(Cluster { clock: handle.clock().clone(), ..Cluster::default() }),
        broker: Mutex::new(Broker::new(config.broker)),
        blocked: Mutex::new(Blocked::new()),
        ready: Notify::new(),
        outbox: Mutex::new(Vec::new()),
        wake: Notify::new(),
        plans,
    });
    tracing::info!(workers = config.workers, "leading: scheduling pipeline started");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::plan_apply::run(leader.clone(), plan_rx));
    for _ in 0..config.workers {
        tasks.spawn(crate::worker::run(leader.clone()));
    }
    tasks.spawn(crate::drainer::run(handle.clone()));
    let mut backoff = Duration::from_millis(50);
    while handle.is_leader() {
        // Entries that do not change the state (blank, membership) still advance the applied
        // index, so the wait below is on the applied index, not the state's.
        let applied = handle.applied_index();
        // The first refresh rebuilds everything from the replicated state: pending evaluations
        // into the broker, blocked ones into the tracker.
        {
            let l = leader.clone();
            let _ = handle.clock().blocking(move || l.refresh()).await;
        }
        let now = handle.clock().unix_nanos();
        let failed = lock(&leader.broker).tick(now);
        leader.send(failed_with_followups(failed, config.broker.delivery_limit, handle.clock()));
        if lock(&leader.broker).ready_len() > 0 {
            leader.ready.notify_one();
        }
        let writes = std::mem::take(&mut *lock(&leader.outbox));
        if !writes.is_empty() {
            if let Err(e) =
                handle.write_as_leader(Command::EvalUpsert { evals: writes.clone() }).await
            {
                tracing::warn!(error = %e, "writing evaluation updates failed; retrying");
                lock(&leader.outbox).splice(0..0, writes);
                // Without a quorum every write fails at once; back off instead of spinning.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            backoff = Duration::from_millis(50);
        }
        let wait = lock(&leader.broker)
            .next_deadline()
            .map(|d| Duration::from_nanos(d.saturating_sub(now).max(1_000_000) as u64))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = handle.wait_for_index(applied + 1, wait) => {}
            _ = leader.wake.notified() => {}
        }
    }
    tracing::info!("leadership lost: scheduling pipeline stopped");
    tasks.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::apply;
    use model::{DriverInfo, Job, Node, NodeStatus, Resources, Task, TaskGroup, TriggeredBy};

    fn state_with(memory_mb: u32) -> (State, Evaluation) {
        let mut s = State::new();
        let mut node = Node {
            id: "n1".into(),
            name: "n1".into(),
            datacenter: "dc1".into(),
            status: NodeStatus::Ready,
            ..Node::default()
        };
        node.node_resources.cpu.cpu_shares = 1000;
        node.node_resources.memory.memory_mb = 1024;
        node.drivers.insert(
            "pot".into(),
            DriverInfo { detected: true, healthy: true, ..Default::default() },
        );
        apply(&mut s, 1, Command::NodeRegister { node: Box::new(node) });
        let mut job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 2,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "pot".into(),
                    resources: Some(Resources { cpu: 100, memory_mb, ..Resources::default() }),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        job.canonicalize();
        let eval = Evaluation {
            id: "e1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            triggered_by: TriggeredBy::JobRegister,
            ..Evaluation::default()
        };
        apply(
            &mut s,
            2,
            Command::JobRegister { job: Box::new(job), eval: Some(Box::new(eval.clone())) },
        );
        (s, eval)
    }

    #[test]
    fn a_plan_places_and_completes_its_evaluation() {
        let (mut s, eval) = state_with(100);
        let (plan, command) = process(&s, &eval, 1);
        assert_eq!(plan.placements(), 2);
        apply(&mut s, 3, command);
        assert_eq!(s.allocs_by_job("default", "web").len(), 2);
        let done = s.eval("e1").unwrap();
        assert_eq!(done.status, EvalStatus::Complete);
        assert!(done.failed_tg_allocs.is_empty());
        // Processing the same evaluation again on the new state changes nothing.
        let (again, _) = process(&s, &eval, 2);
        assert_eq!(again.placements(), 0);
        assert!(again.is_no_op());
    }

    #[test]
    fn a_group_that_does_not_fit_is_recorded_with_a_blocked_evaluation() {
        let (mut s, eval) = state_with(4096);
        let mut cluster = Cluster::default();
        cluster.sync(&s);
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        assert!(s.allocs_by_job("default", "web").is_empty());
        let done = s.eval("e1").unwrap();
        assert_eq!(done.status, EvalStatus::Complete);
        assert_eq!(done.failed_tg_allocs["g"].dimension_exhausted.get("memory"), Some(&1));
        let blocked = s.eval(&done.blocked_eval).expect("a blocked evaluation is stored").clone();
        assert_eq!(blocked.status, EvalStatus::Blocked);
        let changes = cluster.sync(&s);
        assert_eq!(changes.blocked.iter().map(|e| &e.id).collect::<Vec<_>>(), [&blocked.id]);
        assert!(changes.freed.classes.is_empty(), "nothing freed since it was blocked");
        let mut tracker = Blocked::new();
        assert_eq!(tracker.block(changes.blocked[0].clone()), (None, None));

        // A bigger node joins: the blocked evaluation is retried and places the group.
        let mut big = s.node("n1").unwrap().clone();
        big.id = "n2".into();
        big.node_resources.memory.memory_mb = 16_384;
        apply(&mut s, 4, Command::NodeRegister { node: Box::new(big) });
        let changes = cluster.sync(&s);
        assert_eq!(cluster.state.nodes().len(), 2);
        let retry = tracker.unblock(&changes.freed);
        assert_eq!(retry.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [blocked.id.as_str()]);
        let (_, command) = process(&s, &retry[0], 2);
        apply(&mut s, 5, command);
        assert_eq!(s.allocs_by_job("default", "web").len(), 2);
        assert_eq!(s.eval(&blocked.id).unwrap().status, EvalStatus::Complete);
        let changes = cluster.sync(&s);
        assert_eq!(cluster.state.alloc_count(), 2, "the view follows the committed plan");
        assert!(changes.finished.iter().any(|e| e.id == blocked.id));

        // A newer evaluation of the job supersedes a blocked one.
        let (mut s, eval) = state_with(4096);
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        let first_blocked = s.eval("e1").unwrap().blocked_eval.clone();
        let second = Evaluation { id: "e2".into(), ..eval };
        apply(&mut s, 4, Command::EvalUpsert { evals: vec![second.clone()] });
        let (_, command) = process(&s, &second, 2);
        apply(&mut s, 5, command);
        assert_eq!(s.eval(&first_blocked).unwrap().status, EvalStatus::Canceled);
        let blocked: Vec<_> =
            s.evals().filter(|e| e.status == EvalStatus::Blocked).map(|e| e.id.clone()).collect();
        assert_eq!(blocked, [s.eval("e2").unwrap().blocked_eval.clone()]);
    }

    fn node_down(evals: Vec<Evaluation>) -> Command {
        Command::NodeStatus {
            node_id: "n1".into(),
            status: NodeStatus::Down,
            status_description: "node heartbeat missed".into(),
            evals,
        }
    }

    #[test]
    fn allocations_left_on_a_down_node_without_an_evaluation_get_one() {
        let (mut s, eval) = state_with(100);
        let mut cluster = Cluster::default();
        cluster.sync(&s);
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        assert!(cluster.sync(&s).lost.is_empty(), "live allocations on a ready node");
        // The node goes down with evaluations computed from a state read before the plan
        // committed: none for this job.
        apply(&mut s, 4, node_down(Vec::new()));
        let lost = cluster.sync(&s).lost;
        assert_eq!(lost.len(), 1);
        assert_eq!((lost[0].job_id.as_str(), lost[0].node_id.as_str()), ("web", "n1"));
        assert_eq!(lost[0].triggered_by, TriggeredBy::NodeUpdate);
        assert_eq!(lost[0].status, EvalStatus::Pending);
        // Once written, it covers them.
        apply(&mut s, 5, Command::EvalUpsert { evals: lost });
        assert!(cluster.sync(&s).lost.is_empty());
        // A fresh view (a new leader) finds nothing missing either.
        assert!(Cluster::default().sync(&s).lost.is_empty());
    }

    #[test]
    fn a_node_down_written_with_its_evaluations_needs_no_more() {
        let (mut s, eval) = state_with(100);
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        let mut cluster = Cluster::default();
        cluster.sync(&s);
        let update = Evaluation {
            id: "e2".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            triggered_by: TriggeredBy::NodeUpdate,
            status: EvalStatus::Pending,
            ..Evaluation::default()
        };
        apply(&mut s, 4, node_down(vec![update]));
        assert!(cluster.sync(&s).lost.is_empty());
        // A new leader that missed the original one still finds the down node covered.
        assert!(Cluster::default().sync(&s).lost.is_empty());
    }

    #[test]
    fn an_evaluation_past_the_delivery_limit_fails_with_a_delayed_follow_up() {
        let clock = crate::clock::Clock::from_source(Arc::new(crate::clock::SeededSource::new(
            1_000,
            7,
            Duration::default,
        )));
        let e = Evaluation { id: "e1".into(), job_id: "web".into(), ..Evaluation::default() };
        let out = failed_with_followups(vec![e], 3, &clock);
        assert_eq!(out.len(), 2);
        let (failed, follow) = (&out[0], &out[1]);
        assert_eq!(failed.status, EvalStatus::Failed);
        assert_eq!(failed.next_eval, follow.id);
        assert_eq!(
            (follow.status, follow.triggered_by),
            (EvalStatus::Pending, TriggeredBy::FailedFollowUp)
        );
        assert_eq!(follow.previous_eval, "e1");
        assert_eq!(
            follow.wait_until,
            1_000 + 60_000_000_000,
            "waits a minute of the server's clock"
        );
        assert_ne!(follow.id, "e1");
    }

    #[test]
    fn the_incremental_view_matches_a_rebuild() {
        let (mut s, eval) = state_with(100);
        let mut cluster = Cluster::default();
        cluster.sync(&s);
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        let changes = cluster.sync(&s);
        assert!(changes.finished.iter().any(|e| e.id == "e1"));
        // An allocation stops: its node's class gains capacity.
        let id = s.allocs_by_job("default", "web")[0].id.clone();
        let stop = AllocStop { alloc_id: id.clone(), ..AllocStop::default() };
        let results =
            PlanResults { eval_id: "x".into(), stops: vec![stop], ..PlanResults::default() };
        apply(&mut s, 4, Command::PlanResults(results));
        let changes = cluster.sync(&s);
        assert_eq!(changes.freed.classes.len(), 1);
        // Garbage collection removes it from the view too.
        apply(&mut s, 5, Command::EvalDelete { eval_ids: vec![], alloc_ids: vec![id] });
        cluster.sync(&s);
        let rebuilt = cluster_state(&s);
        assert_eq!(cluster.state.alloc_count(), rebuilt.alloc_count());
        let n = cluster.state.node_idx("n1").unwrap();
        assert_eq!(cluster.state.usage(n), rebuilt.usage(rebuilt.node_idx("n1").unwrap()));
        assert_eq!(cluster.index, s.index());
    }
}
