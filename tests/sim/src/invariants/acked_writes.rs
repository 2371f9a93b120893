//! Every acknowledged write is present after recovery: once a client was told a job
//! registration committed at index i, every server that has applied i holds that job, through
//! leader changes, crashes and snapshot installs.

use crate::{ServerView, Violation};

/// Job registrations the cluster acknowledged: (index, namespace, job ID).
#[derive(Debug, Default, Clone)]
pub struct AckedWrites {
    pub jobs: Vec<(u64, String, String)>,
}

impl AckedWrites {
    pub fn record_job(&mut self, index: u64, namespace: &str, job_id: &str) {
        self.jobs.push((index, namespace.to_owned(), job_id.to_owned()));
    }

    /// The highest acknowledged index: after recovery every server must reach it.
    pub fn max_index(&self) -> u64 {
        self.jobs.iter().map(|(i, _, _)| *i).max().unwrap_or(0)
    }
}

pub fn check(acked: &AckedWrites, views: &[ServerView]) -> Result<(), Violation> {
    for v in views {
        for (index, namespace, job_id) in &acked.jobs {
            if v.applied >= *index && v.state.job(namespace, job_id).is_none() {
                return Err(Violation::new(
                    "acked_writes",
                    format!(
                        "job {namespace}/{job_id} acknowledged at index {index} is missing on \
                         server {} at index {}",
                        v.server, v.applied
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
    use crate::invariants::fixtures::{job, node, state, view};

    #[test]
    fn an_acknowledged_job_missing_fails() {
        let mut acked = AckedWrites::default();
        acked.record_job(2, "default", "web");
        let mut has = view(1, 3);
        has.state = state(vec![node("n1", 1, 1)], vec![job("web", 1)], vec![]);
        let behind = view(2, 1);
        check(&acked, &[has, behind]).unwrap();
        let lost = view(3, 3);
        assert_eq!(check(&acked, &[lost]).unwrap_err().invariant, "acked_writes");
    }
}
