//! A server's term only moves forward. Checked here: a server's term never decreases while it
//! keeps its state, and a server that stopped leading a term never leads that term again. That
//! no two servers lead one term is `single_leader`'s check (orc's Raft runs openraft with its
//! `single-term-leader` feature); that no two leaders commit conflicting entries is checked by
//! `state_agreement` and `acked_writes`.

use crate::{ServerView, Violation};
use std::collections::BTreeMap;

/// Per server: the highest term seen, and whether it led that term and then stopped.
#[derive(Debug, Default)]
pub struct LeaderHistory {
    servers: BTreeMap<u64, Seen>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    term: u64,
    led: bool,
    stopped_leading: bool,
}

impl LeaderHistory {
    /// The server restarted without its state: its term may start over.
    pub fn forget(&mut self, server: u64) {
        self.servers.remove(&server);
    }
}

pub fn check(history: &mut LeaderHistory, views: &[ServerView]) -> Result<(), Violation> {
    for v in views {
        let seen = history.servers.entry(v.server).or_default();
        if v.term < seen.term {
            return Err(Violation::new(
                "leader_order",
                format!("server {} went back from term {} to term {}", v.server, seen.term, v.term),
            ));
        }
        if v.term > seen.term {
            *seen = Seen { term: v.term, ..Seen::default() };
        }
        if v.leader && seen.stopped_leading {
            return Err(Violation::new(
                "leader_order",
                format!(
                    "server {} leads term {} again after it stopped leading it",
                    v.server, v.term
                ),
            ));
        }
        seen.stopped_leading |= seen.led && !v.leader;
        seen.led |= v.leader;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::view;

    fn at(server: u64, term: u64, leader: bool) -> ServerView {
        let mut v = view(server, 1);
        v.term = term;
        v.leader = leader;
        v
    }

    #[test]
    fn a_term_going_back_fails_unless_the_state_was_lost() {
        let mut h = LeaderHistory::default();
        check(&mut h, &[at(1, 3, false), at(2, 3, true)]).unwrap();
        let err = check(&mut h, &[at(1, 2, false)]).unwrap_err();
        assert_eq!(err.invariant, "leader_order");
        h.forget(1);
        check(&mut h, &[at(1, 2, false)]).unwrap();
    }

    #[test]
    fn leading_a_term_again_after_stopping_fails() {
        let mut h = LeaderHistory::default();
        check(&mut h, &[at(1, 3, true)]).unwrap();
        check(&mut h, &[at(1, 3, true)]).unwrap();
        // Another leader of the same term is `single_leader`'s concern, not this checker's.
        check(&mut h, &[at(1, 3, false), at(2, 3, true)]).unwrap();
        let err = check(&mut h, &[at(1, 3, true)]).unwrap_err();
        assert_eq!(err.invariant, "leader_order");
        // A new term may be led again.
        check(&mut h, &[at(1, 4, true)]).unwrap();
    }
}
