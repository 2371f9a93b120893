//! The service and batch scheduler: runs the reconciler per group, applies its stops, checks
//! in-place updates, paces destructive ones, places through the engine, and turns delayed
//! reschedules and failed placements into follow-up and blocked evaluations. System jobs live in
//! `system`.

use crate::engine::Ask;
use crate::engine::{base_nodes, nodes_available, GroupSelect, Run};
use crate::feasible::GroupChecker;
use crate::plan::DesiredUpdates;
use crate::reconcile::{reconcile_group, PlaceKind, Placement, DESC_NOT_NEEDED, DESC_UPDATING};
use crate::reschedule::{next_tracker, BATCH_WINDOW_NANOS};
use crate::state::{AllocFootprint, AllocSlot, NodeIdx};
use model::{EvalStatus, Evaluation, Job, TriggeredBy};
use std::collections::BTreeMap;

/// Schedules a live service or batch job.
pub fn schedule_generic(run: &mut Run, job: &Job) {
    let state = run.state;
    run.plan.all_at_once = job.all_at_once;
    let slots = state.allocs_by_job(&job.namespace, &job.id);
    run.init_presence(Some(job), slots);
    let mut by_group: BTreeMap<&str, Vec<AllocSlot>> = BTreeMap::new();
    for &s in slots {
        by_group.entry(state.alloc_at(s).task_group.as_str()).or_default().push(s);
    }
    // Groups removed from the job: everything of theirs stops.
    for (name, group_slots) in &by_group {
        if job.group(name).is_some() {
            continue;
        }
        let mut u = DesiredUpdates::default();
        for &s in group_slots {
            if !state.alloc_at(s).is_terminal() {
                run.stop(s, DESC_NOT_NEEDED, false, None);
                u.stop += 1;
            }
        }
        if u != DesiredUpdates::default() {
            run.plan.desired_tg_updates.insert(name.to_string(), u);
        }
    }

    let now = run.ctx.now_unix_nanos;
    let mut placements: Vec<Vec<Placement>> = Vec::new();
    let mut later: Vec<(AllocSlot, i64)> = Vec::new();
    for (gi, tg) in job.task_groups.iter().enumerate() {
        let empty = Vec::new();
        let group_slots = by_group.get(tg.name.as_str()).unwrap_or(&empty);
        let mut d = reconcile_group(state, job, tg, group_slots, &run.ctx.eval.id, now);
        let mut u = DesiredUpdates {
            ignore: d.ignore,
            reschedule_now: d.reschedule_now,
            reschedule_later: d.later.len() as u64,
            ..DesiredUpdates::default()
        };
        for s in &d.stops {
            run.stop(s.slot, s.description, s.lost, Some(gi));
            if s.lost {
                u.lost += 1;
            }
            if s.description != crate::reconcile::DESC_MIGRATING {
                u.stop += 1;
            }
        }
        for p in &d.places {
            match p.kind {
                PlaceKind::Migrate => u.migrate += 1,
                _ => u.place += 1,
            }
        }
        // In place only if the node still takes the group with the old allocation discounted.
        let mut checker = GroupChecker::new(job, tg, state.class_count());
        let ask = Ask::of(tg);
        for &slot in &d.inplace {
            let a = state.alloc_at(slot);
            let fits = state.node_idx(&a.node_id).is_some_and(|n| {
                let node = state.node(n);
                // Like Nomad, an ineligible node keeps its allocations updatable in place; only
                // new placements need eligibility.
                node.status == model::NodeStatus::Ready
                    && checker.check(node, state.node_class(n)).is_ok()
                    && run.fits(n, &ask, Some(&AllocFootprint::of(a))).is_ok()
            });
            if fits {
                let mut updated = a.clone();
                updated.job_version = job.version;
                updated.eval_id = run.ctx.eval.id.clone();
                updated.modify_time = now;
                run.update(updated);
                u.in_place_update += 1;
            } else {
                d.destructive.push(slot);
            }
        }
        d.destructive.sort_by_key(|s| state.alloc_at(*s).name_index());
        // Rolling updates: at most max_parallel replacements in flight; new-version allocations
        // that are not yet healthy use up slots. No update block means all at once.
        let max_parallel = tg.update.as_ref().map_or(0, |up| up.max_parallel);
        let budget = if max_parallel == 0 {
            usize::MAX
        } else {
            max_parallel.saturating_sub(d.unhealthy_new) as usize
        };
        for (k, &slot) in d.destructive.iter().enumerate() {
            if k >= budget {
                u.ignore += 1;
                continue;
            }
            // The old allocation is stopped only when its replacement is placed (below).
            let index = state.alloc_at(slot).name_index().unwrap_or(0);
            d.places.push(Placement { index, previous: Some(slot), kind: PlaceKind::Destructive });
            u.destructive_update += 1;
        }
        later.extend(d.later.iter().copied());
        placements.push(d.places);
        run.plan.desired_tg_updates.insert(tg.name.clone(), u);
    }

    let base = base_nodes(run, job);
    let mut blocked_classes: BTreeMap<String, bool> = BTreeMap::new();
    let mut escaped = false;
    for (gi, places) in placements.iter().enumerate() {
        if places.is_empty() {
            continue;
        }
        let tg = &job.task_groups[gi];
        let mut sel = GroupSelect::new(run, job, gi, &base);
        let mut failed = 0u64;
        for p in places {
            if failed > 0 {
                failed += 1;
                continue;
            }
            let prev = p.previous.map(|s| state.alloc_at(s));
            let mut penalty: Vec<NodeIdx> = Vec::new();
            let mut tracker = None;
            if let (PlaceKind::Reschedule(delay), Some(prev)) = (p.kind, prev) {
                penalty.extend(state.node_idx(&prev.node_id));
                let t = next_tracker(prev, tg.reschedule_policy.as_ref(), delay, now);
                penalty.extend(t.events.iter().filter_map(|e| state.node_idx(&e.prev_node_id)));
                tracker = Some(t);
            }
            // Nomad stops the old allocation of a destructive update before selecting, so its
            // resources count as free (possibly on the node it ran on), and takes the stop back
            // if no node is found.
            let destructive = p.kind == PlaceKind::Destructive;
            if let (true, Some(slot)) = (destructive, p.previous) {
                run.stop(slot, DESC_UPDATING, false, Some(gi));
                if let Some(n) = prev.and_then(|a| state.node_idx(&a.node_id)) {
                    sel.revive(run, n);
                }
            }
            let chosen = sel.select(run, &penalty);
            let placed = chosen.is_some_and(|n| {
                let ok = run.place(job, gi, &sel.ask, n, p.index, prev, tracker);
                if ok {
                    sel.placed(run, n);
                }
                ok
            });
            if !placed {
                failed = 1;
                if let (true, Some(slot)) = (destructive, p.previous) {
                    run.unstop(slot, Some(gi));
                }
            }
        }
        if failed > 0 {
            let mut metric = sel.metric.clone();
            metric.coalesced_failures = failed - 1;
            metric.nodes_available = nodes_available(state, &base);
            run.plan.failed_tg_allocs.insert(tg.name.clone(), metric);
            run.plan.queued_allocations.insert(tg.name.clone(), failed);
            for (c, ok) in sel.checker.class_verdicts() {
                blocked_classes.insert(state.class_name(c).to_string(), ok);
            }
            escaped |= sel.checker.escaped();
        }
    }

    followups(run, job, later);
    if !run.plan.failed_tg_allocs.is_empty() {
        let eval = Evaluation {
            id: run.rng.uuid(),
            namespace: job.namespace.clone(),
            priority: job.priority,
            job_type: job.job_type,
            triggered_by: TriggeredBy::QueuedAllocs,
            job_id: job.id.clone(),
            status: EvalStatus::Blocked,
            previous_eval: run.ctx.eval.id.clone(),
            failed_tg_allocs: run.plan.failed_tg_allocs.clone(),
            class_eligibility: blocked_classes,
            escaped_computed_class: escaped,
            queued_allocations: run.plan.queued_allocations.clone(),
            create_time: now,
            modify_time: now,
            ..Evaluation::default()
        };
        run.plan.blocked_eval = Some(eval);
    }
}

/// Delayed reschedules: one follow-up evaluation per 5-second batch of due times, and a link
/// from each failed allocation to its evaluation so the next pass does not create another.
fn followups(run: &mut Run, job: &Job, mut later: Vec<(AllocSlot, i64)>) {
    later.sort_by_key(|(s, at)| (*at, *s));
    let mut batch_start = i64::MIN;
    let mut eval_id = String::new();
    for (slot, at) in later {
        if eval_id.is_empty() || at - batch_start >= BATCH_WINDOW_NANOS {
            batch_start = at;
            eval_id = run.rng.uuid();
            run.plan.followup_evals.push(Evaluation {
                id: eval_id.clone(),
                namespace: job.namespace.clone(),
                priority: job.priority,
                job_type: job.job_type,
                triggered_by: TriggeredBy::AllocFailure,
                job_id: job.id.clone(),
                status: EvalStatus::Pending,
                wait_until: at,
                previous_eval: run.ctx.eval.id.clone(),
                create_time: run.ctx.now_unix_nanos,
                modify_time: run.ctx.now_unix_nanos,
                ..Evaluation::default()
            });
        }
        let mut a = run.state.alloc_at(slot).clone();
        // modify_time stays: it is the failure time the delay is counted from.
        a.followup_eval_id = eval_id.clone();
        run.update(a);
    }
}
