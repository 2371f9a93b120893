//! orc's scheduler: a pure, deterministic function from (cluster snapshot, job, evaluation, seed,
//! "now") to a [`Plan`], following Nomad's scheduler (reconciler, feasibility, ranking, limit
//! iterator). It owns placement decisions; it does not store, apply or transport them — the
//! server does, with [`verify_plan`] and [`ClusterState::apply_plan`] in its plan applier.
//!
//! # Invariants
//!
//! * The scheduler does no IO, spawns nothing, is not async and never reads a clock: "now" is
//!   [`EvalContext::now_unix_nanos`].
//! * All randomness (node shuffle, dynamic ports, allocation and evaluation IDs) comes from one
//!   SplitMix64 seeded with [`EvalContext::seed`] mixed with the evaluation ID; the same inputs
//!   give the same plan, byte for byte, and different evaluations draw different IDs.
//! * No hash-map iteration order reaches a plan: every iterated map is a `BTreeMap` or a `Vec`.
//! * "Cannot place" is data ([`model::AllocMetric`] in [`Plan::failed_tg_allocs`]), not an error.
//! * A plan never over-commits a node's cpu, memory or disk (net of reservations) nor books a host
//!   port twice against the snapshot it was computed from; [`verify_plan`] re-checks that against
//!   a newer snapshot.
//! * An evaluation touches its job's allocations (through the per-job index) and the nodes it
//!   ranks; it never scans every allocation. Per-node usage is maintained incrementally by
//!   [`ClusterState`].
//!
//! # API
//!
//! ```text
//! ClusterState::new() / upsert_node(Node) / upsert_alloc(Allocation) / remove_alloc(&str)
//!              / insert_job_version(Job) / apply_plan(Plan, &PlanVerdict, now) -> usize
//! schedule(&ClusterState, Option<&Job>, &EvalContext) -> Plan     // None = purged job
//! verify_plan(&ClusterState, &Plan) -> PlanVerdict
//! ```
//!
//! `ClusterState` is `Send + Sync`: workers can share one snapshot behind an `Arc` while the
//! plan applier builds the next. Nodes are never removed from it (their indices are stable);
//! mark a node down instead, and allocations on a node it does not know are treated as lost.
//!
//! # Deviations from Nomad
//!
//! * Under binpack without affinities or spreads, the limit iterator visits nodes that already
//!   host work before empty ones (each set in seeded-shuffle order), for packing quality.
//! * No preemption, canaries, deployments objects, devices, volumes, `disconnect` blocks or
//!   sticky disks. Destructive updates are paced by `update.max_parallel` counting new-version
//!   allocations whose `deployment_status.healthy` is not `true`; the server must re-evaluate the
//!   job when that changes.
//! * As in Nomad, only allocations whose `DesiredTransition.Migrate` is set are migrated; the
//!   server's drainer sets it, paced by `migrate.max_parallel`.
//! * A failed allocation's failure time is its `modify_time`.
//! * Network mode and `host_network` are ignored; every port is a host port. Reserved cores are
//!   not allocated; `cores` asks count only their `cpu`. Disk is checked only on nodes that
//!   report a disk size.
//! * `${node.region}` resolves to the job's region (a node is only scheduled within its region).
//! * `AllocMetric` of a failed group covers every node the group's placements looked at in the
//!   evaluation (each counted once), not only the last `Select`.
//! * System jobs replace a terminal allocation on a still-feasible node, and stop allocations
//!   on nodes that became infeasible.

mod engine;
pub mod feasible;
mod generic;
mod plan;
pub mod ports;
pub mod rank;
mod reconcile;
pub mod reschedule;
mod rng;
mod state;
mod system;

pub use plan::{verify_plan, AllocStop, DesiredUpdates, Plan, PlanVerdict};
pub use rank::Algorithm;
pub use reconcile::tasks_updated;
pub use rng::Rng;
pub use state::{AllocFootprint, AllocSlot, ClusterState, NodeCapacity, NodeIdx, NodeUsage};

use model::{Evaluation, Job, JobType};

/// Everything about an evaluation that is not the cluster or the job.
#[derive(Debug, Clone, Default)]
pub struct EvalContext {
    /// The evaluation: `job_id` and `namespace` (used when the job is purged), `triggered_by`,
    /// `node_id` for node-scoped system evaluations, `id` for the plan and follow-ups.
    pub eval: Evaluation,
    /// The current time, unix nanoseconds.
    pub now_unix_nanos: i64,
    /// Seeds every random choice. Nomad derives its shuffle from the eval ID and state index;
    /// the server should do the same, so a retried evaluation sees a fresh order.
    pub seed: u64,
    pub algorithm: Algorithm,
}

/// Computes the plan for one evaluation. `job` is `None` when the job has been purged; a job
/// with `stop = true` stops everything too.
pub fn schedule(state: &ClusterState, job: Option<&Job>, ctx: &EvalContext) -> Plan {
    let (namespace, job_id) = match job {
        Some(j) => (j.namespace.as_str(), j.id.as_str()),
        None => (ctx.eval.namespace.as_str(), ctx.eval.job_id.as_str()),
    };
    let namespace = if namespace.is_empty() { "default" } else { namespace };
    let mut run = engine::Run::new(state, ctx, namespace, job_id);
    match job {
        Some(j) if !j.stop => match j.job_type {
            JobType::System => system::schedule_system(&mut run, j),
            JobType::Service | JobType::Batch => generic::schedule_generic(&mut run, j),
        },
        _ => stop_all(&mut run, namespace, job_id),
    }
    run.plan
}

fn stop_all(run: &mut engine::Run, namespace: &str, job_id: &str) {
    let state = run.state;
    for &s in state.allocs_by_job(namespace, job_id) {
        let a = state.alloc_at(s);
        if a.desired_status == model::DesiredStatus::Run && !a.client_status.is_terminal() {
            run.stop(s, reconcile::DESC_NOT_NEEDED, false, None);
            run.plan.desired_tg_updates.entry(a.task_group.clone()).or_default().stop += 1;
        }
    }
}
