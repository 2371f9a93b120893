//! C1M-shaped benchmark of the pure scheduler: 1,000 service jobs × 1,000 allocations onto 5,000
//! mixed-size nodes, simulating the server's loop (evaluate → verify plan → apply plan → next
//! job). It measures; it asserts nothing beyond the plans being accepted.
//!
//! Run: `cargo bench -p scheduler --bench c1m`. `C1M_SCALE=2m` runs 10,000 nodes × 2,000,000
//! allocations; `C1M_FLEET=uniform` uses one node size (8,000 MHz / 16 GiB) so the node-count
//! packing ratio is meaningful; `C1M_NODES`, `C1M_JOBS`, `C1M_COUNT` override the shape.

use model::{
    DriverInfo, EvalStatus, Evaluation, Job, JobType, NetworkResource, Node, NodeStatus, Port,
    Resources, Task, TaskGroup, TriggeredBy,
};
use scheduler::{schedule, verify_plan, Algorithm, ClusterState, EvalContext};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Three node sizes in equal shares, like a fleet bought over several years.
const SIZES: [(u64, u64); 3] = [(4_000, 8_192), (8_000, 16_384), (16_000, 32_768)];

fn node(i: usize, uniform: bool) -> Node {
    let (cpu, mem) = if uniform { SIZES[1] } else { SIZES[i % SIZES.len()] };
    let mut n = Node {
        id: format!("node-{i:05}"),
        name: format!("host{i}"),
        datacenter: format!("dc{}", i % 3 + 1),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = cpu;
    n.node_resources.memory.memory_mb = mem;
    n.node_resources.disk.disk_mb = 100_000;
    n.node_resources.min_dynamic_port = 20_000;
    n.node_resources.max_dynamic_port = 32_000;
    n.reserved_resources.networks.reserved_host_ports = "22".into();
    n.attributes.insert("kernel.name".into(), "freebsd".into());
    n.attributes.insert("unique.hostname".into(), n.name.clone());
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n
}

fn job(j: usize, count: u32) -> Job {
    let mut job = Job {
        id: format!("job-{j:04}"),
        job_type: JobType::Service,
        datacenters: vec!["dc*".into()],
        constraints: vec![model::Constraint {
            ltarget: "${attr.kernel.name}".into(),
            rtarget: "freebsd".into(),
            operand: "=".into(),
        }],
        task_groups: vec![TaskGroup {
            name: "web".into(),
            count,
            networks: vec![NetworkResource {
                dynamic_ports: vec![Port { label: "http".into(), ..Port::default() }],
                ..NetworkResource::default()
            }],
            tasks: vec![Task {
                name: "app".into(),
                driver: "pot".into(),
                resources: Some(Resources { cpu: 20, memory_mb: 32, ..Resources::default() }),
                ..Task::default()
            }],
            ..TaskGroup::default()
        }],
        ..Job::default()
    };
    job.canonicalize();
    // The default 300 MB ephemeral disk would make disk, not cpu, the binding dimension.
    job.task_groups[0].ephemeral_disk.as_mut().expect("canonical").size_mb = 10;
    job
}

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this thread in nanoseconds (`/proc/thread-self/schedstat`). The reference machine
/// is shared, so wall time includes other processes; CPU time is what "per core" means.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let big = std::env::var("C1M_SCALE").is_ok_and(|v| v == "2m");
    let nodes = env_usize("C1M_NODES", if big { 10_000 } else { 5_000 });
    let jobs = env_usize("C1M_JOBS", if big { 2_000 } else { 1_000 });
    let count = env_usize("C1M_COUNT", 1_000) as u32;
    let uniform = std::env::var("C1M_FLEET").is_ok_and(|v| v == "uniform");
    let sizes = if uniform { vec![SIZES[1]] } else { SIZES.to_vec() };
    println!(
        "c1m: {jobs} service jobs x {count} allocs onto {nodes} nodes (sizes {sizes:?} MHz/MB)"
    );

    let mut state = ClusterState::new();
    for i in 0..nodes {
        state.upsert_node(node(i, uniform));
    }
    let mut sched_times = Vec::with_capacity(jobs);
    let mut sched_cpu_times = Vec::with_capacity(jobs);
    let mut total_cpu_ns = 0u64;
    let mut sched_cpu_ns = 0u64;
    let mut total_sched = Duration::ZERO;
    let mut total_verify_apply = Duration::ZERO;
    let mut placed = 0u64;
    let mut failed = 0u64;
    let mut now = 1_700_000_000_000_000_000i64;
    let checkpoint = (jobs / 10).max(1);
    let mut window = Duration::ZERO;
    let mut window_placed = 0u64;
    for j in 0..jobs {
        let job = job(j, count);
        let ctx = EvalContext {
            eval: Evaluation {
                id: format!("eval-{j}"),
                job_id: job.id.clone(),
                triggered_by: TriggeredBy::JobRegister,
                status: EvalStatus::Pending,
                ..Evaluation::default()
            },
            now_unix_nanos: now,
            seed: j as u64 ^ 0x5eed,
            algorithm: Algorithm::Binpack,
        };
        let c0 = cpu_ns();
        let t0 = Instant::now();
        let plan = schedule(&state, Some(&job), &ctx);
        let t1 = Instant::now();
        let c1 = cpu_ns();
        let verdict = verify_plan(&state, &plan);
        assert!(verdict.is_complete(), "plan rejected: {:?}", verdict.rejected_nodes);
        let (n_placed, n_failed) =
            (plan.placements(), plan.queued_allocations.values().sum::<u64>());
        state.apply_plan(plan, &verdict, now);
        let t2 = Instant::now();
        let c2 = cpu_ns();
        if let (Some(c0), Some(c1), Some(c2)) = (c0, c1, c2) {
            sched_cpu_ns += c1 - c0;
            total_cpu_ns += c2 - c0;
            sched_cpu_times.push(Duration::from_nanos(c1 - c0));
        }
        sched_times.push(t1 - t0);
        total_sched += t1 - t0;
        total_verify_apply += t2 - t1;
        window += t2 - t0;
        placed += n_placed;
        window_placed += n_placed;
        failed += n_failed;
        now += 1_000_000;
        if (j + 1) % checkpoint == 0 {
            println!(
                "  after {:>5} jobs ({:>8} allocs in state): {:>8.0} placements/s end-to-end (wall), {:.2} ms/eval",
                j + 1,
                state.alloc_count(),
                window_placed as f64 / window.as_secs_f64(),
                window.as_secs_f64() * 1e3 / checkpoint as f64
            );
            window = Duration::ZERO;
            window_placed = 0;
        }
    }
    sched_times.sort();
    sched_cpu_times.sort();
    let total = total_sched + total_verify_apply;
    let pps_sched = placed as f64 / total_sched.as_secs_f64();
    let pps_wall = placed as f64 / total.as_secs_f64();
    // Per core: placements over the CPU time of schedule + verify + apply. Falls back to wall
    // time where schedstat is unavailable.
    let (pps, pps_sched_cpu) = if total_cpu_ns > 0 {
        (placed as f64 / (total_cpu_ns as f64 / 1e9), placed as f64 / (sched_cpu_ns as f64 / 1e9))
    } else {
        (pps_wall, pps_sched)
    };

    // Packing: capacity of the nodes used versus the demand, in the binding dimension (cpu:
    // 20 MHz against 32 MB per alloc on 2 MB-per-MHz nodes), and the node count versus the
    // fewest nodes that could hold the demand (largest first).
    let demand_cpu = placed * 20;
    let mut used_nodes = 0u64;
    let mut used_cap = 0u64;
    let mut caps: Vec<u64> = Vec::new();
    for (i, _) in state.nodes().iter().enumerate() {
        let cap = state.capacity(i as u32).cpu_mhz;
        caps.push(cap);
        if state.usage(i as u32).allocs > 0 {
            used_nodes += 1;
            used_cap += cap;
        }
    }
    caps.sort_unstable_by(|a, b| b.cmp(a));
    let mut acc = 0;
    let lower_nodes = caps.iter().take_while(|c| {
        let need = acc < demand_cpu;
        acc += **c;
        need
    });
    let lower_nodes = lower_nodes.count() as u64;
    let packing_ratio = used_cap as f64 / demand_cpu.max(1) as f64;
    let hwm = vm_hwm_kb().map_or("n/a".to_string(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0));

    println!("placed {placed}, failed {failed}, allocs in state {}", state.alloc_count());
    println!(
        "wall time: scheduler only {pps_sched:.0} placements/s ({:.2} s); with verify+apply {pps_wall:.0} placements/s ({:.2} s)",
        total_sched.as_secs_f64(),
        total.as_secs_f64()
    );
    println!(
        "cpu time (one core): scheduler only {pps_sched_cpu:.0} placements/s ({:.2} s); with verify+apply {pps:.0} placements/s ({:.2} s)",
        sched_cpu_ns as f64 / 1e9,
        total_cpu_ns as f64 / 1e9
    );
    println!(
        "per-eval schedule latency, wall: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&sched_times, 0.5),
        pct(&sched_times, 0.99),
        pct(&sched_times, 1.0)
    );
    if !sched_cpu_times.is_empty() {
        // schedstat advances at scheduler ticks, so single-eval CPU times are only approximate.
        println!(
            "per-eval schedule latency, cpu (tick-granular):  p50 {:.2} ms, p99 {:.2} ms",
            pct(&sched_cpu_times, 0.5),
            pct(&sched_cpu_times, 0.99),
        );
    }
    println!(
        "nodes used {used_nodes} of {nodes}; fewest that could hold the cpu demand {lower_nodes} (node ratio {:.3}); capacity used / demand {packing_ratio:.3}",
        used_nodes as f64 / lower_nodes.max(1) as f64
    );
    println!("peak memory (VmHWM): {hwm}");
    println!(
        "placements_per_sec={pps:.0} packing_ratio={packing_ratio:.3} p99_eval_ms={:.2}",
        pct(&sched_times, 0.99)
    );
    // A million allocations take a while to free; the process is about to exit anyway.
    std::mem::forget(state);
}
