//! Never more running allocations of a group than its count on healthy connected nodes: a
//! leader change or a retried plan must not place a group twice. An allocation counts when the
//! servers want it running, the agent reports it running, and its node is ready.
//!
//! The bound is the largest count any stored version of the job asked for, not the current
//! one: between a scale-down being committed and the plan that stops the surplus, the old count
//! legitimately still runs. What this catches is placement beyond anything ever asked for.

use crate::Violation;
use model::{ClientStatus, DesiredStatus, NodeStatus};
use server::state::State;
use std::collections::BTreeMap;

pub fn check(state: &State) -> Result<(), Violation> {
    let mut running: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for a in state.allocs() {
        let healthy = state.node(&a.node_id).is_some_and(|n| n.status == NodeStatus::Ready);
        if healthy
            && a.desired_status == DesiredStatus::Run
            && a.client_status == ClientStatus::Running
        {
            *running.entry((&a.namespace, &a.job_id, &a.task_group)).or_default() += 1;
        }
    }
    for ((namespace, job_id, group), n) in running {
        let bound = state
            .job_versions(namespace, job_id)
            .into_iter()
            .chain(state.job(namespace, job_id))
            .filter_map(|j| j.group(group))
            .map(|g| g.count)
            .max()
            .unwrap_or(0);
        if n > bound {
            return Err(Violation::new(
                "group_count",
                format!(
                    "{namespace}/{job_id} group {group}: {n} running, count at most {bound} \
                     (index {})",
                    state.index()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{alloc, job, node, state};

    #[test]
    fn more_running_than_count_fails() {
        let n = || node("n1", 10_000, 10_000);
        let ok = state(
            vec![n()],
            vec![job("web", 2)],
            vec![alloc("a1", "web", "n1", 1, 1, &[]), alloc("a2", "web", "n1", 1, 1, &[])],
        );
        check(&ok).unwrap();
        let over = state(
            vec![n()],
            vec![job("web", 1)],
            vec![alloc("a1", "web", "n1", 1, 1, &[]), alloc("a2", "web", "n1", 1, 1, &[])],
        );
        assert_eq!(check(&over).unwrap_err().invariant, "group_count");
    }
}
