//! orc's server: replicated state (Raft over gRPC), request forwarding and cluster formation.
//!
//! Layers, bottom up: `store` (durable bytes; the only sled user), `codec` (versioned encoding),
//! `state` (the pure state machine), `rpc` + `transport` (gRPC between servers over passed-in
//! listeners and connectors), `raft` (the only openraft user).

pub mod agent_api;
pub mod blocked;
pub mod broker;
pub mod clock;
pub mod codec;
pub mod config;
pub mod drainer;
pub mod heartbeat;
pub mod http;
pub mod node_endpoint;
pub mod pipeline;
mod plan_apply;
pub mod raft;
pub mod rpc;
pub mod server;
pub mod state;
pub mod store;
pub mod transport;
mod worker;

pub use config::Config;
pub use server::{
    Consistency, Error, Seams, Server, ServerHandle, ServerMember, StartError, Written,
};
