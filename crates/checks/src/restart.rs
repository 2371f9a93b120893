//! `check_restart`: when a task should be restarted because its checks keep failing. Pure: the
//! caller passes the time in, and does the restarting.
//!
//! Nomad's rules: results during `grace` after the task (re)starts are ignored; `limit`
//! consecutive unhealthy results trigger a restart (a warning counts unless `ignore_warnings`);
//! any healthy result resets the count; `limit = 0` disables the whole thing.

use crate::status::CheckStatus;
use std::time::{Duration, Instant};

/// A check's (or its service's) `check_restart` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckRestartPolicy {
    pub limit: u32,
    pub grace: Duration,
    pub ignore_warnings: bool,
}

/// Counts one check's consecutive failures since its task last started.
#[derive(Debug, Clone)]
pub struct CheckRestartTracker {
    policy: CheckRestartPolicy,
    task_started: Instant,
    failures: u32,
}

impl CheckRestartTracker {
    /// A tracker for a task that started at `task_started`.
    pub fn new(policy: CheckRestartPolicy, task_started: Instant) -> CheckRestartTracker {
        CheckRestartTracker { policy, task_started, failures: 0 }
    }

    /// The task (re)started: a new grace period begins and past failures are forgotten.
    pub fn task_started(&mut self, at: Instant) {
        self.task_started = at;
        self.failures = 0;
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records the check's status at `now`; true when the task must be restarted. After a true
    /// answer the count starts over, so a task that is slow to restart is not restarted twice.
    pub fn observe(&mut self, status: CheckStatus, now: Instant) -> bool {
        if self.policy.limit == 0 {
            return false;
        }
        if now.saturating_duration_since(self.task_started) < self.policy.grace {
            return false;
        }
        let unhealthy = match status {
            CheckStatus::Passing | CheckStatus::Pending => false,
            CheckStatus::Warning => !self.policy.ignore_warnings,
            CheckStatus::Critical => true,
        };
        if !unhealthy {
            self.failures = 0;
            return false;
        }
        self.failures += 1;
        if self.failures >= self.policy.limit {
            self.failures = 0;
            self.task_started = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::*;

    fn policy(limit: u32, grace_s: u64, ignore_warnings: bool) -> CheckRestartPolicy {
        CheckRestartPolicy { limit, grace: Duration::from_secs(grace_s), ignore_warnings }
    }

    /// Feeds one result per second from `start + 1s` and returns when restarts were asked for.
    fn restarts(p: CheckRestartPolicy, results: &[CheckStatus]) -> Vec<usize> {
        let start = Instant::now();
        let mut t = CheckRestartTracker::new(p, start);
        let mut out = Vec::new();
        for (i, r) in results.iter().enumerate() {
            if t.observe(*r, start + Duration::from_secs(i as u64 + 1)) {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn limit_consecutive_failures_after_grace_restart() {
        // Grace of 2s hides the first result; then three criticals in a row.
        let r = [Critical, Critical, Critical, Critical, Passing, Critical];
        assert_eq!(restarts(policy(3, 2, false), &r), [3]);
    }

    #[test]
    fn a_healthy_result_resets_the_count() {
        let r = [Critical, Critical, Passing, Critical, Critical, Critical];
        assert_eq!(restarts(policy(3, 0, false), &r), [5]);
    }

    #[test]
    fn warnings_count_unless_ignored_and_zero_limit_disables() {
        let r = [Warning, Warning];
        assert_eq!(restarts(policy(2, 0, false), &r), [1]);
        assert!(restarts(policy(2, 0, true), &r).is_empty());
        assert!(restarts(policy(0, 0, false), &[Critical; 5]).is_empty());
    }

    #[test]
    fn a_restart_opens_a_new_grace_period() {
        // limit 1, grace 2s: restarts at t=2, 4 and 6; the second after each falls in the new grace.
        let r = [Critical; 6];
        assert_eq!(restarts(policy(1, 2, false), &r), [1, 3, 5]);
    }
}
