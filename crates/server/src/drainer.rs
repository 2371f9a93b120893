//! The leader's node drainer, as Nomad's (`nomad/drainer`): it moves work off draining nodes at
//! the pace each group's `migrate { max_parallel }` allows, stops what remains at the deadline,
//! and ends the drain once nothing but system work is left.
//!
//! The drainer decides; it never places or stops anything itself. It marks allocations with
//! `DesiredTransition.Migrate` ([`Command::AllocDesiredTransition`], with one `node-drain`
//! evaluation per job) and the scheduler replaces exactly the marked ones. Every decision is a
//! pure function ([`step`]) of the replicated state and the time, so a new leader carries on
//! from where the old one stopped: nothing here is persisted or remembered between steps.

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

/// Runs while this server leads (the pipeline spawns it at each election and stops it when
/// leadership is lost).
pub(crate) async fn run(handle: ServerHandle) {
    let mut backoff = Duration::from_millis(50);
    while handle.is_leader() {
        let applied = handle.applied_index();
        let now = handle.clock().unix_nanos();
        let step = {
            let state = handle.state_lock().read().unwrap_or_else(|e| e.into_inner());
            step(&state, now, &mut |_| handle.clock().uuid())
        };
        let mut failed = false;
        for command in step.commands {
            if let Err(e) = handle.write(command).await {
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
        out.commands.push(Command::NodeDrain {
            node_id: node.id.clone(),
            drain: None,
            mark_eligible: false,
            evals: Vec::new(),
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
