//! `/v1/job/:id/plan`: a dry run of the scheduler against the current state, with the diff
//! between the registered job and the proposed one. Nothing is written.

use super::jobs::{eval_for, validate};
use super::ApiError;
use super::{body, query_options, Ctx, Pairs, Reply};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use model::{Job, TriggeredBy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PlanRequest {
    job: Option<Job>,
    diff: bool,
    policy_override: bool,
    region: String,
    namespace: String,
}

/// `PUT/POST /v1/job/:id/plan`.
pub async fn plan(
    AxState(ctx): AxState<Ctx>,
    Path(id): Path<String>,
    pairs: Pairs,
    bytes: Bytes,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let mut value = body::parse_value(&bytes)?;
    if let Some(job) = value
        .as_object_mut()
        .and_then(|o| o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("Job")).map(|(_, v)| v))
    {
        super::jobs::default_counts(job);
    }
    let req = body::decode_value::<PlanRequest>(value, &bytes)?;
    let warnings = req.warnings();
    let req = req.value;
    let Some(mut job) = req.job else {
        return Err(ApiError::BadRequest("Job must be specified".into()));
    };
    if job.id != id {
        return Err(ApiError::BadRequest("Job ID does not match".into()));
    }
    if job.namespace.is_empty() {
        job.namespace = q.namespace.clone();
    }
    job.canonicalize();
    validate(&job)?;
    let now = super::now_unix_nanos();
    let (resp, index) = ctx
        .read(&q, |s| {
            let existing = s.job(&job.namespace, &job.id).cloned();
            let mut planned = job.clone();
            // The planned job is what registering it would store: a new version if its
            // specification changed.
            if let Some(old) = &existing {
                planned.create_index = old.create_index;
                planned.version = if same_spec(old, &planned) { old.version } else { old.version + 1 };
            }
            let mut state = s.clone();
            let eval = eval_for(&planned, TriggeredBy::JobRegister);
            // Plan against a copy of the state with the job registered, exactly as the
            // scheduler would see it after `orc run`.
            crate::state::apply(
                &mut state,
                s.index() + 1,
                crate::state::Command::JobRegister { job: Box::new(planned), eval: None },
            );
            let (plan, _) = crate::pipeline::process(&state, &eval, now);
            let updates: Map<String, Value> = plan
                .desired_tg_updates
                .iter()
                .map(|(g, u)| {
                    (
                        g.clone(),
                        json!({"Ignore": u.ignore, "Place": u.place, "Migrate": u.migrate,
                               "Stop": u.stop, "InPlaceUpdate": u.in_place_update,
                               "DestructiveUpdate": u.destructive_update, "Canary": 0,
                               "Preemptions": 0, "RescheduleNow": u.reschedule_now,
                               "RescheduleLater": u.reschedule_later}),
                    )
                })
                .collect();
            let diff = if req.diff { job_diff(existing.as_ref(), &job, &updates) } else { Value::Null };
            let resp = json!({
                "JobModifyIndex": existing.as_ref().map_or(0, |j| j.job_modify_index),
                "CreatedEvals": null,
                "Diff": diff,
                "Annotations": {"DesiredTGUpdates": updates, "PreemptedAllocs": null},
                "FailedTGAllocs": if plan.failed_tg_allocs.is_empty() { Value::Null } else { json!(plan.failed_tg_allocs) },
                "NextPeriodicLaunch": "0001-01-01T00:00:00Z",
                "Warnings": warnings,
            });
            (resp, s.index())
        })
        .await?;
    let mut resp = resp;
    resp["Index"] = json!(index);
    Ok(Reply::json(&resp, index, q.pretty))
}

/// Fields the server maintains; they are never part of a diff.
const SERVER_FIELDS: &[&str] = &[
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "TaskGroups",
    "Tasks",
];

fn same_spec(a: &Job, b: &Job) -> bool {
    let strip = |j: &Job| {
        let mut v = serde_json::to_value(j).unwrap_or(Value::Null);
        if let Some(o) = v.as_object_mut() {
            for f in SERVER_FIELDS.iter().filter(|f| **f != "TaskGroups") {
                o.remove(*f);
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Flattens scalars (and lists of scalars) of `v` into `Name → rendering`, nested objects with
/// dotted names. Lists of objects other than groups and tasks are compared whole.
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if prefix.is_empty() && SERVER_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &name, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// Nomad's field diffs between two objects.
fn field_diffs(old: Option<&Value>, new: Option<&Value>) -> Vec<Value> {
    let mut a = Vec::new();
    let mut b = Vec::new();
    if let Some(o) = old {
        flatten(o, "", &mut a);
    }
    if let Some(n) = new {
        flatten(n, "", &mut b);
    }
    let names: BTreeSet<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
    let get = |list: &Vec<(String, String)>, k: &String| {
        list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    names
        .into_iter()
        .filter_map(|k| {
            let (o, n) = (get(&a, k), get(&b, k));
            let kind = match (&o, &n) {
                (None, Some(_)) => "Added",
                (Some(_), None) => "Deleted",
                (Some(x), Some(y)) if x != y => "Edited",
                _ => return None,
            };
            Some(json!({"Type": kind, "Name": k, "Old": o.unwrap_or_default(),
                        "New": n.unwrap_or_default(), "Annotations": null}))
        })
        .collect()
}

fn kind_of(
    old: Option<&Value>,
    new: Option<&Value>,
    fields: &[Value],
    children: bool,
) -> &'static str {
    match (old, new) {
        (None, Some(_)) => "Added",
        (Some(_), None) => "Deleted",
        _ if !fields.is_empty() || children => "Edited",
        _ => "None",
    }
}

/// Nomad's `JobDiff`: fields of the job, then each group and task matched by name.
fn job_diff(old: Option<&Job>, new: &Job, updates: &Map<String, Value>) -> Value {
    let old_v = old.map(|j| serde_json::to_value(j).unwrap_or(Value::Null));
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let fields = field_diffs(old_v.as_ref(), Some(&new_v));
    let groups = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(|v| v["TaskGroups"].as_array().cloned()).unwrap_or_default()
    };
    let (og, ng) = (groups(old_v.as_ref()), groups(Some(&new_v)));
    let names: BTreeSet<String> =
        og.iter().chain(&ng).filter_map(|g| g["Name"].as_str().map(str::to_owned)).collect();
    let by_name = |list: &[Value], n: &str| list.iter().find(|g| g["Name"] == n).cloned();
    let mut tg_diffs = Vec::new();
    let mut any_child = false;
    for name in names {
        let (o, n) = (by_name(&og, &name), by_name(&ng, &name));
        let gfields = field_diffs(o.as_ref(), n.as_ref());
        let tasks = |g: &Option<Value>| {
            g.as_ref().and_then(|g| g["Tasks"].as_array().cloned()).unwrap_or_default()
        };
        let (ot, nt) = (tasks(&o), tasks(&n));
        let tnames: BTreeSet<String> =
            ot.iter().chain(&nt).filter_map(|t| t["Name"].as_str().map(str::to_owned)).collect();
        let mut task_diffs = Vec::new();
        let mut task_changed = false;
        for t in tnames {
            let (a, b) = (by_name(&ot, &t), by_name(&nt, &t));
            let tf = field_diffs(a.as_ref(), b.as_ref());
            let kind = kind_of(a.as_ref(), b.as_ref(), &tf, false);
            task_changed |= kind != "None";
            let annotations =
                if kind == "None" { Value::Null } else { json!(["forces create/destroy update"]) };
            task_diffs.push(json!({"Type": kind, "Name": t, "Fields": tf, "Objects": null, "Annotations": annotations}));
        }
        let kind = kind_of(o.as_ref(), n.as_ref(), &gfields, task_changed);
        any_child |= kind != "None";
        let mut u = Map::new();
        if let Some(Value::Object(counts)) = updates.get(&name) {
            for (k, v) in counts {
                let key = match k.as_str() {
                    "Place" => "create",
                    "Stop" => "destroy",
                    "Ignore" => "ignore",
                    "Migrate" => "migrate",
                    "InPlaceUpdate" => "in-place update",
                    "DestructiveUpdate" => "create/destroy update",
                    _ => continue,
                };
                if v.as_u64().unwrap_or(0) > 0 {
                    u.insert(key.into(), v.clone());
                }
            }
        }
        tg_diffs.push(json!({"Type": kind, "Name": name, "Fields": gfields, "Objects": null, "Tasks": task_diffs, "Updates": u}));
    }
    json!({
        "Type": kind_of(old_v.as_ref(), Some(&new_v), &fields, any_child),
        "ID": new.id,
        "Fields": fields,
        "Objects": null,
        "TaskGroups": tg_diffs,
    })
}
