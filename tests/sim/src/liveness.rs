//! The liveness condition: what a cluster must have reached once faults stop. Every job runs
//! its count on ready nodes (lost and failed allocations replaced), batch jobs completed,
//! stopped jobs run nothing, no evaluation is left pending, and every server applied the same
//! log. A pure function of the servers' views; the harness decides how long to wait for it.

use crate::ServerView;
use model::{ClientStatus, DesiredStatus, EvalStatus, JobType, NodeStatus};

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
