//! Deterministic simulation of whole orc clusters: real servers on turmoil's simulated network
//! and clock, seeded faults, simulated agents (fake ones speaking the node RPCs, or the real
//! agent crate with a fake driver: `real_agent`), and invariant checkers run after every step.
//!
//! Layout: `invariants` holds the pure checkers (one per file, each a function of what the
//! servers showed, never of how the simulation got there); `harness` runs the simulation and
//! feeds them; `workload` decides what clients and agents do. The C1M-shaped scale run
//! (`src/bin/c1m.rs`) is a benchmark and bypasses turmoil.

pub mod agent;
pub mod harness;
pub mod invariants;
pub mod liveness;
pub mod net;
pub mod real_agent;
pub mod workload;

use server::state::State;

/// What one running server showed at one instant of the simulation.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// The server's Raft ID.
    pub server: u64,
    /// Its current Raft term.
    pub term: u64,
    /// True if the server considers itself the leader of `term`.
    pub leader: bool,
    /// The last log index it applied; `state` is the state at exactly that index.
    pub applied: u64,
    pub state: State,
}

/// A broken invariant: which one, and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invariant {} violated: {}", self.invariant, self.detail)
    }
}

impl Violation {
    pub(crate) fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Violation { invariant, detail: detail.into() }
    }
}
