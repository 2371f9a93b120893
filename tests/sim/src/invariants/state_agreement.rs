//! Applied state is identical on all servers at the same index: the state machine is a pure
//! function of the log, so two servers that applied the same prefix must hold the same state.

use crate::{ServerView, Violation};

pub fn check(views: &[ServerView]) -> Result<(), Violation> {
    for (i, a) in views.iter().enumerate() {
        for b in &views[i + 1..] {
            if a.applied == b.applied && a.state != b.state {
                return Err(Violation::new(
                    "state_agreement",
                    format!(
                        "servers {} and {} both applied index {} but hold different states",
                        a.server, b.server, a.applied
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{job, view};
    use server::state::{apply, Command};

    #[test]
    fn different_states_at_one_index_fail() {
        let a = view(1, 0);
        let mut b = view(2, 0);
        check(&[a.clone(), b.clone()]).unwrap();
        apply(&mut b.state, 1, Command::JobRegister { job: Box::new(job("web", 1)), eval: None });
        // Same applied index claimed, different content.
        let err = check(&[a, b]).unwrap_err();
        assert_eq!(err.invariant, "state_agreement");
    }
}
