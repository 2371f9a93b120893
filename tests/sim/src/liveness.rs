//! The liveness condition: what a cluster must have reached once faults stop. Every job runs
//! its count on ready nodes (lost and failed allocations replaced), batch jobs completed,
//! stopped jobs run nothing, no evaluation is left pending, every server applied the same
//! log, every drain an operator started has ended (the simulated deadlines are at most 20 s),
//! and a node whose drain completed (still ineligible) runs nothing but system work (an
//! allocation told to stop on a node that went down is not running anything). A pure function of the servers' views; the harness decides how long to wait for it.

use crate::ServerView;
use model::{ClientStatus, DesiredStatus, EvalStatus, JobType, NodeStatus, SchedulingEligibility};

/// `Ok` once converged; otherwise what is still missing, for the failure report.
pub fn converged(views: &[ServerView], acked_index: u64) -> Result<(), String> {
    let Some(first) = views.first() else { return Err("no server running".into()) };
    if let Some(v) = views.iter().find(|v| v.applied != first.applied) {
        return Err(format!(
            "servers differ: {} at index {}, {} at index {}",
            first.server, first.applied, v.server, v.applied
        ));
    }
    if first.applied < acked_index {
        return Err(format!("applied {} < acknowledged {acked_index}", first.applied));
    }
    let s = &first.state;
    if let Some(e) = s.evals().find(|e| e.status == EvalStatus::Pending) {
        return Err(format!(
            "evaluation {} for {} still pending (triggered by {:?}, wait_until {}, modify index {})",
            e.id, e.job_id, e.triggered_by, e.wait_until, e.modify_index
        ));
    }
    for node in s.nodes() {
        if let Some(d) = &node.drain_strategy {
            return Err(format!(
                "node {} still draining (force deadline {}, started {})",
                node.id, d.force_deadline, d.started_at
            ));
        }
        let completed = node.last_drain.as_ref().is_some_and(|d| d.status == "complete");
        if !completed || node.scheduling_eligibility != SchedulingEligibility::Ineligible {
            continue;
        }
        let left: Vec<String> = s
            .allocs_by_node(&node.id)
            .iter()
            .filter(|a| !a.client_status.is_terminal())
            // On a down node, an allocation already told to stop keeps the status its agent
            // last reported (as in Nomad, which marks only wanted allocations lost): nothing
            // runs it.
            .filter(|a| a.desired_status == DesiredStatus::Run || node.status != NodeStatus::Down)
            .filter(|a| {
                s.job(&a.namespace, &a.job_id).is_none_or(|j| j.job_type != JobType::System)
            })
            .map(|a| {
                format!(
                    "{} of {} ({:?}/{:?})",
                    a.id.get(..8).unwrap_or(&a.id),
                    a.job_id,
                    a.desired_status,
                    a.client_status
                )
            })
            .collect();
        if !left.is_empty() {
            return Err(format!("drained node {} still runs {}", node.id, left.join(", ")));
        }
    }
    for job in s.jobs() {
        let allocs = s.allocs_by_job(&job.namespace, &job.id);
        for g in &job.task_groups {
            let in_group = allocs.iter().filter(|a| a.task_group == g.name);
            let ready =
                |node_id: &str| s.node(node_id).is_some_and(|n| n.status == NodeStatus::Ready);
            let running = in_group
                .clone()
                .filter(|a| a.desired_status == DesiredStatus::Run)
                .filter(|a| a.client_status == ClientStatus::Running && ready(&a.node_id))
                .count() as u32;
            let complete =
                in_group.clone().filter(|a| a.client_status == ClientStatus::Complete).count()
                    as u32;
            let (want_running, ok) = match (job.stop, job.job_type) {
                (true, _) => (0, running == 0),
                (false, JobType::Batch) => (0, running == 0 && complete >= g.count),
                (false, _) => (g.count, running == g.count),
            };
            if !ok {
                let node = |id: &str| s.node(id).map(|n| n.status);
                let allocs: Vec<String> = in_group
                    .map(|a| {
                        format!(
                            "{} on {} ({:?}): {:?}/{:?}",
                            &a.id[..8],
                            a.node_id,
                            node(&a.node_id),
                            a.desired_status,
                            a.client_status
                        )
                    })
                    .collect();
                let evals: Vec<String> = s
                    .evals_by_job(&job.namespace, &job.id)
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {:?} {:?} at {} {}",
                            &e.id[..8],
                            e.triggered_by,
                            e.status,
                            e.modify_index,
                            e.status_description
                        )
                    })
                    .collect();
                return Err(format!(
                    "job {} group {}: {running} running (want {want_running}), {complete} complete\n    allocations: {}\n    evaluations: {}",
                    job.id,
                    g.name,
                    allocs.join("; "),
                    evals.join("; ")
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures;
    use model::{DrainMetadata, DrainStrategy};
    use server::state::{apply, Command};

    /// One server's view: a node `n1` running one allocation of a count-1 job, `n2` empty.
    fn view() -> ServerView {
        let allocs = vec![fixtures::alloc("a1", "j", "n1", 100, 64, &[])];
        let nodes = vec![fixtures::node("n1", 1_000, 1_024), fixtures::node("n2", 1_000, 1_024)];
        let mut v = fixtures::view(1, 0);
        v.state = fixtures::state(nodes, vec![fixtures::job("j", 1)], allocs);
        v.applied = v.state.index();
        v
    }

    fn drain(v: &mut ServerView, node: &str, strategy: Option<DrainStrategy>, status: &str) {
        let index = v.applied + 1;
        let last_drain = DrainMetadata { status: status.into(), ..DrainMetadata::default() };
        let command = Command::NodeDrain {
            node_id: node.into(),
            drain: strategy,
            mark_eligible: false,
            evals: Vec::new(),
            event: None,
            last_drain: Some(Box::new(last_drain)),
        };
        apply(&mut v.state, index, command);
        v.applied = v.state.index();
    }

    #[test]
    fn a_drain_still_running_is_not_converged() {
        let mut v = view();
        drain(&mut v, "n2", Some(DrainStrategy::default()), "draining");
        let err = converged(&[v], 0).unwrap_err();
        assert!(err.contains("n2 still draining"), "{err}");
    }

    #[test]
    fn a_completed_drain_leaves_nothing_running_on_the_node() {
        let mut v = view();
        assert_eq!(converged(&[v.clone()], 0), Ok(()));
        // A drain sets the node ineligible; the drainer ends it and the node stays so.
        for node in ["n2", "n1"] {
            drain(&mut v, node, Some(DrainStrategy::default()), "draining");
            drain(&mut v, node, None, "complete");
            if node == "n2" {
                assert_eq!(converged(&[v.clone()], 0), Ok(()));
            }
        }
        let err = converged(&[v], 0).unwrap_err();
        assert!(err.contains("drained node n1 still runs a1 of j"), "{err}");
    }
}
