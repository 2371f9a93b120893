//! Test support: a line-based cluster fixture language, job builders, and `run`, which
//! schedules, checks the plan against `verify_plan`, and renders it.

use model::{
    AllocDeploymentStatus, AllocatedPort, AllocatedTaskResources, Allocation, ClientStatus,
    DesiredStatus, DriverInfo, Evaluation, Job, JobType, NetworkResource, Node, NodeStatus, Port,
    RescheduleEvent, RescheduleTracker, Resources, SchedulingEligibility, Task, TaskGroup,
    TriggeredBy,
};
use scheduler::{schedule, verify_plan, Algorithm, ClusterState, EvalContext, Plan};
use std::time::Duration;

/// Seconds → unix nanos, to keep fixtures short.
pub const SEC: i64 = 1_000_000_000;
/// "Now" in every fixture: 10,000 s after the epoch.
pub const NOW: i64 = 10_000 * SEC;

/// Parses a cluster fixture. One item per line:
///
/// ```text
/// node n1 dc=dc1 cpu=4000 mem=8192 class=web status=down drain ineligible attr.k=v meta.k=v
///      reserved_cpu=100 reserved_ports=22,80 dyn=20000-20010 driver.pot=unhealthy pool=p disk=1000
/// alloc web.web[0] on n1 v=1 status=failed desired=stop cpu=100 mem=256 port=http:20001
///      modify=9990 resched=5@9000,10@9500 followup=e1 next=x healthy migrate id=a0 job=web
///      group=web
/// ```
///
/// Nodes default to 4000 MHz, 8192 MB, dc1, ready, `pot` healthy, `kernel.name=freebsd`;
/// allocations to running, 100 MHz, 256 MB, the fixture job's version 0.
pub fn cluster(text: &str) -> ClusterState {
    let mut state = ClusterState::new();
    let mut allocs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("node") => {
                state.upsert_node(node(words.next().expect("node id"), words));
            }
            Some("alloc") => allocs.push(line.to_string()),
            other => panic!("unknown fixture line {other:?}"),
        }
    }
    for (i, line) in allocs.iter().enumerate() {
        state.upsert_alloc(alloc(i, line));
    }
    state
}

fn node<'a>(id: &str, words: impl Iterator<Item = &'a str>) -> Node {
    let mut n = Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 4000;
    n.node_resources.memory.memory_mb = 8192;
    n.attributes.insert("kernel.name".into(), "freebsd".into());
    n.attributes.insert("unique.hostname".into(), id.into());
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        match k {
            "dc" => n.datacenter = v.into(),
            "cpu" => n.node_resources.cpu.cpu_shares = v.parse().unwrap(),
            "mem" => n.node_resources.memory.memory_mb = v.parse().unwrap(),
            "disk" => n.node_resources.disk.disk_mb = v.parse().unwrap(),
            "class" => n.node_class = v.into(),
            "pool" => n.node_pool = v.into(),
            "status" => {
                n.status = match v {
                    "down" => NodeStatus::Down,
                    "disconnected" => NodeStatus::Disconnected,
                    "initializing" => NodeStatus::Initializing,
                    _ => NodeStatus::Ready,
                }
            }
            "drain" => {
                n.drain = true;
                n.scheduling_eligibility = SchedulingEligibility::Ineligible;
            }
            "ineligible" => n.scheduling_eligibility = SchedulingEligibility::Ineligible,
            "reserved_cpu" => n.reserved_resources.cpu.cpu_shares = v.parse().unwrap(),
            "reserved_mem" => n.reserved_resources.memory.memory_mb = v.parse().unwrap(),
            "reserved_ports" => n.reserved_resources.networks.reserved_host_ports = v.into(),
            "dyn" => {
                let (a, b) = v.split_once('-').unwrap();
                n.node_resources.min_dynamic_port = a.parse().unwrap();
                n.node_resources.max_dynamic_port = b.parse().unwrap();
            }
            _ if k.starts_with("attr.") => {
                n.attributes.insert(k["attr.".len()..].into(), v.into());
            }
            _ if k.starts_with("meta.") => {
                n.meta.insert(k["meta.".len()..].into(), v.into());
            }
            _ if k.starts_with("driver.") => {
                let d = DriverInfo {
                    detected: v != "undetected",
                    healthy: v == "healthy",
                    ..Default::default()
                };
                n.drivers.insert(k["driver.".len()..].into(), d);
            }
            _ => panic!("unknown node field {k}"),
        }
    }
    n
}

fn alloc(i: usize, line: &str) -> Allocation {
    let mut words = line.split_whitespace().skip(1);
    let name = words.next().expect("alloc name");
    assert_eq!(words.next(), Some("on"));
    let node_id = words.next().expect("node");
    let (job_group, _) = name.split_once('[').expect("job.group[i]");
    let (job, group) = job_group.split_once('.').expect("job.group");
    let mut a = Allocation {
        id: format!("a{i}"),
        namespace: "default".into(),
        name: name.into(),
        node_id: node_id.into(),
        node_name: node_id.into(),
        job_id: job.into(),
        task_group: group.into(),
        client_status: ClientStatus::Running,
        create_time: SEC,
        modify_time: SEC,
        ..Allocation::default()
    };
    let (mut cpu, mut mem) = (100, 256);
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        match k {
            "id" => a.id = v.into(),
            "v" => a.job_version = v.parse().unwrap(),
            "status" => {
                a.client_status = match v {
                    "pending" => ClientStatus::Pending,
                    "failed" => ClientStatus::Failed,
                    "complete" => ClientStatus::Complete,
                    "lost" => ClientStatus::Lost,
                    _ => ClientStatus::Running,
                }
            }
            "desired" => {
                a.desired_status =
                    if v == "stop" { DesiredStatus::Stop } else { DesiredStatus::Run }
            }
            "cpu" => cpu = v.parse().unwrap(),
            "mem" => mem = v.parse().unwrap(),
            "port" => {
                let (label, value) = v.split_once(':').unwrap();
                a.allocated_resources.shared.ports.push(AllocatedPort {
                    label: label.into(),
                    value: value.parse().unwrap(),
                    ..AllocatedPort::default()
                });
            }
            "modify" => a.modify_time = v.parse::<i64>().unwrap() * SEC,
            "resched" => {
                let events = v
                    .split(',')
                    .map(|e| {
                        let (d, t) = e.split_once('@').unwrap();
                        RescheduleEvent {
                            reschedule_time: t.parse::<i64>().unwrap() * SEC,
                            delay: Duration::from_secs(d.parse().unwrap()),
                            prev_alloc_id: "older".into(),
                            prev_node_id: "gone".into(),
                        }
                    })
                    .collect();
                a.reschedule_tracker = Some(RescheduleTracker { events });
            }
            "migrate" => a.desired_transition.migrate = Some(true),
            "followup" => a.followup_eval_id = v.into(),
            "next" => a.next_allocation = v.into(),
            "healthy" => {
                a.deployment_status =
                    Some(AllocDeploymentStatus { healthy: Some(true), ..Default::default() })
            }
            _ => panic!("unknown alloc field {k}"),
        }
    }
    let mut t = AllocatedTaskResources::default();
    t.cpu.cpu_shares = cpu;
    t.memory.memory_mb = mem;
    a.allocated_resources.tasks.insert("app".into(), t);
    a
}

/// A canonical service job `id` with one group `id` of `count` tasks of 100 MHz / 256 MB on `pot`.
pub fn service(id: &str, count: u32) -> Job {
    let mut job = Job {
        id: id.into(),
        job_type: JobType::Service,
        task_groups: vec![TaskGroup {
            name: id.into(),
            count,
            tasks: vec![Task {
                name: "app".into(),
                driver: "pot".into(),
                resources: Some(Resources { cpu: 100, memory_mb: 256, ..Resources::default() }),
                ..Task::default()
            }],
            ..TaskGroup::default()
        }],
        ..Job::default()
    };
    job.canonicalize();
    job
}

/// Like [`service`], as a batch job.
pub fn batch(id: &str, count: u32) -> Job {
    let mut j = service(id, count);
    j.job_type = JobType::Batch;
    j.task_groups[0].reschedule_policy = None;
    j.task_groups[0].update = None;
    j.task_groups[0].migrate = None;
    j.update = None;
    j.canonicalize();
    j
}

/// Like [`service`], as a system job.
pub fn system(id: &str) -> Job {
    let mut j = service(id, 1);
    j.job_type = JobType::System;
    j.task_groups[0].reschedule_policy = None;
    j.task_groups[0].migrate = None;
    j
}

/// Adds a dynamic port (or a static one when `value` is non-zero) to the first group.
pub fn with_port(mut job: Job, label: &str, value: u16) -> Job {
    let port = Port { label: label.into(), value, ..Port::default() };
    let tg = &mut job.task_groups[0];
    if tg.networks.is_empty() {
        tg.networks.push(NetworkResource { mode: "host".into(), ..NetworkResource::default() });
    }
    if value == 0 {
        tg.networks[0].dynamic_ports.push(port);
    } else {
        tg.networks[0].reserved_ports.push(port);
    }
    job
}

/// A constraint.
pub fn constraint(l: &str, op: &str, r: &str) -> model::Constraint {
    model::Constraint { ltarget: l.into(), operand: op.into(), rtarget: r.into() }
}

/// The default evaluation context: job-register, `NOW`, seed 42, binpack.
pub fn ctx(job_id: &str) -> EvalContext {
    EvalContext {
        eval: Evaluation {
            id: "eval-1".into(),
            namespace: "default".into(),
            job_id: job_id.into(),
            triggered_by: TriggeredBy::JobRegister,
            ..Evaluation::default()
        },
        now_unix_nanos: NOW,
        seed: 42,
        algorithm: Algorithm::Binpack,
    }
}

/// Schedules, asserts the plan passes `verify_plan` on the same snapshot, and renders it.
pub fn run_with(state: &ClusterState, job: Option<&Job>, ctx: &EvalContext) -> (Plan, String) {
    let plan = schedule(state, job, ctx);
    let verdict = verify_plan(state, &plan);
    assert!(
        verdict.is_complete(),
        "plan rejected on its own snapshot: {:?}",
        verdict.rejected_nodes
    );
    let text = plan.render(state);
    (plan, text)
}

/// [`run_with`] under the default context.
pub fn run(state: &ClusterState, job: &Job) -> String {
    run_with(state, Some(job), &ctx(&job.id)).1
}
