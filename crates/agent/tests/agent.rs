//! The agent through the surfaces it offers: a `Client` given allocations by (fake) servers,
//! observed through the reports it sends back, the files it writes, its HTTP endpoints, and the
//! pot commands it runs against the stand-in.

#[path = "agent/artifact.rs"]
mod artifact;
#[path = "agent/harness.rs"]
mod harness;
#[path = "agent/pot.rs"]
mod pot;
#[path = "agent/raw_exec.rs"]
mod raw_exec;
#[path = "agent/restart.rs"]
mod restart;
#[path = "agent/stopped.rs"]
mod stopped;
