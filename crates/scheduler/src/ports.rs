//! Host-port bookkeeping: a compact port bitmap, Nomad's reserved-port syntax ("22,80,8000-8100"),
//! and dynamic-port picking. It does not decide which node to use; ranking does that.

use crate::rng::Rng;

/// Nomad's default dynamic port range, used when a node does not report one.
pub const DEFAULT_MIN_DYNAMIC_PORT: u16 = 20000;
/// See [`DEFAULT_MIN_DYNAMIC_PORT`].
pub const DEFAULT_MAX_DYNAMIC_PORT: u16 = 32000;

/// A set of host ports. The 8 KiB bitmap is only allocated once a port is added, so idle nodes
/// and nodes without reserved ports cost one empty `Vec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet {
    words: Vec<u64>,
}

impl PortSet {
    /// True if `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        self.words.get(usize::from(port) / 64).is_some_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// Adds `port`; returns false if it was already present.
    pub fn insert(&mut self, port: u16) -> bool {
        if self.words.is_empty() {
            self.words = vec![0; 1024];
        }
        let w = &mut self.words[usize::from(port) / 64];
        let bit = 1u64 << (port % 64);
        let fresh = *w & bit == 0;
        *w |= bit;
        fresh
    }

    /// Removes `port`.
    pub fn remove(&mut self, port: u16) {
        if let Some(w) = self.words.get_mut(usize::from(port) / 64) {
            *w &= !(1u64 << (port % 64));
        }
    }

    /// How many ports of `lo..=hi` are in the set.
    pub fn count_in(&self, lo: u16, hi: u16) -> u32 {
        if self.words.is_empty() || lo > hi {
            return 0;
        }
        (lo..=hi).filter(|p| self.contains(*p)).count() as u32
    }
}

/// Parses Nomad's reserved host port syntax: comma-separated ports and inclusive ranges.
/// Malformed entries are skipped rather than failing the node: the agent validates its own
/// configuration, and a scheduler that refuses a whole node over one typo would be worse.
pub fn parse_port_list(spec: &str) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = match part.split_once('-') {
            Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
            None => part.parse().ok().map(|p| (p, p)),
        };
        if let Some((a, b)) = range {
            if a <= b {
                out.push((a, b));
            }
        }
    }
    out
}

/// Picks a free port in `lo..=hi` for which `used` is false. Like Nomad, it first tries a few
/// random ports (cheap on sparse nodes) and then falls back to a scan from a random start, so it
/// finds the last free port of a nearly full range too.
pub fn pick_dynamic(rng: &mut Rng, lo: u16, hi: u16, used: impl Fn(u16) -> bool) -> Option<u16> {
    if lo > hi {
        return None;
    }
    let span = u64::from(hi - lo) + 1;
    for _ in 0..20 {
        let p = lo + rng.below(span) as u16;
        if !used(p) {
            return Some(p);
        }
    }
    let start = rng.below(span);
    (0..span).map(|i| lo + ((start + i) % span) as u16).find(|p| !used(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ports_and_ranges() {
        assert_eq!(
            parse_port_list("22, 80,8000-8100,x,9-1"),
            vec![(22, 22), (80, 80), (8000, 8100)]
        );
        assert!(parse_port_list("").is_empty());
    }

    #[test]
    fn port_set_round_trips() {
        let mut s = PortSet::default();
        assert!(!s.contains(80));
        assert!(s.insert(80));
        assert!(!s.insert(80));
        assert!(s.insert(65535));
        assert_eq!(s.count_in(0, 65535), 2);
        s.remove(80);
        assert!(!s.contains(80));
    }

    #[test]
    fn dynamic_pick_finds_the_last_free_port() {
        let mut rng = Rng::new(1);
        assert_eq!(pick_dynamic(&mut rng, 100, 200, |p| p != 157), Some(157));
        assert_eq!(pick_dynamic(&mut rng, 100, 200, |_| true), None);
    }
}
