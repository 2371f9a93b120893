//! At most one leader per term. orc's Raft runs openraft with its `single-term-leader` feature,
//! so a server grants one vote per term and a leader is identified by its term alone, as in
//! standard Raft. The checker remembers, for every term, the first server seen leading it; any
//! other server seen leading that term, at the same instant or later, is a violation.
//!
//! The record is kept across a server's restart, including one that lost its state: a server
//! that forgot its vote may grant a second one in a term, and if that elected a second leader
//! the invariant is broken all the same (that is what `--lost-state` is there to find).

use crate::{ServerView, Violation};
use std::collections::BTreeMap;

/// For every term seen led, the server that led it.
#[derive(Debug, Default)]
pub struct TermLeaders {
    leaders: BTreeMap<u64, u64>,
}

pub fn check(record: &mut TermLeaders, views: &[ServerView]) -> Result<(), Violation> {
    for v in views.iter().filter(|v| v.leader) {
        let first = *record.leaders.entry(v.term).or_insert(v.server);
        if first != v.server {
            return Err(Violation::new(
                "single_leader",
                format!("servers {first} and {} both led term {}", v.server, v.term),
            ));
        }
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
    fn two_leaders_of_one_term_at_once_fail() {
        let mut r = TermLeaders::default();
        let err = check(&mut r, &[at(1, 3, true), at(2, 3, true)]).unwrap_err();
        assert_eq!(err.invariant, "single_leader");
    }

    #[test]
    fn a_second_leader_of_a_term_later_fails() {
        let mut r = TermLeaders::default();
        check(&mut r, &[at(1, 3, true), at(2, 3, false)]).unwrap();
        // The same leader again, and followers of its term, are fine.
        check(&mut r, &[at(1, 3, true), at(3, 3, false)]).unwrap();
        // Another server leading a later term is fine.
        check(&mut r, &[at(1, 3, false), at(2, 4, true)]).unwrap();
        // Another server leading term 3 after server 1 stopped is not.
        let err = check(&mut r, &[at(1, 4, false), at(3, 3, true)]).unwrap_err();
        assert_eq!(err.invariant, "single_leader");
        assert_eq!(err.detail, "servers 1 and 3 both led term 3");
    }
}
