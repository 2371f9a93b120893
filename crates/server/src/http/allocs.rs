//! `/v1/allocations` and `/v1/allocation/:id`: listing, reading and stopping allocations. The
//! list stub shape lives here and is shared by the job, node and evaluation endpoints.

use super::jobs::{eval_for, outcome_error};
use super::ApiError;
use super::{bool_param, now_unix_nanos, query_options, Ctx, Pairs, Reply};
use crate::state::{AllocStop, Command, PlanResults, State, Table};
use api::query::QueryOptions;
use axum::extract::{Path, State as AxState};
use model::{
    AllocDeploymentStatus, AllocatedResources, Allocation, ClientStatus, DesiredStatus,
    DesiredTransition, JobType, RescheduleTracker, TaskState, TriggeredBy,
};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Nomad's `AllocationListStub`, borrowing from the state: listings of thousands of
/// allocations are serialised straight from it, inside the read, without building a JSON tree.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AllocStub<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "EvalID")]
    eval_id: &'a str,
    name: &'a str,
    namespace: &'a str,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    node_name: &'a str,
    #[serde(rename = "JobID")]
    job_id: &'a str,
    job_type: Option<JobType>,
    job_version: u64,
    task_group: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocated_resources: Option<&'a AllocatedResources>,
    desired_status: DesiredStatus,
    desired_description: &'a str,
    desired_transition: &'a DesiredTransition,
    client_status: ClientStatus,
    client_description: &'a str,
    task_states: Option<&'a BTreeMap<String, TaskState>>,
    deployment_status: Option<&'a AllocDeploymentStatus>,
    #[serde(rename = "FollowupEvalID")]
    followup_eval_id: &'a str,
    next_allocation: &'a str,
    previous_allocation: &'a str,
    reschedule_tracker: Option<&'a RescheduleTracker>,
    create_index: u64,
    modify_index: u64,
    create_time: i64,
    modify_time: i64,
}

/// Which optional parts of the stub a listing includes (`resources`, `task_states`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StubParts {
    pub resources: bool,
    pub task_states: bool,
}

pub(crate) fn alloc_stub<'a>(s: &'a State, a: &'a Allocation, parts: StubParts) -> AllocStub<'a> {
    AllocStub {
        id: &a.id,
        eval_id: &a.eval_id,
        name: &a.name,
        namespace: &a.namespace,
        node_id: &a.node_id,
        node_name: &a.node_name,
        job_id: &a.job_id,
        job_type: s.job(&a.namespace, &a.job_id).map(|j| j.job_type),
        job_version: a.job_version,
        task_group: &a.task_group,
        allocated_resources: parts.resources.then_some(&a.allocated_resources),
        desired_status: a.desired_status,
        desired_description: &a.desired_description,
        desired_transition: &a.desired_transition,
        client_status: a.client_status,
        client_description: &a.client_description,
        task_states: parts.task_states.then_some(&a.task_states),
        deployment_status: a.deployment_status.as_ref(),
        followup_eval_id: &a.followup_eval_id,
        next_allocation: &a.next_allocation,
        previous_allocation: &a.previous_allocation,
        reschedule_tracker: a.reschedule_tracker.as_ref(),
        create_index: a.create_index,
        modify_index: a.modify_index,
        create_time: a.create_time,
        modify_time: a.modify_time,
    }
}

/// A listing of allocations already sorted by ID: applies `prefix`, `filter`, `reverse` and
/// paging, and serialises the page. Paging happens before any stub is built, so a page of a
/// large listing costs only its own size.
pub(crate) fn alloc_listing<'a>(
    s: &'a State,
    allocs: impl DoubleEndedIterator<Item = &'a Allocation>,
    q: &QueryOptions,
    parts: StubParts,
) -> Result<(Vec<u8>, String), ApiError> {
    let allocs: Box<dyn Iterator<Item = &'a Allocation>> =
        if q.reverse { Box::new(allocs.rev()) } else { Box::new(allocs) };
    let token = q.next_token.as_str();
    let mut page = Vec::new();
    let mut next_token = String::new();
    for a in allocs {
        if !token.is_empty()
            && (if q.reverse { a.id.as_str() > token } else { a.id.as_str() < token })
        {
            continue;
        }
        if !(q.namespace == "*" || a.namespace == q.namespace) || !a.id.starts_with(&q.prefix) {
            continue;
        }
        let stub = alloc_stub(s, a, parts);
        if let Some(f) = &q.filter {
            let v = serde_json::to_value(&stub).map_err(|e| ApiError::Internal(e.to_string()))?;
            if !f.matches(&v) {
                continue;
            }
        }
        if q.per_page.is_some_and(|n| page.len() == n) {
            next_token = a.id.clone();
            break;
        }
        page.push(stub);
    }
    let body = if q.pretty { serde_json::to_vec_pretty(&page) } else { serde_json::to_vec(&page) };
    Ok((body.map_err(|e| ApiError::Internal(e.to_string()))?, next_token))
}

/// `GET /v1/allocations`.
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let parts = StubParts {
        resources: bool_param(&pairs, "resources", false)?,
        task_states: bool_param(&pairs, "task_states", true)?,
    };
    let (listing, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            // `State::allocs` only iterates forwards; the references are cheap to collect.
            let allocs: Vec<&Allocation> = s.allocs().collect();
            alloc_listing(s, allocs.into_iter(), &q, parts)
        })
        .await?;
    let (body, next_token) = listing?;
    Ok(Reply::raw(body, index).with_next_token(next_token))
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
