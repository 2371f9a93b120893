//! The system scheduler: one allocation of each group on every feasible node, all named
//! `job.group[0]`. A node-triggered evaluation looks at that node only. No ranking is needed;
//! feasibility and fit decide. Service and batch jobs live in `generic`.

use crate::engine::{Ask, GroupSelect, Reject, Run};
use crate::plan::DesiredUpdates;
use crate::reconcile::{
    updatable_in_place, DESC_LOST, DESC_MIGRATING, DESC_NODE_TAINTED, DESC_NOT_NEEDED,
    DESC_UPDATING,
};
use crate::state::{AllocFootprint, AllocSlot, NodeIdx};
use model::{DesiredStatus, Job, TriggeredBy};
use std::collections::BTreeMap;

/// Schedules a live system job.
pub fn schedule_system(run: &mut Run, job: &Job) {
    let state = run.state;
    let slots = state.allocs_by_job(&job.namespace, &job.id);
    run.init_presence(Some(job), slots);
    let eval = &run.ctx.eval;
    // A node-triggered evaluation looks at that node only; if the node is gone, only its
    // allocations (as lost) are handled below.
    let node_scoped = !eval.node_id.is_empty()
        && matches!(eval.triggered_by, TriggeredBy::NodeUpdate | TriggeredBy::NodeDrain);
    let considered: Vec<NodeIdx> = if node_scoped {
        state.node_idx(&eval.node_id).into_iter().collect()
    } else {
        (0..state.nodes().len() as NodeIdx).collect()
    };
    let now = run.ctx.now_unix_nanos;
    for (gi, tg) in job.task_groups.iter().enumerate() {
        let mut u = DesiredUpdates::default();
        // Live allocations of this group per node; terminal ones only remember a predecessor.
        let mut live: BTreeMap<NodeIdx, Vec<AllocSlot>> = BTreeMap::new();
        let mut last_terminal: BTreeMap<NodeIdx, AllocSlot> = BTreeMap::new();
        for &s in slots {
            let a = state.alloc_at(s);
            if a.task_group != tg.name || a.desired_status != DesiredStatus::Run {
                continue;
            }
            match state.node_idx(&a.node_id) {
                None => {
                    let in_scope = !node_scoped || a.node_id == eval.node_id;
                    if in_scope && !a.client_status.is_terminal() {
                        run.stop(s, DESC_LOST, true, Some(gi));
                        u.lost += 1;
                        u.stop += 1;
                    }
                }
                Some(n) if a.client_status.is_terminal() => {
                    if a.next_allocation.is_empty() {
                        last_terminal.insert(n, s);
                    }
                }
                Some(n) => live.entry(n).or_default().push(s),
            }
        }
        let mut sel = GroupSelect::new(run, job, gi, &[]);
        let ask = Ask::of(tg);
        let mut failed = 0u64;
        for &n in &considered {
            let node = state.node(n);
            let mut here = live.remove(&n).unwrap_or_default();
            if state.node_is_lost(n) {
                for s in here {
                    run.stop(s, DESC_LOST, true, Some(gi));
                    u.lost += 1;
                    u.stop += 1;
                }
                continue;
            }
            if node.drain {
                // The drainer marks system allocations last (or never, with
                // `IgnoreSystemJobs`); unmarked ones keep running on the draining node.
                let (marked, mut kept): (Vec<_>, Vec<_>) = here
                    .into_iter()
                    .partition(|s| state.alloc_at(*s).desired_transition.should_migrate());
                for s in marked {
                    run.stop(s, DESC_MIGRATING, false, Some(gi));
                    u.migrate += 1;
                }
                // Duplicates are surplus here too.
                kept.sort_by_key(|s| state.alloc_at(*s).create_time);
                for s in kept.drain(1.min(kept.len())..).collect::<Vec<_>>() {
                    run.stop(s, DESC_NOT_NEEDED, false, Some(gi));
                    u.stop += 1;
                }
                u.ignore += kept.len() as u64;
                continue;
            }
            let feasible = sel.checker.check(node, state.node_class(n)).is_ok();
            if !feasible {
                for s in here {
                    run.stop(s, DESC_NODE_TAINTED, false, Some(gi));
                    u.stop += 1;
                }
                continue;
            }
            // Duplicates (more than one live allocation of the group on a node) are surplus.
            here.sort_by_key(|s| state.alloc_at(*s).create_time);
            for s in here.drain(1.min(here.len())..).collect::<Vec<_>>() {
                run.stop(s, DESC_NOT_NEEDED, false, Some(gi));
                u.stop += 1;
            }
            if let Some(&s) = here.first() {
                let a = state.alloc_at(s);
                if a.job_version == job.version {
                    u.ignore += 1;
                    continue;
                }
                let in_place = updatable_in_place(state, job, tg, a.job_version)
                    && node.status == model::NodeStatus::Ready
                    && run.fits(n, &ask, Some(&AllocFootprint::of(a))).is_ok();
                if in_place {
                    let mut updated = a.clone();
                    updated.job_version = job.version;
                    updated.eval_id = run.ctx.eval.id.clone();
                    updated.modify_time = now;
                    run.update(updated);
                    u.in_place_update += 1;
                    continue;
                }
                run.stop(s, DESC_UPDATING, false, Some(gi));
                u.destructive_update += 1;
            } else if node.is_schedulable() {
                u.place += 1;
            }
            // Ineligible or not-yet-ready nodes keep what they run but get nothing new.
            if !node.is_schedulable() {
                continue;
            }
            let prev = here.first().or(last_terminal.get(&n)).map(|s| state.alloc_at(*s));
            let outcome = sel.check_node(run, n, node).and_then(|_| run.fits(n, &ask, None));
            match outcome {
                Ok(()) if run.place(job, gi, &ask, n, 0, prev, None) => sel.placed(run, n),
                Ok(()) => failed += 1,
                Err(r) => {
                    record(&mut sel, node.node_class.clone(), &r);
                    failed += 1;
                }
            }
        }
        // Allocations on nodes outside a full evaluation's view cannot exist: every node was
        // considered. In a node-scoped evaluation the rest are simply not looked at.
        if failed > 0 {
            let mut metric = sel.metric.clone();
            metric.coalesced_failures = failed - 1;
            run.plan.failed_tg_allocs.insert(tg.name.clone(), metric);
            run.plan.queued_allocations.insert(tg.name.clone(), failed);
        }
        run.plan.desired_tg_updates.insert(tg.name.clone(), u);
    }
}

fn record(sel: &mut GroupSelect, class: String, r: &Reject) {
    let m = &mut sel.metric;
    m.nodes_evaluated += 1;
    match r {
        Reject::Filtered(label) => {
            m.nodes_filtered += 1;
            *m.constraint_filtered.entry(label.clone()).or_default() += 1;
            if !class.is_empty() {
                *m.class_filtered.entry(class).or_default() += 1;
            }
        }
        Reject::Exhausted(dim) => {
            m.nodes_exhausted += 1;
            *m.dimension_exhausted.entry(dim.clone()).or_default() += 1;
            if !class.is_empty() {
                *m.class_exhausted.entry(class).or_default() += 1;
            }
        }
    }
}
