//! Service registrations: where a task's service can be reached, as Nomad's built-in service
//! catalogue (`provider = "nomad"`) records it.
//!
//! Shape follows Nomad's `api.ServiceRegistration`. The agent creates registrations for running
//! allocations; the server stores them. The agent runs the checks and writes their results into
//! the registration (`Health`, `Checks`), so queries can return only healthy instances; running
//! checks is not this type's business.

use serde::{Deserialize, Serialize};

/// One instance of a service. See Nomad's `api.ServiceRegistration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceRegistration {
    /// Unique per instance: `_nomad-task-<alloc>-<task or group>-<service>-<port label>`.
    #[serde(rename = "ID")]
    pub id: String,
    pub service_name: String,
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub datacenter: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(rename = "AllocID")]
    pub alloc_id: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    /// The worst status of the instance's checks; `passing` when it has none. An orc addition
    /// (Nomad keeps check results on its clients only, hashicorp/nomad#23317).
    pub health: ServiceHealth,
    /// The latest result of each check.
    pub checks: Vec<ServiceCheckResult>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The health of a service instance, in Consul's words plus Nomad's `pending`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceHealth {
    #[default]
    Passing,
    Warning,
    /// Checks have not reported yet.
    Pending,
    Critical,
}

impl ServiceHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceHealth::Passing => "passing",
            ServiceHealth::Warning => "warning",
            ServiceHealth::Pending => "pending",
            ServiceHealth::Critical => "critical",
        }
    }
}

/// The latest result of one check of a service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheckResult {
    pub name: String,
    pub status: ServiceHealth,
    /// What the probe said, cut to a few KiB by the agent.
    pub output: String,
    /// Unix nanoseconds.
    pub timestamp: i64,
}
