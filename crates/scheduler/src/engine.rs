//! One evaluation in flight: the plan being built, the plan's effect on node usage (an overlay on
//! the snapshot, never a copy of it), the job's presence per node, and the placement loop with
//! Nomad's limit iterator. It owns "where"; the reconcilers own "what".

use crate::feasible::{ClassReject, Compiled, GroupChecker, Op};
use crate::plan::{AllocStop, Plan};
use crate::ports::pick_dynamic;
use crate::rank::{
    anti_affinity, fit_score, limit_for, normalize, AffinityScorer, Algorithm, SpreadScorer,
    MAX_SKIP,
};
use crate::rng::Rng;
use crate::state::{AllocFootprint, AllocSlot, ClusterState, NodeIdx};
use crate::EvalContext;
use model::{
    alloc_name, AllocMetric, AllocatedPort, AllocatedResources, AllocatedTaskResources, Allocation,
    ClientStatus, DesiredStatus, Job, Node, RescheduleTracker, TaskGroup,
};
use std::collections::BTreeMap;

/// The plan's net effect on one node.
#[derive(Debug, Default, Clone)]
struct NodeDelta {
    cpu_mhz: i64,
    memory_mb: i64,
    disk_mb: i64,
    added: Vec<u16>,
    removed: Vec<u16>,
    dynamic: i64,
    allocs: i64,
}

/// What one allocation of a group asks for.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub static_ports: Vec<(String, u16, i32)>,
    pub dynamic_ports: Vec<(String, i32)>,
}

impl Ask {
    /// Sums a group's tasks and collects its group and legacy task networks' ports.
    pub fn of(tg: &TaskGroup) -> Self {
        let mut ask = Ask::default();
        for t in &tg.tasks {
            if let Some(r) = &t.resources {
                ask.cpu_mhz += u64::from(r.cpu);
                ask.memory_mb += u64::from(r.memory_mb);
            }
        }
        ask.disk_mb = tg.ephemeral_disk.as_ref().map_or(0, |d| u64::from(d.size_mb));
        let task_nets =
            tg.tasks.iter().filter_map(|t| t.resources.as_ref()).flat_map(|r| &r.networks);
        for n in tg.networks.iter().chain(task_nets) {
            for p in &n.reserved_ports {
                if p.value == 0 {
                    ask.dynamic_ports.push((p.label.clone(), p.to));
                } else {
                    ask.static_ports.push((p.label.clone(), p.value, p.to));
                }
            }
            for p in &n.dynamic_ports {
                ask.dynamic_ports.push((p.label.clone(), p.to));
            }
        }
        ask
    }
}

/// Why a node could not take an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    Filtered(String),
    Exhausted(String),
}

/// An evaluation being computed.
pub struct Run<'a> {
    pub state: &'a ClusterState,
    pub ctx: &'a EvalContext,
    pub rng: Rng,
    pub plan: Plan,
    overlay: BTreeMap<NodeIdx, NodeDelta>,
    /// Live allocations of the job per (node, group index): existing ones not stopped by the
    /// plan, plus the plan's placements.
    group_presence: BTreeMap<(NodeIdx, usize), u32>,
    job_presence: BTreeMap<NodeIdx, u32>,
}

impl<'a> Run<'a> {
    pub fn new(
        state: &'a ClusterState,
        ctx: &'a EvalContext,
        namespace: &str,
        job_id: &str,
    ) -> Self {
        let plan = Plan {
            eval_id: ctx.eval.id.clone(),
            namespace: namespace.to_string(),
            job_id: job_id.to_string(),
            ..Plan::default()
        };
        Run {
            state,
            ctx,
            rng: Rng::new(seed_for(ctx)),
            plan,
            overlay: BTreeMap::new(),
            group_presence: BTreeMap::new(),
            job_presence: BTreeMap::new(),
        }
    }

    /// Counts the job's live allocations per node and group.
    pub fn init_presence(&mut self, job: Option<&Job>, slots: &[AllocSlot]) {
        for &s in slots {
            let a = self.state.alloc_at(s);
            if a.is_terminal() {
                continue;
            }
            let Some(n) = self.state.node_idx(&a.node_id) else { continue };
            *self.job_presence.entry(n).or_default() += 1;
            if let Some(gi) =
                job.and_then(|j| j.task_groups.iter().position(|g| g.name == a.task_group))
            {
                *self.group_presence.entry((n, gi)).or_default() += 1;
            }
        }
    }

    /// Adds a stop to the plan and releases what the allocation held, so later placements in
    /// this evaluation may use it.
    pub fn stop(&mut self, slot: AllocSlot, description: &str, lost: bool, group: Option<usize>) {
        let a = self.state.alloc_at(slot);
        self.plan.node_update.entry(a.node_id.clone()).or_default().push(AllocStop {
            alloc_id: a.id.clone(),
            desired_status: DesiredStatus::Stop,
            desired_description: description.to_string(),
            client_status: lost.then_some(ClientStatus::Lost),
        });
        if a.is_terminal() {
            return;
        }
        let Some(n) = self.state.node_idx(&a.node_id) else { return };
        let fp = AllocFootprint::of(a);
        self.apply_footprint(n, &fp, false);
        decrement(&mut self.job_presence, n);
        if let Some(gi) = group {
            decrement(&mut self.group_presence, (n, gi));
        }
    }

    /// Takes back the most recent [`Run::stop`] of `slot`: a destructive update whose
    /// replacement found no node keeps the old allocation running, as Nomad's `PopUpdate`.
    pub fn unstop(&mut self, slot: AllocSlot, group: Option<usize>) {
        let a = self.state.alloc_at(slot);
        if let Some(stops) = self.plan.node_update.get_mut(&a.node_id) {
            if let Some(i) = stops.iter().rposition(|s| s.alloc_id == a.id) {
                stops.remove(i);
            }
            if stops.is_empty() {
                self.plan.node_update.remove(&a.node_id);
            }
        }
        if a.is_terminal() {
            return;
        }
        let Some(n) = self.state.node_idx(&a.node_id) else { return };
        let fp = AllocFootprint::of(a);
        self.apply_footprint(n, &fp, true);
        *self.job_presence.entry(n).or_default() += 1;
        if let Some(gi) = group {
            *self.group_presence.entry((n, gi)).or_default() += 1;
        }
    }

    fn apply_footprint(&mut self, n: NodeIdx, fp: &AllocFootprint, add: bool) {
        let cap = self.state.capacity(n);
        let (lo, hi) = (cap.min_dynamic_port, cap.max_dynamic_port);
        let d = self.overlay.entry(n).or_default();
        let sign = if add { 1 } else { -1 };
        d.cpu_mhz += sign * fp.cpu_mhz as i64;
        d.memory_mb += sign * fp.memory_mb as i64;
        d.disk_mb += sign * fp.disk_mb as i64;
        d.allocs += sign;
        for &p in &fp.ports {
            if (lo..=hi).contains(&p) {
                d.dynamic += sign;
            }
            let (from, to) =
                if add { (&mut d.removed, &mut d.added) } else { (&mut d.added, &mut d.removed) };
            if let Some(i) = from.iter().position(|x| *x == p) {
                from.swap_remove(i);
            } else {
                to.push(p);
            }
        }
    }

    /// Used cpu, memory, disk on a node including the plan so far.
    fn used(&self, n: NodeIdx) -> (u64, u64, u64) {
        let u = self.state.usage(n);
        match self.overlay.get(&n) {
            None => (u.cpu_mhz, u.memory_mb, u.disk_mb),
            Some(d) => (
                (u.cpu_mhz as i64 + d.cpu_mhz).max(0) as u64,
                (u.memory_mb as i64 + d.memory_mb).max(0) as u64,
                (u.disk_mb as i64 + d.disk_mb).max(0) as u64,
            ),
        }
    }

    /// True when the node hosts any live allocation (of any job), counting the plan.
    pub fn node_in_use(&self, n: NodeIdx) -> bool {
        let base = i64::from(self.state.usage(n).allocs);
        base + self.overlay.get(&n).map_or(0, |d| d.allocs) > 0
    }

    fn port_used(&self, n: NodeIdx, p: u16) -> bool {
        if self.state.capacity(n).reserved_ports.contains(p) {
            return true;
        }
        let in_state = self.state.usage(n).ports.contains(p);
        match self.overlay.get(&n) {
            None => in_state,
            Some(d) => (in_state && !d.removed.contains(&p)) || d.added.contains(&p),
        }
    }

    /// Checks cpu, memory, disk and ports; `discount` is an allocation being replaced in place.
    pub fn fits(
        &self,
        n: NodeIdx,
        ask: &Ask,
        discount: Option<&AllocFootprint>,
    ) -> Result<(), Reject> {
        let cap = self.state.capacity(n);
        let (mut cpu, mut mem, mut disk) = self.used(n);
        if let Some(fp) = discount {
            cpu = cpu.saturating_sub(fp.cpu_mhz);
            mem = mem.saturating_sub(fp.memory_mb);
            disk = disk.saturating_sub(fp.disk_mb);
        }
        if cpu + ask.cpu_mhz > cap.cpu_mhz {
            return Err(Reject::Exhausted("cpu".into()));
        }
        if mem + ask.memory_mb > cap.memory_mb {
            return Err(Reject::Exhausted("memory".into()));
        }
        if cap.disk_mb.is_some_and(|d| disk + ask.disk_mb > d) {
            return Err(Reject::Exhausted("disk".into()));
        }
        if discount.is_some() {
            // An in-place update keeps its ports.
            return Ok(());
        }
        for (i, (label, port, _)) in ask.static_ports.iter().enumerate() {
            // The same static port asked twice by one group can never be satisfied.
            let twice = ask.static_ports[..i].iter().any(|(_, p, _)| p == port);
            if twice || self.port_used(n, *port) {
                return Err(Reject::Exhausted(format!(
                    "network: reserved port collision {label}={port}"
                )));
            }
        }
        if !ask.dynamic_ports.is_empty() {
            let used = i64::from(self.state.usage(n).dynamic_used)
                + self.overlay.get(&n).map_or(0, |d| d.dynamic)
                + i64::from(cap.reserved_in_dynamic);
            let free = i64::from(cap.dynamic_span()) - used;
            if free < ask.dynamic_ports.len() as i64 {
                return Err(Reject::Exhausted("network: dynamic port selection failed".into()));
            }
        }
        Ok(())
    }

    /// Creates an allocation of group `tg` on node `n` and books it into the overlay.
    #[allow(clippy::too_many_arguments)]
    pub fn place(
        &mut self,
        job: &Job,
        gi: usize,
        ask: &Ask,
        n: NodeIdx,
        index: u32,
        previous: Option<&Allocation>,
        tracker: Option<RescheduleTracker>,
    ) -> bool {
        let tg = &job.task_groups[gi];
        let node = self.state.node(n);
        let cap = self.state.capacity(n);
        let mut ports: Vec<AllocatedPort> =
            Vec::with_capacity(ask.static_ports.len() + ask.dynamic_ports.len());
        for (label, value, to) in &ask.static_ports {
            ports.push(AllocatedPort {
                label: label.clone(),
                value: *value,
                to: *to,
                host_ip: String::new(),
            });
        }
        for (label, to) in &ask.dynamic_ports {
            let (lo, hi) = (cap.min_dynamic_port, cap.max_dynamic_port);
            let taken = |p: u16| self.port_used(n, p) || ports.iter().any(|x| x.value == p);
            let mut rng = self.rng.clone();
            let picked = pick_dynamic(&mut rng, lo, hi, taken);
            self.rng = rng;
            let Some(value) = picked else { return false };
            ports.push(AllocatedPort {
                label: label.clone(),
                value,
                to: *to,
                host_ip: String::new(),
            });
        }
        let mut resources = AllocatedResources::default();
        for t in &tg.tasks {
            let mut r = AllocatedTaskResources::default();
            if let Some(res) = &t.resources {
                r.cpu.cpu_shares = u64::from(res.cpu);
                r.memory.memory_mb = u64::from(res.memory_mb);
                r.memory.memory_max_mb = u64::from(res.memory_max_mb);
            }
            resources.tasks.insert(t.name.clone(), r);
        }
        resources.shared.disk_mb = ask.disk_mb;
        resources.shared.ports = ports;
        let now = self.ctx.now_unix_nanos;
        let alloc = Allocation {
            id: self.rng.uuid(),
            namespace: job.namespace.clone(),
            eval_id: self.ctx.eval.id.clone(),
            name: alloc_name(&job.id, &tg.name, index),
            node_id: node.id.clone(),
            node_name: node.name.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            task_group: tg.name.clone(),
            allocated_resources: resources,
            desired_status: DesiredStatus::Run,
            client_status: ClientStatus::Pending,
            previous_allocation: previous.map(|p| p.id.clone()).unwrap_or_default(),
            reschedule_tracker: tracker,
            create_time: now,
            modify_time: now,
            ..Allocation::default()
        };
        let fp = AllocFootprint::of(&alloc);
        self.apply_footprint(n, &fp, true);
        *self.job_presence.entry(n).or_default() += 1;
        *self.group_presence.entry((n, gi)).or_default() += 1;
        self.plan.node_allocation.entry(node.id.clone()).or_default().push(alloc);
        self.plan.placed += 1;
        true
    }

    /// Adds an updated copy of an existing allocation to the plan (in-place update, follow-up
    /// link); it keeps its resources, so the overlay is unchanged.
    pub fn update(&mut self, alloc: Allocation) {
        self.plan.node_allocation.entry(alloc.node_id.clone()).or_default().push(alloc);
    }

    pub fn group_count_on(&self, n: NodeIdx, gi: usize) -> u32 {
        self.group_presence.get(&(n, gi)).copied().unwrap_or(0)
    }

    pub fn job_count_on(&self, n: NodeIdx) -> u32 {
        self.job_presence.get(&n).copied().unwrap_or(0)
    }

    fn group_nodes(&self, gi: usize) -> impl Iterator<Item = (NodeIdx, u32)> + '_ {
        self.group_presence
            .iter()
            .filter(move |((_, g), c)| *g == gi && **c > 0)
            .map(|((n, _), c)| (*n, *c))
    }
}

/// The seed mixed with the evaluation ID (FNV-1a), so two evaluations given the same seed still
/// draw different allocation IDs; a colliding ID would overwrite another allocation.
fn seed_for(ctx: &EvalContext) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ctx.eval.id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    ctx.seed ^ h
}

fn decrement<K: Ord, V: Copy + Default + PartialEq + std::ops::SubAssign + From<u8>>(
    m: &mut BTreeMap<K, V>,
    k: K,
) {
    if let Some(c) = m.get_mut(&k) {
        if *c != V::default() {
            *c -= V::from(1);
        }
        if *c == V::default() {
            m.remove(&k);
        }
    }
}

/// A `distinct_property` constraint with its live counts per property value.
struct DistinctProperty {
    attribute: String,
    limit: u32,
    counts: BTreeMap<String, u32>,
}

/// A cyclic list of candidate nodes with lazy deletion, so dropping a node costs O(1) and the
/// rotation keeps Nomad's "continue where the last placement stopped" order.
#[derive(Default)]
struct Ring {
    items: Vec<NodeIdx>,
    dead: Vec<bool>,
    n_dead: usize,
    cursor: usize,
}

impl Ring {
    fn new(items: Vec<NodeIdx>) -> Self {
        let dead = vec![false; items.len()];
        Ring { items, dead, n_dead: 0, cursor: 0 }
    }

    fn kill(&mut self, pos: usize) {
        if !self.dead[pos] {
            self.dead[pos] = true;
            self.n_dead += 1;
        }
    }

    fn push(&mut self, n: NodeIdx) {
        self.items.push(n);
        self.dead.push(false);
    }

    fn compact(&mut self) {
        if self.n_dead * 2 <= self.items.len() || self.items.is_empty() {
            return;
        }
        let alive_before_cursor =
            (0..self.cursor.min(self.items.len())).filter(|i| !self.dead[*i]).count();
        let mut keep = self.dead.iter().map(|d| !d);
        self.items.retain(|_| keep.next().unwrap_or(false));
        self.dead = vec![false; self.items.len()];
        self.n_dead = 0;
        self.cursor =
            if self.items.is_empty() { 0 } else { alive_before_cursor % self.items.len() };
    }
}

/// Selects nodes for the placements of one task group.
pub struct GroupSelect {
    gi: usize,
    pub checker: GroupChecker,
    affinity: AffinityScorer,
    spread: SpreadScorer,
    distinct_hosts_job: bool,
    distinct_hosts_group: bool,
    distinct_props: Vec<DistinctProperty>,
    pub ask: Ask,
    limit: usize,
    count: u32,
    algorithm: Algorithm,
    tiered: bool,
    used: Ring,
    empty: Ring,
    /// Nodes dropped for lack of resources, with the dimension; a stop may give room back.
    exhausted: BTreeMap<NodeIdx, String>,
    /// Node evaluations made, for tests of the limit iterator.
    evaluations: usize,
    pub metric: AllocMetric,
}

impl GroupSelect {
    /// Builds the stack for group `gi` over the evaluation's shuffled base nodes.
    pub fn new(run: &Run, job: &Job, gi: usize, base: &[NodeIdx]) -> Self {
        let tg = &job.task_groups[gi];
        let checker = GroupChecker::new(job, tg, run.state.class_count());
        let affinity = AffinityScorer::new(job, tg);
        let mut spread = SpreadScorer::new(job, tg);
        let region = checker.region().to_string();
        for (n, c) in run.group_nodes(gi) {
            for _ in 0..c {
                spread.record(run.state.node(n), &region, true);
            }
        }
        let is_job_level = |c: &Compiled| job.constraints.contains(&c.raw);
        let mut distinct_hosts_job = false;
        let mut distinct_hosts_group = false;
        let mut distinct_props = Vec::new();
        for c in &checker.constraints {
            match c.op {
                Op::DistinctHosts if is_job_level(c) => distinct_hosts_job = true,
                Op::DistinctHosts => distinct_hosts_group = true,
                Op::DistinctProperty(limit) => {
                    let job_level = is_job_level(c);
                    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
                    let live: Vec<(NodeIdx, u32)> = if job_level {
                        run.job_presence.iter().map(|(n, c)| (*n, *c)).collect()
                    } else {
                        run.group_nodes(gi).collect()
                    };
                    for (n, cnt) in live {
                        if let Some(v) =
                            crate::feasible::resolve(&c.raw.ltarget, run.state.node(n), &region)
                        {
                            *counts.entry(v.into_owned()).or_default() += cnt;
                        }
                    }
                    distinct_props.push(DistinctProperty {
                        attribute: c.raw.ltarget.clone(),
                        limit,
                        counts,
                    });
                }
                _ => {}
            }
        }
        let preferences = affinity.is_active() || spread.is_active();
        let algorithm = run.ctx.algorithm;
        // Deviation from Nomad, for packing: under binpack without preferences, nodes that
        // already host work are visited before empty ones (each list in the seeded shuffle
        // order). Nomad's plain rotation keeps opening empty nodes whenever the few candidates it
        // looks at happen to be empty, which leaves a lightly loaded cluster half-used.
        let tiered = algorithm == Algorithm::Binpack && !preferences;
        let (used, empty): (Vec<NodeIdx>, Vec<NodeIdx>) = if tiered {
            base.iter().partition(|n| run.node_in_use(**n))
        } else {
            (base.to_vec(), Vec::new())
        };
        let metric = AllocMetric { nodes_in_pool: base.len() as u64, ..AllocMetric::default() };
        GroupSelect {
            gi,
            ask: Ask::of(tg),
            limit: limit_for(job.job_type, base.len(), tg.count, preferences),
            count: tg.count,
            algorithm,
            tiered,
            used: Ring::new(used),
            empty: Ring::new(empty),
            exhausted: BTreeMap::new(),
            evaluations: 0,
            checker,
            affinity,
            spread,
            distinct_hosts_job,
            distinct_hosts_group,
            distinct_props,
            metric,
        }
    }

    /// Feasibility, distinctness and fit of one node, then its normalised score.
    pub fn evaluate(&mut self, run: &Run, n: NodeIdx, penalty: &[NodeIdx]) -> Result<f64, Reject> {
        self.evaluations += 1;
        let node = run.state.node(n);
        self.check_node(run, n, node)?;
        run.fits(n, &self.ask, None)?;
        Ok(self.score(run, n, node, penalty))
    }

    /// Every check except resources.
    pub fn check_node(&mut self, run: &Run, n: NodeIdx, node: &Node) -> Result<(), Reject> {
        if let Err(r) = self.checker.check(node, run.state.node_class(n)) {
            let label = match r {
                ClassReject::Constraint(i) => self.checker.constraints[i].label.clone(),
                other => self.checker.reject_label(other),
            };
            return Err(Reject::Filtered(label));
        }
        if self.distinct_hosts_job && run.job_count_on(n) > 0
            || self.distinct_hosts_group && run.group_count_on(n, self.gi) > 0
        {
            return Err(Reject::Filtered("distinct_hosts".into()));
        }
        for p in &self.distinct_props {
            let label = || format!("distinct_property: {}", p.attribute);
            match crate::feasible::resolve(&p.attribute, node, self.checker.region()) {
                None => return Err(Reject::Filtered(label())),
                Some(v) if p.counts.get(v.as_ref()).copied().unwrap_or(0) >= p.limit => {
                    return Err(Reject::Filtered(label()))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn score(&self, run: &Run, n: NodeIdx, node: &Node, penalty: &[NodeIdx]) -> f64 {
        let mut scores: [f64; 5] = [0.0; 5];
        let mut k = 0;
        let cap = run.state.capacity(n);
        let (cpu, mem, _) = run.used(n);
        scores[k] = fit_score(
            self.algorithm,
            cap.cpu_mhz,
            cap.memory_mb,
            cpu + self.ask.cpu_mhz,
            mem + self.ask.memory_mb,
        );
        k += 1;
        if let Some(s) = anti_affinity(run.group_count_on(n, self.gi), self.count) {
            scores[k] = s;
            k += 1;
        }
        if penalty.contains(&n) {
            scores[k] = -1.0;
            k += 1;
        }
        if let Some(s) = self.affinity.score(node, self.checker.region()) {
            scores[k] = s;
            k += 1;
        }
        if let Some(s) = self.spread.score(node, self.checker.region(), self.count) {
            scores[k] = s;
            k += 1;
        }
        normalize(&scores[..k])
    }

    /// Puts a node dropped for lack of resources back into the rotation, because a stop in this
    /// plan (the old allocation of a destructive update) just freed resources on it.
    pub fn revive(&mut self, run: &Run, n: NodeIdx) {
        let Some(dim) = self.exhausted.remove(&n) else { return };
        let m = &mut self.metric;
        m.nodes_evaluated -= 1;
        m.nodes_exhausted -= 1;
        decrement(&mut m.dimension_exhausted, dim);
        let class = &run.state.node(n).node_class;
        if !class.is_empty() {
            decrement(&mut m.class_exhausted, class.clone());
        }
        self.used.push(n);
    }

    fn record(&mut self, run: &Run, n: NodeIdx, r: &Reject) {
        if let Reject::Exhausted(dim) = r {
            self.exhausted.insert(n, dim.clone());
        }
        let node = run.state.node(n);
        let class = node.node_class.clone();
        self.metric.nodes_evaluated += 1;
        match r {
            Reject::Filtered(label) => {
                self.metric.nodes_filtered += 1;
                if !class.is_empty() {
                    *self.metric.class_filtered.entry(class).or_default() += 1;
                }
                *self.metric.constraint_filtered.entry(label.clone()).or_default() += 1;
            }
            Reject::Exhausted(dim) => {
                self.metric.nodes_exhausted += 1;
                if !class.is_empty() {
                    *self.metric.class_exhausted.entry(class).or_default() += 1;
                }
                *self.metric.dimension_exhausted.entry(dim.clone()).or_default() += 1;
            }
        }
    }

    /// Nomad's limit iterator and max-score selection for one placement. Nodes that fail a
    /// check are dropped for the rest of this group: within one evaluation usage only grows and
    /// distinct_* only tighten, so a node that fails once fails again.
    pub fn select(&mut self, run: &Run, penalty: &[NodeIdx]) -> Option<NodeIdx> {
        let mut best: Option<(f64, NodeIdx, bool, usize)> = None;
        let mut skipped: Vec<(f64, NodeIdx, bool, usize)> = Vec::with_capacity(MAX_SKIP);
        let mut seen = 0;
        let consider = |best: &mut Option<(f64, NodeIdx, bool, usize)>,
                        c: (f64, NodeIdx, bool, usize)| {
            if best.is_none_or(|b| c.0 > b.0) {
                *best = Some(c);
            }
        };
        for in_empty in [false, true] {
            if seen >= self.limit || (in_empty && !self.tiered) {
                break;
            }
            let mut ring = std::mem::take(if in_empty { &mut self.empty } else { &mut self.used });
            ring.compact();
            let len = ring.items.len();
            let mut steps = 0;
            while steps < len && seen < self.limit {
                let pos = ring.cursor;
                ring.cursor = (ring.cursor + 1) % len;
                steps += 1;
                if ring.dead[pos] {
                    continue;
                }
                let n = ring.items[pos];
                match self.evaluate(run, n, penalty) {
                    Err(r) => {
                        self.record(run, n, &r);
                        ring.kill(pos);
                    }
                    Ok(score) if skipped.len() < MAX_SKIP && score <= 0.0 => {
                        skipped.push((score, n, in_empty, pos))
                    }
                    Ok(score) => {
                        seen += 1;
                        consider(&mut best, (score, n, in_empty, pos));
                    }
                }
            }
            *(if in_empty { &mut self.empty } else { &mut self.used }) = ring;
        }
        for c in skipped {
            if seen >= self.limit {
                break;
            }
            seen += 1;
            consider(&mut best, c);
        }
        let (_, n, in_empty, pos) = best?;
        if in_empty {
            self.empty.kill(pos);
            self.used.push(n);
        }
        Some(n)
    }

    /// Books a placement made on `n` into the group's spread and distinct_property counts.
    pub fn placed(&mut self, run: &Run, n: NodeIdx) {
        let node = run.state.node(n);
        let region = self.checker.region().to_string();
        self.spread.record(node, &region, true);
        for p in &mut self.distinct_props {
            if let Some(v) = crate::feasible::resolve(&p.attribute, node, &region) {
                *p.counts.entry(v.into_owned()).or_default() += 1;
            }
        }
    }
}

/// The evaluation's base node set: ready, eligible, not draining, in the job's datacenters and
/// pool; shuffled with the seeded generator, as Nomad's `ShuffleNodes`.
pub fn base_nodes(run: &mut Run, job: &Job) -> Vec<NodeIdx> {
    let state = run.state;
    let checker = GroupChecker::new(
        &Job {
            datacenters: job.datacenters.clone(),
            node_pool: job.node_pool.clone(),
            ..Job::default()
        },
        &TaskGroup::default(),
        0,
    );
    let mut pool_of_class: Vec<Option<bool>> = vec![None; state.class_count()];
    let mut out = Vec::new();
    for (i, node) in state.nodes().iter().enumerate() {
        let n = i as NodeIdx;
        if !node.is_schedulable() {
            continue;
        }
        let c = state.node_class(n) as usize;
        let ok = *pool_of_class[c].get_or_insert_with(|| checker.in_pool(node));
        if ok {
            out.push(n);
        }
    }
    run.rng.shuffle(&mut out);
    out
}

/// `nodes_available`: ready nodes per datacenter of the job.
pub fn nodes_available(state: &ClusterState, base: &[NodeIdx]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for &n in base {
        *m.entry(state.node(n).datacenter.clone()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Affinity, JobType, NodeStatus, Resources, Task};

    fn cluster(n: usize) -> ClusterState {
        let mut s = ClusterState::new();
        for i in 0..n {
            let mut node =
                Node { id: format!("n{i}"), status: NodeStatus::Ready, ..Node::default() };
            node.node_resources.cpu.cpu_shares = 1000;
            node.node_resources.memory.memory_mb = 1000;
            s.upsert_node(node);
        }
        s
    }

    fn job(job_type: JobType, affinity: bool) -> Job {
        let mut j = Job {
            id: "j".into(),
            job_type,
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![Task {
                    name: "t".into(),
                    resources: Some(Resources { cpu: 10, memory_mb: 10, ..Resources::default() }),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        if affinity {
            j.affinities.push(Affinity {
                ltarget: "${node.unique.id}".into(),
                operand: "=".into(),
                rtarget: "n1".into(),
                weight: 50,
            });
        }
        j
    }

    /// How many nodes one placement looks at.
    fn looked_at(alg: Algorithm, job: &Job, nodes: usize, penalty: &[NodeIdx]) -> usize {
        let state = cluster(nodes);
        let ctx = EvalContext { seed: 1, algorithm: alg, ..EvalContext::default() };
        let mut run = Run::new(&state, &ctx, "default", "j");
        let base = base_nodes(&mut run, job);
        let mut sel = GroupSelect::new(&run, job, 0, &base);
        sel.select(&run, penalty).expect("a node fits");
        sel.evaluations
    }

    #[test]
    fn limit_iterator_sizes_follow_nomad() {
        // Spread scores empty nodes 1.0, so nothing is skipped and the limit shows directly.
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Batch, false), 100, &[]), 2);
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Service, false), 100, &[]), 7);
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Service, false), 2, &[]), 2);
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Service, true), 150, &[]), 100);
    }

    #[test]
    fn limit_iterator_skips_up_to_three_non_positive_options() {
        // Every node carries the reschedule penalty, so every option scores below zero: three
        // are skipped, then two more fill the batch limit, and the skipped ones only come back if
        // the source runs dry.
        let all: Vec<NodeIdx> = (0..100).collect();
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Batch, false), 100, &all), 5);
        let few: Vec<NodeIdx> = (0..4).collect();
        assert_eq!(looked_at(Algorithm::Spread, &job(JobType::Batch, false), 4, &few), 4);
    }
}
