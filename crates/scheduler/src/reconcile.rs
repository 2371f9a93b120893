//! The reconciler for service and batch jobs: sorts a group's existing allocations into Nomad's
//! buckets (untainted, migrate, lost, reschedule now/later, ignore) and decides stops, in-place
//! and destructive updates and placements by name index. It does not pick nodes and does not
//! check fit; the engine does both, and may still turn an in-place update into a destructive one.

use crate::reschedule::{decide, next_delay, Decision};
use crate::state::{AllocSlot, ClusterState};
use model::{ClientStatus, DesiredStatus, Job, JobType, TaskGroup};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const DESC_NOT_NEEDED: &str = "alloc not needed due to job update";
pub const DESC_MIGRATING: &str = "alloc is being migrated";
pub const DESC_UPDATING: &str = "alloc is being updated due to job update";
pub const DESC_LOST: &str = "alloc is lost since its node is down";
pub const DESC_NODE_TAINTED: &str = "alloc not needed as node is tainted";

/// Why a placement is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceKind {
    /// Count not met.
    Missing,
    /// Replaces an allocation whose node is down.
    Lost,
    /// Replaces an allocation on a draining node.
    Migrate,
    /// Replaces a failed allocation (with the reschedule penalty and tracker).
    Reschedule(Duration),
    /// Replaces an allocation of an old version that cannot be updated in place.
    Destructive,
}

/// One placement request.
#[derive(Debug, Clone)]
pub struct Placement {
    pub index: u32,
    pub previous: Option<AllocSlot>,
    pub kind: PlaceKind,
}

/// A stop request.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub slot: AllocSlot,
    pub description: &'static str,
    pub lost: bool,
}

/// The reconciler's decisions for one group.
#[derive(Debug, Default)]
pub struct GroupDecisions {
    pub stops: Vec<StopRequest>,
    /// Old-version allocations whose change allows an in-place update (fit still to be checked).
    pub inplace: Vec<AllocSlot>,
    /// Old-version allocations that must be replaced, in name-index order.
    pub destructive: Vec<AllocSlot>,
    pub places: Vec<Placement>,
    /// Failed allocations to reschedule later, with the time they are due.
    pub later: Vec<(AllocSlot, i64)>,
    pub ignore: u64,
    pub reschedule_now: u64,
    /// New-version allocations not yet healthy; they use up `update.max_parallel`.
    pub unhealthy_new: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Untainted,
    Migrate,
    Lost,
    RescheduleNow(Duration),
    RescheduleLater(i64),
    /// Holds its name but needs nothing: a completed batch allocation, or a failed one that may
    /// not be rescheduled.
    Done,
}

/// Reconciles one group of a live (not stopped) job.
pub fn reconcile_group(
    state: &ClusterState,
    job: &Job,
    tg: &TaskGroup,
    slots: &[AllocSlot],
    eval_id: &str,
    now: i64,
) -> GroupDecisions {
    let mut d = GroupDecisions::default();
    // An allocation is replaced once another names it as its previous one, whether or not the
    // store has linked `next_allocation` back yet; without this a failed allocation could be
    // rescheduled twice.
    let replaced: BTreeSet<&str> = slots
        .iter()
        .map(|s| state.alloc_at(*s).previous_allocation.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let mut held: BTreeMap<u32, (AllocSlot, Bucket)> = BTreeMap::new();
    let mut extras: Vec<(AllocSlot, Bucket)> = Vec::new();
    for &slot in slots {
        let a = state.alloc_at(slot);
        if a.desired_status != DesiredStatus::Run
            || !a.next_allocation.is_empty()
            || replaced.contains(a.id.as_str())
        {
            continue;
        }
        let node = state.node_idx(&a.node_id);
        let bucket = match a.client_status {
            ClientStatus::Complete if job.job_type == JobType::Batch => Bucket::Done,
            ClientStatus::Complete | ClientStatus::Lost => continue,
            ClientStatus::Failed => {
                // The follow-up evaluation created for this allocation is now running: it is due.
                if !a.followup_eval_id.is_empty() && a.followup_eval_id == eval_id {
                    let policy = tg.reschedule_policy.as_ref();
                    Bucket::RescheduleNow(policy.map_or(Duration::ZERO, |p| next_delay(a, p)))
                } else {
                    match decide(a, tg.reschedule_policy.as_ref(), now) {
                        Decision::Now { delay } => Bucket::RescheduleNow(delay),
                        Decision::Later { at_unix_nanos, .. } => {
                            Bucket::RescheduleLater(at_unix_nanos)
                        }
                        Decision::Never => Bucket::Done,
                    }
                }
            }
            _ => match node {
                None => Bucket::Lost,
                Some(i) if state.node_is_lost(i) => Bucket::Lost,
                // Only allocations the server's drainer marked move: it paces migrations by
                // the group's `migrate.max_parallel`, as Nomad's drainer does.
                Some(_) if a.desired_transition.should_migrate() => Bucket::Migrate,
                Some(_) => Bucket::Untainted,
            },
        };
        match a.name_index() {
            Some(ix) if !held.contains_key(&ix) => {
                held.insert(ix, (slot, bucket));
            }
            _ => extras.push((slot, bucket)),
        }
    }
    // Duplicated or malformed names: the extra copies are surplus.
    for (slot, bucket) in extras {
        surplus(&mut d, slot, bucket);
    }
    // Count down: the highest indexes go first.
    while held.len() > tg.count as usize {
        let (_, (slot, bucket)) = held.pop_last().expect("non-empty");
        surplus(&mut d, slot, bucket);
    }
    for (&index, &(slot, bucket)) in &held {
        let a = state.alloc_at(slot);
        match bucket {
            Bucket::Untainted => {
                if a.job_version == job.version {
                    d.ignore += 1;
                    if a.deployment_status.as_ref().and_then(|s| s.healthy) != Some(true) {
                        d.unhealthy_new += 1;
                    }
                } else if updatable_in_place(state, job, tg, a.job_version) {
                    d.inplace.push(slot);
                } else {
                    d.destructive.push(slot);
                }
            }
            Bucket::Migrate => {
                d.stops.push(StopRequest { slot, description: DESC_MIGRATING, lost: false });
                d.places.push(Placement { index, previous: Some(slot), kind: PlaceKind::Migrate });
            }
            Bucket::Lost => {
                d.stops.push(StopRequest { slot, description: DESC_LOST, lost: true });
                d.places.push(Placement { index, previous: Some(slot), kind: PlaceKind::Lost });
            }
            Bucket::RescheduleNow(delay) => {
                d.reschedule_now += 1;
                d.places.push(Placement {
                    index,
                    previous: Some(slot),
                    kind: PlaceKind::Reschedule(delay),
                });
            }
            Bucket::RescheduleLater(at) => {
                if a.followup_eval_id.is_empty() {
                    d.later.push((slot, at));
                }
            }
            Bucket::Done => d.ignore += 1,
        }
    }
    // Count up: the lowest free indexes.
    let used: BTreeSet<u32> = held.keys().copied().collect();
    let missing = (tg.count as usize).saturating_sub(held.len());
    let mut next = 0u32;
    for _ in 0..missing {
        while used.contains(&next) {
            next += 1;
        }
        d.places.push(Placement { index: next, previous: None, kind: PlaceKind::Missing });
        next += 1;
    }
    d
}

fn surplus(d: &mut GroupDecisions, slot: AllocSlot, bucket: Bucket) {
    match bucket {
        Bucket::Untainted | Bucket::Migrate => {
            d.stops.push(StopRequest { slot, description: DESC_NOT_NEEDED, lost: false })
        }
        Bucket::Lost => d.stops.push(StopRequest { slot, description: DESC_LOST, lost: true }),
        // Already terminal: it simply is not replaced.
        _ => d.ignore += 1,
    }
}

/// True when an allocation of `old_version` can take the new version in place. An unknown old
/// version is treated as destructive, the safe side.
pub fn updatable_in_place(
    state: &ClusterState,
    job: &Job,
    tg: &TaskGroup,
    old_version: u64,
) -> bool {
    let Some(old_job) = state.job_version(&job.namespace, &job.id, old_version) else {
        return false;
    };
    let Some(old_tg) = old_job.group(&tg.name) else { return false };
    !tasks_updated(old_job, old_tg, job, tg)
}

/// Nomad's `tasksUpdated`: true when the change requires replacing the allocation.
pub fn tasks_updated(old_job: &Job, a: &TaskGroup, new_job: &Job, b: &TaskGroup) -> bool {
    if a.tasks.len() != b.tasks.len() || a.ephemeral_disk != b.ephemeral_disk {
        return true;
    }
    if a.networks != b.networks {
        return true;
    }
    let render = |tg: &TaskGroup| tg.restart_policy.as_ref().map(|r| r.render_templates);
    if render(a) != render(b) {
        return true;
    }
    for at in &a.tasks {
        let Some(bt) = b.tasks.iter().find(|t| t.name == at.name) else { return true };
        if at.driver != bt.driver
            || at.user != bt.user
            || at.config != bt.config
            || at.env != bt.env
            || at.artifacts != bt.artifacts
            || at.templates != bt.templates
        {
            return true;
        }
        let meta = |j: &Job, g: &TaskGroup, t: &model::Task| {
            let mut m = j.meta.clone();
            m.extend(g.meta.clone());
            m.extend(t.meta.clone());
            m
        };
        if meta(old_job, a, at) != meta(new_job, b, bt) {
            return true;
        }
        if at.resources != bt.resources {
            return true;
        }
        let logs_off = |t: &model::Task| t.log_config.as_ref().map(|l| l.disabled);
        if logs_off(at) != logs_off(bt) {
            return true;
        }
    }
    false
}
