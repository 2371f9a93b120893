//! At most one leader per term: two servers that each believed they led the same term would
//! be Raft's split brain. Only self-declared leadership counts; what a follower believes about
//! the leader is not checked here.

use crate::{ServerView, Violation};
use std::collections::BTreeMap;

/// The leader seen for each term so far.
#[derive(Debug, Default)]
pub struct LeaderHistory {
    by_term: BTreeMap<u64, u64>,
}

pub fn check(history: &mut LeaderHistory, views: &[ServerView]) -> Result<(), Violation> {
    for v in views.iter().filter(|v| v.leader) {
        let first = *history.by_term.entry(v.term).or_insert(v.server);
        if first != v.server {
            return Err(Violation::new(
                "single_leader",
                format!("term {}: servers {first} and {} both led", v.term, v.server),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::view;

    #[test]
    fn two_leaders_in_one_term_fail_even_when_seen_at_different_steps() {
        let mut h = LeaderHistory::default();
        let mut a = view(1, 1);
        a.term = 3;
        a.leader = true;
        check(&mut h, &[a]).unwrap();
        let mut b = view(2, 1);
        b.term = 3;
        b.leader = true;
        let err = check(&mut h, &[b.clone()]).unwrap_err();
        assert_eq!(err.invariant, "single_leader");
        b.term = 4;
        check(&mut h, &[b]).unwrap();
    }
}
