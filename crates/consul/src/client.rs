//! A blocking client for the local Consul agent's HTTP API: where it is (`consul { address }`,
//! `CONSUL_HTTP_ADDR`), the token (`consul { token }`, `CONSUL_HTTP_TOKEN`, sent as
//! `X-Consul-Token`), and the four calls orc makes. Short timeouts, so an unreachable Consul makes
//! a sync fail quickly instead of holding anything up; replies are size-bounded.

use crate::wire::{AgentCheck, AgentService, ServiceRegistration, TtlUpdate};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

/// Consul's default agent address.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";

/// The largest reply read: `/v1/agent/services` of 10,000 instances is a few MiB.
const MAX_REPLY_BYTES: u64 = 64 << 20;

/// The agent's `consul { … }` block, after the environment is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulConfig {
    /// `http://host:port` (a bare `host:port` is taken as http).
    pub address: String,
    pub token: Option<String>,
    /// Per request: connecting, sending and reading.
    pub timeout: Duration,
}

impl ConsulConfig {
    /// The configuration from the agent's settings, falling back to `CONSUL_HTTP_ADDR` and
    /// `CONSUL_HTTP_TOKEN` (as Nomad does), then to Consul's defaults. `env` is passed in so
    /// tests decide where the environment comes from.
    pub fn resolve(
        address: Option<&str>,
        token: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConsulConfig, ConsulError> {
        let address = address
            .map(str::to_owned)
            .filter(|a| !a.is_empty())
            .or_else(|| env("CONSUL_HTTP_ADDR").filter(|a| !a.is_empty()))
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let address = address.trim_end_matches('/');
        let address = if address.starts_with("http://") || address.starts_with("https://") {
            address.to_owned()
        } else if address.contains("://") {
            return Err(ConsulError::Config(format!(
                "consul address {address:?}: only http:// and https:// are supported"
            )));
        } else {
            format!("http://{address}")
        };
        let token =
            token.map(str::to_owned).or_else(|| env("CONSUL_HTTP_TOKEN")).filter(|t| !t.is_empty());
        Ok(ConsulConfig { address, token, timeout: Duration::from_secs(5) })
    }
}

/// Why a call to Consul failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsulError {
    #[error("{0}")]
    Config(String),
    #[error("consul at {addr} is unreachable: {message}")]
    Unreachable { addr: String, message: String },
    #[error("consul {method} {path}: {status}: {body}")]
    Status { method: &'static str, path: String, status: u16, body: String },
    #[error("consul {path}: unreadable reply: {message}")]
    Decode { path: String, message: String },
}

/// A connection to one Consul agent.
#[derive(Debug, Clone)]
pub struct Client {
    config: ConsulConfig,
    agent: ureq::Agent,
}

/// Escapes a path segment: IDs are built from job-chosen names.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(config: ConsulConfig) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(config.timeout))
            .build()
            .into();
        Client { config, agent }
    }

    pub fn config(&self) -> &ConsulConfig {
        &self.config
    }

    /// Registers (or replaces) a service and its checks; checks Consul has for the service but
    /// the registration lacks are removed.
    pub fn register(&self, reg: &ServiceRegistration) -> Result<(), ConsulError> {
        let body = serde_json::to_vec(reg).expect("a registration always encodes");
        self.call("PUT", "/v1/agent/service/register?replace-existing-checks=true", Some(&body))
            .map(drop)
    }

    /// Deregisters a service and its checks. A service Consul does not know is not an error:
    /// the goal (it is gone) holds.
    pub fn deregister(&self, service_id: &str) -> Result<(), ConsulError> {
        let path = format!("/v1/agent/service/deregister/{}", segment(service_id));
        match self.call("PUT", &path, None) {
            Err(ConsulError::Status { status: 404, .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The services registered with the agent, by ID.
    pub fn services(&self) -> Result<BTreeMap<String, AgentService>, ConsulError> {
        self.get("/v1/agent/services")
    }

    /// The checks registered with the agent, by ID.
    pub fn checks(&self) -> Result<BTreeMap<String, AgentCheck>, ConsulError> {
        self.get("/v1/agent/checks")
    }

    /// Reports a TTL (script) check's result.
    pub fn update_ttl(
        &self,
        check_id: &str,
        status: &str,
        output: &str,
    ) -> Result<(), ConsulError> {
        let path = format!("/v1/agent/check/update/{}", segment(check_id));
        let body = serde_json::to_vec(&TtlUpdate { status: status.into(), output: output.into() })
            .expect("a TTL update always encodes");
        self.call("PUT", &path, Some(&body)).map(drop)
    }

    /// `GET /v1/health/service/:name?passing`: the healthy instances of a service, as
    /// consul-template's `service` reads them; a blocking query from `index` (0: at once) that
    /// waits at most `wait`, clamped to half the client's timeout. Returns `X-Consul-Index`.
    pub fn health_service(
        &self,
        name: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, Vec<crate::wire::HealthEntry>), ConsulError> {
        let wait = wait.min(self.config.timeout / 2).as_millis();
        let path =
            format!("/v1/health/service/{}?passing&index={index}&wait={wait}ms", segment(name));
        let url = format!("{}{path}", self.config.address);
        let mut req = self.agent.get(&url);
        if let Some(t) = self.config.token.as_deref() {
            req = req.header("X-Consul-Token", t);
        }
        let mut reply = req.call().map_err(|e| ConsulError::Unreachable {
            addr: self.config.address.clone(),
            message: e.to_string(),
        })?;
        let status = reply.status().as_u16();
        let new_index = reply
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = reply
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|e| ConsulError::Decode { path: path.clone(), message: e.to_string() })?;
        if status != 200 {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            text.truncate(text.len().min(512));
            return Err(ConsulError::Status { method: "GET", path, status, body: text });
        }
        let entries = serde_json::from_slice(&bytes)
            .map_err(|e| ConsulError::Decode { path, message: e.to_string() })?;
        Ok((new_index, entries))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConsulError> {
        let body = self.call("GET", path, None)?;
        serde_json::from_slice(&body)
            .map_err(|e| ConsulError::Decode { path: path.into(), message: e.to_string() })
    }

    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, ConsulError> {
        let url = format!("{}{path}", self.config.address);
        let token = self.config.token.as_deref();
        let reply = if method == "GET" {
            let mut req = self.agent.get(&url);
            if let Some(t) = token {
                req = req.header("X-Consul-Token", t);
            }
            req.call()
        } else {
            let mut req = self.agent.put(&url);
            if let Some(t) = token {
                req = req.header("X-Consul-Token", t);
            }
            match body {
                Some(b) => req.header("Content-Type", "application/json").send(b),
                None => req.send_empty(),
            }
        };
        let mut reply = reply.map_err(|e| ConsulError::Unreachable {
            addr: self.config.address.clone(),
            message: e.to_string(),
        })?;
        let status = reply.status().as_u16();
        let bytes = reply
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_vec()
            .map_err(|e| ConsulError::Decode { path: path.into(), message: e.to_string() })?;
        if status != 200 {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            text.truncate(text.len().min(512));
            return Err(ConsulError::Status { method, path: path.into(), status, body: text });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_and_token_come_from_config_then_environment() {
        let env = |k: &str| match k {
            "CONSUL_HTTP_ADDR" => Some("10.0.0.2:8500".to_string()),
            "CONSUL_HTTP_TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        let c = ConsulConfig::resolve(None, None, env).unwrap();
        assert_eq!(c.address, "http://10.0.0.2:8500");
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        let c = ConsulConfig::resolve(Some("https://consul:8501/"), Some("t"), env).unwrap();
        assert_eq!((c.address.as_str(), c.token.as_deref()), ("https://consul:8501", Some("t")));
        let c = ConsulConfig::resolve(None, None, |_| None).unwrap();
        assert_eq!((c.address.as_str(), c.token), (DEFAULT_ADDR, None));
        assert!(ConsulConfig::resolve(Some("unix:///tmp/consul.sock"), None, |_| None).is_err());
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("_nomad-task-a-b"), "_nomad-task-a-b");
        assert_eq!(segment("a/../b c"), "a%2F..%2Fb%20c");
    }
}
