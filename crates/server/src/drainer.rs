//! The leader's node drainer, as Nomad's (`nomad/drainer`): it moves work off draining nodes at
//! the pace each group's `migrate { max_parallel }` allows, stops what remains at the deadline,
//! and ends the drain once nothing but system work is left.
//!
//! The drainer decides; it never places or stops anything itself. It marks allocations with
//! `DesiredTransition.Migrate` ([`Command::AllocDesiredTransition`], with one `node-drain`
//! evaluation per job) and the scheduler replaces exactly the marked ones. Every decision is a
//! pure function ([`step`]) of the replicated state and the time, so a new leader carries on
//! from where the old one stopped: nothing here is persisted or remembered between steps.
//!
//! A drain ends with [`Command::NodeDrainComplete`], which the state machine refuses while the
//! node holds live work not marked for migration: the pass that decided the drain was over read
//! the state some indexes earlier, and a plan verified before the drain began may have
//! committed in between. The next pass then marks that work and ends the drain again.

use crate::server::ServerHandle;
use crate::state::{Command, JobKey, State};
use model::{
    Allocation, ClientStatus, DrainMetadata, EvalStatus, Evaluation, JobType, Node, NodeEvent,
    TriggeredBy,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The event Nomad's drainer writes when a drain ends.
pub const DRAIN_COMPLETE: &str = "Node drain complete";
/// The event detail set when the deadline ended the drain.
pub const DETAIL_DEADLINE: &str = "deadline_reached";

/// What one pass of the drainer wants written, in order.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub commands: Vec<Command>,
    /// The earliest future force deadline of a draining node (unix nanoseconds), if any: the
    /// drainer must look again by then even if nothing changes.
    pub next_deadline: Option<i64>,
}

/// Runs until the pipeline stops it (the pipeline spawns it at each election and stops it when
/// it sees leadership lost). It must not end by itself on a moment without leadership: the
/// pipeline may not notice one that is lost and won back (a new term) while it waits, and
/// would go on leading with no drainer (simulator seed 1450: a drain past its deadline for good).
pub(crate) async fn run(handle: ServerHandle) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let applied = handle.applied_index();
        if !handle.is_leader() {
            handle.wait_for_index(applied + 1, Duration::from_millis(250)).await;
            continue;
        }
        let now = handle.clock().unix_nanos();
        let step = {
            let state = handle.state_lock().read().unwrap_or_else(|e| e.into_inner());
            step(&state, now, &mut |_| handle.clock().uuid())
        };
        let mut failed = false;
        // A refused completion (`Outcome::Rejected`) is not a failure: the next pass sees why.
        for command in step.commands {
            if let Err(e) = handle.write_as_leader(command).await {
                tracing::warn!(error = %e, "node drainer: write failed; retrying");
                failed = true;
                break;
            }
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        backoff = Duration::from_millis(50);
        let wait = step
            .next_deadline
            .map(|d| Duration::from_nanos(d.saturating_sub(now).max(1_000_000) as u64))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        handle.wait_for_index(applied + 1, wait).await;
    }
}

/// One pass over the draining nodes at time `now`: which allocations to mark for migration and
/// which drains are over. `new_id` makes evaluation IDs (salted with the job ID).
pub fn step(state: &State, now: i64, new_id: &mut dyn FnMut(&str) -> String) -> Step {
    let mut out = Step::default();
    let draining: Vec<&Node> = state.nodes().filter(|n| n.drain_strategy.is_some()).collect();
    if draining.is_empty() {
        return out;
    }
    let job_type = |a: &Allocation| {
        state.job(&a.namespace, &a.job_id).map_or(JobType::Service, |j| j.job_type)
    };
    let mut mark: BTreeSet<String> = BTreeSet::new();
    let mut done: Vec<(&Node, bool)> = Vec::new();
    let mut jobs: BTreeSet<JobKey> = BTreeSet::new();
    for node in &draining {
        let strategy = node.drain_strategy.as_ref().expect("draining");
        let ignore_system = strategy.ignore_system_jobs;
        let remaining = |a: &&&Allocation| {
            let kept = ignore_system && job_type(a) == JobType::System;
            !(a.is_terminal() || a.desired_transition.should_migrate() || kept)
        };
        if strategy.force_deadline != 0 && now >= strategy.force_deadline {
            // The deadline passed: everything left goes at once and the drain is over.
            mark.extend(
                state.allocs_by_node(&node.id).iter().filter(remaining).map(|a| a.id.clone()),
            );
            done.push((node, true));
            continue;
        }
        if strategy.force_deadline != 0 {
            out.next_deadline = Some(
                out.next_deadline
                    .map_or(strategy.force_deadline, |d| d.min(strategy.force_deadline)),
            );
        }
        let allocs = state.allocs_by_node(&node.id);
        // System work is stopped only once everything else has left the node.
        let others_left =
            allocs.iter().any(|a| job_type(a) != JobType::System && !a.client_status.is_terminal());
        if others_left {
            for a in &allocs {
                if !a.is_terminal() && job_type(a) == JobType::Service {
                    jobs.insert((a.namespace.clone(), a.job_id.clone()));
                }
            }
        } else {
            mark.extend(allocs.iter().filter(remaining).map(|a| a.id.clone()));
            done.push((node, false));
        }
    }
    for (namespace, job_id) in &jobs {
        mark.extend(paced_migrations(state, namespace, job_id));
    }
    if !mark.is_empty() {
        let mut by_job: BTreeMap<JobKey, ()> = BTreeMap::new();
        for id in &mark {
            if let Some(a) = state.alloc(id) {
                by_job.insert((a.namespace.clone(), a.job_id.clone()), ());
            }
        }
        let evals = by_job
            .into_keys()
            .filter_map(|(ns, id)| state.job(&ns, &id))
            .map(|j| Evaluation {
                id: new_id(&j.id),
                namespace: j.namespace.clone(),
                priority: j.priority,
                job_type: j.job_type,
                triggered_by: TriggeredBy::NodeDrain,
                job_id: j.id.clone(),
                status: EvalStatus::Pending,
                create_time: now,
                modify_time: now,
                ..Evaluation::default()
            })
            .collect();
        out.commands.push(Command::AllocDesiredTransition {
            alloc_ids: mark.into_iter().collect(),
            migrate: true,
            evals,
        });
    }
    for (node, deadlined) in done {
        let mut details = BTreeMap::new();
        if deadlined {
            details.insert(DETAIL_DEADLINE.to_owned(), "true".to_owned());
        }
        let stamp = model::time::format(now);
        let last = node.last_drain.clone().unwrap_or_default();
        out.commands.push(Command::NodeDrainComplete {
            node_id: node.id.clone(),
            event: Some(Box::new(NodeEvent {
                message: DRAIN_COMPLETE.to_owned(),
                subsystem: "Drain".to_owned(),
                details,
                timestamp: stamp.clone(),
                create_index: 0,
            })),
            last_drain: Some(Box::new(DrainMetadata {
                updated_at: stamp,
                status: "complete".to_owned(),
                ..last
            })),
        });
    }
    out
}

/// Nomad's `handleTaskGroup` for one service job: per group, how many of its allocations on
/// draining nodes may be marked now so that at least `count - max_parallel` stay healthy.
fn paced_migrations(state: &State, namespace: &str, job_id: &str) -> Vec<String> {
    let Some(job) = state.job(namespace, job_id) else { return Vec::new() };
    let allocs = state.allocs_by_job(namespace, job_id);
    let on_draining =
        |a: &Allocation| state.node(&a.node_id).is_some_and(|n| n.drain_strategy.is_some());
    let mut out = Vec::new();
    for group in &job.task_groups {
        let max_parallel = group.migrate.as_ref().map_or(1, |m| m.max_parallel) as i64;
        let mut healthy = 0i64;
        let mut drainable = Vec::new();
        for a in allocs.iter().filter(|a| a.task_group == group.name) {
            // A marked allocation is leaving even before the scheduler stops it, so it no
            // longer counts (Nomad counts it until the stop commits, which can let a second
            // batch through early).
            if !a.is_terminal() && !a.desired_transition.should_migrate() && counts_as_healthy(a) {
                healthy += 1;
            }
            if on_draining(a) && !a.is_terminal() && !a.desired_transition.should_migrate() {
                drainable.push(a.id.clone());
            }
        }
        let threshold = group.count as i64 - max_parallel;
        let n = (healthy - threshold).min(drainable.len() as i64);
        if n > 0 {
            out.extend(drainable.into_iter().take(n as usize));
        }
    }
    out
}

/// Nomad counts an allocation whose deployment health is known. orc's agents do not report
/// deployment health yet, so until they do a running allocation counts as healthy.
fn counts_as_healthy(a: &Allocation) -> bool {
    match a.deployment_status.as_ref().and_then(|d| d.healthy) {
        Some(_) => true,
        None => a.client_status == ClientStatus::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{apply, Outcome, PlanResults};
    use model::{DesiredStatus, DrainStrategy, Job, NodeStatus, TaskGroup};

    const NOW: i64 = 1_767_225_600_000_000_000;

    fn job() -> Job {
        Job {
            namespace: "default".into(),
            id: "web".into(),
            name: "web".into(),
            job_type: JobType::Service,
            task_groups: vec![TaskGroup { name: "g".into(), count: 1, ..TaskGroup::default() }],
            ..Job::default()
        }
    }

    fn alloc(id: &str, node: &str, index: u32) -> Allocation {
        Allocation {
            id: id.into(),
            name: model::alloc_name("web", "g", index),
            namespace: "default".into(),
            job_id: "web".into(),
            task_group: "g".into(),
            node_id: node.into(),
            desired_status: DesiredStatus::Run,
            client_status: ClientStatus::Running,
            ..Allocation::default()
        }
    }

    fn place(allocs: Vec<Allocation>) -> Command {
        Command::PlanResults(PlanResults { allocs, ..PlanResults::default() })
    }

    /// Applies commands at the next indexes; returns their outcomes.
    fn run(state: &mut State, commands: Vec<Command>) -> Vec<Outcome> {
        commands
            .into_iter()
            .map(|c| {
                let index = state.index() + 1;
                apply(state, index, c)
            })
            .collect()
    }

    /// Node n1 runs `web[0]`, n2 is free; n1's drain has a deadline `NOW + 1 s`.
    fn draining() -> State {
        let mut state = State::new();
        let node = |id: &str| Node {
            id: id.into(),
            datacenter: "dc1".into(),
            status: NodeStatus::Ready,
            ..Node::default()
        };
        let strategy = DrainStrategy {
            deadline: Duration::from_secs(1),
            force_deadline: NOW + 1_000_000_000,
            started_at: NOW,
            ..DrainStrategy::default()
        };
        run(
            &mut state,
            vec![
                Command::NodeRegister { node: Box::new(node("n1")) },
                Command::NodeRegister { node: Box::new(node("n2")) },
                Command::JobRegister { job: Box::new(job()), eval: None },
                place(vec![alloc("a0", "n1", 0)]),
                Command::NodeDrain {
                    node_id: "n1".into(),
                    drain: Some(strategy),
                    mark_eligible: false,
                    evals: Vec::new(),
                    event: None,
                    last_drain: None,
                },
            ],
        );
        state
    }

    fn ids() -> impl FnMut(&str) -> String {
        let mut n = 0;
        move |job: &str| {
            n += 1;
            format!("{job}-{n}")
        }
    }

    /// Seeds 1285, 1405 and others of the simulator: the pass that decided the drain was over
    /// read the state before a plan verified before the drain began committed, and the drain
    /// ended with that plan's allocation still running on the node. The completion is now
    /// decided in log order: refused, and the next pass marks the newcomer first.
    #[test]
    fn a_drain_does_not_end_over_work_that_landed_after_the_drainer_looked() {
        let mut state = draining();
        let past_deadline = NOW + 2_000_000_000;
        let first = step(&state, past_deadline, &mut ids());
        assert_eq!(first.commands.len(), 2, "{:?}", first.commands);
        // The late plan commits between the drainer's look and its writes.
        run(&mut state, vec![place(vec![alloc("late", "n1", 1)])]);
        let outcomes = run(&mut state, first.commands);
        assert_eq!(outcomes[0], Outcome::Applied);
        assert!(matches!(&outcomes[1], Outcome::Rejected { reason } if reason.contains("late")));
        assert!(state.node("n1").unwrap().drain_strategy.is_some(), "the drain goes on");

        let second = step(&state, past_deadline, &mut ids());
        let outcomes = run(&mut state, second.commands);
        assert!(outcomes.iter().all(|o| *o == Outcome::Applied), "{outcomes:?}");
        let n1 = state.node("n1").unwrap();
        assert!(n1.drain_strategy.is_none());
        assert_eq!(n1.last_drain.as_ref().unwrap().status, "complete");
        assert_eq!(n1.events.last().unwrap().message, DRAIN_COMPLETE);
        for a in state.allocs_by_node("n1") {
            assert!(a.desired_transition.should_migrate(), "{} left unmarked", a.id);
        }
        // Nothing left to do.
        assert_eq!(step(&state, past_deadline, &mut ids()), Step::default());
    }

    /// Seed 1770: an in-place update computed before the drainer marked an allocation
    /// committed after the mark, with the scheduler's older copy of the allocation, and undid
    /// the mark: the drain then ended with the allocation still wanted on the node.
    #[test]
    fn an_in_place_update_keeps_the_drainers_mark() {
        let mut state = draining();
        let stale = state.alloc("a0").unwrap().clone();
        let first = step(&state, NOW, &mut ids());
        run(&mut state, first.commands);
        assert!(state.alloc("a0").unwrap().desired_transition.should_migrate());
        let mut updated = stale;
        updated.job_version = 1;
        run(&mut state, vec![place(vec![updated])]);
        let a0 = state.alloc("a0").unwrap();
        assert_eq!(a0.job_version, 1);
        assert!(a0.desired_transition.should_migrate(), "the mark was undone");
    }

    /// Seed 1450: the drainer ended by itself when it saw its server not leading for a moment;
    /// the pipeline, which had not seen leadership lost and won back, led on without a drainer
    /// and a drain outlived its deadline for good. The drainer now runs until it is stopped.
    #[tokio::test]
    async fn the_drainer_outlives_a_moment_without_leadership() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = crate::Config { node_id: Some(1), ..crate::Config::default() };
        config.server.enabled = true;
        // Waits for a second server that never comes: never the leader.
        config.server.bootstrap_expect = 2;
        let seams = crate::Seams {
            rpc_advertise: listener.local_addr().unwrap().to_string(),
            rpc_listener: Box::new(listener),
            connector: std::sync::Arc::new(crate::transport::TcpConnector),
            store: None,
        };
        let handle = crate::Server::start(config, seams).await.unwrap();
        assert!(!handle.is_leader());
        let drainer = tokio::spawn(super::run(handle.clone()));
        let waited = tokio::time::timeout(Duration::from_millis(600), drainer).await;
        assert!(waited.is_err(), "the drainer ended by itself: {waited:?}");
        handle.shutdown().await;
    }

    /// An operator may disable the drain between the drainer's look and its write: the
    /// completion then changes nothing (the drain stays canceled).
    #[test]
    fn a_completion_after_the_drain_was_disabled_is_refused() {
        let mut state = draining();
        let pass = step(&state, NOW + 2_000_000_000, &mut ids());
        let canceled = DrainMetadata { status: "canceled".into(), ..DrainMetadata::default() };
        run(
            &mut state,
            vec![Command::NodeDrain {
                node_id: "n1".into(),
                drain: None,
                mark_eligible: true,
                evals: Vec::new(),
                event: None,
                last_drain: Some(Box::new(canceled)),
            }],
        );
        let outcomes = run(&mut state, pass.commands);
        assert!(matches!(outcomes.last(), Some(Outcome::Rejected { .. })), "{outcomes:?}");
        assert_eq!(state.node("n1").unwrap().last_drain.as_ref().unwrap().status, "canceled");
    }
}
