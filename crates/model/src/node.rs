//! Nodes: the agents' hosts as the servers and the scheduler see them.
//!
//! Shapes follow Nomad's `api.Node`. The agent fills in resources, attributes and drivers by
//! fingerprinting; the server owns status, eligibility, drain and the computed class. Nothing here
//! fingerprints or schedules.

use crate::duration::nanos;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Liveness of a node as tracked by the leader's heartbeat timers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Registered, not yet heartbeating.
    #[default]
    Initializing,
    /// Heartbeating; may receive work.
    Ready,
    /// Missed its heartbeat TTL plus grace; its allocations are lost.
    Down,
    /// Unreachable, but its allocations may reconnect (`disconnect` blocks).
    Disconnected,
}

/// Whether the scheduler may place new work on a node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum SchedulingEligibility {
    #[default]
    Eligible,
    Ineligible,
}

/// A client node. See Nomad's `api.Node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    /// `host:port` of the agent's HTTP API, used to reach it for logs.
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    #[serde(rename = "TLSEnabled")]
    pub tls_enabled: bool,
    /// Fingerprinted attributes: `kernel.name`, `cpu.arch`, `unique.hostname`, `driver.pot`, …
    pub attributes: BTreeMap<String, String>,
    /// Operator-set client meta.
    pub meta: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeReservedResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub status: NodeStatus,
    pub status_description: String,
    pub scheduling_eligibility: SchedulingEligibility,
    pub drain: bool,
    pub drain_strategy: Option<DrainStrategy>,
    /// The latest drain, running or finished (Nomad's `LastDrain`).
    pub last_drain: Option<DrainMetadata>,
    /// The most recent node events, oldest first, at most [`MAX_NODE_EVENTS`].
    pub events: Vec<NodeEvent>,
    /// A hash of everything feasibility depends on except unique attributes; nodes with the same
    /// class are interchangeable for constraint checks.
    pub computed_class: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What a node offers in total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    pub cpu: NodeCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
    /// Dynamic ports are drawn from `min_dynamic_port..=max_dynamic_port` (20000–32000 in Nomad).
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeCpuResources {
    /// Total compute in MHz.
    pub cpu_shares: u64,
    pub total_cpu_cores: u32,
    pub reservable_cpu_cores: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeDiskResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
}

/// What the operator keeps back for the host itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedResources {
    pub cpu: NodeReservedCpuResources,
    pub memory: NodeMemoryResources,
    pub disk: NodeDiskResources,
    pub networks: NodeReservedNetworkResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedCpuResources {
    pub cpu_shares: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeReservedNetworkResources {
    /// Nomad's syntax: `"22,80,8000-8100"`.
    pub reserved_host_ports: String,
}

/// A driver's fingerprint on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub attributes: BTreeMap<String, String>,
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
}

/// A drain in progress. `deadline` of zero means no deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainStrategy {
    #[serde(with = "nanos")]
    pub deadline: Duration,
    pub ignore_system_jobs: bool,
    /// Unix nanoseconds at which remaining allocations are stopped; 0 for none. RFC 3339 in
    /// JSON, as Nomad's `time.Time` (Go's zero time for none).
    #[serde(with = "crate::time::rfc3339")]
    pub force_deadline: i64,
    /// Unix nanoseconds at which the drain started; RFC 3339 in JSON.
    #[serde(with = "crate::time::rfc3339")]
    pub started_at: i64,
}

/// How many events a node keeps, as Nomad's `maxNodeEvents`.
pub const MAX_NODE_EVENTS: usize = 10;

/// Nomad's `NodeEvent`: something that happened to a node, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeEvent {
    pub message: String,
    /// `Drain`, `Cluster`, `Driver`, ….
    pub subsystem: String,
    pub details: BTreeMap<String, String>,
    /// RFC 3339 time, as Nomad's JSON writes Go's `time.Time`.
    pub timestamp: String,
    pub create_index: u64,
}

/// Nomad's `DrainMetadata`: when the node's last drain started and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DrainMetadata {
    /// RFC 3339 times.
    pub started_at: String,
    pub updated_at: String,
    /// `draining`, `complete` or `canceled`.
    pub status: String,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    pub meta: BTreeMap<String, String>,
}

impl Node {
    /// True when the scheduler may place new allocations here.
    pub fn is_schedulable(&self) -> bool {
        self.status == NodeStatus::Ready
            && self.scheduling_eligibility == SchedulingEligibility::Eligible
            && !self.drain
    }

    /// Computes the class hash from datacenter, pool, node class, non-unique attributes and meta,
    /// and drivers. Deterministic (FNV-1a over ordered maps), so every server computes the same
    /// class for the same node.
    pub fn compute_class(&self) -> String {
        let mut h = Fnv::new();
        h.write_field(&self.datacenter);
        h.write_field(&self.node_pool);
        h.write_field(&self.node_class);
        for (k, v) in self.attributes.iter().filter(|(k, _)| !k.starts_with("unique.")) {
            h.write_field(k);
            h.write_field(v);
        }
        for (k, v) in self.meta.iter().filter(|(k, _)| !k.starts_with("unique.")) {
            h.write_field(k);
            h.write_field(v);
        }
        for (name, d) in &self.drivers {
            h.write_field(name);
            h.write_field(if d.detected && d.healthy { "1" } else { "0" });
        }
        format!("v1:{:016x}", h.0)
    }
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases, which `DefaultHasher` is not.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write_field(&mut self, s: &str) {
        for b in s.bytes().chain(std::iter::once(0xff)) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_strategy_times_are_go_times_and_old_integers_still_read() {
        let d = DrainStrategy {
            deadline: Duration::from_secs(3600),
            ignore_system_jobs: false,
            force_deadline: 0,
            started_at: 1_700_000_000_000_000_001,
        };
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Deadline": 3_600_000_000_000u64, "IgnoreSystemJobs": false,
                "ForceDeadline": "0001-01-01T00:00:00Z",
                "StartedAt": "2023-11-14T22:13:20.000000001Z"})
        );
        assert_eq!(serde_json::from_value::<DrainStrategy>(v).unwrap(), d);
        let old = serde_json::json!({"Deadline": 0, "ForceDeadline": 5, "StartedAt": 7});
        let read: DrainStrategy = serde_json::from_value(old).unwrap();
        assert_eq!((read.force_deadline, read.started_at), (5, 7));
    }

    #[test]
    fn computed_class_ignores_unique_attributes() {
        let mut a = Node { datacenter: "dc1".into(), ..Node::default() };
        a.attributes.insert("kernel.name".into(), "freebsd".into());
        a.attributes.insert("unique.hostname".into(), "a".into());
        let mut b = a.clone();
        b.attributes.insert("unique.hostname".into(), "b".into());
        assert_eq!(a.compute_class(), b.compute_class());
        b.attributes.insert("kernel.name".into(), "linux".into());
        assert_ne!(a.compute_class(), b.compute_class());
    }
}
