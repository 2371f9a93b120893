//! What the simulated operators submit: job registrations (service and batch), scale changes,
//! stops and node drains (set with a deadline, sometimes forced, sometimes disabled again), each
//! a `Command` with what the HTTP API would write with it (evaluations, node event, drain
//! metadata), drawn from the run's seeded RNG. It does not decide where or when commands are sent.

use crate::agent::DRIVER;
use model::{
    DrainMetadata, DrainStrategy, EvalStatus, Evaluation, Job, JobType, NetworkResource, NodeEvent,
    Port, ReschedulePolicy, Resources, Task, TaskGroup, TriggeredBy,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use server::state::Command;
use std::collections::BTreeMap;
use std::time::Duration;

/// The jobs submitted so far: ID → (type, count, stopped), and what the operators did to the
/// nodes.
#[derive(Debug, Default)]
pub struct Workload {
    jobs: BTreeMap<String, (JobType, u32, bool)>,
    max_jobs: usize,
    /// The client nodes' IDs, in a fixed order.
    nodes: Vec<String>,
    /// Nodes an operator asked to drain and did not re-enable since: node ID → when the drain
    /// started (unix nanoseconds).
    drained: BTreeMap<String, i64>,
}

/// A seeded ID shaped like a UUID.
pub fn uuid(rng: &mut ChaCha8Rng) -> String {
    let (a, b): (u64, u64) = (rng.random(), rng.random());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

impl Workload {
    /// A workload over `nodes` (their IDs); with no nodes it never drains.
    pub fn new(max_jobs: usize, nodes: Vec<String>) -> Self {
        Workload { jobs: BTreeMap::new(), max_jobs, nodes, drained: BTreeMap::new() }
    }

    /// The next operator action, at `now` (unix nanoseconds of simulated time, for drain
    /// deadlines and timestamps). About one in six is a node drain, once a job exists.
    pub fn next(&mut self, rng: &mut ChaCha8Rng, now: i64) -> Command {
        if !self.nodes.is_empty() && !self.jobs.is_empty() && rng.random_ratio(1, 6) {
            return self.drain(rng, now);
        }
        let live: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, (t, _, stopped))| *t == JobType::Service && !stopped)
            .map(|(id, _)| id.clone())
            .collect();
        let roll = rng.random_range(0..100);
        // With every job stopped or batch, only a new job is left to submit, past the cap.
        if live.is_empty() || (self.jobs.len() < self.max_jobs && roll < 60) {
            let id = format!("job-{}", self.jobs.len());
            let job_type = if roll % 5 == 0 { JobType::Batch } else { JobType::Service };
            let count = rng.random_range(1..=4);
            self.jobs.insert(id.clone(), (job_type, count, false));
            return register(rng, &id, job_type, count);
        }
        let id = live[rng.random_range(0..live.len())].clone();
        if roll < 92 {
            let count = rng.random_range(0..=5);
            self.jobs.insert(id.clone(), (JobType::Service, count, false));
            register(rng, &id, JobType::Service, count)
        } else {
            self.jobs.insert(id.clone(), (JobType::Service, 0, true));
            Command::JobDeregister {
                namespace: "default".into(),
                job_id: id.clone(),
                eval: Some(Box::new(eval(rng, &id, JobType::Service, TriggeredBy::JobDeregister))),
            }
        }
    }
}

impl Workload {
    /// A drain action as `nomad node drain` sends it: enable on a random node with a deadline
    /// of 1 to 20 s (one in four forced, deadline -1: everything leaves at once), or disable a
    /// drain started earlier with `-disable` (mark eligible again, with evaluations for the
    /// jobs). At most half of the nodes are drained at once, so work always has somewhere to go.
    fn drain(&mut self, rng: &mut ChaCha8Rng, now: i64) -> Command {
        let stamp = model::time::format(now);
        let at_cap = self.drained.len() * 2 >= self.nodes.len();
        if !self.drained.is_empty() && (at_cap || rng.random_ratio(1, 3)) {
            let ids: Vec<&String> = self.drained.keys().collect();
            let node_id = ids[rng.random_range(0..ids.len())].clone();
            let started = self.drained.remove(&node_id).unwrap_or(now);
            // The API evaluates the jobs with work on the node; the operators do not read the
            // state, so every live service job is evaluated (a superset; an evaluation that
            // finds nothing to do completes).
            let live: Vec<String> = self
                .jobs
                .iter()
                .filter(|(_, (t, _, stopped))| *t == JobType::Service && !stopped)
                .map(|(id, _)| id.clone())
                .collect();
            let evals = live
                .iter()
                .map(|id| Evaluation {
                    node_id: node_id.clone(),
                    create_time: now,
                    modify_time: now,
                    ..eval(rng, id, JobType::Service, TriggeredBy::NodeUpdate)
                })
                .collect();
            return Command::NodeDrain {
                node_id,
                drain: None,
                mark_eligible: true,
                evals,
                event: Some(Box::new(event("Node drain disabled", &stamp))),
                // The API keeps the last drain's start; a drain that already completed is
                // marked canceled as Nomad's `-disable` does.
                last_drain: Some(Box::new(DrainMetadata {
                    started_at: model::time::format(started),
                    updated_at: stamp,
                    status: "canceled".into(),
                    ..DrainMetadata::default()
                })),
            };
        }
        let free: Vec<String> =
            self.nodes.iter().filter(|n| !self.drained.contains_key(*n)).cloned().collect();
        let node_id = free[rng.random_range(0..free.len())].clone();
        let force = rng.random_ratio(1, 4);
        let deadline = if force { 0 } else { rng.random_range(1_000..20_000) * 1_000_000 };
        self.drained.insert(node_id.clone(), now);
        Command::NodeDrain {
            node_id,
            drain: Some(DrainStrategy {
                deadline: Duration::from_nanos(deadline as u64),
                ignore_system_jobs: false,
                force_deadline: now + deadline,
                started_at: now,
            }),
            mark_eligible: false,
            evals: Vec::new(),
            event: Some(Box::new(event("Node drain strategy set", &stamp))),
            last_drain: Some(Box::new(DrainMetadata {
                started_at: stamp.clone(),
                updated_at: stamp,
                status: "draining".into(),
                ..DrainMetadata::default()
            })),
        }
    }
}

fn event(message: &str, stamp: &str) -> NodeEvent {
    NodeEvent {
        message: message.into(),
        subsystem: "Drain".into(),
        timestamp: stamp.into(),
        ..NodeEvent::default()
    }
}

/// A job of one group with one task: 100 MHz, 64 MB and one dynamic port per allocation.
/// Failed allocations are rescheduled without limit after 1 s, so that the liveness phase can
/// demand every job's full count.
pub fn job(id: &str, job_type: JobType, count: u32) -> Job {
    let mut job = Job {
        id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        job_type,
        datacenters: vec!["dc1".into()],
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            networks: vec![NetworkResource {
                dynamic_ports: vec![Port { label: "http".into(), ..Port::default() }],
                ..NetworkResource::default()
            }],
            reschedule_policy: Some(ReschedulePolicy {
                attempts: 0,
                interval: Duration::ZERO,
                delay: Duration::from_secs(1),
                delay_function: "constant".into(),
                max_delay: Duration::from_secs(1),
                unlimited: true,
            }),
            tasks: vec![Task {
                name: "t".into(),
                driver: DRIVER.into(),
                resources: Some(Resources { cpu: 100, memory_mb: 64, ..Resources::default() }),
                ..Task::default()
            }],
            ..TaskGroup::default()
        }],
        ..Job::default()
    };
    job.canonicalize();
    job
}

fn register(rng: &mut ChaCha8Rng, id: &str, job_type: JobType, count: u32) -> Command {
    Command::JobRegister {
        job: Box::new(job(id, job_type, count)),
        eval: Some(Box::new(eval(rng, id, job_type, TriggeredBy::JobRegister))),
    }
}

fn eval(rng: &mut ChaCha8Rng, job_id: &str, job_type: JobType, by: TriggeredBy) -> Evaluation {
    Evaluation {
        id: uuid(rng),
        namespace: "default".into(),
        job_id: job_id.into(),
        job_type,
        priority: 50,
        triggered_by: by,
        status: EvalStatus::Pending,
        ..Evaluation::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Drains come with a future deadline or forced (deadline now), never more than half the
    /// nodes at once, and a disable marks the node eligible with the jobs' evaluations.
    #[test]
    fn drains_are_bounded_and_disabled_again() {
        let nodes: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
        let mut w = Workload::new(4, nodes.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let now = 1_767_225_600_000_000_000;
        let (mut set, mut forced, mut disabled) = (0, 0, 0);
        let mut draining = std::collections::BTreeSet::new();
        for _ in 0..400 {
            let Command::NodeDrain { node_id, drain, mark_eligible, evals, .. } =
                w.next(&mut rng, now)
            else {
                continue;
            };
            assert!(nodes.contains(&node_id));
            match drain {
                Some(d) => {
                    assert!(!mark_eligible && evals.is_empty());
                    assert!(draining.insert(node_id), "a node drained twice");
                    assert!(d.force_deadline >= now && d.force_deadline < now + 20_000_000_000);
                    assert_eq!(d.force_deadline - now, d.deadline.as_nanos() as i64);
                    set += 1;
                    forced += (d.force_deadline == now) as u32;
                }
                None => {
                    assert!(mark_eligible);
                    assert!(draining.remove(&node_id), "disabled a node not draining");
                    assert!(evals.iter().all(|e| e.node_id == node_id));
                    disabled += 1;
                }
            }
            assert!(draining.len() * 2 <= nodes.len());
        }
        assert!(set > 10 && forced > 0 && disabled > 0, "{set} {forced} {disabled}");
    }
}
