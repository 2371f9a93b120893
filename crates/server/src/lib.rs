//! orc's server: replicated state (Raft over gRPC), request forwarding and cluster formation.
pub mod store;
