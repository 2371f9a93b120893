//! `/v1/jobs` and `/v1/job/:id/...` (except `plan`): listing, registering, parsing, reading,
//! scaling and stopping jobs.
//!
//! Registration canonicalizes and validates the job, then writes it with its `job-register`
//! evaluation in one command; placing allocations is the scheduling pipeline's work, not this
//! module's.

use super::allocs::{alloc_listing, StubParts};
use super::body::{self, Decoded};
use super::ApiError;
use super::{bool_param, now_unix_nanos, param, query_options, Ctx, Pairs, Reply};
use crate::state::{Command, Outcome, State, Table};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use model::{ClientStatus, EvalStatus, Evaluation, Job, JobType, TriggeredBy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The longest job ID accepted, as Nomad's `MaxJobIDLength`... rounded to a sane bound.
const MAX_ID_LEN: usize = 128;

/// The largest group count accepted through the API; far above any real job, low enough that a
/// typo cannot ask the scheduler for billions of placements.
const MAX_COUNT: u32 = 100_000;

/// `GET /v1/jobs`.
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let with_meta = bool_param(&pairs, "meta", false)?;
    let (listing, index) = ctx
        .query(&q, &[Table::Jobs, Table::Allocs], |s| {
            let mut stubs = Vec::new();
            for j in s.jobs() {
                if !(q.namespace == "*" || j.namespace == q.namespace)
                    || !j.id.starts_with(&q.prefix)
                {
                    continue;
                }
                let stub = job_stub(s, j, with_meta);
                if let Some(f) = &q.filter {
                    let v = serde_json::to_value(&stub)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    if !f.matches(&v) {
                        continue;
                    }
                }
                stubs.push(stub);
            }
            let page = api::query::paginate(stubs, |j| j.id, &q);
            let body = if q.pretty {
                serde_json::to_vec_pretty(&page.items)
            } else {
                serde_json::to_vec(&page.items)
            };
            Ok::<_, ApiError>((
                body.map_err(|e| ApiError::Internal(e.to_string()))?,
                page.next_token,
            ))
        })
        .await?;
    let (body, next_token) = listing?;
    Ok(Reply::raw(body, index).with_next_token(next_token))
}

/// Nomad's `JobListStub`, borrowing from the state and serialised inside the read.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobStub<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "ParentID")]
    parent_id: &'a str,
    name: &'a str,
    namespace: &'a str,
    datacenters: &'a [String],
    node_pool: &'a str,
    multiregion: Option<()>,
    #[serde(rename = "Type")]
    job_type: JobType,
    priority: i32,
    periodic: bool,
    parameterized_job: bool,
    stop: bool,
    status: &'a str,
    status_description: &'a str,
    job_summary: Summary<'a>,
    create_index: u64,
    modify_index: u64,
    job_modify_index: u64,
    submit_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a BTreeMap<String, String>>,
}

fn job_stub<'a>(s: &'a State, j: &'a Job, with_meta: bool) -> JobStub<'a> {
    JobStub {
        id: &j.id,
        parent_id: "",
        name: &j.name,
        namespace: &j.namespace,
        datacenters: &j.datacenters,
        node_pool: &j.node_pool,
        multiregion: None,
        job_type: j.job_type,
        priority: j.priority,
        periodic: false,
        parameterized_job: false,
        stop: j.stop,
        status: &j.status,
        status_description: &j.status_description,
        job_summary: summary_of(s, j),
        create_index: j.create_index,
        modify_index: j.modify_index,
        job_modify_index: j.job_modify_index,
        submit_time: j.submit_time,
        meta: with_meta.then_some(&j.meta),
    }
}

/// Nomad's `JobSummary`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Summary<'a> {
    #[serde(rename = "JobID")]
    job_id: &'a str,
    namespace: &'a str,
    summary: BTreeMap<&'a str, GroupSummary>,
    children: Children,
    create_index: u64,
    modify_index: u64,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct GroupSummary {
    queued: u64,
    starting: u64,
    running: u64,
    complete: u64,
    failed: u64,
    lost: u64,
    unknown: u64,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Children {
    pending: u64,
    running: u64,
    dead: u64,
}

/// The job's summary: the state's per-group allocation counts (kept as allocations change, as
/// Nomad's summary table) and its latest evaluation's queue.
fn summary_of<'a>(s: &'a State, j: &'a Job) -> Summary<'a> {
    let mut groups: BTreeMap<&str, GroupSummary> =
        j.task_groups.iter().map(|g| (g.name.as_str(), GroupSummary::default())).collect();
    for (name, c) in s.job_alloc_counts(&j.namespace, &j.id).into_iter().flatten() {
        let Some(g) = groups.get_mut(name.as_str()) else { continue };
        g.starting = c.pending;
        g.running = c.running;
        g.complete = c.complete;
        g.failed = c.failed;
        g.lost = c.lost;
        g.unknown = c.unknown;
    }
    let latest = s.evals_by_job(&j.namespace, &j.id).into_iter().max_by_key(|e| e.create_index);
    if let Some(latest) = latest {
        for (name, n) in &latest.queued_allocations {
            if let Some(g) = groups.get_mut(name.as_str()) {
                g.queued = *n;
            }
        }
    }
    Summary {
        job_id: &j.id,
        namespace: &j.namespace,
        summary: groups,
        children: Children::default(),
        create_index: j.create_index,
        modify_index: j.modify_index,
    }
}

/// Nomad's `JobRegisterRequest`; the job itself is decoded separately (see [`decode_job`]).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RegisterRequest {
    job: Option<Job>,
    enforce_index: bool,
    job_modify_index: u64,
    policy_override: bool,
    preserve_counts: bool,
    preserve_resources: bool,
    eval_priority: i32,
    submission: Option<Value>,
    region: String,
    namespace: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
}

/// Gives every task group without a `Count` the count 1, as Nomad's `Canonicalize` does for a
/// nil count; the model's count is a plain number, so the absence must be seen in the JSON.
pub(crate) fn default_counts(job: &mut Value) {
    let Some(groups) = job.as_object_mut().and_then(|o| {
        o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("TaskGroups")).map(|(_, v)| v)
    }) else {
        return;
    };
    for g in groups.as_array_mut().into_iter().flatten() {
        if let Some(o) = g.as_object_mut() {
            if !o.iter().any(|(k, v)| k.eq_ignore_ascii_case("Count") && !v.is_null()) {
                o.retain(|k, _| !k.eq_ignore_ascii_case("Count"));
                o.insert("Count".into(), json!(1));
            }
        }
    }
}

/// Decodes a register-shaped body (`{"Job": {...}, ...}`), applying group count defaults.
fn decode_register(bytes: &Bytes) -> Result<Decoded<RegisterRequest>, ApiError> {
    let mut value = body::parse_value(bytes)?;
    if let Some(obj) = value.as_object_mut() {
        if let Some((_, job)) = obj.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("Job")) {
            default_counts(job);
        }
    }
    body::decode_value(value, bytes)
}

/// Checks a canonical job for what would make it unschedulable or unsafe to store.
pub(crate) fn validate(job: &Job) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    if job.id.is_empty() {
        errs.push("Missing job ID".to_owned());
    } else if job.id.len() > MAX_ID_LEN {
        errs.push(format!("Job ID must be at most {MAX_ID_LEN} characters"));
    } else if job.id.contains(|c: char| c.is_whitespace() || c.is_control()) {
        errs.push("Job ID contains a space or control character".to_owned());
    }
    if job.name.is_empty() {
        errs.push("Missing job name".to_owned());
    }
    if !(1..=100).contains(&job.priority) {
        errs.push(format!("Job priority must be between 1 and 100, not {}", job.priority));
    }
    if job.task_groups.is_empty() {
        errs.push("Missing job task groups".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, g) in job.task_groups.iter().enumerate() {
        if g.name.is_empty() {
            errs.push(format!("Task group {} missing name", i + 1));
        } else if !seen.insert(g.name.as_str()) {
            errs.push(format!("Task group {} redefines '{}'", i + 1, g.name));
        }
        if g.count > MAX_COUNT {
            errs.push(format!("Task group {} count {} exceeds {MAX_COUNT}", g.name, g.count));
        }
        if g.tasks.is_empty() {
            errs.push(format!("Task group {} has no tasks", g.name));
        }
        let mut tasks = std::collections::BTreeSet::new();
        for t in &g.tasks {
            if t.name.is_empty() {
                errs.push(format!("Task group {}: a task is missing its name", g.name));
            } else if !tasks.insert(t.name.as_str()) {
                errs.push(format!("Task group {}: task '{}' is defined twice", g.name, t.name));
            }
            if t.driver.is_empty() {
                errs.push(format!("Task {} in group {} is missing a driver", t.name, g.name));
            }
        }
    }
    // The per-driver `config` rules job files get from jobspec, for jobs sent as JSON.
    if let Err(driver_errs) = jobspec::validate_job_drivers(job) {
        errs.extend(driver_errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{} error(s) occurred:\n\n{}",
            errs.len(),
            errs.iter().map(|e| format!("* {e}")).collect::<Vec<_>>().join("\n")
        )))
    }
}

/// The evaluation a job change triggers.
pub(crate) fn eval_for(job: &Job, triggered_by: TriggeredBy) -> Evaluation {
    let now = now_unix_nanos();
    Evaluation {
        id: super::new_id(),
        namespace: job.namespace.clone(),
        priority: job.priority,
        job_type: job.job_type,
        triggered_by,
        job_id: job.id.clone(),
        status: EvalStatus::Pending,
        create_time: now,
        modify_time: now,
        ..Evaluation::default()
    }
}

/// Canonicalizes, validates and checks the register request's index condition, then writes.
async fn register_job(
    ctx: &Ctx,
    pairs: &[(String, String)],
    req: Decoded<RegisterRequest>,
    path_id: Option<&str>,
) -> Result<Reply, ApiError> {
    let q = query_options(pairs)?;
    let warnings = req.warnings();
    let req = req.value;
    let Some(mut job) = req.job else {
        return Err(ApiError::BadRequest("Job must be specified".into()));
    };
    if let Some(id) = path_id {
        if job.id != id {
            return Err(ApiError::BadRequest("Job ID does not match name".into()));
        }
    }
    if job.namespace.is_empty() {
        job.namespace = if q.namespace == "*" { "default".into() } else { q.namespace.clone() };
    }
    job.canonicalize();
    validate(&job)?;
    // Server-maintained fields are the server's, whatever the client sent.
    job.submit_time = now_unix_nanos();
    job.status = String::new();
    job.status_description = String::new();
    let existing = ctx.read(&q, |s| s.job(&job.namespace, &job.id).cloned()).await?;
    if req.enforce_index {
        // Fail fast with the same message the state machine would give; the check that counts
        // is the one `JobRegisterIfIndex` makes in log order.
        check_index(existing.as_ref(), req.job_modify_index)?;
    }
    if req.preserve_counts {
        if let Some(old) = &existing {
            for g in &mut job.task_groups {
                if let Some(og) = old.group(&g.name) {
                    g.count = og.count;
                }
            }
        }
    }
    let eval = eval_for(&job, TriggeredBy::JobRegister);
    let enforce = req.enforce_index.then_some(req.job_modify_index);
    write_job(ctx, job, eval, enforce, warnings, q.pretty).await
}

fn check_index(existing: Option<&Job>, wanted: u64) -> Result<(), ApiError> {
    match existing {
        Some(_) if wanted == 0 => {
            Err(ApiError::Conflict("Enforcing job modify index 0: job already exists".into()))
        }
        Some(j) if j.job_modify_index != wanted => Err(ApiError::Conflict(format!(
            "Enforcing job modify index {wanted}: job exists with conflicting job modify index: {}",
            j.job_modify_index
        ))),
        None if wanted != 0 => Err(ApiError::Conflict(format!(
            "Enforcing job modify index {wanted}: job does not exist"
        ))),
        _ => Ok(()),
    }
}

/// Writes a job version with its evaluation; with `enforce` set, only if the job's modify index
/// is still that one (409 otherwise).
async fn write_job(
    ctx: &Ctx,
    job: Job,
    eval: Evaluation,
    enforce: Option<u64>,
    warnings: String,
    pretty: bool,
) -> Result<Reply, ApiError> {
    let eval_id = eval.id.clone();
    let (job, eval) = (Box::new(job), Some(Box::new(eval)));
    let command = match enforce {
        Some(job_modify_index) => Command::JobRegisterIfIndex { job, eval, job_modify_index },
        None => Command::JobRegister { job, eval },
    };
    let w = ctx.handle.write(command).await?;
    let job_modify_index = match w.outcome {
        Outcome::JobRegistered { job_modify_index, .. } => job_modify_index,
        Outcome::Rejected { reason } if enforce.is_some() && reason.starts_with("Enforcing") => {
            return Err(ApiError::Conflict(reason))
        }
        other => return Err(outcome_error(other)),
    };
    let resp = json!({
        "EvalID": eval_id,
        "EvalCreateIndex": w.index,
        "JobModifyIndex": job_modify_index,
        "Warnings": warnings,
        "Index": w.index,
        "LastContact": 0,
        "KnownLeader": true,
    });
    Ok(Reply::json(&resp, w.index, pretty))
}

/// A refusal recorded by the state machine, as an API error.
pub(crate) fn outcome_error(o: Outcome) -> ApiError {
    match o {
        Outcome::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
        Outcome::Rejected { reason } => ApiError::BadRequest(reason),
        other => ApiError::Internal(format!("unexpected outcome {other:?}")),
    }
}

/// `PUT/POST /v1/jobs`.
pub async fn register(
    AxState(ctx): AxState<Ctx>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let req = decode_register(&bytes)?;
    register_job(&ctx, &pairs, req, None).await
}

/// `PUT/POST /v1/job/:id`.
pub async fn register_at(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let req = decode_register(&bytes)?;
    register_job(&ctx, &pairs, req, Some(&id)).await
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ParseRequest {
    #[serde(rename = "JobHCL")]
    job_hcl: String,
    canonicalize: bool,
    variables: String,
    region: String,
    namespace: String,
}

/// `PUT/POST /v1/jobs/parse`: HCL to the API's JSON, with filesystem functions disabled.
pub async fn parse(pairs: Pairs, bytes: Bytes) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let req: ParseRequest = body::decode(&bytes)?.value;
    if req.job_hcl.trim().is_empty() {
        return Err(ApiError::BadRequest("Job HCL must be specified".into()));
    }
    let opts = jobspec::ParseOptions {
        vars: parse_variables(&req.variables)?,
        allow_fs: false,
        ..jobspec::ParseOptions::default()
    };
    let parsed = if req.canonicalize {
        jobspec::parse_str("input.hcl", &req.job_hcl, &opts)
    } else {
        jobspec::parse_str_raw("input.hcl", &req.job_hcl, &opts)
    };
    let job = parsed.map_err(|d| ApiError::BadRequest(d.to_string()))?;
    Ok(Reply::json(&job, 0, q.pretty))
}

/// Nomad's `Variables` is the text of a variables file; orc accepts its simple form, one
/// `name = value` per line (strings quoted or not), and refuses anything else rather than
/// guessing.
fn parse_variables(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(ApiError::BadRequest(format!(
                "Variables line {}: expected name = value",
                n + 1
            )));
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        out.push((name.trim().to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn job_not_found() -> ApiError {
    ApiError::NotFound("job not found".into())
}

/// `GET /v1/job/:id`.
pub async fn read(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (job, index) = ctx.query(&q, &[Table::Jobs], |s| s.job(&q.namespace, &id).cloned()).await?;
    let job = job.ok_or_else(job_not_found)?;
    Ok(Reply::json(&job, index, q.pretty))
}

/// `GET /v1/job/:id/versions`.
pub async fn versions(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (versions, index) = ctx
        .query(&q, &[Table::Jobs], |s| {
            s.job_versions(&q.namespace, &id).into_iter().cloned().collect::<Vec<Job>>()
        })
        .await?;
    if versions.is_empty() {
        return Err(job_not_found());
    }
    Ok(Reply::json(&json!({"Versions": versions, "Diffs": null}), index, q.pretty))
}

/// `GET /v1/job/:id/allocations`.
pub async fn allocations(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    // `all` asks for allocations of earlier jobs with the same ID; orc keeps allocations by
    // namespace and ID only, so every allocation is already included.
    bool_param(&pairs, "all", false)?;
    let parts = StubParts { resources: false, task_states: true };
    let (listing, index) = ctx
        .query(&q, &[Table::Allocs], |s| {
            let allocs = s.allocs_by_job(&q.namespace, &id);
            alloc_listing(s, allocs.into_iter(), &q, parts)
        })
        .await?;
    let (body, next_token) = listing?;
    Ok(Reply::raw(body, index).with_next_token(next_token))
}

/// `GET /v1/job/:id/evaluations`.
pub async fn evaluations(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (evals, index) = ctx
        .query(&q, &[Table::Evals], |s| {
            s.evals_by_job(&q.namespace, &id).into_iter().cloned().collect::<Vec<Evaluation>>()
        })
        .await?;
    Ok(Reply::json(&evals, index, q.pretty))
}

/// `GET /v1/job/:id/summary`.
pub async fn summary(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (summary, index) = ctx
        .query(&q, &[Table::Jobs, Table::Allocs], |s| {
            s.job(&q.namespace, &id).map(|j| json!(summary_of(s, j)))
        })
        .await?;
    Ok(Reply::json(&summary.ok_or_else(job_not_found)?, index, q.pretty))
}

/// `GET /v1/job/:id/deployments`: orc has no deployments, so an existing job has none.
pub async fn deployments(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (found, index) =
        ctx.query(&q, &[Table::Jobs], |s| s.job(&q.namespace, &id).is_some()).await?;
    if !found {
        return Err(job_not_found());
    }
    Ok(Reply::json(&json!([]), index, q.pretty))
}

/// `GET /v1/job/:id/deployment`: the latest deployment, `null` as Nomad answers for a job
/// without one.
pub async fn deployment(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (found, index) =
        ctx.query(&q, &[Table::Jobs], |s| s.job(&q.namespace, &id).is_some()).await?;
    if !found {
        return Err(job_not_found());
    }
    Ok(Reply::json(&Value::Null, index, q.pretty))
}

/// `GET /v1/job/:id/scale`.
pub async fn scale_status(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (status, index) = ctx
        .query(&q, &[Table::Jobs, Table::Allocs], |s| {
            let j = s.job(&q.namespace, &id)?;
            let allocs = s.allocs_by_job(&j.namespace, &j.id);
            let groups: Map<String, Value> = j
                .task_groups
                .iter()
                .map(|g| {
                    let of_group = allocs.iter().filter(|a| a.task_group == g.name);
                    let live: Vec<_> = of_group.filter(|a| !a.is_terminal()).collect();
                    let running =
                        live.iter().filter(|a| a.client_status == ClientStatus::Running).count();
                    let healthy = live
                        .iter()
                        .filter(|a| {
                            a.deployment_status.as_ref().and_then(|d| d.healthy) == Some(true)
                        })
                        .count();
                    let unhealthy = live
                        .iter()
                        .filter(|a| {
                            a.deployment_status.as_ref().and_then(|d| d.healthy) == Some(false)
                        })
                        .count();
                    (
                        g.name.clone(),
                        json!({"Desired": g.count, "Placed": live.len(), "Running": running,
                               "Healthy": healthy, "Unhealthy": unhealthy, "Events": null}),
                    )
                })
                .collect();
            Some(json!({
                "JobID": j.id,
                "Namespace": j.namespace,
                "JobCreateIndex": j.create_index,
                "JobModifyIndex": j.job_modify_index,
                "JobStopped": j.stop,
                "TaskGroups": groups,
            }))
        })
        .await?;
    Ok(Reply::json(&status.ok_or_else(job_not_found)?, index, q.pretty))
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ScaleRequest {
    count: Option<i64>,
    target: BTreeMap<String, String>,
    message: String,
    error: bool,
    meta: BTreeMap<String, Value>,
    policy_override: bool,
    enforce_index: bool,
    job_modify_index: u64,
    region: String,
    namespace: String,
}

/// `PUT/POST /v1/job/:id/scale`: a new job version with one group's count changed.
pub async fn scale(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let req = body::decode::<ScaleRequest>(&bytes)?;
    let warnings = req.warnings();
    let req = req.value;
    let Some(group) = req.target.get("Group").filter(|g| !g.is_empty()) else {
        return Err(ApiError::BadRequest("missing task group name for scaling action".into()));
    };
    let Some(count) = req.count else {
        // Nomad records a scaling event without a count; orc keeps no scaling events.
        return Err(ApiError::BadRequest("Count must be specified".into()));
    };
    let mut job =
        ctx.read(&q, |s| s.job(&q.namespace, &id).cloned()).await?.ok_or_else(job_not_found)?;
    if req.enforce_index && job.job_modify_index != req.job_modify_index {
        return Err(ApiError::Conflict(format!(
            "Enforcing job modify index {}: job exists with conflicting job modify index: {}",
            req.job_modify_index, job.job_modify_index
        )));
    }
    if job.stop {
        return Err(ApiError::BadRequest(
            "job is stopped; scaling a stopped job is not allowed".into(),
        ));
    }
    let Some(tg) = job.task_groups.iter_mut().find(|g| &g.name == group) else {
        return Err(ApiError::BadRequest(format!(
            "task group {group:?} specified for scaling does not exist in job"
        )));
    };
    if count < 0 || count > i64::from(MAX_COUNT) {
        return Err(ApiError::BadRequest(format!("scaling action count {count} is out of range")));
    }
    if let Some(s) = &tg.scaling {
        if let Some(min) = s.min {
            if count < i64::from(min) {
                return Err(ApiError::BadRequest(format!(
                    "group count was less than scaling policy minimum: {count} < {min}"
                )));
            }
        }
        if s.max > 0 && count > i64::from(s.max) {
            return Err(ApiError::BadRequest(format!(
                "group count was greater than scaling policy maximum: {count} > {}",
                s.max
            )));
        }
    }
    tg.count = count as u32;
    job.submit_time = now_unix_nanos();
    let eval = eval_for(&job, TriggeredBy::JobScaling);
    let enforce = req.enforce_index.then_some(req.job_modify_index);
    write_job(&ctx, job, eval, enforce, warnings, q.pretty).await
}

/// `DELETE /v1/job/:id`: stops the job, or with `purge=true` removes it.
pub async fn deregister(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let purge = bool_param(&pairs, "purge", false)?;
    bool_param(&pairs, "global", false)?;
    let job =
        ctx.read(&q, |s| s.job(&q.namespace, &id).cloned()).await?.ok_or_else(job_not_found)?;
    let mut eval = eval_for(&job, TriggeredBy::JobDeregister);
    if let Some(p) = param(&pairs, "eval_priority").filter(|p| !p.is_empty()) {
        eval.priority = p
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| ApiError::BadRequest(format!("invalid eval_priority {p:?}")))?;
    }
    let eval_id = eval.id.clone();
    let (namespace, job_id, eval) = (job.namespace.clone(), job.id.clone(), Some(Box::new(eval)));
    let command = if purge {
        Command::JobPurge { namespace, job_id, eval }
    } else {
        Command::JobDeregister { namespace, job_id, eval }
    };
    let w = ctx.handle.write(command).await?;
    let job_modify_index = match w.outcome {
        Outcome::JobRegistered { job_modify_index, .. } => job_modify_index,
        Outcome::Applied => w.index,
        other => return Err(outcome_error(other)),
    };
    let resp = json!({
        "EvalID": eval_id,
        "EvalCreateIndex": w.index,
        "JobModifyIndex": job_modify_index,
        "VolumeEvalID": "",
        "VolumeEvalIndex": 0,
        "Index": w.index,
        "LastContact": 0,
        "KnownLeader": true,
    });
    Ok(Reply::json(&resp, w.index, q.pretty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_without_count_get_one() {
        let mut v = json!({"TaskGroups": [{"Name": "a"}, {"Name": "b", "count": 3}, {"Name": "c", "Count": null}]});
        default_counts(&mut v);
        assert_eq!(v["TaskGroups"][0]["Count"], 1);
        assert_eq!(v["TaskGroups"][1]["count"], 3);
        assert_eq!(v["TaskGroups"][2]["Count"], 1);
    }

    #[test]
    fn enforce_index_follows_nomad() {
        let j = Job { job_modify_index: 7, ..Job::default() };
        assert!(check_index(None, 0).is_ok());
        assert_eq!(check_index(Some(&j), 0).unwrap_err().status(), 409);
        assert!(check_index(Some(&j), 7).is_ok());
        assert_eq!(
            check_index(Some(&j), 6).unwrap_err().to_string(),
            "Enforcing job modify index 6: job exists with conflicting job modify index: 7"
        );
        assert_eq!(check_index(None, 3).unwrap_err().status(), 409);
    }

    #[test]
    fn json_jobs_get_the_driver_config_checks_of_job_files() {
        let mut job: Job = serde_json::from_value(serde_json::json!({
            "ID": "web", "Name": "web", "Priority": 50,
            "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [
                {"Name": "www", "Driver": "pot", "Config": {
                    "image": "https://example.org/img", "pot": "nginx", "tag": "1.0",
                    "port_map": {"http": "80"}, "mount": ["relative:/jail"], "imagee": 1}},
                {"Name": "sh", "Driver": "raw_exec", "Config": {"args": ["-c"]}},
                {"Name": "d", "Driver": "docker", "Config": {}}
            ]}]
        }))
        .unwrap();
        job.canonicalize();
        let e = validate(&job).unwrap_err().to_string();
        let expected = [
            "5 error(s) occurred:\n",
            r#"* group "g", task "www": unknown attribute "imagee" in pot task config (did you mean "image"? valid keys are: args, attributes, command, copy, extra_hosts, image, mount, mount_read_only, network_mode, port_map, pot, tag)"#,
            r#"* group "g", task "www": mount entry "relative:/jail": the host path "relative" must be absolute (paths must start with /)"#,
            r#"* group "g", task "www": port_map refers to port "http", which is not declared (declare it in the group: `network { port "http" {} }`)"#,
            r#"* group "g", task "sh": raw_exec task config needs "command" (add `command = "/usr/local/bin/app"`)"#,
            r#"* group "g", task "d": unknown driver "docker" (orc's drivers are: pot, raw_exec)"#,
        ];
        assert_eq!(e, expected.join("\n"));
    }

    #[test]
    fn validation_lists_every_problem() {
        let job = Job { priority: 50, ..Job::default() };
        let e = validate(&job).unwrap_err().to_string();
        assert_eq!(
            e,
            "3 error(s) occurred:\n\n* Missing job ID\n* Missing job name\n* Missing job task groups"
        );
    }
}
