//! The restart policy as a pure decision: given a task's exit and its recent restarts, restart
//! (after how long) or give up. Nomad's `restart` block: `attempts` within `interval`, `delay`
//! plus up to 25% jitter, and `mode` "fail" (give up) or "delay" (wait out the interval, then
//! start counting again). No clock is read here: the caller passes `now`.

use model::RestartPolicy;
use std::time::{Duration, Instant};

/// What to do after a task exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the task again after this delay.
    Restart(Duration),
    /// Do not restart; the task is dead. `failed` says whether the allocation failed.
    Stop { failed: bool },
}

/// Restarts counted within the current interval.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    batch: bool,
    interval_start: Option<Instant>,
    count: u32,
    /// Total restarts, for `TaskState::restarts`.
    pub restarts: u64,
}

impl RestartTracker {
    /// A tracker for `policy`. Batch tasks that exit 0 are done; service tasks that exit are
    /// restarted whatever the code, as in Nomad.
    pub fn new(policy: RestartPolicy, batch: bool) -> Self {
        RestartTracker { policy, batch, interval_start: None, count: 0, restarts: 0 }
    }

    /// Decides after an exit with `exit_code` (`start_failed` when the driver could not start
    /// it). `jitter` in `[0, 1)` comes from the caller, so tests can pin it.
    pub fn on_exit(
        &mut self,
        now: Instant,
        exit_code: i32,
        start_failed: bool,
        jitter: f64,
    ) -> Decision {
        if self.batch && exit_code == 0 && !start_failed {
            return Decision::Stop { failed: false };
        }
        let interval = self.policy.interval;
        let start = *self.interval_start.get_or_insert(now);
        if now.duration_since(start) > interval {
            self.interval_start = Some(now);
            self.count = 0;
        }
        let delay = self.policy.delay + self.policy.delay.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
        if self.count < self.policy.attempts {
            self.count += 1;
            self.restarts += 1;
            return Decision::Restart(delay);
        }
        if self.policy.mode == "delay" {
            // Wait until the interval is over, then the count starts again.
            let left = interval.saturating_sub(now.duration_since(start));
            self.interval_start = Some(now + left);
            self.count = 1;
            self.restarts += 1;
            return Decision::Restart(left.max(delay));
        }
        Decision::Stop { failed: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, mode: &str) -> RestartPolicy {
        RestartPolicy {
            interval: Duration::from_secs(60),
            attempts,
            delay: Duration::from_secs(2),
            mode: mode.into(),
            render_templates: false,
        }
    }

    #[test]
    fn fail_mode_gives_up_after_attempts_within_interval() {
        let t0 = Instant::now();
        let mut t = RestartTracker::new(policy(2, "fail"), false);
        assert_eq!(t.on_exit(t0, 1, false, 0.0), Decision::Restart(Duration::from_secs(2)));
        assert_eq!(
            t.on_exit(t0 + Duration::from_secs(5), 1, false, 1.0),
            Decision::Restart(Duration::from_millis(2500))
        );
        assert_eq!(
            t.on_exit(t0 + Duration::from_secs(9), 1, false, 0.0),
            Decision::Stop { failed: true }
        );
        assert_eq!(t.restarts, 2);
    }

    #[test]
    fn a_new_interval_resets_the_count() {
        let t0 = Instant::now();
        let mut t = RestartTracker::new(policy(1, "fail"), false);
        assert!(matches!(t.on_exit(t0, 1, false, 0.0), Decision::Restart(_)));
        assert!(matches!(
            t.on_exit(t0 + Duration::from_secs(61), 1, false, 0.0),
            Decision::Restart(_)
        ));
    }

    #[test]
    fn delay_mode_waits_out_the_interval() {
        let t0 = Instant::now();
        let mut t = RestartTracker::new(policy(1, "delay"), false);
        assert!(matches!(t.on_exit(t0, 1, false, 0.0), Decision::Restart(_)));
        assert_eq!(
            t.on_exit(t0 + Duration::from_secs(10), 1, false, 0.0),
            Decision::Restart(Duration::from_secs(50))
        );
    }

    #[test]
    fn batch_success_is_done_and_service_exit_restarts() {
        let t0 = Instant::now();
        let mut batch = RestartTracker::new(policy(3, "fail"), true);
        assert_eq!(batch.on_exit(t0, 0, false, 0.0), Decision::Stop { failed: false });
        let mut service = RestartTracker::new(policy(3, "fail"), false);
        assert!(matches!(service.on_exit(t0, 0, false, 0.0), Decision::Restart(_)));
    }
}
