//! An allocation's desired status only moves forward: once the servers committed stop or
//! evict for it, no server that has applied that far shows it as run again. A server lagging
//! behind that index may still show run; that is history, not a regression.

use crate::{ServerView, Violation};
use model::DesiredStatus;
use std::collections::BTreeMap;

/// For each allocation seen stopped or evicted: the lowest applied index it was seen so at.
#[derive(Debug, Default)]
pub struct DesiredHistory {
    stopped_at: BTreeMap<String, u64>,
}

impl DesiredHistory {
    pub fn check(&mut self, views: &[ServerView]) -> Result<(), Violation> {
        for v in views {
            for a in v.state.allocs() {
                if a.desired_status != DesiredStatus::Run {
                    let at = self.stopped_at.entry(a.id.clone()).or_insert(v.applied);
                    *at = (*at).min(v.applied);
                }
            }
        }
        for v in views {
            for a in v.state.allocs().filter(|a| a.desired_status == DesiredStatus::Run) {
                if let Some(&at) = self.stopped_at.get(&a.id) {
                    if v.applied >= at {
                        return Err(Violation::new(
                            "desired_forward",
                            format!(
                                "alloc {} was stopped at index {at} but server {} shows it run \
                                 at index {}",
                                a.id, v.server, v.applied
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{alloc, job, node, state, view};

    #[test]
    fn run_after_stop_fails_but_a_lagging_server_does_not() {
        let mut h = DesiredHistory::default();
        let mut stopped = view(1, 10);
        let mut a = alloc("a1", "web", "n1", 1, 1, &[]);
        a.desired_status = DesiredStatus::Stop;
        stopped.state = state(vec![node("n1", 10, 10)], vec![job("web", 1)], vec![a]);
        let mut lagging = view(2, 5);
        lagging.state = state(
            vec![node("n1", 10, 10)],
            vec![job("web", 1)],
            vec![alloc("a1", "web", "n1", 1, 1, &[])],
        );
        h.check(&[stopped, lagging.clone()]).unwrap();
        lagging.applied = 12;
        assert_eq!(h.check(&[lagging]).unwrap_err().invariant, "desired_forward");
    }
}
