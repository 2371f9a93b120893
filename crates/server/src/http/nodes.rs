//! `/v1/nodes` and `/v1/node/:id`: listing and reading nodes, draining them and changing their
//! scheduling eligibility. Setting a drain only records the strategy; the leader's drainer
//! (`crate::drainer`) paces the migrations. Nothing here moves allocations.

use super::allocs::{alloc_listing, StubParts};
use super::body;
use super::jobs::outcome_error;
use super::ApiError;
use super::{bool_param, now_unix_nanos, query_options, Ctx, Pairs, Reply};
use crate::state::{Command, Outcome, State, Table};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use model::{
    DrainMetadata, DrainStrategy, EvalStatus, Evaluation, Node, SchedulingEligibility, TriggeredBy,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Nomad's `NodeListStub`.
fn node_stub(n: &Node, resources: bool, os: bool) -> Value {
    let mut v = json!({
        "Address": n.attributes.get("unique.network.ip-address").cloned().unwrap_or_default(),
        "ID": n.id,
        "Datacenter": n.datacenter,
        "Name": n.name,
        "NodeClass": n.node_class,
        "NodePool": n.node_pool,
        "Version": n.attributes.get("nomad.version").cloned().unwrap_or_default(),
        "Drain": n.drain,
        "SchedulingEligibility": n.scheduling_eligibility,
        "Status": n.status,
        "StatusDescription": n.status_description,
        "Drivers": n.drivers,
        "LastDrain": n.last_drain,
        "CreateIndex": n.create_index,
        "ModifyIndex": n.modify_index,
    });
    if resources {
        v["NodeResources"] = json!(n.node_resources);
        v["ReservedResources"] = json!(n.reserved_resources);
    }
    if os {
        let os_attrs: BTreeMap<&String, &String> =
            n.attributes.iter().filter(|(k, _)| k.starts_with("os.")).collect();
        v["Attributes"] = json!(os_attrs);
    }
    v
}

/// `GET /v1/nodes`.
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let resources = bool_param(&pairs, "resources", false)?;
    let os = bool_param(&pairs, "os", false)?;
    let (stubs, index) = ctx
        .query(&q, &[Table::Nodes], |s| {
            s.nodes()
                .filter(|n| n.id.starts_with(&q.prefix))
                .map(|n| node_stub(n, resources, os))
                .filter(|v| q.filter.as_ref().is_none_or(|f| f.matches(v)))
                .collect::<Vec<Value>>()
        })
        .await?;
    let page = api::query::paginate(stubs, |v| v["ID"].as_str().unwrap_or(""), &q);
    Ok(Reply::json(&page.items, index, q.pretty).with_next_token(page.next_token))
}

fn node_not_found() -> ApiError {
    ApiError::NotFound("node not found".into())
}

/// `GET /v1/node/:id`.
pub async fn read(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (node, index) = ctx.query(&q, &[Table::Nodes], |s| s.node(&id).cloned()).await?;
    Ok(Reply::json(&node.ok_or_else(node_not_found)?, index, q.pretty))
}

/// `GET /v1/node/:id/allocations`: full allocations in Nomad; stubs with resources here, which
/// carry every field the clients read.
pub async fn allocations(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let parts = StubParts { resources: true, task_states: true };
    let (listing, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            let allocs = s.allocs_by_node(&id);
            alloc_listing(s, allocs.into_iter(), &q, parts)
        })
        .await?;
    let (body, next_token) = listing?;
    Ok(Reply::raw(body, index).with_next_token(next_token))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DrainSpec {
    /// Nanoseconds; negative forces an immediate drain, zero means no deadline.
    deadline: i64,
    ignore_system_jobs: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DrainRequest {
    #[serde(rename = "NodeID")]
    node_id: String,
    drain_spec: Option<DrainSpec>,
    mark_eligible: bool,
    meta: BTreeMap<String, String>,
}

/// One `node-drain` or `node-update` evaluation per job with live allocations on the node.
fn evals_for_node(s: &State, node_id: &str, triggered_by: TriggeredBy) -> Vec<Evaluation> {
    let now = now_unix_nanos();
    let mut jobs = std::collections::BTreeSet::new();
    for a in s.allocs_by_node(node_id) {
        if !a.is_terminal() {
            jobs.insert((a.namespace.clone(), a.job_id.clone()));
        }
    }
    jobs.into_iter()
        .filter_map(|(ns, id)| s.job(&ns, &id))
        .map(|j| Evaluation {
            id: super::new_id(),
            namespace: j.namespace.clone(),
            priority: j.priority,
            job_type: j.job_type,
            triggered_by,
            job_id: j.id.clone(),
            node_id: node_id.to_owned(),
            status: EvalStatus::Pending,
            create_time: now,
            modify_time: now,
            ..Evaluation::default()
        })
        .collect()
}

/// `PUT/POST /v1/node/:id/drain`: sets or clears the drain strategy, as Nomad's
/// `Node.UpdateDrain`. The leader's drainer (`crate::drainer`) does the migrating; ending a
/// drain with `MarkEligible` evaluates the node's jobs, since work may land there again.
pub async fn drain(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("Request body is empty".into()));
    }
    let req: DrainRequest = body::decode(&bytes)?.value;
    let now = now_unix_nanos();
    let stamp = model::time::format(now);
    let (node, evals) = ctx
        .read(&q, |s| {
            s.node(&id).map(|n| {
                let evals = if req.drain_spec.is_none() && req.mark_eligible {
                    evals_for_node(s, &id, TriggeredBy::NodeUpdate)
                } else {
                    Vec::new()
                };
                (n.clone(), evals)
            })
        })
        .await?
        .ok_or_else(node_not_found)?;
    let drain = req.drain_spec.as_ref().map(|spec| {
        // Updating a running drain keeps when it started.
        let started_at = node.drain_strategy.as_ref().map_or(now, |d| d.started_at);
        DrainStrategy {
            deadline: Duration::from_nanos(spec.deadline.max(0) as u64),
            ignore_system_jobs: spec.ignore_system_jobs,
            force_deadline: match spec.deadline {
                d if d < 0 => now,
                0 => 0,
                d => now.saturating_add(d),
            },
            started_at,
        }
    });
    let (message, status) = match (&drain, node.drain_strategy.is_some()) {
        (Some(_), false) => ("Node drain strategy set", "draining"),
        (Some(_), true) => ("Node drain strategy updated", "draining"),
        (None, _) => ("Node drain disabled", "canceled"),
    };
    let event = model::NodeEvent {
        message: message.into(),
        subsystem: "Drain".into(),
        timestamp: stamp.clone(),
        ..model::NodeEvent::default()
    };
    let last_drain = match (&drain, node.drain_strategy.is_some()) {
        // Clearing a node that is not draining leaves its last drain as it was.
        (None, false) => None,
        (Some(_), false) => Some(DrainMetadata {
            started_at: stamp.clone(),
            updated_at: stamp,
            status: status.into(),
            meta: req.meta.clone(),
            ..DrainMetadata::default()
        }),
        _ => {
            let last = node.last_drain.clone().unwrap_or_default();
            Some(DrainMetadata { updated_at: stamp, status: status.into(), ..last })
        }
    };
    let eval_ids: Vec<String> = evals.iter().map(|e| e.id.clone()).collect();
    let command = Command::NodeDrain {
        node_id: id,
        drain,
        mark_eligible: req.mark_eligible,
        evals,
        event: Some(Box::new(event)),
        last_drain: last_drain.map(Box::new),
    };
    node_write(&ctx, command, eval_ids, q.pretty).await
}

async fn node_write(
    ctx: &Ctx,
    command: Command,
    eval_ids: Vec<String>,
    pretty: bool,
) -> Result<Reply, ApiError> {
    let w = ctx.handle.write(command).await?;
    if w.outcome != Outcome::Applied {
        return Err(outcome_error(w.outcome));
    }
    let resp = json!({
        "NodeModifyIndex": w.index,
        "EvalIDs": eval_ids,
        "EvalCreateIndex": w.index,
        "Index": w.index,
    });
    Ok(Reply::json(&resp, w.index, pretty))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EligibilityRequest {
    #[serde(rename = "NodeID")]
    node_id: String,
    eligibility: String,
}

/// `PUT/POST /v1/node/:id/eligibility`.
pub async fn eligibility(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let req: EligibilityRequest = body::decode(&bytes)?.value;
    let eligibility = match req.eligibility.as_str() {
        "eligible" => SchedulingEligibility::Eligible,
        "ineligible" => SchedulingEligibility::Ineligible,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid scheduling eligibility {other:?}; use \"eligible\" or \"ineligible\""
            )))
        }
    };
    ctx.read(&q, |s| s.node(&id).map(|_| ())).await?.ok_or_else(node_not_found)?;
    let command = Command::NodeEligibility { node_id: id, eligibility, evals: Vec::new() };
    node_write(&ctx, command, Vec::new(), q.pretty).await
}
