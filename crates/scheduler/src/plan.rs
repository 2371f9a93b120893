//! The plan — the scheduler's only output — plus its verification against a newer snapshot and
//! its application to a [`ClusterState`]. It does not decide anything; it records and re-checks.

use crate::state::{AllocFootprint, ClusterState};
use model::{
    AllocMetric, Allocation, ClientStatus, DesiredStatus, Evaluation, NodeStatus,
    SchedulingEligibility,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// A requested stop of an existing allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocStop {
    /// The allocation to stop.
    pub alloc_id: String,
    /// `Stop` (the scheduler never evicts; there is no preemption).
    pub desired_status: DesiredStatus,
    /// Nomad's wording: "alloc not needed due to job update", "alloc is being migrated", ….
    pub desired_description: String,
    /// `Some(Lost)` when the node is gone; the client status is then set by the plan.
    pub client_status: Option<ClientStatus>,
}

/// Nomad's `DesiredTGUpdates`: what the plan does to one group, for `job plan` annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredUpdates {
    /// Allocations left as they are (current, or waiting for a rolling-update slot).
    pub ignore: u64,
    /// Placements: missing, lost and rescheduled allocations.
    pub place: u64,
    /// Allocations moved off draining nodes.
    pub migrate: u64,
    /// Stops that are not part of a migration or a destructive update.
    pub stop: u64,
    pub in_place_update: u64,
    pub destructive_update: u64,
    /// Failed allocations replaced in this evaluation.
    pub reschedule_now: u64,
    /// Failed allocations given a follow-up evaluation.
    pub reschedule_later: u64,
    /// Allocations marked lost (node down or gone).
    pub lost: u64,
}

/// The result of one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The evaluation that produced the plan.
    pub eval_id: String,
    pub namespace: String,
    pub job_id: String,
    /// All or nothing at apply time (`Job.AllAtOnce`).
    pub all_at_once: bool,
    /// New allocations and updated ones (in-place updates, follow-up links), by node ID.
    pub node_allocation: BTreeMap<String, Vec<Allocation>>,
    /// Stops, by node ID.
    pub node_update: BTreeMap<String, Vec<AllocStop>>,
    /// Why placements of a group failed.
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// Placements that could not be made, per group.
    pub queued_allocations: BTreeMap<String, u64>,
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
    /// Delayed reschedules: evaluations with `wait_until`.
    pub followup_evals: Vec<Evaluation>,
    /// A blocked evaluation to retry the failed placements when capacity changes.
    pub blocked_eval: Option<Evaluation>,
    /// How many of `node_allocation`'s entries are new allocations.
    pub placed: u64,
}

impl Plan {
    /// Number of new allocations (not updates of existing ones) in the plan.
    pub fn placements(&self) -> u64 {
        self.placed
    }

    /// True when the plan changes nothing.
    pub fn is_no_op(&self) -> bool {
        self.node_allocation.is_empty() && self.node_update.is_empty()
    }

    /// A stable, readable rendering for snapshot tests and the CLI. Allocation IDs are left out
    /// (they are seeded noise); names, nodes, ports and links are what a reader checks.
    pub fn render(&self, state: &ClusterState) -> String {
        let name_of = |id: &str| state.alloc(id).map(|a| a.name.clone()).unwrap_or(id.to_string());
        let mut out = String::new();
        for (node, allocs) in &self.node_allocation {
            for a in allocs {
                let ports: Vec<String> = a
                    .allocated_resources
                    .shared
                    .ports
                    .iter()
                    .map(|p| format!("{}={}", p.label, p.value))
                    .collect();
                let existing = state.alloc(&a.id).is_some();
                let verb = if existing { "update" } else { "place " };
                let _ = write!(out, "{verb} {} on {node} v{}", a.name, a.job_version);
                if !ports.is_empty() {
                    let _ = write!(out, " ports[{}]", ports.join(","));
                }
                if !a.previous_allocation.is_empty() {
                    let _ = write!(out, " replaces {}", name_of(&a.previous_allocation));
                }
                if let Some(t) = &a.reschedule_tracker {
                    let _ = write!(out, " reschedules={}", t.events.len());
                }
                if !a.followup_eval_id.is_empty() {
                    out.push_str(" followup");
                }
                out.push('\n');
            }
        }
        for (node, stops) in &self.node_update {
            for s in stops {
                let _ = write!(
                    out,
                    "stop   {} on {node} ({:?}: {})",
                    name_of(&s.alloc_id),
                    s.desired_status,
                    s.desired_description
                );
                if let Some(c) = s.client_status {
                    let _ = write!(out, " client={c:?}");
                }
                out.push('\n');
            }
        }
        for (g, u) in &self.desired_tg_updates {
            let _ = writeln!(out, "group {g}: {u:?}");
        }
        for (g, m) in &self.failed_tg_allocs {
            let _ = writeln!(
                out,
                "failed {g}: evaluated={} filtered={} exhausted={} coalesced={}",
                m.nodes_evaluated, m.nodes_filtered, m.nodes_exhausted, m.coalesced_failures
            );
            for (k, v) in &m.constraint_filtered {
                let _ = writeln!(out, "  filtered {v} by {k}");
            }
            for (k, v) in &m.dimension_exhausted {
                let _ = writeln!(out, "  exhausted {v} on {k}");
            }
        }
        for e in &self.followup_evals {
            let _ =
                writeln!(out, "followup eval wait_until={} ({:?})", e.wait_until, e.triggered_by);
        }
        if let Some(b) = &self.blocked_eval {
            let _ = writeln!(out, "blocked eval queued={:?}", b.queued_allocations);
        }
        out
    }
}

/// The plan applier's verdict, per node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanVerdict {
    pub accepted_nodes: BTreeSet<String>,
    /// Node ID → why its part of the plan was refused.
    pub rejected_nodes: BTreeMap<String, String>,
}

impl PlanVerdict {
    /// True when every node of the plan was accepted.
    pub fn is_complete(&self) -> bool {
        self.rejected_nodes.is_empty()
    }
}

/// Re-checks a plan against a (possibly newer) snapshot, as Nomad's plan applier does: no node
/// over-committed in cpu, memory or disk, no host port booked twice, no new allocation on a node
/// that is gone, not ready or ineligible. Several workers may schedule concurrently from older snapshots;
/// this is where their plans meet reality.
pub fn verify_plan(state: &ClusterState, plan: &Plan) -> PlanVerdict {
    let mut verdict = PlanVerdict::default();
    let nodes: BTreeSet<&String> =
        plan.node_allocation.keys().chain(plan.node_update.keys()).collect();
    for node_id in nodes {
        match verify_node(state, plan, node_id) {
            Ok(()) => verdict.accepted_nodes.insert(node_id.clone()),
            Err(why) => verdict.rejected_nodes.insert(node_id.clone(), why).is_none(),
        };
    }
    if plan.all_at_once && !verdict.rejected_nodes.is_empty() {
        for n in std::mem::take(&mut verdict.accepted_nodes) {
            verdict.rejected_nodes.insert(n, "all_at_once: another node was rejected".into());
        }
    }
    verdict
}

fn verify_node(state: &ClusterState, plan: &Plan, node_id: &str) -> Result<(), String> {
    let allocs = plan.node_allocation.get(node_id).map(Vec::as_slice).unwrap_or(&[]);
    if allocs.is_empty() {
        // Stops alone never over-commit anything.
        return Ok(());
    }
    let idx = state.node_idx(node_id).ok_or_else(|| "node not found".to_string())?;
    let node = state.node(idx);
    let places_new = allocs.iter().any(|a| state.alloc(&a.id).is_none() && !a.is_terminal());
    if places_new && node.status != NodeStatus::Ready {
        return Err(format!("node is {:?}", node.status).to_lowercase());
    }
    // As Nomad's plan applier: a plan computed before a drain (or an eligibility change)
    // committed must not place new work on the node; in-place updates and stops still may.
    if places_new && node.scheduling_eligibility == SchedulingEligibility::Ineligible {
        return Err("node is not eligible".into());
    }
    let cap = state.capacity(idx);
    let usage = state.usage(idx);
    let (mut cpu, mut mem, mut disk) = (usage.cpu_mhz, usage.memory_mb, usage.disk_mb);
    let mut freed: BTreeSet<u16> = BTreeSet::new();
    let mut release = |a: &Allocation, freed: &mut BTreeSet<u16>| {
        if a.node_id == node_id && !a.is_terminal() {
            let fp = AllocFootprint::of(a);
            cpu = cpu.saturating_sub(fp.cpu_mhz);
            mem = mem.saturating_sub(fp.memory_mb);
            disk = disk.saturating_sub(fp.disk_mb);
            freed.extend(fp.ports);
        }
    };
    for s in plan.node_update.get(node_id).into_iter().flatten() {
        if let Some(a) = state.alloc(&s.alloc_id) {
            release(a, &mut freed);
        }
    }
    for a in allocs {
        if let Some(old) = state.alloc(&a.id) {
            release(old, &mut freed);
        }
    }
    let mut booked: BTreeSet<u16> = BTreeSet::new();
    for a in allocs.iter().filter(|a| !a.is_terminal()) {
        let fp = AllocFootprint::of(a);
        cpu += fp.cpu_mhz;
        mem += fp.memory_mb;
        disk += fp.disk_mb;
        for p in fp.ports {
            let taken = (usage.ports.contains(p) && !freed.contains(&p))
                || cap.reserved_ports.contains(p)
                || !booked.insert(p);
            if taken {
                return Err(format!("port {p} double-booked"));
            }
        }
    }
    if cpu > cap.cpu_mhz {
        return Err(format!("cpu over-committed: {cpu} > {} MHz", cap.cpu_mhz));
    }
    if mem > cap.memory_mb {
        return Err(format!("memory over-committed: {mem} > {} MB", cap.memory_mb));
    }
    if let Some(d) = cap.disk_mb {
        if disk > d {
            return Err(format!("disk over-committed: {disk} > {d} MB"));
        }
    }
    Ok(())
}

impl ClusterState {
    /// Applies the accepted part of a plan: stops (and lost marks), new and updated
    /// allocations, and `next_allocation` links on replaced allocations. Takes the plan by value
    /// so its allocations move into the state without a copy. Returns how many allocations were
    /// written.
    pub fn apply_plan(&mut self, plan: Plan, verdict: &PlanVerdict, now_unix_nanos: i64) -> usize {
        let mut written = 0;
        for (node_id, stops) in &plan.node_update {
            if !verdict.accepted_nodes.contains(node_id) {
                continue;
            }
            for s in stops {
                let changed = self.modify_alloc(&s.alloc_id, |a| {
                    a.desired_status = s.desired_status;
                    a.desired_description = s.desired_description.clone();
                    if let Some(c) = s.client_status {
                        a.client_status = c;
                    }
                    a.modify_time = now_unix_nanos;
                });
                written += usize::from(changed);
            }
        }
        for (node_id, allocs) in plan.node_allocation {
            if !verdict.accepted_nodes.contains(&node_id) {
                continue;
            }
            for a in allocs {
                if !a.previous_allocation.is_empty() {
                    let next = a.id.clone();
                    self.modify_alloc(&a.previous_allocation, |p| p.next_allocation = next);
                }
                self.upsert_alloc(a);
                written += 1;
            }
        }
        written
    }
}
