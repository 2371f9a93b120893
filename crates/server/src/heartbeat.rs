//! Node liveness bookkeeping on the leader: heartbeat TTLs and the deadlines after which a node is
//! declared down.
//!
//! This module is pure: it is given the time and returns decisions (which nodes expired, which TTL
//! to hand a client). The `server` module runs it on the leader, writes the resulting status
//! changes through Raft, and rebuilds it from the replicated node table after every election.
//! Unlike Nomad, which gives every node 5 minutes after a failover, a new leader gives each node
//! one fresh TTL plus grace, so a client that died with the old leader is noticed quickly.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;
// Tokio's clock, not std's: the simulator (tests/sim) drives it, so timeouts and heartbeat
// TTLs follow simulated time. Outside a paused runtime it is the same monotonic clock.
use tokio::time::Instant;

/// Heartbeat settings, as Nomad's `server` block names them.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    /// The TTL never goes below this (Nomad: 10 s).
    pub min_ttl: Duration,
    /// The TTL grows so that the cluster's nodes together heartbeat at most this often
    /// (Nomad: 50 per second).
    pub max_per_second: f64,
    /// Extra time past the TTL before a node is declared down (Nomad: 10 s).
    pub grace: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            min_ttl: Duration::from_secs(10),
            max_per_second: 50.0,
            grace: Duration::from_secs(10),
        }
    }
}

impl HeartbeatConfig {
    /// The TTL handed to `node_id` in a cluster of `node_count` nodes: `max(min_ttl,
    /// node_count / max_per_second)` plus a stagger in `[0, that)`. The stagger spreads
    /// heartbeats out; it is derived from the node ID rather than drawn at random so that the
    /// leader's decisions are reproducible.
    pub fn ttl(&self, node_id: &str, node_count: usize) -> Duration {
        let rate = if self.max_per_second > 0.0 { self.max_per_second } else { 50.0 };
        let base = self.min_ttl.max(Duration::from_secs_f64(node_count as f64 / rate));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        node_id.hash(&mut h);
        let fraction = (h.finish() % 1_000) as f64 / 1_000.0;
        base + base.mul_f64(fraction)
    }
}

/// The leader's timers: node ID → when the node is declared down without another heartbeat.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    deadlines: BTreeMap<String, Instant>,
}

impl Timers {
    /// (Re)arms `node_id`'s timer after a heartbeat at `now` that was answered with `ttl`.
    pub fn arm(&mut self, node_id: &str, now: Instant, ttl: Duration, grace: Duration) {
        self.deadlines.insert(node_id.to_owned(), now + ttl + grace);
    }

    /// Stops tracking a node (deregistered, or already down).
    pub fn disarm(&mut self, node_id: &str) {
        self.deadlines.remove(node_id);
    }

    /// Removes and returns the nodes whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> =
            self.deadlines.iter().filter(|(_, d)| **d <= now).map(|(n, _)| n.clone()).collect();
        for n in &expired {
            self.deadlines.remove(n);
        }
        expired
    }

    /// The earliest deadline, to sleep until.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    pub fn clear(&mut self) {
        self.deadlines.clear();
    }

    pub fn is_armed(&self, node_id: &str) -> bool {
        self.deadlines.contains_key(node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_scales_with_node_count_and_staggers_within_one_ttl() {
        let c = HeartbeatConfig::default();
        let small = c.ttl("node-a", 10);
        assert!(small >= Duration::from_secs(10) && small < Duration::from_secs(20), "{small:?}");
        let large = c.ttl("node-a", 1_000);
        assert!(large >= Duration::from_secs(20) && large < Duration::from_secs(40), "{large:?}");
        assert_eq!(c.ttl("node-a", 10), small, "the same node gets the same stagger");
        let distinct: std::collections::BTreeSet<Duration> =
            (0..20).map(|i| c.ttl(&format!("node-{i}"), 10)).collect();
        assert!(distinct.len() > 10, "nodes are spread out: {distinct:?}");
    }

    #[test]
    fn timers_expire_only_past_their_deadline() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.arm("a", t0, Duration::from_secs(10), Duration::from_secs(10));
        t.arm("b", t0, Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(6)));
        assert!(t.expire(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(t.expire(t0 + Duration::from_secs(6)), vec!["b"]);
        // A heartbeat re-arms from its own time.
        t.arm("a", t0 + Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(10));
        assert!(t.expire(t0 + Duration::from_secs(30)).is_empty());
        assert_eq!(t.expire(t0 + Duration::from_secs(35)), vec!["a"]);
        assert_eq!(t.next_deadline(), None);
    }
}
