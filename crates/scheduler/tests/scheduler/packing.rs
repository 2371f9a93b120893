//! Packing quality: a homogeneous workload on homogeneous nodes uses at most 10 % more nodes than
//! the lower bound ceil(total demand / node capacity), in the binding dimension.

use super::support::*;
use scheduler::{schedule, verify_plan, Algorithm};

fn nodes_used(nodes: usize, jobs: usize, count: u32, cpu: u32, mem: u32, seed: u64) -> (u64, u64) {
    let mut text = String::new();
    for i in 0..nodes {
        text.push_str(&format!("node n{i:03} cpu=4000 mem=8192 dc=dc{}\n", i % 2 + 1));
    }
    let mut state = cluster(&text);
    for j in 0..jobs {
        let mut job = with_port(service(&format!("job{j}"), count), "http", 0);
        let r = job.task_groups[0].tasks[0].resources.as_mut().unwrap();
        (r.cpu, r.memory_mb) = (cpu, mem);
        let mut c = ctx(&job.id);
        c.seed = seed + j as u64;
        c.algorithm = Algorithm::Binpack;
        let plan = schedule(&state, Some(&job), &c);
        assert!(plan.failed_tg_allocs.is_empty(), "{:?}", plan.failed_tg_allocs);
        let verdict = verify_plan(&state, &plan);
        state.apply_plan(plan, &verdict, NOW);
    }
    let used = (0..nodes as u32).filter(|i| state.usage(*i).allocs > 0).count() as u64;
    let total = jobs as u64 * u64::from(count);
    let per_node = (4000 / u64::from(cpu)).min(8192 / u64::from(mem));
    (used, total.div_ceil(per_node))
}

#[test]
fn homogeneous_workload_packs_within_ten_percent_of_the_bound() {
    // 37.5 % of a 200-node cluster, cpu-bound, in 30 jobs: the lower bound is 75 nodes.
    for seed in [1, 2, 3] {
        let (used, bound) = nodes_used(200, 30, 50, 200, 256, seed);
        assert_eq!(bound, 75);
        assert!(
            used as f64 <= 1.10 * bound as f64,
            "seed {seed}: {used} nodes used, bound {bound}"
        );
    }
    // Memory-bound, lightly loaded (25 %), one big job.
    let (used, bound) = nodes_used(200, 1, 800, 100, 1024, 9);
    assert_eq!(bound, 100);
    assert!(used as f64 <= 1.10 * bound as f64, "{used} nodes used, bound {bound}");
}
