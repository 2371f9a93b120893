//! The shared data model of orc: the types every other crate speaks.
//!
//! Every type serialises to exactly the JSON that Nomad's HTTP API uses (PascalCase keys, durations
//! as integer nanoseconds), so the REST API can hand these types to serde directly. This crate does
//! no IO and knows nothing of HCL, Raft or drivers.

pub mod alloc;
pub mod duration;
pub mod eval;
pub mod job;
pub mod node;
pub mod service;
pub mod time;

pub use alloc::*;
pub use eval::*;
pub use job::*;
pub use node::*;
pub use service::*;
