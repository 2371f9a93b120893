//! Allocations: placed task groups, and the task states the agent reports for them.
//!
//! Shapes follow Nomad's `api.Allocation`. The scheduler creates allocations (desired state); the
//! agent reports client status and task states; the server stores both. An allocation refers to
//! its job by ID and version rather than embedding it, so a million allocations share one job
//! record; the API attaches the job when a client asks for it.

use crate::duration::nanos;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the servers want for an allocation. Moves only forward: run → stop or evict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum DesiredStatus {
    #[default]
    Run,
    Stop,
    Evict,
}

/// What the agent reports for an allocation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
    Lost,
    Unknown,
}

impl ClientStatus {
    /// Terminal statuses never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost)
    }
}

/// A task group placed on a node. See Nomad's `api.Allocation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// `<job>.<group>[<index>]`.
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub task_group: String,
    pub allocated_resources: AllocatedResources,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    /// What the servers want to happen to the allocation next (the drainer marks migrations).
    pub desired_transition: DesiredTransition,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    pub previous_allocation: String,
    pub next_allocation: String,
    pub reschedule_tracker: Option<RescheduleTracker>,
    #[serde(rename = "FollowupEvalID")]
    pub followup_eval_id: String,
    pub deployment_status: Option<AllocDeploymentStatus>,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// Nomad's `DesiredTransition`: transitions the servers request for an allocation beyond its
/// desired status. `None` means "not requested", as Nomad's pointer fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredTransition {
    /// Set by the node drainer: the scheduler replaces the allocation elsewhere and stops it.
    pub migrate: Option<bool>,
    pub reschedule: Option<bool>,
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
}

impl DesiredTransition {
    /// True when the allocation has been marked for migration.
    pub fn should_migrate(&self) -> bool {
        self.migrate == Some(true)
    }
}

/// The resources the scheduler granted, with concrete host ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    pub tasks: BTreeMap<String, AllocatedTaskResources>,
    pub shared: AllocatedSharedResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    pub cpu: AllocatedCpuResources,
    pub memory: AllocatedMemoryResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    /// MHz.
    pub cpu_shares: u64,
    pub reserved_cores: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
    /// Every port of the group (group and legacy task networks) with its host port assigned.
    pub ports: Vec<AllocatedPort>,
}

/// A port granted to an allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPort {
    pub label: String,
    /// The host port.
    pub value: u16,
    /// The port inside the task's namespace; 0 means the same as `value`.
    pub to: i32,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
}

/// The agent's view of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    /// `pending`, `running` or `dead`.
    pub state: String,
    pub failed: bool,
    pub restarts: u64,
    /// RFC 3339, as Nomad writes these three.
    pub last_restart: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events: Vec<TaskEvent>,
}

/// One entry of a task's history: `Received`, `Task Setup`, `Started`, `Terminated`, ….
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub event_type: String,
    /// Unix nanoseconds.
    pub time: i64,
    pub message: String,
    pub display_message: String,
    pub exit_code: i32,
    pub signal: i32,
    pub details: BTreeMap<String, String>,
}

/// The history of reschedules that led to an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleTracker {
    pub events: Vec<RescheduleEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleEvent {
    /// Unix nanoseconds.
    pub reschedule_time: i64,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    #[serde(with = "nanos")]
    pub delay: Duration,
}

/// Health of an allocation within a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocDeploymentStatus {
    pub healthy: Option<bool>,
    /// Unix nanoseconds; RFC 3339 in JSON, as Go's `time.Time` that Nomad sends.
    #[serde(with = "crate::time::rfc3339")]
    pub timestamp: i64,
    pub canary: bool,
    /// The Raft index at which the health was last written.
    pub modify_index: u64,
}

impl Allocation {
    /// The index in `job.group[index]`, or `None` if the name is malformed.
    pub fn name_index(&self) -> Option<u32> {
        let open = self.name.rfind('[')?;
        self.name.strip_suffix(']')?.get(open + 1..)?.parse().ok()
    }

    /// True once the allocation neither runs nor will run again.
    pub fn is_terminal(&self) -> bool {
        self.desired_status != DesiredStatus::Run || self.client_status.is_terminal()
    }
}

/// The name Nomad gives the allocation at `index` of a group.
pub fn alloc_name(job_id: &str, group: &str, index: u32) -> String {
    format!("{job_id}.{group}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_index_parses_nomad_names() {
        let a = Allocation { name: alloc_name("web.v2", "g[x]", 17), ..Allocation::default() };
        assert_eq!(a.name_index(), Some(17));
        let b = Allocation { name: "nonsense".into(), ..Allocation::default() };
        assert_eq!(b.name_index(), None);
    }
}
