//! The plan applier on the leader, as Nomad's: one plan at a time, re-verified with
//! [`scheduler::verify_plan`] against the cluster view brought up to the latest applied state,
//! then its feasible part committed through Raft (nothing of an `all_at_once` plan unless all of
//! it fits). Because each commit is applied before the next plan is verified, workers scheduling
//! concurrently from older snapshots can never over-commit a node.
//!
//! It does not schedule or retry: the worker that submitted a partly refused plan retries.

use crate::pipeline::{self, Leader, Submission};
use crate::state::Command;
use std::sync::Arc;
use tokio::sync::mpsc;

pub(crate) async fn run(leader: Arc<Leader>, mut plans: mpsc::Receiver<Submission>) {
    while let Some(s) = plans.recv().await {
        let l = leader.clone();
        let plan = s.plan;
        let verified = leader
            .handle
            .clock()
            .blocking(move || {
                l.refresh();
                let cluster = l.cluster.read().unwrap_or_else(|e| e.into_inner());
                let verdict = scheduler::verify_plan(&cluster.state, &plan);
                (plan, verdict)
            })
            .await;
        let Some((plan, verdict)) = verified else {
            // The verification task panicked: the worker's reply channel drops and it nacks.
            continue;
        };
        let now = leader.handle.clock().unix_nanos();
        let results = pipeline::results(&plan, &verdict, &s.eval, Some(s.finish), now);
        let empty =
            results.allocs.is_empty() && results.stops.is_empty() && results.evals.is_empty();
        let outcome = if empty {
            Ok(verdict)
        } else {
            leader.handle.write_as_leader(Command::PlanResults(results)).await.map(|_| verdict)
        };
        // The worker may have been stopped meanwhile; its plan is committed regardless.
        let _ = s.reply.send(outcome);
    }
}
