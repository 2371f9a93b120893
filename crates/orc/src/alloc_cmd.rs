//! `orc alloc status` and `orc eval status`: one allocation or evaluation, found by ID or
//! prefix, printed as Nomad prints it.

use crate::conn::{context, resolve, ReadArgs};
use crate::monitor::format_failure;
use crate::output::{ago, kv, now_nanos, pretty_json, print, s, short_id, table, timestamp};
use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The ID or a unique prefix of it.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `orc alloc status ID`.
pub fn alloc_status(args: &StatusArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let stub = resolve(&client, "/v1/allocations", &args.id, "allocation")?;
    let (a, _) = client
        .get::<Value>(&format!("/v1/allocation/{}", s(&stub, "ID")), &[])
        .map_err(|e| context("Error querying allocation", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&a)));
        return Ok(0);
    }
    let v = args.read.verbose;
    let now = now_nanos();
    let mut rows = vec![
        ("ID", short_id(&s(&a, "ID"), v)),
        ("Eval ID", short_id(&s(&a, "EvalID"), v)),
        ("Name", s(&a, "Name")),
        ("Node ID", short_id(&s(&a, "NodeID"), v)),
        ("Node Name", s(&a, "NodeName")),
        ("Job ID", s(&a, "JobID")),
        ("Job Version", s(&a, "JobVersion")),
        ("Client Status", s(&a, "ClientStatus")),
        ("Client Description", s(&a, "ClientDescription")),
        ("Desired Status", s(&a, "DesiredStatus")),
        ("Desired Description", s(&a, "DesiredDescription")),
        ("Created", ago(a["CreateTime"].as_i64().unwrap_or(0), now)),
        ("Modified", ago(a["ModifyTime"].as_i64().unwrap_or(0), now)),
    ];
    // Nomad prints the health the agent decided (`DeploymentStatus.Healthy`) when there is one.
    let d = &a["DeploymentStatus"];
    if !d.is_null() {
        let health = match d["Healthy"].as_bool() {
            Some(true) => "healthy",
            Some(false) => "unhealthy",
            None => "unset",
        };
        rows.push(("Deployment Health", health.to_owned()));
    }
    let mut out = kv(&rows);
    let ports: Vec<String> = a["AllocatedResources"]["Shared"]["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}: {}", s(p, "Label"), s(p, "Value")))
        .collect();
    if !ports.is_empty() {
        out.push_str(&format!("\nAllocation Addresses:\n{}\n", ports.join("\n")));
    }
    let group = s(&a, "TaskGroup");
    let tasks: Vec<Value> = a["Job"]["TaskGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["Name"] == group.as_str())
        .flat_map(|g| g["Tasks"].as_array().cloned().unwrap_or_default())
        .collect();
    for t in tasks {
        let name = s(&t, "Name");
        let state = &a["TaskStates"][&name];
        let st = if state.is_null() { "pending".to_owned() } else { s(state, "State") };
        out.push_str(&format!("\nTask {name:?} is {st:?}\n"));
        let res = &a["AllocatedResources"]["Tasks"][&name];
        let cpu = res["Cpu"]["CpuShares"].as_u64().unwrap_or(0);
        let mem = res["Memory"]["MemoryMB"].as_u64().unwrap_or(0);
        out.push_str("Task Resources:\n");
        out.push_str(&table(&[
            vec!["CPU".into(), "Memory".into()],
            vec![format!("{cpu} MHz"), format!("{mem} MiB")],
        ]));
        let events = state["Events"].as_array().cloned().unwrap_or_default();
        out.push_str("\nRecent Events:\n");
        let mut rows = vec![vec!["Time".to_owned(), "Type".to_owned(), "Description".to_owned()]];
        for e in events.iter().rev().take(10) {
            let desc = match s(e, "DisplayMessage") {
                d if d.is_empty() => s(e, "Message"),
                d => d,
            };
            rows.push(vec![timestamp(e["Time"].as_i64().unwrap_or(0)), s(e, "Type"), desc]);
        }
        out.push_str(&table(&rows));
    }
    print(&out);
    Ok(0)
}

/// `orc eval status ID`.
pub fn eval_status(args: &StatusArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let stub = resolve(&client, "/v1/evaluations", &args.id, "evaluation")?;
    let id = s(&stub, "ID");
    let (e, _) = client
        .get::<Value>(&format!("/v1/evaluation/{id}"), &[("related", "true")])
        .map_err(|e| context("Error querying evaluation", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&e)));
        return Ok(0);
    }
    let v = args.read.verbose;
    let now = now_nanos();
    let failures = e["FailedTGAllocs"].as_object().filter(|f| !f.is_empty());
    let mut out = kv(&[
        ("ID", short_id(&id, v)),
        ("Create Time", ago(e["CreateTime"].as_i64().unwrap_or(0), now)),
        ("Modify Time", ago(e["ModifyTime"].as_i64().unwrap_or(0), now)),
        ("Status", s(&e, "Status")),
        ("Status Description", s(&e, "StatusDescription")),
        ("Type", s(&e, "Type")),
        ("TriggeredBy", s(&e, "TriggeredBy")),
        ("Job ID", s(&e, "JobID")),
        ("Namespace", s(&e, "Namespace")),
        ("Priority", s(&e, "Priority")),
        ("Placement Failures", failures.is_some().to_string()),
    ]);
    if let Some(f) = failures {
        out.push_str("\n==> Failed Placements\n");
        for (g, m) in f {
            let queued = e["QueuedAllocations"][g].as_u64().unwrap_or(1).max(1);
            out.push_str(&format_failure(g, m, queued, ""));
        }
        let blocked = s(&e, "BlockedEval");
        if !blocked.is_empty() {
            out.push_str(&format!(
                "\nEvaluation {:?} waiting for additional capacity to place remainder\n",
                short_id(&blocked, v)
            ));
        }
    }
    let mut related = e["RelatedEvals"].as_array().cloned().unwrap_or_default();
    related.sort_by_key(|r| r["CreateIndex"].as_u64().unwrap_or(0));
    if !related.is_empty() {
        out.push_str("\nRelated Evaluations\n");
        let mut rows = vec![["ID", "Priority", "Triggered By", "Node ID", "Status", "Description"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
        for r in &related {
            rows.push(vec![
                short_id(&s(r, "ID"), v),
                s(r, "Priority"),
                s(r, "TriggeredBy"),
                short_id(&s(r, "NodeID"), v),
                s(r, "Status"),
                s(r, "StatusDescription"),
            ]);
        }
        out.push_str(&table(&rows));
    }
    print(&out);
    Ok(0)
}
