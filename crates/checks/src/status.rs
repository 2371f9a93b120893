//! A check's status, and how consecutive probe results move it: Consul's
//! `success_before_passing`, `failures_before_warning` and `failures_before_critical`. Pure: no
//! clock, no IO.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The health of one check, or of a service instance (the worst of its checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The check has not produced a result yet (Nomad's `initial_status` for its own catalogue).
    Pending,
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// The word Consul and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pending => "pending",
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// Parses Consul's words; anything else is `None`.
    pub fn parse(s: &str) -> Option<CheckStatus> {
        match s {
            "pending" => Some(CheckStatus::Pending),
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }

    /// How bad a status is, for "the worst of several checks": pending sits between warning and
    /// critical, because an instance whose checks have not run yet must not receive traffic, but
    /// is not known to be broken either.
    fn severity(self) -> u8 {
        match self {
            CheckStatus::Passing => 0,
            CheckStatus::Warning => 1,
            CheckStatus::Pending => 2,
            CheckStatus::Critical => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: CheckStatus) -> CheckStatus {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many consecutive results it takes to change a check's status; 0 means "at once".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

/// The status of a check and the run of equal results that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    status: CheckStatus,
    thresholds: Thresholds,
    successes: u32,
    failures: u32,
}

impl CheckState {
    /// A check that starts at `initial`.
    pub fn new(initial: CheckStatus, thresholds: Thresholds) -> CheckState {
        CheckState { status: initial, thresholds, successes: 0, failures: 0 }
    }

    pub fn status(&self) -> CheckStatus {
        self.status
    }

    /// Records one probe result and returns the check's status afterwards. A warning result is
    /// taken as it comes: thresholds only delay the move between passing and failing.
    pub fn observe(&mut self, result: CheckStatus) -> CheckStatus {
        let t = self.thresholds;
        match result {
            CheckStatus::Passing => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.successes >= t.success_before_passing {
                    self.status = CheckStatus::Passing;
                }
            }
            CheckStatus::Critical => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.failures >= t.failures_before_critical {
                    self.status = CheckStatus::Critical;
                } else if t.failures_before_warning > 0
                    && self.failures >= t.failures_before_warning
                {
                    self.status = CheckStatus::Warning;
                }
            }
            CheckStatus::Warning => {
                self.successes = 0;
                self.failures = 0;
                self.status = CheckStatus::Warning;
            }
            CheckStatus::Pending => {}
        }
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::*;

    fn run(initial: CheckStatus, t: Thresholds, results: &[CheckStatus]) -> Vec<CheckStatus> {
        let mut s = CheckState::new(initial, t);
        results.iter().map(|r| s.observe(*r)).collect()
    }

    #[test]
    fn without_thresholds_every_result_counts_at_once() {
        let got = run(Pending, Thresholds::default(), &[Passing, Critical, Passing, Warning]);
        assert_eq!(got, [Passing, Critical, Passing, Warning]);
    }

    #[test]
    fn thresholds_delay_changes() {
        let t = Thresholds {
            success_before_passing: 2,
            failures_before_warning: 1,
            failures_before_critical: 3,
        };
        let got = run(Critical, t, &[Passing, Passing, Critical, Critical, Passing, Critical]);
        assert_eq!(got, [Critical, Passing, Warning, Warning, Warning, Warning]);
        let got = run(Passing, t, &[Critical, Critical, Critical]);
        assert_eq!(got, [Warning, Warning, Critical]);
    }

    #[test]
    fn worst_ranks_pending_between_warning_and_critical() {
        assert_eq!(Passing.worst(Warning), Warning);
        assert_eq!(Warning.worst(Pending), Pending);
        assert_eq!(Critical.worst(Pending), Critical);
        assert_eq!(Passing.worst(Passing), Passing);
        for s in [Pending, Passing, Warning, Critical] {
            assert_eq!(CheckStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CheckStatus::parse("maintenance"), None);
    }
}
