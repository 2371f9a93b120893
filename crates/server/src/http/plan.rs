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

/// Maps whose entries Nomad diffs as fields named `Map[key]` rather than as an object.
const KEYED_FIELDS: &[&str] = &["Meta", "Env"];

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn field(kind: &str, name: &str, old: Option<&Value>, new: Option<&Value>) -> Value {
    json!({"Type": kind, "Name": name, "Old": old.map(scalar).unwrap_or_default(),
           "New": new.map(scalar).unwrap_or_default(), "Annotations": null})
}

/// Nomad's `annotateCountChange`: a larger count "forces create", a smaller one "forces
/// destroy" (an absent side counts as 0).
fn annotate_count(fields: &mut [Value]) {
    let Some(count) = fields.iter_mut().find(|f| f["Name"] == "Count") else {
        return;
    };
    let side = |k: &str| count[k].as_str().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let annotation = match side("Old").cmp(&side("New")) {
        std::cmp::Ordering::Less => "forces create",
        std::cmp::Ordering::Greater => "forces destroy",
        std::cmp::Ordering::Equal => return,
    };
    count["Annotations"] = json!([annotation]);
}

/// The singular Nomad names list elements by: `Constraints` → `Constraint`.
fn singular(name: &str) -> String {
    if let Some(stem) = name.strip_suffix("ies") {
        format!("{stem}y")
    } else {
        name.strip_suffix('s').unwrap_or(name).to_owned()
    }
}

/// Nomad's `FieldDiff`s and `ObjectDiff`s between two JSON objects of the same type: scalars
/// are fields, nested structs are objects (recursively), lists of scalars are set objects whose
/// fields carry the list's name, lists of structs are matched by value (an element that
/// changed is one object deleted and one added). Only changes are listed; `skip` names fields
/// diffed elsewhere (task groups, tasks) or kept by the server.
fn diff_members(
    old: Option<&Value>,
    new: Option<&Value>,
    skip: &[&str],
) -> (Vec<Value>, Vec<Value>) {
    let (mut fields, mut objects) = (Vec::new(), Vec::new());
    let empty = Map::new();
    let o = present(old).and_then(Value::as_object).unwrap_or(&empty);
    let n = present(new).and_then(Value::as_object).unwrap_or(&empty);
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let (ov, nv) = (present(o.get(k)), present(n.get(k)));
        let is = |f: fn(&Value) -> bool| ov.is_some_and(f) || nv.is_some_and(f);
        if is(Value::is_object) && KEYED_FIELDS.contains(&k.as_str()) {
            let (om, nm) = (ov.and_then(Value::as_object), nv.and_then(Value::as_object));
            let sub: BTreeSet<&String> = om.into_iter().chain(nm).flat_map(|m| m.keys()).collect();
            for key in sub {
                let name = format!("{k}[{key}]");
                let (a, b) = (om.and_then(|m| m.get(key)), nm.and_then(|m| m.get(key)));
                if let Some(f) = scalar_diff(&name, a, b) {
                    fields.push(f);
                }
            }
        } else if is(Value::is_object) {
            push_object(&mut objects, object_diff(k, ov, nv, &[]));
        } else if is(Value::is_array) {
            let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
            let (ol, nl) = (list(ov), list(nv));
            if ol.iter().chain(&nl).all(|e| !e.is_object() && !e.is_array()) {
                let mut set = Vec::new();
                for e in ol.iter().filter(|e| !nl.contains(e)) {
                    set.push(field("Deleted", k, Some(e), None));
                }
                for e in nl.iter().filter(|e| !ol.contains(e)) {
                    set.push(field("Added", k, None, Some(e)));
                }
                if !set.is_empty() {
                    let kind = match (ol.is_empty(), nl.is_empty()) {
                        (true, false) => "Added",
                        (false, true) => "Deleted",
                        _ => "Edited",
                    };
                    objects.push(json!({"Type": kind, "Name": k, "Fields": set, "Objects": []}));
                }
            } else {
                // Elements with a `Name` (services, checks, ...) are matched by it, as Nomad
                // does, so a changed one is one edited object; the rest by value.
                let name = singular(k);
                let named = |e: &Value| e["Name"].as_str().map(str::to_owned);
                let find = |l: &[Value], n: &Option<String>| {
                    n.as_ref().and_then(|_| l.iter().find(|x| named(x) == *n).cloned())
                };
                for e in ol.iter().filter(|e| !nl.contains(e)) {
                    let other = find(&nl, &named(e));
                    push_object(&mut objects, object_diff(&name, Some(e), other.as_ref(), &[]));
                }
                for e in nl.iter().filter(|e| !ol.contains(e)) {
                    if find(&ol, &named(e)).is_none() {
                        push_object(&mut objects, object_diff(&name, None, Some(e), &[]));
                    }
                }
            }
        } else if let Some(f) = scalar_diff(k, ov, nv) {
            fields.push(f);
        }
    }
    (fields, objects)
}

/// Keeps an object diff that shows something: changed, and not an empty map or struct.
fn push_object(objects: &mut Vec<Value>, d: Value) {
    let empty = |k: &str| d[k].as_array().is_none_or(|a| a.is_empty());
    if d["Type"] != "None" && !(empty("Fields") && empty("Objects")) {
        objects.push(d);
    }
}

fn scalar_diff(name: &str, old: Option<&Value>, new: Option<&Value>) -> Option<Value> {
    let kind = match (old, new) {
        (None, Some(_)) => "Added",
        (Some(_), None) => "Deleted",
        (Some(a), Some(b)) if scalar(a) != scalar(b) => "Edited",
        _ => return None,
    };
    Some(field(kind, name, old, new))
}

/// Nomad's `ObjectDiff`.
fn object_diff(name: &str, old: Option<&Value>, new: Option<&Value>, skip: &[&str]) -> Value {
    let (fields, objects) = diff_members(old, new, skip);
    let kind = kind_of(present(old), present(new), &fields, !objects.is_empty());
    json!({"Type": kind, "Name": name, "Fields": fields, "Objects": objects})
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

/// Nomad's `JobDiff`: fields and objects of the job, then each group and task matched by name,
/// each with its own fields and objects.
fn job_diff(old: Option<&Job>, new: &Job, updates: &Map<String, Value>) -> Value {
    let old_v = old.map(|j| serde_json::to_value(j).unwrap_or(Value::Null));
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let (fields, objects) = diff_members(old_v.as_ref(), Some(&new_v), SERVER_FIELDS);
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
        let (mut gfields, gobjects) = diff_members(o.as_ref(), n.as_ref(), SERVER_FIELDS);
        annotate_count(&mut gfields);
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
            let (tf, to) = diff_members(a.as_ref(), b.as_ref(), SERVER_FIELDS);
            let kind = kind_of(a.as_ref(), b.as_ref(), &tf, !to.is_empty());
            task_changed |= kind != "None";
            let annotations = match kind {
                "Added" => json!(["forces create"]),
                "Deleted" => json!(["forces destroy"]),
                "Edited" => json!(["forces create/destroy update"]),
                _ => Value::Null,
            };
            task_diffs.push(json!({"Type": kind, "Name": t, "Fields": tf, "Objects": to,
                                   "Annotations": annotations}));
        }
        let kind = kind_of(o.as_ref(), n.as_ref(), &gfields, task_changed || !gobjects.is_empty());
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
        tg_diffs.push(json!({"Type": kind, "Name": name, "Fields": gfields, "Objects": gobjects,
                             "Tasks": task_diffs, "Updates": u}));
    }
    json!({
        "Type": kind_of(old_v.as_ref(), Some(&new_v), &fields, any_child || !objects.is_empty()),
        "ID": new.id,
        "Fields": fields,
        "Objects": objects,
        "TaskGroups": tg_diffs,
    })
}
