//! `/v1/evaluations` and `/v1/evaluation/:id`: reading evaluations and what they placed.

use super::allocs::{alloc_listing, StubParts};
use super::ApiError;
use super::{bool_param, param, query_options, Ctx, Pairs, Reply};
use crate::state::Table;
use axum::extract::{Path, State as AxState};
use model::Evaluation;
use serde_json::{json, Value};

/// `GET /v1/evaluations` (with Nomad's `job` and `status` shortcuts).
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let job = param(&pairs, "job").unwrap_or("");
    let status = param(&pairs, "status").unwrap_or("");
    let (mut evals, index) = ctx
        .query(&q, &[Table::Evals], |s| {
            s.evals()
                .filter(|e| q.namespace == "*" || e.namespace == q.namespace)
                .filter(|e| e.id.starts_with(&q.prefix))
                .filter(|e| job.is_empty() || e.job_id == job)
                .filter_map(|e| serde_json::to_value(e).ok())
                .filter(|v| status.is_empty() || v["Status"] == status)
                .filter(|v| q.filter.as_ref().is_none_or(|f| f.matches(v)))
                .collect::<Vec<Value>>()
        })
        .await?;
    if q.reverse {
        evals.reverse();
    }
    let page = api::query::paginate(evals, |v| v["ID"].as_str().unwrap_or(""), &q);
    Ok(Reply::json(&page.items, index, q.pretty).with_next_token(page.next_token))
}

/// `GET /v1/evaluation/:id`; `related=true` adds the evaluations of the same job as stubs.
pub async fn read(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let related = bool_param(&pairs, "related", false)?;
    let (found, index) = ctx
        .query(&q, &[Table::Evals], |s| {
            let e = s.eval(&id)?;
            let mut v = serde_json::to_value(e).ok()?;
            if related {
                let rel: Vec<Value> = s
                    .evals_by_job(&e.namespace, &e.job_id)
                    .into_iter()
                    .filter(|r| r.id != e.id)
                    .map(related_stub)
                    .collect();
                v["RelatedEvals"] = json!(rel);
            }
            Some(v)
        })
        .await?;
    let v = found.ok_or_else(|| ApiError::NotFound("eval not found".into()))?;
    Ok(Reply::json(&v, index, q.pretty))
}

/// Nomad's `EvaluationStub`.
fn related_stub(e: &Evaluation) -> Value {
    json!({
        "ID": e.id, "Namespace": e.namespace, "Priority": e.priority, "Type": e.job_type,
        "TriggeredBy": e.triggered_by, "JobID": e.job_id, "NodeID": e.node_id,
        "DeploymentID": e.deployment_id, "Status": e.status,
        "StatusDescription": e.status_description, "WaitUntil": e.wait_until,
        "NextEval": e.next_eval, "PreviousEval": e.previous_eval, "BlockedEval": e.blocked_eval,
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
        "CreateTime": e.create_time, "ModifyTime": e.modify_time,
    })
}

/// `GET /v1/evaluation/:id/allocations`.
pub async fn allocations(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let parts = StubParts { resources: false, task_states: true };
    let (listing, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            // Allocations record the evaluation that placed them; the job's index finds them
            // without scanning every allocation.
            let allocs: Vec<_> = match s.eval(&id) {
                Some(e) => s
                    .allocs_by_job(&e.namespace, &e.job_id)
                    .into_iter()
                    .filter(|a| a.eval_id == id)
                    .collect(),
                None => Vec::new(),
            };
            alloc_listing(s, allocs.into_iter(), &q, parts)
        })
        .await?;
    let (body, next_token) = listing?;
    Ok(Reply::raw(body, index).with_next_token(next_token))
}
