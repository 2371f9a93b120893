//! `/v1/allocations` and `/v1/allocation/:id`: listing, reading and stopping allocations. The
//! list stub shape lives here and is shared by the job, node and evaluation endpoints.

use super::jobs::{eval_for, outcome_error};
use super::ApiError;
use super::{bool_param, now_unix_nanos, query_options, Ctx, Pairs, Reply};
use crate::state::{AllocStop, Command, PlanResults, State, Table};
use axum::extract::{Path, State as AxState};
use model::{Allocation, TriggeredBy};
use serde_json::{json, Value};

/// Nomad's `AllocationListStub`: the allocation with its job's type, without the heavy
/// resources unless asked (`resources=true`) and with task states unless refused
/// (`task_states=false`).
pub(crate) fn alloc_stub(s: &State, a: &Allocation, resources: bool, task_states: bool) -> Value {
    let job_type = s.job(&a.namespace, &a.job_id).map(|j| j.job_type);
    let mut v = json!({
        "ID": a.id,
        "EvalID": a.eval_id,
        "Name": a.name,
        "Namespace": a.namespace,
        "NodeID": a.node_id,
        "NodeName": a.node_name,
        "JobID": a.job_id,
        "JobType": job_type,
        "JobVersion": a.job_version,
        "TaskGroup": a.task_group,
        "DesiredStatus": a.desired_status,
        "DesiredDescription": a.desired_description,
        "ClientStatus": a.client_status,
        "ClientDescription": a.client_description,
        "TaskStates": null,
        "DeploymentStatus": a.deployment_status,
        "FollowupEvalID": a.followup_eval_id,
        "NextAllocation": a.next_allocation,
        "PreviousAllocation": a.previous_allocation,
        "RescheduleTracker": a.reschedule_tracker,
        "CreateIndex": a.create_index,
        "ModifyIndex": a.modify_index,
        "CreateTime": a.create_time,
        "ModifyTime": a.modify_time,
    });
    if task_states {
        v["TaskStates"] = json!(a.task_states);
    }
    if resources {
        v["AllocatedResources"] = json!(a.allocated_resources);
    }
    v
}

/// `GET /v1/allocations`.
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let resources = bool_param(&pairs, "resources", false)?;
    let task_states = bool_param(&pairs, "task_states", true)?;
    let (mut stubs, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            s.allocs()
                .filter(|a| q.namespace == "*" || a.namespace == q.namespace)
                .filter(|a| a.id.starts_with(&q.prefix))
                .map(|a| alloc_stub(s, a, resources, task_states))
                .filter(|v| q.filter.as_ref().is_none_or(|f| f.matches(v)))
                .collect::<Vec<Value>>()
        })
        .await?;
    if q.reverse {
        stubs.reverse();
    }
    let page = api::query::paginate(stubs, |v| v["ID"].as_str().unwrap_or(""), &q);
    Ok(Reply::json(&page.items, index, q.pretty).with_next_token(page.next_token))
}

/// `GET /v1/allocation/:id`: the allocation with the job version it runs.
pub async fn read(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (found, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            let a = s.alloc(&id)?;
            let job = s
                .job_versions(&a.namespace, &a.job_id)
                .into_iter()
                .find(|j| j.version == a.job_version)
                .or_else(|| s.job(&a.namespace, &a.job_id))
                .cloned();
            let mut v = serde_json::to_value(a).ok()?;
            v["Job"] = json!(job);
            v["JobType"] = json!(job.as_ref().map(|j| j.job_type));
            Some(v)
        })
        .await?;
    let v = found.ok_or_else(|| ApiError::NotFound("alloc not found".into()))?;
    Ok(Reply::json(&v, index, q.pretty))
}

/// `PUT/POST /v1/allocation/:id/stop`: stops the allocation and asks the scheduler to replace
/// it, as Nomad's migrate transition does.
pub async fn stop(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    bool_param(&pairs, "no_shutdown_delay", false)?;
    let (alloc, job) = ctx
        .read(&q, |s| {
            let a = s.alloc(&id).cloned();
            let j = a.as_ref().and_then(|a| s.job(&a.namespace, &a.job_id).cloned());
            (a, j)
        })
        .await?;
    let alloc = alloc.ok_or_else(|| ApiError::NotFound("alloc not found".into()))?;
    let mut eval = match &job {
        Some(j) => eval_for(j, TriggeredBy::AllocStop),
        None => {
            return Err(ApiError::BadRequest(format!(
                "the job {:?} of this allocation no longer exists",
                alloc.job_id
            )))
        }
    };
    eval.node_id = alloc.node_id.clone();
    let eval_id = eval.id.clone();
    let plan = PlanResults {
        eval_id: eval_id.clone(),
        allocs: Vec::new(),
        stops: vec![AllocStop {
            alloc_id: alloc.id.clone(),
            desired_description: "alloc was stopped by a user".into(),
            client_status: None,
            followup_eval_id: None,
            modify_time: now_unix_nanos(),
        }],
        evals: vec![eval],
    };
    let w = ctx.handle.write(Command::PlanResults(plan)).await?;
    if w.outcome != crate::state::Outcome::Applied {
        return Err(outcome_error(w.outcome));
    }
    Ok(Reply::json(&json!({"EvalID": eval_id, "Index": w.index}), w.index, q.pretty))
}
