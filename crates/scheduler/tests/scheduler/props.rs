//! Property tests over random clusters, random existing allocations (made by the scheduler itself,
//! then disturbed: failures, completions, nodes going down or draining) and random jobs: plans
//! never over-commit a node or double-book a port, every placement is feasible, the same input
//! gives the same plan, and the count is met whenever an exhaustive oracle says it fits.

use super::support::*;
use model::{ClientStatus, Job, JobType, NodeStatus};
use proptest::prelude::*;
use scheduler::{schedule, verify_plan, ClusterState, Plan};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
struct NodeSpec {
    cpu: u64,
    mem: u64,
    dc: u8,
    rack: Option<u8>,
    reserved: bool,
    later: u8,
}

#[derive(Debug, Clone)]
struct JobSpec {
    batch: bool,
    system: bool,
    count: u32,
    cpu: u32,
    mem: u32,
    static_port: bool,
    dynamic_ports: u8,
    dc1_only: bool,
    rack_r1: bool,
    distinct_hosts: bool,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        prop::sample::select(vec![300u64, 1000, 2000, 4000]),
        prop::sample::select(vec![512u64, 1024, 4096]),
        0u8..2,
        prop::option::of(0u8..2),
        any::<bool>(),
        0u8..10,
    )
        .prop_map(|(cpu, mem, dc, rack, reserved, later)| NodeSpec {
            cpu,
            mem,
            dc,
            rack,
            reserved,
            later,
        })
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        (any::<bool>(), prop::bool::weighted(0.15)),
        0u32..12,
        prop::sample::select(vec![50u32, 100, 250, 900]),
        prop::sample::select(vec![64u32, 256, 700]),
        prop::bool::weighted(0.2),
        0u8..3,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(
                (batch, system),
                count,
                cpu,
                mem,
                static_port,
                dynamic_ports,
                dc1_only,
                rack_r1,
                distinct_hosts,
            )| {
                JobSpec {
                    batch,
                    system,
                    count,
                    cpu,
                    mem,
                    static_port,
                    dynamic_ports,
                    dc1_only,
                    rack_r1,
                    distinct_hosts,
                }
            },
        )
}

fn build_job(id: &str, s: &JobSpec) -> Job {
    let mut job = match (s.system, s.batch) {
        (true, _) => system(id),
        (false, true) => batch(id, s.count),
        (false, false) => service(id, s.count),
    };
    let r = job.task_groups[0].tasks[0].resources.as_mut().unwrap();
    (r.cpu, r.memory_mb) = (s.cpu, s.mem);
    job.task_groups[0].ephemeral_disk = None;
    if s.static_port {
        job = with_port(job, "admin", 8080);
    }
    for i in 0..s.dynamic_ports {
        job = with_port(job, &format!("p{i}"), 0);
    }
    if s.dc1_only {
        job.datacenters = vec!["dc1".into()];
    }
    if s.rack_r1 {
        job.task_groups[0].constraints.push(constraint("${meta.rack}", "=", "r1"));
    }
    if s.distinct_hosts {
        job.constraints.push(constraint("", "distinct_hosts", ""));
    }
    job
}

fn fixture(nodes: &[NodeSpec]) -> String {
    let mut text = String::new();
    for (i, n) in nodes.iter().enumerate() {
        text.push_str(&format!(
            "node n{i} cpu={} mem={} dc=dc{} dyn=20000-20005",
            n.cpu,
            n.mem,
            n.dc + 1
        ));
        if let Some(r) = n.rack {
            text.push_str(&format!(" meta.rack=r{}", r + 1));
        }
        if n.reserved {
            text.push_str(" reserved_ports=8080,20001");
        }
        text.push('\n');
    }
    text
}

fn apply(state: &mut ClusterState, plan: &Plan) {
    let verdict = verify_plan(state, plan);
    assert!(verdict.is_complete(), "rejected on own snapshot: {:?}", verdict.rejected_nodes);
    state.apply_plan(plan.clone(), &verdict, NOW);
}

/// Builds a cluster with other jobs' work and the target job's version 0 on it, then disturbs it.
fn world(
    nodes: &[NodeSpec],
    others: &[JobSpec],
    prior: Option<&JobSpec>,
    seed: u64,
) -> ClusterState {
    let mut state = cluster(&fixture(nodes));
    for (i, o) in others.iter().enumerate() {
        let j = build_job(&format!("other{i}"), o);
        let mut c = ctx(&j.id);
        c.seed = seed.wrapping_add(i as u64);
        let plan = schedule(&state, Some(&j), &c);
        apply(&mut state, &plan);
    }
    if let Some(p) = prior {
        let j = build_job("target", p);
        state.insert_job_version(j.clone());
        let plan = schedule(&state, Some(&j), &ctx("target"));
        apply(&mut state, &plan);
    }
    // Disturb: some target allocations fail or complete; some nodes go down, drain or leave.
    let target: Vec<model::Allocation> =
        state.allocs().filter(|a| a.job_id == "target").cloned().collect();
    for (k, mut a) in target.into_iter().enumerate() {
        match (seed as usize + k) % 5 {
            0 => {
                a.client_status = ClientStatus::Failed;
                a.modify_time = NOW - 3600 * SEC;
            }
            1 => a.client_status = ClientStatus::Complete,
            _ => continue,
        }
        state.upsert_alloc(a);
    }
    for (i, n) in nodes.iter().enumerate() {
        let mut node = state.node(i as u32).clone();
        match n.later {
            0 => node.status = NodeStatus::Down,
            1 => node.drain = true,
            2 => node.scheduling_eligibility = model::SchedulingEligibility::Ineligible,
            _ => continue,
        }
        state.upsert_node(node);
    }
    state
}

/// Usage recomputed from scratch, independent of the state's incremental accounting.
fn check_no_overcommit(state: &ClusterState) -> Result<(), TestCaseError> {
    let mut cpu: BTreeMap<&str, u64> = BTreeMap::new();
    let mut mem: BTreeMap<&str, u64> = BTreeMap::new();
    let mut ports: BTreeSet<(&str, u16)> = BTreeSet::new();
    for a in state.allocs().filter(|a| !a.is_terminal()) {
        let r = &a.allocated_resources;
        *cpu.entry(&a.node_id).or_default() +=
            r.tasks.values().map(|t| t.cpu.cpu_shares).sum::<u64>();
        *mem.entry(&a.node_id).or_default() +=
            r.tasks.values().map(|t| t.memory.memory_mb).sum::<u64>();
        for p in &r.shared.ports {
            prop_assert!(
                ports.insert((&a.node_id, p.value)),
                "port {} double-booked on {}",
                p.value,
                a.node_id
            );
        }
    }
    for (i, n) in state.nodes().iter().enumerate() {
        let cap = state.capacity(i as u32);
        prop_assert!(
            cpu.get(n.id.as_str()).copied().unwrap_or(0) <= cap.cpu_mhz,
            "cpu over on {}",
            n.id
        );
        prop_assert!(
            mem.get(n.id.as_str()).copied().unwrap_or(0) <= cap.memory_mb,
            "mem over on {}",
            n.id
        );
        for (node, p) in &ports {
            if *node == n.id {
                prop_assert!(!cap.reserved_ports.contains(*p), "reserved port {p} used on {node}");
            }
        }
    }
    Ok(())
}

fn feasible(state: &ClusterState, i: u32, s: &JobSpec) -> bool {
    let n = state.node(i);
    n.is_schedulable()
        && (!s.dc1_only || n.datacenter == "dc1")
        && (!s.rack_r1 || n.meta.get("rack").is_some_and(|r| r == "r1"))
}

/// How many more allocations of `s` node `i` can take, counted from the allocations themselves.
fn room(state: &ClusterState, i: u32, s: &JobSpec) -> u64 {
    if !feasible(state, i, s) {
        return 0;
    }
    let n = state.node(i);
    let cap = state.capacity(i);
    let live: Vec<&model::Allocation> =
        state.allocs().filter(|a| a.node_id == n.id && !a.is_terminal()).collect();
    let cpu: u64 = live
        .iter()
        .flat_map(|a| a.allocated_resources.tasks.values())
        .map(|t| t.cpu.cpu_shares)
        .sum();
    let mem: u64 = live
        .iter()
        .flat_map(|a| a.allocated_resources.tasks.values())
        .map(|t| t.memory.memory_mb)
        .sum();
    let used: BTreeSet<u16> = live
        .iter()
        .flat_map(|a| a.allocated_resources.shared.ports.iter().map(|p| p.value))
        .collect();
    let mut k = ((cap.cpu_mhz - cpu.min(cap.cpu_mhz)) / u64::from(s.cpu))
        .min((cap.memory_mb - mem.min(cap.memory_mb)) / u64::from(s.mem));
    if s.static_port && (used.contains(&8080) || cap.reserved_ports.contains(8080)) {
        k = 0;
    }
    if s.static_port {
        k = k.min(1);
    }
    if s.dynamic_ports > 0 {
        let free = (20000..=20005u16)
            .filter(|p| !used.contains(p) && !cap.reserved_ports.contains(*p))
            .count() as u64;
        k = k.min(free / u64::from(s.dynamic_ports));
    }
    if s.distinct_hosts {
        k = k.min(1);
    }
    k
}

proptest! {

    #[test]
    fn plans_are_safe_feasible_and_deterministic(
        nodes in prop::collection::vec(node_spec(), 1..7),
        others in prop::collection::vec(job_spec(), 0..3),
        prior in prop::option::of(job_spec()),
        target in job_spec(),
        seed in any::<u64>(),
        bump in any::<bool>(),
    ) {
        let mut state = world(&nodes, &others, prior.as_ref(), seed);
        let mut job = build_job("target", &target);
        if bump {
            job.version = 1;
        }
        let mut c = ctx("target");
        c.seed = seed;
        let plan = schedule(&state, Some(&job), &c);
        prop_assert_eq!(&plan, &schedule(&state, Some(&job), &c));
        let before = state.clone();
        apply(&mut state, &plan);
        check_no_overcommit(&state)?;
        for (node_id, allocs) in &plan.node_allocation {
            for a in allocs.iter().filter(|a| before.alloc(&a.id).is_none()) {
                let i = before.node_idx(node_id).unwrap();
                prop_assert!(feasible(&before, i, &target), "infeasible placement on {}", node_id);
                prop_assert_eq!(a.job_version, job.version);
            }
        }
        if target.distinct_hosts {
            // Allocations placed earlier without the constraint may share a node; a new placement
            // never joins another live allocation of the job.
            for (node_id, allocs) in &plan.node_allocation {
                if allocs.iter().any(|a| before.alloc(&a.id).is_none()) {
                    let live = state.allocs().filter(|a| a.job_id == "target" && !a.is_terminal() && &a.node_id == node_id).count();
                    prop_assert_eq!(live, 1, "distinct_hosts violated on {}", node_id);
                }
            }
        }
        // Live allocations never exceed the count; for system jobs, one per node.
        let live: Vec<&model::Allocation> =
            state.allocs().filter(|a| a.job_id == "target" && !a.is_terminal()).collect();
        if target.system {
            let nodes: BTreeSet<&str> = live.iter().map(|a| a.node_id.as_str()).collect();
            prop_assert_eq!(nodes.len(), live.len(), "two system allocations on one node");
        } else {
            prop_assert!(live.len() <= target.count as usize, "{} live > count {}", live.len(), target.count);
        }
    }

    #[test]
    fn count_is_met_whenever_the_oracle_says_it_fits(
        nodes in prop::collection::vec(node_spec(), 1..7),
        others in prop::collection::vec(job_spec(), 0..3),
        target in job_spec(),
        seed in any::<u64>(),
    ) {
        let state = world(&nodes, &others, None, seed);
        let capacity: u64 = (0..state.nodes().len() as u32).map(|i| room(&state, i, &target)).sum();
        let mut target = target;
        target.system = false;
        let job = build_job("target", &target);
        let mut c = ctx("target");
        c.seed = seed;
        let plan = schedule(&state, Some(&job), &c);
        let expected = u64::from(target.count).min(capacity);
        prop_assert_eq!(plan.placements(), expected, "oracle room {}", capacity);
        if expected < u64::from(target.count) {
            let m = &plan.failed_tg_allocs["target"];
            prop_assert_eq!(m.nodes_evaluated, m.nodes_filtered + m.nodes_exhausted);
        }
        prop_assert_eq!(JobType::Batch == job.job_type, target.batch);
        // For a system job the oracle is per node: every node with room gets exactly one.
        let mut sys = target.clone();
        sys.system = true;
        let sys_job = build_job("target", &sys);
        let sys_plan = schedule(&state, Some(&sys_job), &c);
        let with_room = (0..state.nodes().len() as u32).filter(|i| room(&state, *i, &target) > 0).count();
        prop_assert_eq!(sys_plan.placements(), with_room as u64);
    }
}

proptest! {
    /// Two workers schedule different jobs from the same snapshot; the plan applier commits the
    /// first, then re-checks the second against the newer state and commits only what passes.
    /// Whatever the interleaving, nothing ends over-committed or double-booked.
    #[test]
    fn concurrent_plans_are_made_safe_by_verification(
        nodes in prop::collection::vec(node_spec(), 1..6),
        others in prop::collection::vec(job_spec(), 0..2),
        a in job_spec(),
        b in job_spec(),
        seed in any::<u64>(),
    ) {
        let mut state = world(&nodes, &others, None, seed);
        let (ja, jb) = (build_job("a", &a), build_job("b", &b));
        let mut c = ctx("a");
        c.seed = seed;
        let plan_a = schedule(&state, Some(&ja), &c);
        c.eval.id = "eval-2".into();
        c.eval.job_id = "b".into();
        let plan_b = schedule(&state, Some(&jb), &c);
        apply(&mut state, &plan_a);
        let verdict = verify_plan(&state, &plan_b);
        let rejected = verdict.rejected_nodes.len();
        state.apply_plan(plan_b.clone(), &verdict, NOW);
        check_no_overcommit(&state)?;
        // A rejection only happens where the second plan places something.
        prop_assert!(rejected <= plan_b.node_allocation.len());
    }
}
