//! Evaluations: the record of "something changed, reconsider this job", and placement metrics.
//!
//! Shapes follow Nomad's `api.Evaluation` and `api.AllocationMetric`. The server creates and
//! brokers evaluations; the scheduler reads one and reports `AllocMetric`s as data when a group
//! cannot be placed.

use crate::duration::nanos;
use crate::job::JobType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Lifecycle of an evaluation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum EvalStatus {
    /// Waiting for capacity; retried when a node's resources change.
    Blocked,
    #[default]
    Pending,
    Complete,
    Failed,
    Canceled,
}

/// Why an evaluation was created. Serialised with Nomad's strings.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum TriggeredBy {
    #[default]
    #[serde(rename = "job-register")]
    JobRegister,
    #[serde(rename = "job-deregister")]
    JobDeregister,
    #[serde(rename = "job-scaling")]
    JobScaling,
    #[serde(rename = "node-update")]
    NodeUpdate,
    #[serde(rename = "node-drain")]
    NodeDrain,
    #[serde(rename = "alloc-stop")]
    AllocStop,
    #[serde(rename = "alloc-failure")]
    AllocFailure,
    #[serde(rename = "failed-follow-up")]
    FailedFollowUp,
    #[serde(rename = "queued-allocs")]
    QueuedAllocs,
    #[serde(rename = "rolling-update")]
    RollingUpdate,
    #[serde(rename = "max-plan-attempts")]
    MaxPlanAttempts,
}

/// An evaluation. See Nomad's `api.Evaluation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub triggered_by: TriggeredBy,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_modify_index: u64,
    #[serde(rename = "DeploymentID")]
    pub deployment_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    #[serde(with = "nanos")]
    pub wait: Duration,
    /// Unix nanoseconds before which the evaluation must not run; 0 for none.
    pub wait_until: i64,
    pub next_eval: String,
    pub previous_eval: String,
    pub blocked_eval: String,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    pub class_eligibility: BTreeMap<String, bool>,
    pub escaped_computed_class: bool,
    pub queued_allocations: BTreeMap<String, u64>,
    pub snapshot_index: u64,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// Why placements of a group failed, as data. See Nomad's `api.AllocationMetric`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocMetric {
    pub nodes_evaluated: u64,
    pub nodes_filtered: u64,
    pub nodes_in_pool: u64,
    pub nodes_available: BTreeMap<String, u64>,
    pub class_filtered: BTreeMap<String, u64>,
    pub constraint_filtered: BTreeMap<String, u64>,
    pub nodes_exhausted: u64,
    pub class_exhausted: BTreeMap<String, u64>,
    /// `cpu`, `memory`, `network: reserved port collision http=80`, … → node count.
    pub dimension_exhausted: BTreeMap<String, u64>,
    /// How many further placements of the same group failed the same way.
    pub coalesced_failures: u64,
}
