//! The cluster snapshot the scheduler reads: nodes, allocations and job versions, indexed per node
//! and per job, with per-node resource usage kept up to date incrementally. It owns no policy;
//! it never decides placements, only answers "what is on this node" and "what does this job have".

use crate::ports::{parse_port_list, PortSet, DEFAULT_MAX_DYNAMIC_PORT, DEFAULT_MIN_DYNAMIC_PORT};
use model::{Allocation, Job, Node, NodeStatus};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Index of a node inside a [`ClusterState`]; stable for the state's lifetime.
pub type NodeIdx = u32;
/// Index of an allocation slot inside a [`ClusterState`].
pub type AllocSlot = u32;

/// A fast, deterministic hasher for allocation IDs (UUIDs the scheduler generated, so flooding
/// is not a concern). SipHash was a tenth of the C1M profile.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const CHUNK: usize = 4096;

/// Allocation slots in fixed-size chunks: growing never moves existing allocations, which with a
/// flat `Vec` meant copying hundreds of megabytes at every doubling on the way to a million.
/// Allocations are shared (`Arc`), so a server's view holds the same allocations as its replicated
/// state instead of a second copy of each.
#[derive(Debug, Clone, Default)]
struct SlotStore {
    chunks: Vec<Vec<Option<Arc<Allocation>>>>,
    len: usize,
}

impl SlotStore {
    fn push(&mut self, a: Option<Arc<Allocation>>) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("just ensured").push(a);
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &Option<Arc<Allocation>>> {
        self.chunks.iter().flatten()
    }
}

impl std::ops::Index<usize> for SlotStore {
    type Output = Option<Arc<Allocation>>;
    fn index(&self, i: usize) -> &Self::Output {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for SlotStore {
    fn index_mut(&mut self, i: usize) -> &mut Self::Output {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// What a node offers to allocations, net of the operator's reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    /// `None` when the node did not fingerprint its disk; disk is then not checked.
    pub disk_mb: Option<u64>,
    /// Host ports reserved for the host itself (`reserved.reserved_ports`).
    pub reserved_ports: PortSet,
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
    /// Reserved host ports that fall inside the dynamic range.
    pub reserved_in_dynamic: u32,
}

impl NodeCapacity {
    fn of(node: &Node) -> Self {
        let r = &node.reserved_resources;
        let mut reserved_ports = PortSet::default();
        for (lo, hi) in parse_port_list(&r.networks.reserved_host_ports) {
            for p in lo..=hi {
                reserved_ports.insert(p);
            }
        }
        let (mut min, mut max) =
            (node.node_resources.min_dynamic_port, node.node_resources.max_dynamic_port);
        if min == 0 || max == 0 || min > max {
            (min, max) = (DEFAULT_MIN_DYNAMIC_PORT, DEFAULT_MAX_DYNAMIC_PORT);
        }
        let disk = node.node_resources.disk.disk_mb;
        NodeCapacity {
            cpu_mhz: node.node_resources.cpu.cpu_shares.saturating_sub(r.cpu.cpu_shares),
            memory_mb: node.node_resources.memory.memory_mb.saturating_sub(r.memory.memory_mb),
            disk_mb: (disk > 0).then(|| disk.saturating_sub(r.disk.disk_mb)),
            reserved_in_dynamic: reserved_ports.count_in(min, max),
            reserved_ports,
            min_dynamic_port: min,
            max_dynamic_port: max,
        }
    }

    /// Size of the dynamic range.
    pub fn dynamic_span(&self) -> u32 {
        u32::from(self.max_dynamic_port - self.min_dynamic_port) + 1
    }
}

/// What the non-terminal allocations on a node use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub ports: PortSet,
    /// Used ports inside the node's dynamic range.
    pub dynamic_used: u32,
    /// Number of non-terminal allocations.
    pub allocs: u32,
}

/// The resources one allocation holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocFootprint {
    pub cpu_mhz: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub ports: Vec<u16>,
}

impl AllocFootprint {
    /// The footprint recorded in an allocation's `allocated_resources`.
    pub fn of(alloc: &Allocation) -> Self {
        let r = &alloc.allocated_resources;
        AllocFootprint {
            cpu_mhz: r.tasks.values().map(|t| t.cpu.cpu_shares).sum(),
            memory_mb: r.tasks.values().map(|t| t.memory.memory_mb).sum(),
            disk_mb: r.shared.disk_mb,
            ports: r.shared.ports.iter().map(|p| p.value).collect(),
        }
    }
}

/// A snapshot of the cluster, built incrementally. The server keeps one, applies committed plans
/// to it ([`ClusterState::apply_plan`](crate::ClusterState::apply_plan)) and hands `&ClusterState`
/// to scheduler workers; an evaluation then touches only its job's allocations and the nodes it
/// ranks, never a scan of every allocation.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    nodes: Vec<Node>,
    node_index: BTreeMap<String, NodeIdx>,
    node_class: Vec<u32>,
    classes: Vec<String>,
    class_index: BTreeMap<String, u32>,
    capacity: Vec<NodeCapacity>,
    usage: Vec<NodeUsage>,
    allocs: SlotStore,
    free_slots: Vec<AllocSlot>,
    // Only looked up, never iterated, so its iteration order cannot leak into a plan.
    alloc_index: HashMap<String, AllocSlot, BuildHasherDefault<IdHasher>>,
    by_node: BTreeMap<String, Vec<AllocSlot>>,
    /// Namespace → job ID → slots; nested so lookups by `&str` allocate nothing.
    by_job: BTreeMap<String, BTreeMap<String, Vec<AllocSlot>>>,
    job_versions: BTreeMap<(String, String, u64), Arc<Job>>,
}

impl ClusterState {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a node. The computed class is recomputed here rather than trusted, so a
    /// stale class can never make the feasibility cache lie.
    pub fn upsert_node(&mut self, mut node: Node) -> NodeIdx {
        node.computed_class = node.compute_class();
        let class = match self.class_index.get(&node.computed_class) {
            Some(c) => *c,
            None => {
                let c = self.classes.len() as u32;
                self.classes.push(node.computed_class.clone());
                self.class_index.insert(node.computed_class.clone(), c);
                c
            }
        };
        let cap = NodeCapacity::of(&node);
        let idx = match self.node_index.get(&node.id) {
            Some(i) => {
                let i = *i;
                self.nodes[i as usize] = node;
                self.node_class[i as usize] = class;
                self.capacity[i as usize] = cap;
                i
            }
            None => {
                let i = self.nodes.len() as NodeIdx;
                self.node_index.insert(node.id.clone(), i);
                self.nodes.push(node);
                self.node_class.push(class);
                self.capacity.push(cap);
                self.usage.push(NodeUsage::default());
                i
            }
        };
        self.recompute_usage(idx);
        idx
    }

    fn recompute_usage(&mut self, idx: NodeIdx) {
        self.usage[idx as usize] = NodeUsage::default();
        let id = self.nodes[idx as usize].id.clone();
        let slots = self.by_node.get(&id).cloned().unwrap_or_default();
        for s in slots {
            if let Some(a) = &self.allocs[s as usize] {
                if !a.is_terminal() {
                    let fp = AllocFootprint::of(a);
                    self.account(idx, &fp, true);
                }
            }
        }
    }

    fn account(&mut self, idx: NodeIdx, fp: &AllocFootprint, add: bool) {
        let cap = &self.capacity[idx as usize];
        let (lo, hi) = (cap.min_dynamic_port, cap.max_dynamic_port);
        let u = &mut self.usage[idx as usize];
        if add {
            u.cpu_mhz += fp.cpu_mhz;
            u.memory_mb += fp.memory_mb;
            u.disk_mb += fp.disk_mb;
            u.allocs += 1;
            for &p in &fp.ports {
                if u.ports.insert(p) && (lo..=hi).contains(&p) {
                    u.dynamic_used += 1;
                }
            }
        } else {
            u.cpu_mhz = u.cpu_mhz.saturating_sub(fp.cpu_mhz);
            u.memory_mb = u.memory_mb.saturating_sub(fp.memory_mb);
            u.disk_mb = u.disk_mb.saturating_sub(fp.disk_mb);
            u.allocs = u.allocs.saturating_sub(1);
            for &p in &fp.ports {
                if u.ports.contains(p) {
                    u.ports.remove(p);
                    if (lo..=hi).contains(&p) {
                        u.dynamic_used -= 1;
                    }
                }
            }
        }
    }

    /// Inserts or replaces an allocation (matched by ID), keeping usage and indices current.
    pub fn upsert_alloc(&mut self, alloc: Allocation) {
        self.upsert_alloc_shared(Arc::new(alloc));
    }

    /// [`ClusterState::upsert_alloc`] of an allocation shared with its owner (the server's
    /// replicated state), which costs a pointer instead of a copy.
    pub fn upsert_alloc_shared(&mut self, alloc: Arc<Allocation>) {
        if let Some(&slot) = self.alloc_index.get(alloc.id.as_str()) {
            let old = self.allocs[slot as usize].take().expect("indexed slot is occupied");
            self.account_alloc(&old, false);
            let moved = old.node_id != alloc.node_id
                || old.job_id != alloc.job_id
                || old.namespace != alloc.namespace;
            if moved {
                self.unindex(slot, &old);
                self.index(slot, &alloc);
            }
            self.account_alloc(&alloc, true);
            self.allocs[slot as usize] = Some(alloc);
            return;
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.allocs.push(None);
                (self.allocs.len() - 1) as AllocSlot
            }
        };
        self.account_alloc(&alloc, true);
        self.index(slot, &alloc);
        self.alloc_index.insert(alloc.id.clone(), slot);
        self.allocs[slot as usize] = Some(alloc);
    }

    /// Changes an allocation in place; `change` must not alter its ID, node, job or namespace.
    /// Cheaper than a clone and [`ClusterState::upsert_alloc`] for stops and links.
    pub(crate) fn modify_alloc(&mut self, id: &str, change: impl FnOnce(&mut Allocation)) -> bool {
        let Some(&slot) = self.alloc_index.get(id) else { return false };
        let mut a = self.allocs[slot as usize].take().expect("indexed slot is occupied");
        self.account_alloc(&a, false);
        change(Arc::make_mut(&mut a));
        self.account_alloc(&a, true);
        self.allocs[slot as usize] = Some(a);
        true
    }

    fn account_alloc(&mut self, a: &Allocation, add: bool) {
        if a.is_terminal() {
            return;
        }
        if let Some(&i) = self.node_index.get(&a.node_id) {
            self.account(i, &AllocFootprint::of(a), add);
        }
    }

    fn index(&mut self, slot: AllocSlot, a: &Allocation) {
        match self.by_node.get_mut(&a.node_id) {
            Some(v) => v.push(slot),
            None => {
                self.by_node.insert(a.node_id.clone(), vec![slot]);
            }
        }
        if !self.by_job.contains_key(&a.namespace) {
            self.by_job.insert(a.namespace.clone(), BTreeMap::new());
        }
        let jobs = self.by_job.get_mut(&a.namespace).expect("just ensured");
        match jobs.get_mut(&a.job_id) {
            Some(v) => v.push(slot),
            None => {
                jobs.insert(a.job_id.clone(), vec![slot]);
            }
        }
    }

    fn unindex(&mut self, slot: AllocSlot, old: &Allocation) {
        if let Some(v) = self.by_node.get_mut(&old.node_id) {
            v.retain(|s| *s != slot);
        }
        if let Some(v) = self.by_job.get_mut(&old.namespace).and_then(|j| j.get_mut(&old.job_id)) {
            v.retain(|s| *s != slot);
        }
    }

    /// Removes an allocation (garbage collection).
    pub fn remove_alloc(&mut self, id: &str) -> Option<Allocation> {
        let slot = self.alloc_index.remove(id)?;
        let old = self.allocs[slot as usize].take()?;
        self.account_alloc(&old, false);
        self.unindex(slot, &old);
        self.free_slots.push(slot);
        Some(Arc::unwrap_or_clone(old))
    }

    /// Records a version of a job, so a later evaluation can tell in-place from destructive
    /// updates of allocations still running that version.
    pub fn insert_job_version(&mut self, job: Job) {
        self.insert_job_version_shared(Arc::new(job));
    }

    /// [`ClusterState::insert_job_version`] of a job shared with its owner.
    pub fn insert_job_version_shared(&mut self, job: Arc<Job>) {
        self.job_versions.insert((job.namespace.clone(), job.id.clone(), job.version), job);
    }

    /// A recorded job version.
    pub fn job_version(&self, namespace: &str, job_id: &str, version: u64) -> Option<&Job> {
        self.job_versions.get(&(namespace.to_string(), job_id.to_string(), version)).map(|j| &**j)
    }

    /// All nodes, in insertion order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node at `idx`.
    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx as usize]
    }

    /// The index of the node with this ID.
    pub fn node_idx(&self, id: &str) -> Option<NodeIdx> {
        self.node_index.get(id).copied()
    }

    /// The interned computed class of a node.
    pub fn node_class(&self, idx: NodeIdx) -> u32 {
        self.node_class[idx as usize]
    }

    /// The computed class string for an interned class.
    pub fn class_name(&self, class: u32) -> &str {
        &self.classes[class as usize]
    }

    /// Number of distinct computed classes.
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Capacity net of reservations.
    pub fn capacity(&self, idx: NodeIdx) -> &NodeCapacity {
        &self.capacity[idx as usize]
    }

    /// Current usage by non-terminal allocations.
    pub fn usage(&self, idx: NodeIdx) -> &NodeUsage {
        &self.usage[idx as usize]
    }

    /// The allocation in `slot`.
    pub fn alloc_at(&self, slot: AllocSlot) -> &Allocation {
        self.allocs[slot as usize].as_deref().expect("slot from an index is occupied")
    }

    /// The allocation with this ID.
    pub fn alloc(&self, id: &str) -> Option<&Allocation> {
        self.alloc_index.get(id).map(|s| self.alloc_at(*s))
    }

    /// The slot of the allocation with this ID.
    pub fn alloc_slot(&self, id: &str) -> Option<AllocSlot> {
        self.alloc_index.get(id).copied()
    }

    /// Slots of a job's allocations, terminal ones included, in insertion order.
    pub fn allocs_by_job(&self, namespace: &str, job_id: &str) -> &[AllocSlot] {
        self.by_job.get(namespace).and_then(|j| j.get(job_id)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Slots of the allocations on a node, terminal ones included.
    pub fn allocs_on_node(&self, node_id: &str) -> &[AllocSlot] {
        self.by_node.get(node_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every allocation, in slot order.
    pub fn allocs(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.iter().flatten().map(|a| &**a)
    }

    /// Number of stored allocations.
    pub fn alloc_count(&self) -> usize {
        self.alloc_index.len()
    }

    /// True when the node's allocations must be replaced elsewhere: Nomad marks them lost.
    /// Without `disconnect` support a disconnected node is treated as down.
    pub fn node_is_lost(&self, idx: NodeIdx) -> bool {
        matches!(self.nodes[idx as usize].status, NodeStatus::Down | NodeStatus::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AllocatedPort, AllocatedTaskResources, ClientStatus, DesiredStatus};

    fn alloc(id: &str, node: &str, cpu: u64, port: u16) -> Allocation {
        let mut a = Allocation {
            id: id.into(),
            node_id: node.into(),
            job_id: "j".into(),
            namespace: "default".into(),
            ..Allocation::default()
        };
        let mut t = AllocatedTaskResources::default();
        t.cpu.cpu_shares = cpu;
        a.allocated_resources.tasks.insert("t".into(), t);
        a.allocated_resources
            .shared
            .ports
            .push(AllocatedPort { value: port, ..Default::default() });
        a
    }

    #[test]
    fn usage_follows_upserts_terminal_transitions_and_late_nodes() {
        let mut s = ClusterState::new();
        s.upsert_alloc(alloc("a", "n1", 100, 20001));
        let mut n = Node { id: "n1".into(), ..Node::default() };
        n.node_resources.cpu.cpu_shares = 1000;
        let i = s.upsert_node(n);
        assert_eq!(s.usage(i).cpu_mhz, 100);
        assert_eq!(s.usage(i).dynamic_used, 1);
        s.upsert_alloc(alloc("b", "n1", 50, 80));
        assert_eq!(s.usage(i).cpu_mhz, 150);
        assert_eq!(s.usage(i).dynamic_used, 1);
        let mut stopped = alloc("a", "n1", 100, 20001);
        stopped.desired_status = DesiredStatus::Stop;
        stopped.client_status = ClientStatus::Complete;
        s.upsert_alloc(stopped);
        assert_eq!(s.usage(i).cpu_mhz, 50);
        assert!(!s.usage(i).ports.contains(20001));
        assert_eq!(s.allocs_by_job("default", "j").len(), 2);
        s.remove_alloc("b");
        assert_eq!(s.usage(i).cpu_mhz, 0);
        assert_eq!(s.allocs_on_node("n1").len(), 1);
    }
}
