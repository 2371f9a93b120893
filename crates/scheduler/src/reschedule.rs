//! Rescheduling of failed allocations: eligibility under a `reschedule` policy and the delay
//! functions (constant, exponential, fibonacci, capped by `max_delay`). It decides *when*; the
//! reconciler decides what to place and the ranker where.

use model::{Allocation, RescheduleEvent, ReschedulePolicy, RescheduleTracker};
use std::time::Duration;

/// Nomad's `rescheduleWindowSize`: a reschedule due within this is done now.
pub const RESCHEDULE_WINDOW_NANOS: i64 = 1_000_000_000;
/// Nomad's `batchedFailedAllocWindowSize`: later reschedules this close share a follow-up eval.
pub const BATCH_WINDOW_NANOS: i64 = 5_000_000_000;
/// Nomad keeps at most this many past events for unlimited policies.
pub const MAX_PAST_EVENTS: usize = 5;

/// What to do with a failed allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Replace it in this evaluation.
    Now { delay: Duration },
    /// Replace it at this unix-nanosecond time, through a follow-up evaluation.
    Later { at_unix_nanos: i64, delay: Duration },
    /// Attempts are exhausted or rescheduling is disabled: leave it failed.
    Never,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Nomad's `RescheduleEligible`: unlimited, or fewer than `attempts` reschedules within `interval`.
pub fn eligible(alloc: &Allocation, policy: &ReschedulePolicy, now: i64) -> bool {
    if policy.unlimited {
        return true;
    }
    if policy.attempts == 0 {
        return false;
    }
    let events = alloc.reschedule_tracker.as_ref().map(|t| t.events.as_slice()).unwrap_or(&[]);
    let window_start = now.saturating_sub(nanos(policy.interval));
    let recent = events
        .iter()
        .filter(|e| policy.interval.is_zero() || e.reschedule_time > window_start)
        .count();
    (recent as u64) < u64::from(policy.attempts)
}

/// Nomad's `NextDelay`.
pub fn next_delay(alloc: &Allocation, policy: &ReschedulePolicy) -> Duration {
    let events = alloc.reschedule_tracker.as_ref().map(|t| t.events.as_slice()).unwrap_or(&[]);
    let Some(last) = events.last() else {
        return policy.delay;
    };
    let mut delay = match policy.delay_function.as_str() {
        "exponential" => last.delay.saturating_mul(2),
        "fibonacci" if events.len() >= 2 => {
            let prev = events[events.len() - 2].delay;
            // A series that hit the ceiling and was reset starts over instead of adding up.
            if prev == policy.max_delay && last.delay == policy.delay {
                last.delay
            } else {
                last.delay.saturating_add(prev)
            }
        }
        "fibonacci" => policy.delay,
        _ => return policy.delay,
    };
    if !policy.max_delay.is_zero() && delay > policy.max_delay {
        delay = policy.max_delay;
        // If the allocation ran longer than the ceiling since its last reschedule, it earned a
        // fresh start.
        if alloc.modify_time.saturating_sub(last.reschedule_time) > nanos(delay) {
            delay = policy.delay;
        }
    }
    delay
}

/// Decides for a failed allocation. The failure time is the allocation's `modify_time` (the
/// server stamps it when the client reports the failure); 0 means "now".
pub fn decide(alloc: &Allocation, policy: Option<&ReschedulePolicy>, now: i64) -> Decision {
    let Some(policy) = policy else { return Decision::Never };
    if !eligible(alloc, policy, now) {
        return Decision::Never;
    }
    let delay = next_delay(alloc, policy);
    let failed_at = if alloc.modify_time > 0 { alloc.modify_time } else { now };
    let at = failed_at.saturating_add(nanos(delay));
    if at <= now.saturating_add(RESCHEDULE_WINDOW_NANOS) {
        Decision::Now { delay }
    } else {
        Decision::Later { at_unix_nanos: at, delay }
    }
}

/// The tracker of the replacement: past events pruned as Nomad does, plus this reschedule.
pub fn next_tracker(
    prev: &Allocation,
    policy: Option<&ReschedulePolicy>,
    delay: Duration,
    now: i64,
) -> RescheduleTracker {
    let mut events: Vec<RescheduleEvent> =
        prev.reschedule_tracker.as_ref().map(|t| t.events.clone()).unwrap_or_default();
    match policy {
        Some(p) if !p.unlimited && !p.interval.is_zero() => {
            let start = now.saturating_sub(nanos(p.interval));
            events.retain(|e| e.reschedule_time > start);
        }
        _ => {
            let excess = events.len().saturating_sub(MAX_PAST_EVENTS - 1);
            events.drain(..excess);
        }
    }
    events.push(RescheduleEvent {
        reschedule_time: now,
        prev_alloc_id: prev.id.clone(),
        prev_node_id: prev.node_id.clone(),
        delay,
    });
    RescheduleTracker { events }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy(f: &str, attempts: u32, unlimited: bool) -> ReschedulePolicy {
        ReschedulePolicy {
            attempts,
            interval: 3600 * S,
            delay: 5 * S,
            delay_function: f.into(),
            max_delay: 60 * S,
            unlimited,
        }
    }

    fn with_delays(delays: &[u64], last_at: i64) -> Allocation {
        let events = delays
            .iter()
            .map(|d| RescheduleEvent {
                reschedule_time: last_at,
                delay: Duration::from_secs(*d),
                ..RescheduleEvent::default()
            })
            .collect();
        Allocation {
            reschedule_tracker: Some(RescheduleTracker { events }),
            modify_time: last_at,
            ..Allocation::default()
        }
    }

    #[test]
    fn delay_functions_follow_nomad() {
        let e = policy("exponential", 0, true);
        assert_eq!(next_delay(&Allocation::default(), &e), 5 * S);
        assert_eq!(next_delay(&with_delays(&[5, 10], 0), &e), 20 * S);
        assert_eq!(next_delay(&with_delays(&[40], 0), &e), 60 * S);
        let f = policy("fibonacci", 0, true);
        assert_eq!(next_delay(&with_delays(&[5], 0), &f), 5 * S);
        assert_eq!(next_delay(&with_delays(&[5, 5, 10], 0), &f), 15 * S);
        assert_eq!(next_delay(&with_delays(&[60, 5], 0), &f), 5 * S);
        let c = policy("constant", 0, true);
        assert_eq!(next_delay(&with_delays(&[5, 5], 0), &c), 5 * S);
        // Ran for longer than the ceiling since the last reschedule: the series resets.
        let mut a = with_delays(&[40], 0);
        a.modify_time = 61_000_000_000;
        assert_eq!(next_delay(&a, &e), 5 * S);
    }

    #[test]
    fn attempts_within_interval_limit_eligibility() {
        let p = policy("constant", 2, false);
        let now = 10_000 * 1_000_000_000;
        assert!(eligible(&with_delays(&[5], now - 1), &p, now));
        assert!(!eligible(&with_delays(&[5, 5], now - 1), &p, now));
        // Old events fall out of the interval.
        assert!(eligible(&with_delays(&[5, 5], now - 4000 * 1_000_000_000), &p, now));
        assert_eq!(
            decide(&Allocation::default(), Some(&policy("constant", 0, false)), now),
            Decision::Never
        );
    }

    #[test]
    fn due_now_or_later() {
        let p = policy("constant", 3, false);
        let now = 1_000 * 1_000_000_000;
        let a = Allocation { modify_time: now - 10 * 1_000_000_000, ..Allocation::default() };
        assert_eq!(decide(&a, Some(&p), now), Decision::Now { delay: 5 * S });
        let b = Allocation { modify_time: now, ..Allocation::default() };
        assert_eq!(
            decide(&b, Some(&p), now),
            Decision::Later { at_unix_nanos: now + 5_000_000_000, delay: 5 * S }
        );
    }
}
