//! The server agent's configuration, shaped like Nomad's agent configuration so operators can
//! bring their files: `data_dir`, `bind_addr`, `ports`, and a `server` block with
//! `bootstrap_expect` and `server_join { retry_join }`.
//!
//! This module owns the settings and their defaults. It deserialises with serde from any
//! self-describing format (the CLI parses HCL into it); it does not read files or flags itself.
//! Keys it does not know are ignored rather than refused, because one agent file also carries
//! the `client` block and Nomad settings orc does not implement.

use crate::heartbeat::HeartbeatConfig;
use crate::raft::RaftTiming;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// The agent configuration (the part a server uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The server's name in `orc server members`; defaults to the host name.
    pub name: String,
    pub region: String,
    pub datacenter: String,
    /// Where the server keeps its Raft log, snapshots and identity (under `server/`). Without
    /// one the server keeps everything in memory (dev mode).
    pub data_dir: Option<PathBuf>,
    /// The address the listeners bind to.
    pub bind_addr: String,
    pub ports: Ports,
    /// The addresses other servers reach this one at, when `bind_addr` is not routable.
    pub advertise: Advertise,
    pub server: ServerBlock,
    /// Raft timing; not part of Nomad's file format.
    #[serde(skip)]
    pub raft: RaftTiming,
    /// How long a write or a consistent read may wait for a leader and a quorum before failing
    /// with a clear error. Not part of Nomad's file format.
    #[serde(skip)]
    pub request_timeout: Duration,
    /// A fixed server ID (tests, the simulator). Normally generated once and kept in `data_dir`.
    #[serde(skip)]
    pub node_id: Option<u64>,
    /// The wall clock and ID generator (the system's; the simulator passes its own).
    #[serde(skip)]
    pub clock: crate::clock::Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            region: "global".into(),
            datacenter: "dc1".into(),
            data_dir: None,
            bind_addr: "0.0.0.0".into(),
            ports: Ports::default(),
            advertise: Advertise::default(),
            server: ServerBlock::default(),
            raft: RaftTiming::default(),
            request_timeout: Duration::from_secs(10),
            node_id: None,
            clock: crate::clock::Clock::system(),
        }
    }
}

/// `ports { http = 4646 rpc = 4647 serf = 4648 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Ports {
    pub http: u16,
    /// Server-to-server gRPC (Raft, forwarding, joins).
    pub rpc: u16,
    /// Accepted for compatibility with Nomad files; orc has no gossip layer, joins use `rpc`.
    pub serf: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports { http: 4646, rpc: 4647, serf: 4648 }
    }
}

/// `advertise { rpc = "10.0.0.1:4647" }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Advertise {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

/// `server { enabled = true bootstrap_expect = 3 server_join { ... } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerBlock {
    pub enabled: bool,
    /// How many servers must know of each other before the cluster bootstraps. 1 means this
    /// server bootstraps alone (dev mode).
    pub bootstrap_expect: u32,
    pub server_join: ServerJoin,
    /// The shortest heartbeat TTL handed to clients (Nomad: `10s`).
    #[serde(deserialize_with = "go_duration")]
    pub min_heartbeat_ttl: Duration,
    /// TTLs grow so that all nodes together heartbeat at most this often (Nomad: 50).
    pub max_heartbeats_per_second: f64,
    /// How long past its TTL a node may stay silent before it is marked down (Nomad: `10s`).
    #[serde(deserialize_with = "go_duration")]
    pub heartbeat_grace: Duration,
    /// Scheduler workers on the leader; 0 means one per core, Nomad's default.
    pub num_schedulers: u32,
    /// How long a scheduler worker may hold an evaluation without acknowledging it before the
    /// broker hands it out again (Nomad: `eval_nack_timeout`, `60s`).
    #[serde(deserialize_with = "go_duration")]
    pub eval_nack_timeout: Duration,
    /// Deliveries after which an evaluation that keeps failing is marked failed, with a
    /// follow-up evaluation, instead of being redelivered (Nomad: `eval_delivery_limit`, 3).
    pub eval_delivery_limit: u32,
}

impl Default for ServerBlock {
    fn default() -> Self {
        let heartbeat = HeartbeatConfig::default();
        ServerBlock {
            enabled: false,
            bootstrap_expect: 1,
            server_join: ServerJoin::default(),
            min_heartbeat_ttl: heartbeat.min_ttl,
            max_heartbeats_per_second: heartbeat.max_per_second,
            heartbeat_grace: heartbeat.grace,
            num_schedulers: 0,
            eval_nack_timeout: Duration::from_secs(60),
            eval_delivery_limit: 3,
        }
    }
}

/// `server_join { retry_join = ["10.0.0.2", "10.0.0.3:4647"] retry_interval = "30s" }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerJoin {
    /// Other servers' RPC addresses; the port defaults to 4647.
    pub retry_join: Vec<String>,
    /// Nomad's default is 30 s; a Go duration string in files.
    #[serde(deserialize_with = "go_duration")]
    pub retry_interval: Duration,
    /// 0 means retry forever, as in Nomad.
    pub retry_max: u32,
}

impl Default for ServerJoin {
    fn default() -> Self {
        ServerJoin { retry_join: Vec::new(), retry_interval: Duration::from_secs(30), retry_max: 0 }
    }
}

fn go_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    model::duration::parse_go_duration(&s).map_err(serde::de::Error::custom)
}

impl Config {
    /// Refuses settings no server can run with, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.server.eval_nack_timeout.is_zero() {
            return Err("server.eval_nack_timeout must be longer than 0s".into());
        }
        if self.server.eval_delivery_limit == 0 {
            return Err("server.eval_delivery_limit must be at least 1".into());
        }
        Ok(())
    }

    /// The evaluation broker's limits from the `server` block.
    pub fn broker(&self) -> crate::broker::BrokerConfig {
        crate::broker::BrokerConfig {
            nack_timeout_ns: i64::try_from(self.server.eval_nack_timeout.as_nanos())
                .unwrap_or(i64::MAX),
            delivery_limit: self.server.eval_delivery_limit,
            ..crate::broker::BrokerConfig::default()
        }
    }

    /// The heartbeat settings of the `server` block.
    pub fn heartbeat(&self) -> HeartbeatConfig {
        HeartbeatConfig {
            min_ttl: self.server.min_heartbeat_ttl,
            max_per_second: self.server.max_heartbeats_per_second,
            grace: self.server.heartbeat_grace,
        }
    }

    /// `retry_join` addresses with the default RPC port filled in.
    pub fn join_addrs(&self) -> Vec<String> {
        self.server
            .server_join
            .retry_join
            .iter()
            .map(|a| match (has_port(a), a.contains(':')) {
                (true, _) => a.clone(),
                (false, true) => format!("[{a}]:{}", Ports::default().rpc),
                (false, false) => format!("{a}:{}", Ports::default().rpc),
            })
            .collect()
    }
}

fn has_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        // `[::1]:4647` or `host:4647`, but not a bare IPv6 address.
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (host.ends_with(']') || !host.contains(':'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_addresses_get_the_default_rpc_port() {
        let mut c = Config::default();
        c.server.server_join.retry_join =
            vec!["10.0.0.1".into(), "10.0.0.2:9000".into(), "[::1]:4700".into(), "::1".into()];
        assert_eq!(
            c.join_addrs(),
            vec!["10.0.0.1:4647", "10.0.0.2:9000", "[::1]:4700", "[::1]:4647"]
        );
    }

    #[test]
    fn deserialises_nomad_shaped_settings() {
        let json = r#"{
            "data_dir": "/var/lib/orc",
            "bind_addr": "127.0.0.1",
            "ports": { "rpc": 5647 },
            "server": { "enabled": true, "bootstrap_expect": 3,
                        "heartbeat_grace": "30s",
                        "eval_nack_timeout": "90s", "eval_delivery_limit": 5,
                        "server_join": { "retry_join": ["a", "b"], "retry_interval": "15s" } }
        }"#;
        let c: Config = serde_json::from_str(json).unwrap();
        assert_eq!(c.ports, Ports { http: 4646, rpc: 5647, serf: 4648 });
        assert_eq!(c.server.bootstrap_expect, 3);
        assert_eq!(c.server.server_join.retry_interval, Duration::from_secs(15));
        assert_eq!(c.heartbeat().grace, Duration::from_secs(30));
        assert_eq!(c.heartbeat().min_ttl, Duration::from_secs(10));
        assert_eq!(c.broker().nack_timeout_ns, 90_000_000_000);
        assert_eq!(c.broker().delivery_limit, 5);
        assert_eq!(c.validate(), Ok(()));
        let defaults = Config::default();
        assert_eq!(defaults.broker(), crate::broker::BrokerConfig::default());
        let mut zero = Config::default();
        zero.server.eval_delivery_limit = 0;
        assert!(zero.validate().unwrap_err().contains("eval_delivery_limit"));
        zero = Config::default();
        zero.server.eval_nack_timeout = Duration::ZERO;
        assert!(zero.validate().unwrap_err().contains("eval_nack_timeout"));
        // The client's settings share the file and are not this module's business.
        let shared: Config =
            serde_json::from_str(r#"{"client": {"enabled": true}, "server": {"enabled": true}}"#)
                .unwrap();
        assert!(shared.server.enabled);
    }
}
