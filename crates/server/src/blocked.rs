//! Blocked evaluations on the leader, as Nomad's `BlockedEvals`: one per job, kept until
//! capacity appears where the evaluation could use it (a node of an eligible or unseen computed
//! class registered, came back or had an allocation stop), then handed back to the broker.
//!
//! Pure bookkeeping like the broker: the pipeline feeds it the replicated blocked evaluations and
//! the capacity changes it sees, and it answers which evaluations to retry and which a newer one
//! supersedes. It does not write anything.

use model::Evaluation;
use std::collections::{BTreeMap, BTreeSet};

type JobKey = (String, String);

/// The blocked-evaluation tracker. See the module documentation.
#[derive(Debug, Default)]
pub struct Blocked {
    by_job: BTreeMap<JobKey, Evaluation>,
    /// The latest index at which capacity appeared in each computed class, so an evaluation
    /// whose snapshot predates that change is retried at once instead of missing it.
    freed_at: BTreeMap<String, u64>,
}

/// Capacity that appeared at one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freed {
    pub index: u64,
    /// Computed classes of the nodes that gained capacity.
    pub classes: BTreeSet<String>,
}

fn could_use(eval: &Evaluation, class: &str) -> bool {
    eval.escaped_computed_class || eval.class_eligibility.get(class).copied().unwrap_or(true)
}

impl Blocked {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blocked evaluations tracked.
    pub fn len(&self) -> usize {
        self.by_job.len()
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.by_job.is_empty()
    }

    /// The blocked evaluation tracked for a job.
    pub fn get(&self, namespace: &str, job_id: &str) -> Option<&Evaluation> {
        self.by_job.get(&(namespace.to_owned(), job_id.to_owned()))
    }

    /// Tracks a blocked evaluation. Returns what to do with it and any older one of the job:
    /// `(retry_now, superseded)`. It is retried at once when capacity it could use appeared
    /// after its snapshot.
    pub fn block(&mut self, eval: Evaluation) -> (Option<Evaluation>, Option<Evaluation>) {
        let key = (eval.namespace.clone(), eval.job_id.clone());
        let superseded = match self.by_job.get(&key) {
            Some(old) if old.id == eval.id => return (None, None),
            Some(old) if old.create_index > eval.create_index => return (None, Some(eval)),
            _ => self.by_job.remove(&key),
        };
        let missed =
            self.freed_at.iter().any(|(c, at)| *at > eval.snapshot_index && could_use(&eval, c));
        if missed {
            return (Some(eval), superseded);
        }
        self.by_job.insert(key, eval);
        (None, superseded)
    }

    /// Stops tracking a job's blocked evaluation (a newer evaluation of the job ran).
    pub fn untrack(&mut self, namespace: &str, job_id: &str, eval_id: &str) {
        let key = (namespace.to_owned(), job_id.to_owned());
        if self.by_job.get(&key).is_some_and(|e| e.id == eval_id) {
            self.by_job.remove(&key);
        }
    }

    /// Capacity appeared: returns the evaluations that could use it, no longer tracked.
    pub fn unblock(&mut self, freed: &Freed) -> Vec<Evaluation> {
        for c in &freed.classes {
            let at = self.freed_at.entry(c.clone()).or_default();
            *at = (*at).max(freed.index);
        }
        let keys: Vec<JobKey> = self
            .by_job
            .iter()
            .filter(|(_, e)| freed.classes.iter().any(|c| could_use(e, c)))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter().filter_map(|k| self.by_job.remove(&k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(id: &str, job: &str, create_index: u64, classes: &[(&str, bool)]) -> Evaluation {
        Evaluation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            create_index,
            snapshot_index: create_index,
            class_eligibility: classes.iter().map(|(c, ok)| (c.to_string(), *ok)).collect(),
            ..Evaluation::default()
        }
    }

    fn freed(index: u64, classes: &[&str]) -> Freed {
        Freed { index, classes: classes.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn capacity_in_an_ineligible_class_does_not_unblock() {
        let mut b = Blocked::new();
        assert_eq!(
            b.block(blocked("e1", "a", 5, &[("small", false), ("big", true)])),
            (None, None)
        );
        assert!(b.unblock(&freed(6, &["small"])).is_empty());
        assert_eq!(b.len(), 1);
        let out = b.unblock(&freed(7, &["big"]));
        assert_eq!(out.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e1"]);
        assert!(b.is_empty());
        // An unseen class may fit.
        b.block(blocked("e2", "a", 8, &[("small", false)]));
        assert_eq!(b.unblock(&freed(9, &["new"])).len(), 1);
    }

    #[test]
    fn one_per_job_and_missed_capacity_retries_at_once() {
        let mut b = Blocked::new();
        b.block(blocked("e1", "a", 5, &[]));
        let (now, old) = b.block(blocked("e2", "a", 6, &[]));
        assert_eq!((now, old.map(|e| e.id)), (None, Some("e1".to_string())));
        let (_, stale) = b.block(blocked("e0", "a", 4, &[]));
        assert_eq!(stale.map(|e| e.id), Some("e0".to_string()), "an older one is superseded");
        b.unblock(&freed(10, &["c"]));
        // Its snapshot (8) predates capacity freed at 10: retried immediately.
        let (now, _) = b.block(blocked("e3", "b", 8, &[]));
        assert_eq!(now.map(|e| e.id), Some("e3".to_string()));
        let (now, _) = b.block(blocked("e4", "b", 11, &[]));
        assert!(now.is_none());
        b.untrack("default", "b", "e4");
        assert!(b.get("default", "b").is_none());
    }
}
