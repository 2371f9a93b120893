//! The leader's scheduling loop, in its simplest correct form: take pending evaluations from the
//! state, run [`scheduler::schedule`] on a snapshot, re-check the plan with
//! [`scheduler::verify_plan`], and commit the accepted part with the evaluation's outcome as one
//! [`Command::PlanResults`].
//!
//! It runs one evaluation at a time on the leader, which is what makes re-checking against the
//! same snapshot sufficient: no other plan can commit in between. It does not yet do what
//! Nomad's broker adds for throughput and fairness (parallel workers, per-job serialisation
//! across workers, nack timeouts). Blocked evaluations are retried when the nodes change, not
//! when allocations free capacity.

use crate::server::{Consistency, ServerHandle};
use crate::state::{AllocStop, Command, PlanResults, State};
use model::{EvalStatus, Evaluation};
use scheduler::{ClusterState, EvalContext, Plan, PlanVerdict};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The scheduler's view of the replicated state: every node, allocation and tracked job version.
pub fn cluster_state(state: &State) -> ClusterState {
    let mut cs = ClusterState::new();
    for n in state.nodes() {
        cs.upsert_node(n.clone());
    }
    for j in state.jobs() {
        for v in state.job_versions(&j.namespace, &j.id) {
            cs.insert_job_version(v.clone());
        }
        cs.insert_job_version(j.clone());
    }
    for a in state.allocs() {
        cs.upsert_alloc(a.clone());
    }
    cs
}

/// The seed of an evaluation's random choices: fixed by its ID and the snapshot, so a retry on
/// a newer snapshot sees a fresh node order, as in Nomad.
fn seed_for(eval_id: &str, index: u64) -> u64 {
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(eval_id.as_bytes());
    h.write_u64(index);
    h.finish()
}

fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Computes the plan for `eval` against `state`, and the command that commits its accepted part
/// and completes the evaluation.
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
    let mut results = results(&plan, &verdict, eval, now);
    // This evaluation reconsidered the whole job, so earlier blocked evaluations of the job are
    // superseded, as Nomad's blocked-evals tracker keeps one per job.
    for old in state.evals_by_job(&eval.namespace, &eval.job_id) {
        if old.status == EvalStatus::Blocked && old.id != eval.id {
            let mut old = old.clone();
            old.status = EvalStatus::Canceled;
            old.status_description = format!("superseded by evaluation {}", eval.id);
            old.modify_time = now;
            results.evals.insert(0, old);
        }
    }
    (plan, Command::PlanResults(results))
}

fn results(plan: &Plan, verdict: &PlanVerdict, eval: &Evaluation, now: i64) -> PlanResults {
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
    let mut evals: Vec<Evaluation> = plan.followup_evals.clone();
    let mut done = eval.clone();
    done.status = EvalStatus::Complete;
    done.failed_tg_allocs = plan.failed_tg_allocs.clone();
    done.queued_allocations = plan.queued_allocations.clone();
    done.modify_time = now;
    if let Some(b) = &plan.blocked_eval {
        done.blocked_eval = b.id.clone();
        evals.push(b.clone());
    }
    if !verdict.is_complete() {
        // Nodes refused part of the plan: complete this evaluation and retry the job with a
        // fresh one, as Nomad's worker does after a partial commit.
        let mut retry = eval.clone();
        retry.id = scheduler::Rng::new(seed_for(&eval.id, now as u64)).uuid();
        retry.previous_eval = eval.id.clone();
        retry.status = EvalStatus::Pending;
        retry.create_time = now;
        retry.modify_time = now;
        done.next_eval = retry.id.clone();
        evals.push(retry);
    }
    evals.push(done);
    PlanResults { eval_id: eval.id.clone(), allocs, stops, evals }
}

/// Blocked evaluations to retry: those blocked before the last change to the nodes table (a node
/// joined, came back, or became eligible, so capacity may exist now). They go back to pending, as
/// Nomad's blocked-evals tracker unblocks them on node updates.
pub fn unblock(state: &State) -> Vec<Evaluation> {
    let nodes_changed = state.table_index(crate::state::Table::Nodes);
    state
        .evals()
        .filter(|e| e.status == EvalStatus::Blocked && e.modify_index < nodes_changed)
        .map(|e| {
            let mut e = e.clone();
            e.status = EvalStatus::Pending;
            e.status_description = "unblocked: node capacity changed".into();
            e
        })
        .collect()
}

/// Runs the loop until the server stops: on the leader, processes pending evaluations in
/// priority then creation order; elsewhere, waits.
pub async fn run(handle: ServerHandle) {
    loop {
        let applied = handle.applied_index();
        if handle.is_leader() {
            let now = now_unix_nanos();
            let next = handle
                .read(Consistency::Stale, |s| {
                    s.evals()
                        .filter(|e| e.status == EvalStatus::Pending && e.wait_until <= now)
                        .min_by_key(|e| (-e.priority, e.create_index))
                        .map(|e| {
                            let (_, command) = process(s, e, now);
                            command
                        })
                })
                .await;
            let next = match next {
                Ok(None) => handle
                    .read(Consistency::Stale, unblock)
                    .await
                    .map(|evals| (!evals.is_empty()).then_some(Command::EvalUpsert { evals })),
                other => other,
            };
            match next {
                Ok(Some(command)) => {
                    if let Err(e) = handle.write(command).await {
                        tracing::warn!(error = %e, "committing a plan failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "pipeline read failed"),
            }
        }
        // Delayed evaluations become due without any write, so look again at least every second.
        let waited = std::time::Instant::now();
        handle.wait_for_index(applied + 1, Duration::from_secs(1)).await;
        if handle.applied_index() == applied && waited.elapsed() < Duration::from_millis(10) {
            // The wait returned at once without progress: the server is stopping. Do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
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
        let (_, command) = process(&s, &eval, 1);
        apply(&mut s, 3, command);
        assert!(s.allocs_by_job("default", "web").is_empty());
        let done = s.eval("e1").unwrap();
        assert_eq!(done.status, EvalStatus::Complete);
        assert_eq!(done.failed_tg_allocs["g"].dimension_exhausted.get("memory"), Some(&1));
        let blocked = s.eval(&done.blocked_eval).expect("a blocked evaluation is stored").clone();
        assert_eq!(blocked.status, EvalStatus::Blocked);
        assert!(unblock(&s).is_empty(), "nothing changed since it was blocked");

        // A bigger node joins: the blocked evaluation is retried and places the group.
        let mut big = s.node("n1").unwrap().clone();
        big.id = "n2".into();
        big.node_resources.memory.memory_mb = 16_384;
        apply(&mut s, 4, Command::NodeRegister { node: Box::new(big) });
        let retry = unblock(&s);
        assert_eq!(retry.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [blocked.id.as_str()]);
        apply(&mut s, 5, Command::EvalUpsert { evals: retry.clone() });
        let (_, command) = process(&s, &retry[0], 2);
        apply(&mut s, 6, command);
        assert_eq!(s.allocs_by_job("default", "web").len(), 2);
        assert_eq!(s.eval(&blocked.id).unwrap().status, EvalStatus::Complete);

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
}
