//! Feasibility: whether a node may host a task group at all — datacenter and pool, drivers, and
//! every constraint operator Nomad has — with node-local verdicts cached per computed class.
//! Resources and ports are not checked here (see `rank`), nor are the job's other allocations
//! except through `distinct_hosts` / `distinct_property`, which the placement loop tracks.

use model::{Constraint, Job, Node, TaskGroup};
use regex::Regex;
use std::borrow::Cow;
use std::cmp::Ordering;

/// Resolves a constraint target: `${attr.*}`, `${meta.*}`, `${node.*}`, or a literal.
pub fn resolve<'n>(target: &'n str, node: &'n Node, region: &'n str) -> Option<Cow<'n, str>> {
    let Some(inner) = target.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(Cow::Borrowed(target));
    };
    let v: &str = match inner {
        "node.unique.id" => &node.id,
        "node.unique.name" => &node.name,
        "node.datacenter" => &node.datacenter,
        "node.class" => &node.node_class,
        "node.pool" => return Some(Cow::Borrowed(node_pool(node))),
        // Nodes are scheduled only within their region, so a node's region is the job's.
        "node.region" => region,
        _ => {
            if let Some(k) = inner.strip_prefix("attr.") {
                return node.attributes.get(k).map(|v| Cow::Borrowed(v.as_str()));
            }
            if let Some(k) = inner.strip_prefix("meta.") {
                return node.meta.get(k).map(|v| Cow::Borrowed(v.as_str()));
            }
            return None;
        }
    };
    Some(Cow::Borrowed(v))
}

/// The node's pool, with Nomad's default.
pub fn node_pool(node: &Node) -> &str {
    if node.node_pool.is_empty() {
        "default"
    } else {
        &node.node_pool
    }
}

/// True when the target depends on something that differs between nodes of one computed class,
/// so a verdict about it cannot be cached per class.
pub fn is_unique_target(target: &str) -> bool {
    target.contains("${node.unique.")
        || target.contains("${attr.unique.")
        || target.contains("${meta.unique.")
}

/// Nomad's glob for datacenters: `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// A parsed, ready-to-check constraint operator.
#[derive(Debug, Clone)]
pub enum Op {
    /// `=`, `==`, `is`: both sides present and equal.
    Eq,
    /// `!=`, `not`: differ (an unset left side differs from anything).
    Ne,
    /// `<`, `<=`, `>`, `>=`: the wanted ordering, and whether equality also passes.
    Order(Ordering, bool),
    /// `regexp`; `None` when the pattern does not compile, which filters every node.
    Regex(Option<Regex>),
    /// `version` (go-version rules, `~>` allowed); `None` when unparsable.
    Version(Option<Vec<VersionTerm>>),
    /// `semver` (precedence only, no `~>`); `None` when unparsable.
    Semver(Option<Vec<VersionTerm>>),
    /// `set_contains`, `set_contains_all`: every right item is in the left list.
    SetContainsAll,
    /// `set_contains_any`: some right item is in the left list.
    SetContainsAny,
    /// `is_set`: the left target resolves.
    IsSet,
    /// `is_not_set`: the left target does not resolve.
    IsNotSet,
    /// `distinct_hosts`: at most one allocation of the job (or group) per node.
    DistinctHosts,
    /// `distinct_property` with its per-value limit.
    DistinctProperty(u32),
    /// An operand Nomad would reject; it filters every node rather than being ignored.
    Unknown,
}

/// A constraint compiled once per evaluation.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The constraint as written.
    pub raw: Constraint,
    /// `"${attr.kernel.name} = freebsd"`, the key used in `AllocMetric::constraint_filtered`.
    pub label: String,
    /// The parsed operator.
    pub op: Op,
    /// True when a target is unique per node, so the verdict cannot be cached per class.
    pub unique: bool,
}

impl Compiled {
    /// Parses an operand; regexes and version requirements are compiled here, once.
    pub fn new(c: &Constraint) -> Self {
        let op = match c.operand.as_str() {
            "" | "=" | "==" | "is" => Op::Eq,
            "!=" | "not" => Op::Ne,
            "<" => Op::Order(Ordering::Less, false),
            "<=" => Op::Order(Ordering::Less, true),
            ">" => Op::Order(Ordering::Greater, false),
            ">=" => Op::Order(Ordering::Greater, true),
            "regexp" => Op::Regex(Regex::new(&c.rtarget).ok()),
            "version" => Op::Version(parse_requirement(&c.rtarget, true)),
            "semver" => Op::Semver(parse_requirement(&c.rtarget, false)),
            "set_contains" | "set_contains_all" => Op::SetContainsAll,
            "set_contains_any" => Op::SetContainsAny,
            "is_set" => Op::IsSet,
            "is_not_set" => Op::IsNotSet,
            "distinct_hosts" => Op::DistinctHosts,
            "distinct_property" => Op::DistinctProperty(if c.rtarget.is_empty() {
                1
            } else {
                c.rtarget.parse().unwrap_or(0)
            }),
            _ => Op::Unknown,
        };
        let label = match op {
            Op::DistinctHosts => "distinct_hosts".to_string(),
            Op::DistinctProperty(_) => format!("distinct_property: {}", c.ltarget),
            _ => format!("{} {} {}", c.ltarget, c.operand, c.rtarget),
        };
        Compiled {
            unique: is_unique_target(&c.ltarget) || is_unique_target(&c.rtarget),
            raw: c.clone(),
            label,
            op,
        }
    }

    /// True for the operators that depend on other allocations rather than on the node alone.
    pub fn is_distinct(&self) -> bool {
        matches!(self.op, Op::DistinctHosts | Op::DistinctProperty(_))
    }

    /// Checks a node-local constraint. `distinct_*` always pass here; the placement loop owns them.
    pub fn check(&self, node: &Node, region: &str) -> bool {
        let l = resolve(&self.raw.ltarget, node, region);
        let r = resolve(&self.raw.rtarget, node, region);
        check_op(&self.op, l.as_deref(), r.as_deref())
    }
}

/// Nomad's `checkConstraint`: which operators need both sides, and what each compares.
pub fn check_op(op: &Op, l: Option<&str>, r: Option<&str>) -> bool {
    match op {
        Op::DistinctHosts | Op::DistinctProperty(_) => true,
        Op::Eq => l.is_some() && l == r,
        Op::Ne => l != r,
        Op::Order(ord, or_equal) => match (l, r) {
            (Some(l), Some(r)) => {
                let c = compare_order(l, r);
                c == *ord || (*or_equal && c == Ordering::Equal)
            }
            _ => false,
        },
        Op::Regex(re) => match (l, re) {
            (Some(l), Some(re)) => r.is_some() && re.is_match(l),
            _ => false,
        },
        Op::Version(req) | Op::Semver(req) => {
            let semver = matches!(op, Op::Semver(_));
            match (l.and_then(Version::parse), req) {
                (Some(v), Some(req)) => req.iter().all(|t| t.matches(&v, !semver)),
                _ => false,
            }
        }
        Op::SetContainsAll | Op::SetContainsAny => match (l, r) {
            (Some(l), Some(r)) => {
                let have: Vec<&str> = l.split(',').map(str::trim).collect();
                let mut want = r.split(',').map(str::trim);
                if matches!(op, Op::SetContainsAll) {
                    want.all(|w| have.contains(&w))
                } else {
                    want.any(|w| have.contains(&w))
                }
            }
            _ => false,
        },
        Op::IsSet => l.is_some(),
        Op::IsNotSet => l.is_none(),
        Op::Unknown => false,
    }
}

/// Nomad's `checkOrder`: integers, then floats, then lexical order.
fn compare_order(l: &str, r: &str) -> Ordering {
    if let (Ok(a), Ok(b)) = (l.parse::<i64>(), r.parse::<i64>()) {
        return a.cmp(&b);
    }
    if let (Ok(a), Ok(b)) = (l.parse::<f64>(), r.parse::<f64>()) {
        return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    }
    l.cmp(r)
}

/// A version: numeric segments plus an optional pre-release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    segments: Vec<u64>,
    pre: Vec<String>,
    /// How many segments were written; `~>` keys off it.
    written: usize,
}

impl Version {
    /// Parses `v1.2.3-beta.1+meta` leniently, as hashicorp/go-version does.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
            None => (s, Vec::new()),
        };
        let mut segments: Vec<u64> =
            core.split('.').map(|x| x.parse().ok()).collect::<Option<_>>()?;
        let written = segments.len();
        while segments.len() < 3 {
            segments.push(0);
        }
        Some(Version { segments, pre, written })
    }

    fn core_cmp(&self, other: &Version) -> Ordering {
        let n = self.segments.len().max(other.segments.len());
        (0..n)
            .map(|i| {
                let a = self.segments.get(i).copied().unwrap_or(0);
                let b = other.segments.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }

    fn cmp_full(&self, other: &Version) -> Ordering {
        self.core_cmp(other).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                for (a, b) in self.pre.iter().zip(&other.pre) {
                    let o = match (a.parse::<u64>(), b.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => a.cmp(b),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                self.pre.len().cmp(&other.pre.len())
            }
        })
    }
}

/// One term of a version requirement such as `>= 1.2, < 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTerm {
    op: &'static str,
    version: Version,
}

fn parse_requirement(s: &str, allow_pessimistic: bool) -> Option<Vec<VersionTerm>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let ops = ["~>", ">=", "<=", "!=", ">", "<", "="];
        let op = ops.iter().find(|o| part.starts_with(**o)).copied().unwrap_or("=");
        if op == "~>" && !allow_pessimistic {
            return None;
        }
        let rest = part.strip_prefix(op).unwrap_or(part);
        out.push(VersionTerm { op, version: Version::parse(rest)? });
    }
    Some(out)
}

impl VersionTerm {
    /// `prerelease_rule` is go-version's: a pre-release only satisfies terms that name a
    /// pre-release of the same core version. Semver constraints compare by precedence only.
    fn matches(&self, v: &Version, prerelease_rule: bool) -> bool {
        let c = &self.version;
        if prerelease_rule
            && !v.pre.is_empty()
            && (c.pre.is_empty() || v.core_cmp(c) != Ordering::Equal)
        {
            return false;
        }
        let o = v.cmp_full(c);
        match self.op {
            "=" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            ">" => o == Ordering::Greater,
            "<" => o == Ordering::Less,
            ">=" => o != Ordering::Less,
            "<=" => o != Ordering::Greater,
            _ => {
                // `~> 1.2` allows 1.x (x >= 2); `~> 1.2.3` allows 1.2.x (x >= 3).
                if o == Ordering::Less {
                    return false;
                }
                let keep = c.written.saturating_sub(1).max(1);
                (0..keep).all(|i| v.segments.get(i) == c.segments.get(i))
            }
        }
    }
}

/// Why a node failed the class-level checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassReject {
    /// Not in the job's datacenters or node pool: the node is not part of the base set at all.
    OutOfPool,
    /// A task's driver is not detected and healthy on the node.
    MissingDrivers,
    /// Index into [`GroupChecker::constraints`].
    Constraint(usize),
}

/// The node-local checks of one task group, compiled once per evaluation, with verdicts memoized
/// per computed class, as Nomad's `FeasibilityWrapper` does.
#[derive(Debug)]
pub struct GroupChecker {
    /// Job, group and task constraints, deduplicated, in checking order.
    pub constraints: Vec<Compiled>,
    drivers: Vec<String>,
    datacenters: Vec<String>,
    pool: String,
    region: String,
    cache: Vec<u8>,
    class_checks: usize,
}

const UNKNOWN: u8 = 0;
const OK: u8 = 1;

impl GroupChecker {
    /// Job constraints, then the group's, then its tasks' — Nomad's checker order.
    pub fn new(job: &Job, tg: &TaskGroup, classes: usize) -> Self {
        let mut constraints: Vec<Compiled> = Vec::new();
        let all = job
            .constraints
            .iter()
            .chain(&tg.constraints)
            .chain(tg.tasks.iter().flat_map(|t| &t.constraints));
        for c in all {
            if !constraints.iter().any(|x| x.raw == *c) {
                constraints.push(Compiled::new(c));
            }
        }
        let mut drivers: Vec<String> = tg.tasks.iter().map(|t| t.driver.clone()).collect();
        drivers.sort();
        drivers.dedup();
        drivers.retain(|d| !d.is_empty());
        GroupChecker {
            constraints,
            drivers,
            datacenters: if job.datacenters.is_empty() {
                vec!["*".into()]
            } else {
                job.datacenters.clone()
            },
            pool: if job.node_pool.is_empty() { "default".into() } else { job.node_pool.clone() },
            region: job.region.clone(),
            cache: vec![UNKNOWN; classes],
            class_checks: 0,
        }
    }

    /// Datacenter and pool membership; part of the computed class.
    pub fn in_pool(&self, node: &Node) -> bool {
        (self.pool == "all" || self.pool == node_pool(node))
            && self.datacenters.iter().any(|d| glob_match(d, &node.datacenter))
    }

    fn drivers_ok(&self, node: &Node) -> bool {
        self.drivers.iter().all(|d| match node.drivers.get(d) {
            Some(info) => info.detected && info.healthy,
            None => node
                .attributes
                .get(&format!("driver.{d}"))
                .is_some_and(|v| matches!(v.as_str(), "1" | "true")),
        })
    }

    fn class_check(&self, node: &Node) -> Result<(), ClassReject> {
        if !self.in_pool(node) {
            return Err(ClassReject::OutOfPool);
        }
        if !self.drivers_ok(node) {
            return Err(ClassReject::MissingDrivers);
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.unique && !c.is_distinct() && !c.check(node, &self.region) {
                return Err(ClassReject::Constraint(i));
            }
        }
        Ok(())
    }

    /// All node-local checks. The class-level part is computed once per class; constraints on
    /// unique targets are checked on every node.
    pub fn check(&mut self, node: &Node, class: u32) -> Result<(), ClassReject> {
        let slot = &mut self.cache[class as usize];
        match *slot {
            UNKNOWN => {
                self.class_checks += 1;
                let verdict = self.class_check(node);
                self.cache[class as usize] = encode(verdict);
                verdict?;
            }
            OK => {}
            code => return Err(decode(code)),
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if c.unique && !c.is_distinct() && !c.check(node, &self.region) {
                return Err(ClassReject::Constraint(i));
            }
        }
        Ok(())
    }

    /// The class verdicts computed so far: class → eligible. Feeds a blocked evaluation's
    /// `class_eligibility`, so the server can tell which node changes may unblock it.
    pub fn class_verdicts(&self) -> impl Iterator<Item = (u32, bool)> + '_ {
        self.cache
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != UNKNOWN)
            .map(|(c, v)| (c as u32, *v == OK))
    }

    /// True when some constraint depends on unique node attributes, which the class cache cannot
    /// cover (Nomad's "escaped" computed class).
    pub fn escaped(&self) -> bool {
        self.constraints.iter().any(|c| c.unique)
    }

    /// How many times the class-level checks actually ran (the rest were cache hits).
    pub fn class_checks(&self) -> usize {
        self.class_checks
    }

    /// The region used for `${node.region}`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The metric key for a rejection.
    pub fn reject_label(&self, r: ClassReject) -> String {
        match r {
            ClassReject::OutOfPool => "datacenter or node pool".into(),
            ClassReject::MissingDrivers => "missing drivers".into(),
            ClassReject::Constraint(i) => self.constraints[i].label.clone(),
        }
    }
}

fn encode(v: Result<(), ClassReject>) -> u8 {
    match v {
        Ok(()) => OK,
        Err(ClassReject::OutOfPool) => 2,
        Err(ClassReject::MissingDrivers) => 3,
        // More than 251 constraints on one group are not realistic; they saturate to the last.
        Err(ClassReject::Constraint(i)) => 4 + i.min(251) as u8,
    }
}

fn decode(code: u8) -> ClassReject {
    match code {
        2 => ClassReject::OutOfPool,
        3 => ClassReject::MissingDrivers,
        c => ClassReject::Constraint(usize::from(c - 4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_nomad() {
        assert!(glob_match("*", "dc1"));
        assert!(glob_match("dc*", "dc1"));
        assert!(glob_match("*-east-*", "us-east-1"));
        assert!(!glob_match("dc2", "dc1"));
        assert!(!glob_match("dc?", "dc1"));
    }

    #[test]
    fn version_rules() {
        let ok = |v: &str, req: &str, pre_rule: bool| {
            let r = parse_requirement(req, true).unwrap();
            let v = Version::parse(v).unwrap();
            r.iter().all(|t| t.matches(&v, pre_rule))
        };
        assert!(ok("1.2.3", ">= 1.2, < 2", true));
        assert!(!ok("2.0.0", ">= 1.2, < 2", true));
        assert!(ok("1.9", "~> 1.2", true));
        assert!(!ok("2.0", "~> 1.2", true));
        assert!(ok("1.2.9", "~> 1.2.3", true));
        assert!(!ok("1.3.0", "~> 1.2.3", true));
        assert!(!ok("1.3.0-beta", ">= 1.2", true));
        assert!(ok("1.3.0-beta", ">= 1.2", false));
        assert!(ok("1.0.0-beta.2", "> 1.0.0-beta.1", true));
        assert!(ok("1.0.0-beta.11", "> 1.0.0-beta.2", false));
        assert!(parse_requirement("~> 1.2", false).is_none());
    }

    #[test]
    fn order_compares_numbers_then_text() {
        assert_eq!(compare_order("10", "9"), Ordering::Greater);
        assert_eq!(compare_order("1.5", "1.25"), Ordering::Greater);
        assert_eq!(compare_order("b", "a"), Ordering::Greater);
    }
}
