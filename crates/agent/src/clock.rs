//! The agent's wall clock, behind one seam so a simulation can replace it.
//!
//! Everything the agent stamps with a time (task events, `StartedAt`/`FinishedAt`, reports'
//! modify times, the health verdict's timestamp, the restart delay's jitter) reads
//! [`Clock::unix_nanos`]. An agent normally uses the system clock; a deterministic simulation
//! passes a [`Source`] reading simulated time (`ClientConfig::clock`).
//!
//! Intervals (restart policy windows, allocation health's `min_healthy_time`) are measured with
//! [`instant`], tokio's clock turned into a `std` instant: the system's monotonic clock in a
//! normal runtime, and the simulated one in a runtime whose time is paused and driven by a
//! simulator (turmoil). Waiting itself already uses tokio's timers. This module does not seed
//! anything: the agent draws no random numbers that decide what it does (invocation IDs are
//! labels only).

use std::sync::Arc;

/// Where a [`Clock`] that is not the system's takes the time from.
pub trait Source: Send + Sync + 'static {
    /// Now, in nanoseconds since the Unix epoch.
    fn unix_nanos(&self) -> i64;
}

impl<F: Fn() -> i64 + Send + Sync + 'static> Source for F {
    fn unix_nanos(&self) -> i64 {
        self()
    }
}

/// The agent's clock: the system's unless a [`Source`] was given.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Source>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(custom)" } else { "Clock(system)" })
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock reading `source`.
    pub fn from_source(source: Arc<dyn Source>) -> Self {
        Clock(Some(source))
    }

    /// Now, in nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i64 {
        match &self.0 {
            Some(s) => s.unix_nanos(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// Now on the monotonic clock the agent measures intervals with: tokio's, so a paused,
/// simulated runtime's time when the agent runs in one.
pub fn instant() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_replaces_the_system_clock() {
        let fixed = Clock::from_source(Arc::new(|| 1_767_225_600_000_000_000i64));
        assert_eq!(fixed.unix_nanos(), 1_767_225_600_000_000_000);
        // The system clock is past 2020.
        assert!(Clock::system().unix_nanos() > 1_577_836_800_000_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn intervals_follow_a_paused_runtime() {
        let t0 = instant();
        tokio::time::sleep(Duration::from_secs(600)).await;
        // Ten minutes of paused (simulated) time passed in no real time.
        assert!(instant() - t0 >= Duration::from_secs(600));
    }
}
