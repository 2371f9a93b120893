//! The JSON shapes of Consul's agent API that orc sends and reads (`/v1/agent/service/register`,
//! `/v1/agent/services`, `/v1/agent/checks`, `/v1/agent/check/update/:id`). Field names are
//! Consul's; empty optional fields are left out, as Consul's Go client does.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceRegistration {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    pub port: u16,
    pub address: String,
    pub meta: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_false", default)]
    pub enable_tag_override: bool,
    pub checks: Vec<CheckRegistration>,
}

/// A check inside a service registration. Exactly one of `tcp`, `http` and `ttl` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CheckRegistration {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty", default)]
    pub tcp: String,
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty", default)]
    pub http: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub method: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub body: String,
    /// Script checks run on the orc agent and report through a TTL check.
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty", default)]
    pub ttl: String,
    /// Go durations (`"5s"`); empty for TTL checks.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub interval: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub timeout: String,
    /// The initial status; empty lets Consul choose (critical).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub status: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false", default)]
    pub tls_skip_verify: bool,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty", default)]
    pub tls_server_name: String,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub success_before_passing: u32,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub failures_before_warning: u32,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub failures_before_critical: u32,
}

/// One entry of `GET /v1/agent/services` (a map from service ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Option<Vec<String>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub port: u16,
    pub address: String,
    pub enable_tag_override: bool,
}

/// One entry of `GET /v1/agent/checks` (a map from check ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentCheck {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
}

/// The body of `PUT /v1/agent/check/update/:id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlUpdate {
    pub status: String,
    pub output: String,
}

/// A duration as Go prints it for Consul (`"5s"`, `"1500ms"`).
pub fn go_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// One entry of `GET /v1/health/service/:name` (the fields templates read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthEntry {
    pub node: HealthNode,
    pub service: HealthService,
}

/// The node of a [`HealthEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthNode {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
}

/// The service of a [`HealthEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    /// Consul sends null for no tags.
    pub tags: Option<Vec<String>>,
    pub address: String,
    pub port: u16,
}
