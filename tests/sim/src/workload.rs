//! What the simulated operators submit: job registrations (service and batch), scale changes
//! and stops, each a `Command` with the evaluation the HTTP API would create for it, drawn from
//! the run's seeded RNG. It does not decide where or when commands are sent.

use crate::agent::DRIVER;
use model::{
    EvalStatus, Evaluation, Job, JobType, NetworkResource, Port, ReschedulePolicy, Resources, Task,
    TaskGroup, TriggeredBy,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use server::state::Command;
use std::collections::BTreeMap;
use std::time::Duration;

/// The jobs submitted so far: ID → (type, count, stopped).
#[derive(Debug, Default)]
pub struct Workload {
    jobs: BTreeMap<String, (JobType, u32, bool)>,
    max_jobs: usize,
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
    pub fn new(max_jobs: usize) -> Self {
        Workload { jobs: BTreeMap::new(), max_jobs }
    }

    /// The next operator action.
    pub fn next(&mut self, rng: &mut ChaCha8Rng) -> Command {
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
