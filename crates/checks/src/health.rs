//! Allocation health, as Nomad's client decides it for deployments and migrations: healthy once
//! every task has been running, and (with `health_check = "checks"`) every check passing,
//! continuously for `min_healthy_time`; unhealthy if a task fails or `healthy_deadline` passes
//! first. Pure: the caller feeds observations with the time and asks for the verdict; it does
//! not read task states or checks itself, and `health_check = "manual"` never reaches it.

use std::time::{Duration, Instant};

/// What decides health (`update { health_check }`, minus `manual`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    /// Tasks running and checks passing (Nomad's default, `"checks"`).
    Checks,
    /// Tasks running only (`"task_states"`).
    TaskStates,
}

/// A group's health settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthParams {
    pub mode: HealthMode,
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
}

/// The tasks of an allocation, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksView {
    /// Every task that must run is running; `restarts` is their total restart count, so a
    /// restart between two observations still restarts the clock.
    Running { restarts: u64 },
    /// Some task has not started yet, or is restarting.
    NotRunning,
    /// A task failed or finished when it should be running: unhealthy at once.
    Failed,
}

/// One allocation's health, decided at most once.
#[derive(Debug, Clone)]
pub struct AllocHealth {
    params: HealthParams,
    deadline: Instant,
    /// Since when every task has been running, and their restart count then.
    tasks_since: Option<(Instant, u64)>,
    /// Since when every check has been passing.
    checks_since: Option<Instant>,
    verdict: Option<bool>,
}

impl AllocHealth {
    /// Tracking starts at `now` (the allocation started), which also starts the deadline.
    pub fn new(params: HealthParams, now: Instant) -> AllocHealth {
        AllocHealth {
            params,
            deadline: now + params.healthy_deadline,
            tasks_since: None,
            checks_since: None,
            verdict: None,
        }
    }

    /// Records the tasks' state at `now`.
    pub fn tasks(&mut self, view: TasksView, now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        match view {
            TasksView::Failed => self.verdict = Some(false),
            TasksView::NotRunning => {
                self.tasks_since = None;
                // Nomad forgets check health when a task stops: checks must pass again.
                self.checks_since = None;
            }
            TasksView::Running { restarts } => match self.tasks_since {
                Some((_, seen)) if seen == restarts => {}
                _ => {
                    self.tasks_since = Some((now, restarts));
                    self.checks_since = None;
                }
            },
        }
    }

    /// Records whether every check passes at `now` (with no checks, pass `true`).
    pub fn checks(&mut self, all_passing: bool, now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        if !all_passing {
            self.checks_since = None;
        } else if self.checks_since.is_none() && self.tasks_since.is_some() {
            self.checks_since = Some(now);
        }
    }

    /// The verdict at `now`, once there is one: `Some(true)` healthy, `Some(false)` unhealthy.
    pub fn verdict(&mut self, now: Instant) -> Option<bool> {
        if self.verdict.is_none() {
            let min = self.params.min_healthy_time;
            let tasks_ok = self.tasks_since.is_some_and(|(t, _)| now >= t + min);
            let checks_ok = match self.params.mode {
                HealthMode::TaskStates => true,
                HealthMode::Checks => self.checks_since.is_some_and(|t| now >= t + min),
            };
            if tasks_ok && checks_ok {
                self.verdict = Some(true);
            } else if now >= self.deadline {
                self.verdict = Some(false);
            }
        }
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn params(mode: HealthMode) -> HealthParams {
        HealthParams { mode, min_healthy_time: 10 * S, healthy_deadline: 60 * S }
    }

    #[test]
    fn healthy_after_tasks_and_checks_pass_for_min_healthy_time() {
        let t0 = Instant::now();
        let mut h = AllocHealth::new(params(HealthMode::Checks), t0);
        h.tasks(TasksView::Running { restarts: 0 }, t0 + S);
        h.checks(false, t0 + S);
        h.checks(true, t0 + 3 * S);
        // Tasks have run for 10s, but checks only pass since 3s.
        assert_eq!(h.verdict(t0 + 11 * S), None);
        h.checks(false, t0 + 12 * S);
        h.checks(true, t0 + 14 * S);
        assert_eq!(h.verdict(t0 + 23 * S), None);
        assert_eq!(h.verdict(t0 + 24 * S), Some(true));
        // Decided once: later failures do not change it.
        h.tasks(TasksView::Failed, t0 + 25 * S);
        assert_eq!(h.verdict(t0 + 26 * S), Some(true));
    }

    #[test]
    fn a_restart_restarts_the_clock_and_task_states_ignores_checks() {
        let t0 = Instant::now();
        let mut h = AllocHealth::new(params(HealthMode::TaskStates), t0);
        h.tasks(TasksView::Running { restarts: 0 }, t0);
        h.checks(false, t0);
        h.tasks(TasksView::Running { restarts: 1 }, t0 + 5 * S);
        assert_eq!(h.verdict(t0 + 10 * S), None);
        assert_eq!(h.verdict(t0 + 15 * S), Some(true));
    }

    #[test]
    fn a_failed_task_or_the_deadline_makes_it_unhealthy() {
        let t0 = Instant::now();
        let mut h = AllocHealth::new(params(HealthMode::Checks), t0);
        h.tasks(TasksView::Running { restarts: 0 }, t0);
        h.tasks(TasksView::Failed, t0 + S);
        assert_eq!(h.verdict(t0 + S), Some(false));

        let mut h = AllocHealth::new(params(HealthMode::Checks), t0);
        h.tasks(TasksView::Running { restarts: 0 }, t0);
        h.checks(false, t0);
        assert_eq!(h.verdict(t0 + 59 * S), None);
        assert_eq!(h.verdict(t0 + 60 * S), Some(false));
    }
}
