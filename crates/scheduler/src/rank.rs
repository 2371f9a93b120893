//! Ranking: Nomad's scorers (binpack or spread fit, job anti-affinity, reschedule penalty, node
//! affinity, spread blocks), score normalisation and the limit iterator's size. Pure arithmetic
//! over numbers the placement loop hands in; it neither filters nodes nor tracks usage.

use crate::feasible::{check_op, resolve, Compiled};
use model::{Job, JobType, Node, TaskGroup};
use std::collections::BTreeMap;

/// Cluster-wide scheduler algorithm (`scheduler_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Fill nodes up (Nomad's default).
    #[default]
    Binpack,
    /// Prefer empty nodes.
    Spread,
}

/// Nomad's `maxSkip`.
pub const MAX_SKIP: usize = 3;

/// Nomad's fitness, normalised to 0..=1 by the maximum of 18. `used_*` include the ask.
pub fn fit_score(alg: Algorithm, cap_cpu: u64, cap_mem: u64, used_cpu: u64, used_mem: u64) -> f64 {
    let free = |used: u64, cap: u64| if cap == 0 { 0.0 } else { 1.0 - used as f64 / cap as f64 };
    let total = 10f64.powf(free(used_cpu, cap_cpu)) + 10f64.powf(free(used_mem, cap_mem));
    let raw = match alg {
        Algorithm::Binpack => 20.0 - total,
        Algorithm::Spread => total - 2.0,
    };
    raw.clamp(0.0, 18.0) / 18.0
}

/// Job anti-affinity: `-(collisions+1)/count`, only when the node already hosts the group.
pub fn anti_affinity(collisions: u32, count: u32) -> Option<f64> {
    (collisions > 0).then(|| -(f64::from(collisions) + 1.0) / f64::from(count.max(1)))
}

/// The limit iterator's size, from `GenericStack.SetNodes` and `SetJob`.
pub fn limit_for(job_type: JobType, nodes: usize, count: u32, preferences: bool) -> usize {
    if preferences {
        return (count as usize).max(100);
    }
    match job_type {
        JobType::Batch => 2,
        _ => {
            let log = if nodes <= 1 { 0 } else { (nodes as f64).log2().ceil() as usize };
            log.max(2)
        }
    }
}

/// Node affinities of a group (job, group and task affinities merged).
#[derive(Debug)]
pub struct AffinityScorer {
    items: Vec<(Compiled, f64)>,
    sum_abs: f64,
}

impl AffinityScorer {
    /// Collects the job's, the group's and its tasks' affinities.
    pub fn new(job: &Job, tg: &TaskGroup) -> Self {
        let items: Vec<(Compiled, f64)> = job
            .affinities
            .iter()
            .chain(&tg.affinities)
            .chain(tg.tasks.iter().flat_map(|t| &t.affinities))
            .map(|a| {
                let c = model::Constraint {
                    ltarget: a.ltarget.clone(),
                    rtarget: a.rtarget.clone(),
                    operand: a.operand.clone(),
                };
                (Compiled::new(&c), f64::from(a.weight))
            })
            .collect();
        let sum_abs = items.iter().map(|(_, w)| w.abs()).sum();
        AffinityScorer { items, sum_abs }
    }

    /// True when there is anything to score.
    pub fn is_active(&self) -> bool {
        !self.items.is_empty()
    }

    /// `Σ matching weights / Σ |weights|`, appended only when non-zero.
    pub fn score(&self, node: &Node, region: &str) -> Option<f64> {
        if self.sum_abs == 0.0 {
            return None;
        }
        let total: f64 = self
            .items
            .iter()
            .filter(|(c, _)| {
                let l = resolve(&c.raw.ltarget, node, region);
                let r = resolve(&c.raw.rtarget, node, region);
                check_op(&c.op, l.as_deref(), r.as_deref())
            })
            .map(|(_, w)| w)
            .sum();
        (total != 0.0).then(|| total / self.sum_abs)
    }
}

#[derive(Debug)]
struct SpreadBlock {
    attribute: String,
    weight: f64,
    /// Value → desired share in 0..=1. Empty means "even spread".
    targets: BTreeMap<String, f64>,
    /// Share for values not listed, when the listed percentages leave a remainder.
    remainder: Option<f64>,
    counts: BTreeMap<String, u32>,
}

/// Spread blocks of a group (job's and group's), with the counts of the group's allocations per
/// attribute value, updated as the evaluation places.
#[derive(Debug)]
pub struct SpreadScorer {
    blocks: Vec<SpreadBlock>,
    sum_weights: f64,
}

impl SpreadScorer {
    /// Collects the job's and group's spread blocks.
    pub fn new(job: &Job, tg: &TaskGroup) -> Self {
        let blocks: Vec<SpreadBlock> = job
            .spreads
            .iter()
            .chain(&tg.spreads)
            .map(|s| {
                let targets: BTreeMap<String, f64> = s
                    .spread_target
                    .iter()
                    .map(|t| (t.value.clone(), f64::from(t.percent) / 100.0))
                    .collect();
                let listed: f64 = targets.values().sum();
                SpreadBlock {
                    attribute: s.attribute.clone(),
                    weight: f64::from(if s.weight == 0 { 50 } else { s.weight }),
                    remainder: (!targets.is_empty() && listed < 1.0).then_some(1.0 - listed),
                    targets,
                    counts: BTreeMap::new(),
                }
            })
            .collect();
        let sum_weights = blocks.iter().map(|b| b.weight).sum();
        SpreadScorer { blocks, sum_weights }
    }

    /// True when there is anything to score.
    pub fn is_active(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Counts one more (or one fewer) allocation of the group on `node`.
    pub fn record(&mut self, node: &Node, region: &str, add: bool) {
        for b in &mut self.blocks {
            if let Some(v) = resolve(&b.attribute, node, region) {
                let c = b.counts.entry(v.into_owned()).or_default();
                *c = if add { *c + 1 } else { c.saturating_sub(1) };
            }
        }
    }

    /// The summed boost of all blocks, appended only when non-zero.
    pub fn score(&self, node: &Node, region: &str, count: u32) -> Option<f64> {
        if self.sum_weights == 0.0 {
            return None;
        }
        let mut total = 0.0;
        for b in &self.blocks {
            let share = b.weight / self.sum_weights;
            let Some(value) = resolve(&b.attribute, node, region) else {
                total -= 1.0;
                continue;
            };
            let used = f64::from(b.counts.get(value.as_ref()).copied().unwrap_or(0));
            if b.targets.is_empty() {
                // Nomad weighs only targeted spreads; the even-spread boost is added as is.
                total += even_boost(&b.counts, value.as_ref());
                continue;
            }
            let desired_share = b.targets.get(value.as_ref()).copied().or(b.remainder);
            match desired_share {
                Some(p) if p > 0.0 => {
                    let desired = p * f64::from(count);
                    total += (desired - (used + 1.0)) / desired * share;
                }
                _ => total -= 1.0,
            }
        }
        (total != 0.0).then_some(total)
    }
}

/// Nomad's `evenSpreadScoreBoost`.
fn even_boost(counts: &BTreeMap<String, u32>, value: &str) -> f64 {
    let in_use: Vec<u32> = counts.values().copied().filter(|c| *c > 0).collect();
    if in_use.is_empty() {
        return 0.0;
    }
    let min = *in_use.iter().min().expect("non-empty");
    let max = *in_use.iter().max().expect("non-empty");
    let current = counts.get(value).copied().unwrap_or(0);
    if current != min {
        (f64::from(min) - f64::from(current)) / f64::from(min)
    } else if min == max {
        -1.0
    } else {
        f64::from(max - min) / f64::from(min)
    }
}

/// Nomad's `ScoreNormalizationIterator`: the mean of the appended scores.
pub fn normalize(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binpack_and_spread_fitness_bounds() {
        assert_eq!(fit_score(Algorithm::Binpack, 1000, 1000, 0, 0), 0.0);
        assert_eq!(fit_score(Algorithm::Binpack, 1000, 1000, 1000, 1000), 1.0);
        assert_eq!(fit_score(Algorithm::Spread, 1000, 1000, 0, 0), 1.0);
        let half = fit_score(Algorithm::Binpack, 1000, 1000, 500, 500);
        assert!((half - (20.0 - 2.0 * 10f64.powf(0.5)) / 18.0).abs() < 1e-12);
    }

    #[test]
    fn limits_follow_the_stack() {
        assert_eq!(limit_for(JobType::Batch, 5000, 10, false), 2);
        assert_eq!(limit_for(JobType::Service, 5000, 10, false), 13);
        assert_eq!(limit_for(JobType::Service, 3, 10, false), 2);
        assert_eq!(limit_for(JobType::Service, 5000, 10, true), 100);
        assert_eq!(limit_for(JobType::Service, 5000, 300, true), 300);
    }

    #[test]
    fn even_spread_boosts_the_least_used_value() {
        let mut m = BTreeMap::new();
        assert_eq!(even_boost(&m, "a"), 0.0);
        m.insert("a".to_string(), 2);
        m.insert("b".to_string(), 1);
        assert_eq!(even_boost(&m, "c"), 1.0);
        assert_eq!(even_boost(&m, "a"), -1.0);
        assert_eq!(even_boost(&m, "b"), 1.0);
        m.insert("b".to_string(), 2);
        assert_eq!(even_boost(&m, "a"), -1.0);
    }

    #[test]
    fn anti_affinity_only_on_collision() {
        assert_eq!(anti_affinity(0, 4), None);
        assert_eq!(anti_affinity(1, 4), Some(-0.5));
    }
}
