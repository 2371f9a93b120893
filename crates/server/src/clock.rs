//! The server's wall clock and randomness, behind one seam so a simulation can replace them.
//!
//! Everything the server stamps with a time (evaluation and allocation create/modify times,
//! `WaitUntil` of delayed evaluations, the broker's nack timeouts and delays) reads
//! [`Clock::unix_nanos`]; every ID it invents (evaluations, node-down evaluations) comes from
//! [`Clock::uuid`]; and the leader's CPU-heavy steps (refreshing the scheduler's view,
//! scheduling, verifying plans) run through [`Clock::blocking`]. A server normally uses the
//! system clock, process-random IDs and tokio's blocking pool. A deterministic simulation passes
//! a [`Source`] that reads simulated time and draws from a seeded generator, and asks for
//! blocking steps to run inline, because a thread pool finishing work in real time would make
//! the interleaving depend on the machine.
//!
//! Durations that only wait (heartbeat TTLs, request timeouts, blocking-query deadlines) use
//! tokio's clock, which a simulation already controls; they do not go through this module.
//!
//! Raft's election timeouts are drawn by openraft from its runtime's thread-local generator:
//! [`SeededRuntime`] is the runtime orc's Raft uses, tokio's with a generator that
//! [`seed_thread_rng`] can fix for the current thread (the simulator's) and that otherwise
//! starts from OS entropy.

use std::cell::RefCell;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where a [`Clock`] that is not the system's takes time and randomness from.
pub trait Source: Send + Sync + 'static {
    /// Now, in nanoseconds since the Unix epoch.
    fn unix_nanos(&self) -> i64;
    /// A random 64-bit number.
    fn random_u64(&self) -> u64;
    /// True to run [`Clock::blocking`] work inline on the calling task instead of tokio's
    /// blocking pool.
    fn inline_blocking(&self) -> bool {
        false
    }
}

/// The server's clock and ID generator: the system's unless a [`Source`] was given.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<dyn Source>>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Clock(custom)" } else { "Clock(system)" })
    }
}

/// Two clocks are equal when both are the system's or both share one source.
impl PartialEq for Clock {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Clock {
    /// The system clock, process-random IDs, tokio's blocking pool.
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
            None => system_unix_nanos(),
        }
    }

    /// A random 64-bit number.
    pub fn random_u64(&self) -> u64 {
        match &self.0 {
            Some(s) => s.random_u64(),
            None => system_random_u64(),
        }
    }

    /// A random UUID-shaped ID (version 4 layout).
    pub fn uuid(&self) -> String {
        let (a, b) = (self.random_u64(), self.random_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// Runs CPU-heavy `f` off the async workers (or inline, for a simulation). `None` if it
    /// panicked.
    pub async fn blocking<T, F>(&self, f: F) -> Option<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.0.as_ref().is_some_and(|s| s.inline_blocking()) {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
        } else {
            tokio::task::spawn_blocking(f).await.ok()
        }
    }
}

fn system_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The process's hasher keys are random; with the time and a counter mixed in, two calls never
/// repeat. Enough for IDs, not for secrets.
fn system_random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(system_unix_nanos());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A deterministic [`Source`] for simulations: time is `epoch` plus whatever `elapsed` reports
/// (the simulator's clock), numbers come from a SplitMix64 sequence started at `seed`, and
/// blocking work runs inline.
pub struct SeededSource<F> {
    epoch_unix_nanos: i64,
    elapsed: F,
    state: AtomicU64,
}

impl<F: Fn() -> Duration + Send + Sync + 'static> SeededSource<F> {
    pub fn new(epoch_unix_nanos: i64, seed: u64, elapsed: F) -> Self {
        SeededSource { epoch_unix_nanos, elapsed, state: AtomicU64::new(seed) }
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl<F: Fn() -> Duration + Send + Sync + 'static> Source for SeededSource<F> {
    fn unix_nanos(&self) -> i64 {
        self.epoch_unix_nanos + (self.elapsed)().as_nanos() as i64
    }

    fn random_u64(&self) -> u64 {
        splitmix64(self.state.fetch_add(GOLDEN, Ordering::Relaxed).wrapping_add(GOLDEN))
    }

    fn inline_blocking(&self) -> bool {
        true
    }
}

thread_local! {
    static THREAD_RNG: RefCell<Option<rand08::rngs::StdRng>> = const { RefCell::new(None) };
}

/// Fixes the generator openraft draws election timeouts from, for Raft nodes driven by the
/// current thread (a simulator runs every node on one thread).
pub fn seed_thread_rng(seed: u64) {
    use rand08::SeedableRng;
    THREAD_RNG.with(|r| *r.borrow_mut() = Some(rand08::rngs::StdRng::seed_from_u64(seed)));
}

/// The thread-local generator [`SeededRuntime`] hands openraft: seeded by
/// [`seed_thread_rng`], or from OS entropy on first use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRng;

impl ThreadRng {
    fn with<T>(f: impl FnOnce(&mut rand08::rngs::StdRng) -> T) -> T {
        use rand08::SeedableRng;
        THREAD_RNG.with(|r| {
            let mut r = r.borrow_mut();
            f(r.get_or_insert_with(rand08::rngs::StdRng::from_entropy))
        })
    }
}

impl rand08::RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        Self::with(|r| r.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        Self::with(|r| r.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Self::with(|r| r.fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand08::Error> {
        Self::with(|r| r.try_fill_bytes(dest))
    }
}

/// openraft's tokio runtime with [`ThreadRng`] as its generator; everything else is tokio's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeededRuntime;

type Tokio = openraft::TokioRuntime;

impl openraft::AsyncRuntime for SeededRuntime {
    type JoinError = <Tokio as openraft::AsyncRuntime>::JoinError;
    type JoinHandle<T: openraft::OptionalSend + 'static> =
        <Tokio as openraft::AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as openraft::AsyncRuntime>::Sleep;
    type Instant = <Tokio as openraft::AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as openraft::AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + openraft::OptionalSend> =
        <Tokio as openraft::AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: openraft::OptionalSend> =
        <Tokio as openraft::AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiverError = <Tokio as openraft::AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: openraft::OptionalSend> =
        <Tokio as openraft::AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + openraft::OptionalSend + 'static,
        T::Output: openraft::OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + openraft::OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + openraft::OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: openraft::OptionalSend,
    {
        Tokio::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand08::Rng;

    #[test]
    fn a_seeded_source_repeats_its_ids_and_follows_its_clock() {
        let ids = |seed| {
            let c = Clock::from_source(Arc::new(SeededSource::new(7, seed, || {
                Duration::from_nanos(5)
            })));
            assert_eq!(c.unix_nanos(), 12);
            (0..4).map(|_| c.uuid()).collect::<Vec<_>>()
        };
        assert_eq!(ids(1), ids(1));
        assert_ne!(ids(1), ids(2));
        let a = &ids(1)[0];
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        let system = Clock::system();
        assert_ne!(system.uuid(), system.uuid());
        assert!(system.unix_nanos() > 1_600_000_000_000_000_000);
    }

    #[test]
    fn a_seeded_thread_rng_repeats_its_election_timeouts() {
        let draw = || {
            let mut r = <SeededRuntime as openraft::AsyncRuntime>::thread_rng();
            (0..8).map(|_| r.gen_range(150..300u64)).collect::<Vec<_>>()
        };
        seed_thread_rng(42);
        let first = draw();
        seed_thread_rng(42);
        assert_eq!(draw(), first);
        seed_thread_rng(43);
        assert_ne!(draw(), first);
    }

    #[tokio::test]
    async fn blocking_work_runs_inline_for_a_simulation() {
        let sim = Clock::from_source(Arc::new(SeededSource::new(0, 1, Duration::default)));
        let here = std::thread::current().id();
        assert_eq!(sim.blocking(move || std::thread::current().id() == here).await, Some(true));
        assert_eq!(Clock::system().blocking(|| 2).await, Some(2));
        assert_eq!(sim.blocking(|| -> u8 { panic!("boom") }).await, None);
    }
}
