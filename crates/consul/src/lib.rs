//! Consul as a service provider (`provider = "consul"`, Nomad's default): what the agent
//! registers with its local Consul agent, and the loop that keeps Consul matching it.
//!
//! Pure cores: [`ids`] (Nomad's `_nomad-task-…` service IDs and `_nomad-check-…` check IDs, so
//! Consul-side tooling written for Nomad keeps working), [`build`] (a job's service block plus
//! an allocation's ports → a Consul registration) and [`sync`] (desired registrations vs. what
//! Consul reports → register/deregister actions). Shells: [`client`] (Consul's agent HTTP API)
//! and [`syncer`] (the periodic sync, retrying while Consul is down). It does not run checks:
//! Consul runs tcp and http checks itself, and the agent runs script checks (as TTL checks).

pub mod build;
pub mod client;
pub mod ids;
pub mod sync;
pub mod syncer;
pub mod wire;

pub use client::{Client, ConsulConfig, ConsulError};
pub use syncer::{SyncStatus, Syncer};
pub use wire::{AgentCheck, AgentService, CheckRegistration, ServiceRegistration};
