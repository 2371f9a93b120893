//! A scheduler worker on the leader, as Nomad's: takes an evaluation from the broker, schedules
//! it on the shared cluster view, submits the plan to the plan applier, and when part of the plan
//! was refused retries on fresher state (5 attempts for service and system jobs, 2 for batch).
//! It acks the evaluation once its outcome is committed and nacks it on errors.
//!
//! It never writes placements itself: only the plan applier commits plans, one at a time.

use crate::broker::NackOutcome;
use crate::pipeline::{self, Leader, Submission};
use model::{EvalStatus, Evaluation, JobType, TriggeredBy};
use scheduler::EvalContext;
use std::sync::Arc;
use std::time::Duration;

/// Why an evaluation could not be processed; it is nacked and redelivered.
#[derive(Debug, thiserror::Error)]
enum WorkerError {
    #[error("plan applier stopped")]
    ApplierGone,
    #[error(transparent)]
    Server(#[from] crate::Error),
    #[error("scheduler task panicked")]
    SchedulerPanicked,
}

pub(crate) async fn run(leader: Arc<Leader>) {
    let clock = leader.handle.clock().clone();
    loop {
        let next = pipeline::lock(&leader.broker).dequeue(clock.unix_nanos());
        let Some((eval, token)) = next else {
            // A missed notification costs at most this long.
            let _ = tokio::time::timeout(Duration::from_secs(1), leader.ready.notified()).await;
            continue;
        };
        match process(&leader, &eval).await {
            Ok(()) => match pipeline::lock(&leader.broker).ack(&eval.id, token) {
                Ok(superseded) => {
                    let now = clock.unix_nanos();
                    leader.send(
                        superseded
                            .into_iter()
                            .map(|mut e| {
                                e.status = EvalStatus::Canceled;
                                e.status_description = format!(
                                    "canceled after more recent eval was processed ({})",
                                    eval.id
                                );
                                e.modify_time = now;
                                e
                            })
                            .collect(),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "ack refused"),
            },
            Err(e) => {
                tracing::warn!(eval = %eval.id, error = %e, "evaluation failed; nacking");
                let outcome =
                    pipeline::lock(&leader.broker).nack(&eval.id, token, clock.unix_nanos());
                if let Ok(NackOutcome::Failed(e)) = outcome {
                    // Failed with a follow-up that retries the job later, as when the nack
                    // timeout runs out: without it the job would never be evaluated again.
                    let limit = pipeline::lock(&leader.broker).delivery_limit();
                    leader.send(pipeline::failed_with_followups(vec![*e], limit, &clock));
                }
                // Errors mostly mean the leader is losing its quorum; do not spin on them.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn process(leader: &Arc<Leader>, eval: &Evaluation) -> Result<(), WorkerError> {
    let attempts = if eval.job_type == JobType::Batch { 2 } else { 5 };
    for _ in 0..attempts {
        let l = leader.clone();
        let e = eval.clone();
        let (plan, finish) = leader
            .handle
            .clock()
            .blocking(move || schedule(&l, &e))
            .await
            .ok_or(WorkerError::SchedulerPanicked)?;
        let (reply, verdict) = tokio::sync::oneshot::channel();
        let submission = Submission { plan, eval: eval.clone(), finish, reply };
        leader.plans.send(submission).await.map_err(|_| WorkerError::ApplierGone)?;
        let verdict = verdict.await.map_err(|_| WorkerError::ApplierGone)??;
        if verdict.is_complete() {
            return Ok(());
        }
        tracing::debug!(eval = %eval.id, rejected = ?verdict.rejected_nodes, "plan partly refused; retrying");
    }
    // Like Nomad's worker after too many refused plans: the evaluation fails and a blocked one
    // takes over, to run again when capacity changes.
    let clock = leader.handle.clock();
    let now = clock.unix_nanos();
    let mut blocked = eval.clone();
    blocked.id = clock.uuid();
    blocked.triggered_by = TriggeredBy::MaxPlanAttempts;
    blocked.status = EvalStatus::Blocked;
    blocked.status_description = "created due to placement conflicts".into();
    blocked.previous_eval = eval.id.clone();
    blocked.snapshot_index = 0;
    blocked.create_time = now;
    blocked.modify_time = now;
    let mut failed = eval.clone();
    failed.status = EvalStatus::Failed;
    failed.status_description = format!("maximum attempts reached ({attempts})");
    failed.blocked_eval = blocked.id.clone();
    failed.modify_time = now;
    leader
        .handle
        .write_as_leader(crate::state::Command::EvalUpsert { evals: vec![blocked, failed] })
        .await?;
    Ok(())
}

/// Runs the scheduler on the shared view, brought up to date first. Blocking: call it off the
/// async workers.
fn schedule(leader: &Leader, eval: &Evaluation) -> (scheduler::Plan, Vec<Evaluation>) {
    leader.refresh();
    let now = leader.handle.clock().unix_nanos();
    let (job, superseded) = {
        let state = leader.handle.state_lock().read().unwrap_or_else(|e| e.into_inner());
        (
            state.job(&eval.namespace, &eval.job_id).cloned(),
            pipeline::superseded_blocked(&state, eval, now),
        )
    };
    let cluster = leader.cluster.read().unwrap_or_else(|e| e.into_inner());
    let ctx = EvalContext {
        eval: eval.clone(),
        now_unix_nanos: now,
        seed: pipeline::seed_for(&eval.id, cluster.index),
        algorithm: scheduler::Algorithm::default(),
    };
    let plan = scheduler::schedule(&cluster.state, job.as_ref(), &ctx);
    let mut finish = superseded;
    finish.extend(pipeline::completion(&plan, eval, cluster.index, now));
    (plan, finish)
}
