//! Reschedule limits are respected: no allocation carries more reschedule events inside its
//! group's policy interval than the policy's attempts allow (unless unlimited).

use crate::Violation;
use server::state::State;

pub fn check(state: &State) -> Result<(), Violation> {
    for a in state.allocs() {
        let Some(tracker) = &a.reschedule_tracker else { continue };
        let Some(last) = tracker.events.last() else { continue };
        let Some(job) = state.job(&a.namespace, &a.job_id) else { continue };
        let Some(policy) = job
            .group(&a.task_group)
            .and_then(|g| g.reschedule_policy.clone())
            .or_else(|| job.reschedule.clone())
        else {
            continue;
        };
        if policy.unlimited {
            continue;
        }
        let window_start = last.reschedule_time - policy.interval.as_nanos() as i64;
        let in_window =
            tracker.events.iter().filter(|e| e.reschedule_time > window_start).count() as u32;
        if in_window > policy.attempts {
            return Err(Violation::new(
                "reschedule_limit",
                format!(
                    "alloc {}: {in_window} reschedules within {:?}, policy allows {}",
                    a.id, policy.interval, policy.attempts
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{alloc, job, node, state};
    use model::{RescheduleEvent, ReschedulePolicy, RescheduleTracker};
    use std::time::Duration;

    fn with_events(n: usize) -> State {
        let mut j = job("web", 1);
        j.task_groups[0].reschedule_policy = Some(ReschedulePolicy {
            attempts: 2,
            interval: Duration::from_secs(3600),
            ..ReschedulePolicy::default()
        });
        let mut a = alloc("a1", "web", "n1", 1, 1, &[]);
        a.reschedule_tracker = Some(RescheduleTracker {
            events: (0..n)
                .map(|i| RescheduleEvent {
                    reschedule_time: i as i64 * 1_000_000_000,
                    ..RescheduleEvent::default()
                })
                .collect(),
        });
        state(vec![node("n1", 10, 10)], vec![j], vec![a])
    }

    #[test]
    fn too_many_reschedules_in_the_interval_fail() {
        check(&with_events(2)).unwrap();
        assert_eq!(check(&with_events(3)).unwrap_err().invariant, "reschedule_limit");
    }
}
