//! Service registrations: where a task's service can be reached, as Nomad's built-in service
//! catalogue (`provider = "nomad"`) records it.
//!
//! Shape follows Nomad's `api.ServiceRegistration`. The agent creates registrations for running
//! allocations; the server stores them. Health checking is not this type's business.

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
    pub create_index: u64,
    pub modify_index: u64,
}
