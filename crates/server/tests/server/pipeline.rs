//! The scheduling pipeline end to end on real in-process servers: evaluations written through
//! Raft come out as committed allocations, blocked evaluations wait for capacity, concurrent
//! workers never over-commit a node, and a new leader picks up where the old one stopped.

use crate::harness::Cluster;
use model::{
    DriverInfo, EvalStatus, Evaluation, Job, Node, NodeStatus, Resources, Task, TaskGroup,
    TriggeredBy,
};
use server::broker::BrokerConfig;
use server::pipeline::{self, PipelineConfig};
use server::state::{Command, State};
use server::{Consistency, ServerHandle};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

fn node(id: &str, memory_mb: u64) -> Node {
    let mut n = Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 100_000;
    n.node_resources.memory.memory_mb = memory_mb;
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n
}

/// A job registration with its evaluation, as the HTTP API writes it.
fn register(id: &str, count: u32, memory_mb: u32) -> Command {
    let mut job = Job {
        id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        task_groups: vec![TaskGroup {
            name: "g".into(),
            count,
            tasks: vec![Task {
                name: "t".into(),
                driver: "pot".into(),
                resources: Some(Resources { cpu: 10, memory_mb, ..Resources::default() }),
                ..Task::default()
            }],
            ..TaskGroup::default()
        }],
        ..Job::default()
    };
    job.canonicalize();
    Command::JobRegister {
        job: Box::new(job),
        eval: Some(Box::new(eval(id, TriggeredBy::JobRegister))),
    }
}

fn eval(job_id: &str, triggered_by: TriggeredBy) -> Evaluation {
    Evaluation {
        id: uuid(),
        namespace: "default".into(),
        job_id: job_id.into(),
        priority: 50,
        triggered_by,
        status: EvalStatus::Pending,
        ..Evaluation::default()
    }
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{n:08x}-0000-4000-8000-{n:012x}")
}

fn run_pipeline(h: &ServerHandle, workers: usize) -> JoinHandle<()> {
    tokio::spawn(pipeline::run_with(
        h.clone(),
        PipelineConfig { workers, broker: BrokerConfig::default() },
    ))
}

/// Waits until `f` holds on the server's applied state; panics with the last value after 20 s.
async fn wait_for<T: std::fmt::Debug>(
    h: &ServerHandle,
    what: &str,
    f: impl Fn(&State) -> (bool, T),
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, v) = h.read(Consistency::Stale, &f).await.unwrap();
        if ok {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {v:?}");
        h.wait_for_index(h.applied_index() + 1, Duration::from_millis(200)).await;
    }
}

fn live_allocs(s: &State, job: &str) -> Vec<(String, String)> {
    s.allocs_by_job("default", job)
        .into_iter()
        .filter(|a| !a.is_terminal())
        .map(|a| (a.id.clone(), a.node_id.clone()))
        .collect()
}

async fn with_timeout<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("test took over 60 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_placed_and_a_failed_node_is_replaced() {
    with_timeout(async {
        let cluster = Cluster::start(1).await;
        let h = cluster.node(0).clone();
        cluster.leader().await;
        let p = run_pipeline(&h, 2);
        for id in ["n1", "n2", "n3"] {
            h.write(Command::NodeRegister { node: Box::new(node(id, 1024)) }).await.unwrap();
        }
        h.write(register("web", 3, 100)).await.unwrap();
        let placed = wait_for(&h, "3 allocations", |s| {
            let a = live_allocs(s, "web");
            (a.len() == 3, a)
        })
        .await;
        let done = wait_for(&h, "the evaluation to complete", |s| {
            let e: Vec<_> =
                s.evals_by_job("default", "web").into_iter().map(|e| e.status).collect();
            (e == [EvalStatus::Complete], e)
        })
        .await;
        assert_eq!(done.len(), 1);

        // The node holding the first allocation fails: its allocations move elsewhere.
        let failed = placed[0].1.clone();
        let lost = placed.iter().filter(|(_, n)| *n == failed).count();
        h.write(Command::NodeStatus {
            node_id: failed.clone(),
            status: NodeStatus::Down,
            status_description: "heartbeat missed".into(),
            evals: vec![eval("web", TriggeredBy::NodeUpdate)],
        })
        .await
        .unwrap();
        let after = wait_for(&h, "replacements off the failed node", |s| {
            let a = live_allocs(s, "web");
            (a.len() == 3 && a.iter().all(|(_, n)| *n != failed), a)
        })
        .await;
        let replaced = after.iter().filter(|(id, _)| !placed.iter().any(|(p, _)| p == id)).count();
        assert_eq!(replaced, lost);
        p.abort();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_too_large_is_blocked_with_reasons_until_a_node_fits_it() {
    with_timeout(async {
        let cluster = Cluster::start(1).await;
        let h = cluster.node(0).clone();
        cluster.leader().await;
        let p = run_pipeline(&h, 2);
        h.write(Command::NodeRegister { node: Box::new(node("small", 512)) }).await.unwrap();
        h.write(register("big", 1, 2048)).await.unwrap();
        let (reasons, blocked) = wait_for(&h, "a blocked evaluation", |s| {
            let evals = s.evals_by_job("default", "big");
            let done = evals.iter().find(|e| e.status == EvalStatus::Complete);
            let reasons = done.and_then(|e| e.failed_tg_allocs.get("g")).cloned();
            let blocked =
                evals.iter().find(|e| e.status == EvalStatus::Blocked).map(|e| e.id.clone());
            (reasons.is_some() && blocked.is_some(), (reasons, blocked))
        })
        .await;
        let reasons = reasons.unwrap();
        assert_eq!(reasons.dimension_exhausted.get("memory"), Some(&1), "{reasons:?}");
        assert!(wait_for(&h, "", |s| (true, live_allocs(s, "big"))).await.is_empty());

        h.write(Command::NodeRegister { node: Box::new(node("large", 4096)) }).await.unwrap();
        let placed = wait_for(&h, "placement on the new node", |s| {
            let a = live_allocs(s, "big");
            (a.len() == 1, a)
        })
        .await;
        assert_eq!(placed[0].1, "large");
        let status =
            wait_for(&h, "", |s| (true, s.eval(blocked.as_ref().unwrap()).map(|e| e.status))).await;
        assert_eq!(status, Some(EvalStatus::Complete));
        p.abort();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_workers_never_over_commit_a_node() {
    with_timeout(async {
        let cluster = Cluster::start(1).await;
        let h = cluster.node(0).clone();
        cluster.leader().await;
        let p = run_pipeline(&h, 4);
        // Two nodes with room for three 300 MB allocations each, and 30 jobs wanting one each.
        for id in ["a", "b"] {
            h.write(Command::NodeRegister { node: Box::new(node(id, 1000)) }).await.unwrap();
        }
        let writes: Vec<_> = (0..30)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.write(register(&format!("j{i}"), 1, 300)).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().unwrap();
        }
        let usage = wait_for(&h, "every evaluation processed", |s| {
            let open = s.evals().filter(|e| e.status == EvalStatus::Pending).count();
            let mut usage: BTreeMap<String, u64> = BTreeMap::new();
            for a in s.allocs().filter(|a| !a.is_terminal()) {
                *usage.entry(a.node_id.clone()).or_default() += 300;
            }
            (open == 0 && s.evals().count() >= 30, usage)
        })
        .await;
        assert_eq!(usage.values().sum::<u64>(), 1800, "six fit: {usage:?}");
        assert!(usage.values().all(|u| *u <= 1000), "over-committed: {usage:?}");
        let blocked = wait_for(&h, "", |s| {
            (true, s.evals().filter(|e| e.status == EvalStatus::Blocked).count())
        })
        .await;
        assert_eq!(blocked, 24, "each unplaced job waits in one blocked evaluation");
        p.abort();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_rebuilds_the_pipeline_from_replicated_state() {
    with_timeout(async {
        let mut cluster = Cluster::start(3).await;
        let pipelines: Vec<_> = (0..3).map(|i| run_pipeline(cluster.node(i), 2)).collect();
        let leader = cluster.leader().await;
        let h = cluster.node(leader).clone();
        h.write(Command::NodeRegister { node: Box::new(node("small", 512)) }).await.unwrap();
        h.write(register("big", 2, 1024)).await.unwrap();
        wait_for(&h, "a blocked evaluation", |s| {
            let n = s.evals().filter(|e| e.status == EvalStatus::Blocked).count();
            (n == 1, n)
        })
        .await;
        pipelines[leader].abort();
        cluster.kill(leader).await;
        let next = cluster.leader().await;
        let h = cluster.node(next).clone();
        // Capacity appears after the failover: the new leader's tracker must know the blocked
        // evaluation, and a pending one written now must reach its broker.
        h.write(Command::NodeRegister { node: Box::new(node("large", 4096)) }).await.unwrap();
        h.write(register("web", 1, 100)).await.unwrap();
        wait_for(&h, "both jobs placed by the new leader", |s| {
            let (big, web) = (live_allocs(s, "big").len(), live_allocs(s, "web").len());
            (big == 2 && web == 1, (big, web))
        })
        .await;
        for p in pipelines {
            p.abort();
        }
    })
    .await
}

/// A failed allocation whose reschedule is not due yet gets a follow-up evaluation that waits
/// exactly as long as its job's reschedule policy says for this attempt (here the third:
/// exponential from 20 s after 20 s and 40 s, capped at 70 s), and the broker holds it until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_reschedule_gets_a_followup_evaluation_at_the_policy_delay() {
    with_timeout(async {
        let cluster = Cluster::start(1).await;
        let h = cluster.node(0).clone();
        cluster.leader().await;
        let p = run_pipeline(&h, 2);
        for id in ["n1", "n2"] {
            h.write(Command::NodeRegister { node: Box::new(node(id, 1024)) }).await.unwrap();
        }
        let Command::JobRegister { mut job, eval: first } = register("web", 1, 100) else {
            unreachable!()
        };
        job.task_groups[0].reschedule_policy = Some(model::ReschedulePolicy {
            attempts: 0,
            interval: Duration::ZERO,
            delay: Duration::from_secs(20),
            delay_function: "exponential".into(),
            max_delay: Duration::from_secs(70),
            unlimited: true,
        });
        h.write(Command::JobRegister { job, eval: first }).await.unwrap();
        let placed = wait_for(&h, "the allocation", |s| {
            let a = s.allocs_by_job("default", "web").first().map(|a| (*a).clone());
            (a.is_some(), a)
        })
        .await
        .unwrap();

        // It is the third placement: two reschedules happened before, 20 s and 40 s apart.
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as i64;
        let sec = 1_000_000_000i64;
        let mut history = placed.clone();
        history.reschedule_tracker = Some(model::RescheduleTracker {
            events: [(20, now - 100 * sec), (40, now - 50 * sec)]
                .into_iter()
                .map(|(delay, at)| model::RescheduleEvent {
                    reschedule_time: at,
                    prev_alloc_id: uuid(),
                    prev_node_id: "n1".into(),
                    delay: Duration::from_secs(delay),
                })
                .collect(),
        });
        let results = server::state::PlanResults {
            eval_id: uuid(),
            allocs: vec![history],
            ..Default::default()
        };
        h.write(Command::PlanResults(results)).await.unwrap();

        // The agent reports the failure now.
        let failed_at = now + sec;
        h.write(Command::AllocClientUpdate {
            updates: vec![server::state::AllocClientUpdate {
                alloc_id: placed.id.clone(),
                client_status: model::ClientStatus::Failed,
                client_description: "task failed".into(),
                modify_time: failed_at,
                ..Default::default()
            }],
            evals: vec![eval("web", TriggeredBy::AllocFailure)],
        })
        .await
        .unwrap();
        let (followup, linked) = wait_for(&h, "a follow-up evaluation", |s| {
            let f = s
                .evals_by_job("default", "web")
                .into_iter()
                .find(|e| e.wait_until > 0)
                .map(|e| (e.id.clone(), e.wait_until, e.status, e.triggered_by));
            let linked = s.alloc(&placed.id).map(|a| a.followup_eval_id.clone());
            (f.is_some(), (f, linked))
        })
        .await;
        let (id, wait_until, status, triggered_by) = followup.unwrap();
        // 20 s × 2 × 2 = 80 s, capped at 70 s, counted from the failure.
        assert_eq!(wait_until, failed_at + 70 * sec);
        assert_eq!((status, triggered_by), (EvalStatus::Pending, TriggeredBy::AllocFailure));
        assert_eq!(linked.as_deref(), Some(id.as_str()));
        // Nothing replaces it before then: the broker holds the follow-up.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let live = wait_for(&h, "", |s| (true, s.allocs_by_job("default", "web").len())).await;
        assert_eq!(live, 1, "no replacement before the follow-up is due");
        let still = wait_for(&h, "", |s| (true, s.eval(&id).map(|e| e.status))).await;
        assert_eq!(still, Some(EvalStatus::Pending));
        p.abort();
    })
    .await
}
