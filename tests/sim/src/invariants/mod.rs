//! The invariant checkers, one per file. Each is a pure function of server views (and, where
//! the invariant is about history, of a record it keeps between calls); none runs the
//! simulation. [`Checker`] runs them all after every simulation step.

pub mod acked_writes;
pub mod desired_forward;
pub mod group_count;
pub mod leader_order;
pub mod no_overcommit;
pub mod ports;
pub mod reschedule_limit;
pub mod single_leader;
pub mod state_agreement;

#[cfg(test)]
pub(crate) mod fixtures;

use crate::{ServerView, Violation};

/// All invariants with the history the historical ones need.
#[derive(Debug, Default)]
pub struct Checker {
    pub leaders: leader_order::LeaderHistory,
    pub term_leaders: single_leader::TermLeaders,
    pub acked: acked_writes::AckedWrites,
    pub desired: desired_forward::DesiredHistory,
}

impl Checker {
    /// Checks every invariant against the views of one instant.
    pub fn check(&mut self, views: &[ServerView]) -> Result<(), Violation> {
        single_leader::check(&mut self.term_leaders, views)?;
        leader_order::check(&mut self.leaders, views)?;
        state_agreement::check(views)?;
        acked_writes::check(&self.acked, views)?;
        self.desired.check(views)?;
        for v in views {
            no_overcommit::check(&v.state)?;
            ports::check(&v.state)?;
            group_count::check(&v.state)?;
            reschedule_limit::check(&v.state)?;
        }
        Ok(())
    }
}
