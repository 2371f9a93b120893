//! Following an evaluation to its end, as `nomad job run` does: blocking queries on the
//! evaluation, then the allocations it placed and the reasons for any it could not.
//!
//! It prints; the exit code it returns (0 placed, 2 placement failures, 1 evaluation failed)
//! is what scripts rely on. It does not follow deployments (orc has none).

use crate::conn::context;
use crate::output::{ago, now_nanos, s, short_id, timestamp};
use api::client::Client;
use serde_json::Value;
use std::fmt::Write as _;

fn now() -> String {
    timestamp(now_nanos())
}

/// Monitors `eval_id` (and the evaluations it chains to) until it finishes.
pub fn monitor(client: &Client, eval_id: &str, verbose: bool) -> anyhow::Result<u8> {
    let mut eval_id = eval_id.to_owned();
    let mut out = String::new();
    let _ =
        writeln!(out, "==> {}: Monitoring evaluation \"{}\"", now(), short_id(&eval_id, verbose));
    crate::output::print(&std::mem::take(&mut out));
    loop {
        let eval = wait_done(client, &eval_id)?;
        let job = s(&eval, "JobID");
        let node = s(&eval, "NodeID");
        if !node.is_empty() {
            let _ = writeln!(
                out,
                "    {}: Evaluation triggered by node \"{}\"",
                now(),
                short_id(&node, verbose)
            );
        } else {
            let _ = writeln!(out, "    {}: Evaluation triggered by job \"{job}\"", now());
        }
        let path = format!("/v1/evaluation/{eval_id}/allocations");
        let (mut allocs, _) = client
            .get::<Vec<Value>>(&path, &[])
            .map_err(|e| context("Error reading evaluation allocations", e))?;
        allocs.sort_by_key(|a| (a["Name"].as_str().map(str::to_owned), s(a, "ID")));
        for a in &allocs {
            let verb = if a["CreateIndex"] == a["ModifyIndex"] { "created" } else { "modified" };
            let _ = writeln!(
                out,
                "    {}: Allocation \"{}\" {verb}: node \"{}\", group \"{}\"",
                now(),
                short_id(&s(a, "ID"), verbose),
                short_id(&s(a, "NodeID"), verbose),
                s(a, "TaskGroup")
            );
        }
        let status = s(&eval, "Status");
        let _ =
            writeln!(out, "    {}: Evaluation status changed: \"pending\" -> \"{status}\"", now());
        let failures = eval["FailedTGAllocs"].as_object().filter(|f| !f.is_empty());
        let mut code = if status == "complete" { 0 } else { 1 };
        match failures {
            None => {
                let _ = writeln!(
                    out,
                    "==> {}: Evaluation \"{}\" finished with status \"{status}\"",
                    now(),
                    short_id(&eval_id, verbose)
                );
            }
            Some(failed) => {
                code = 2;
                let _ = writeln!(
                    out,
                    "==> {}: Evaluation \"{}\" finished with status \"{status}\" but failed to place all allocations:",
                    now(),
                    short_id(&eval_id, verbose)
                );
                for (group, metric) in failed {
                    let queued = eval["QueuedAllocations"][group].as_u64().unwrap_or(1).max(1);
                    out.push_str(&format_failure(group, metric, queued, "    "));
                }
                let blocked = s(&eval, "BlockedEval");
                if !blocked.is_empty() {
                    let _ = writeln!(
                        out,
                        "    {}: Evaluation \"{}\" waiting for additional capacity to place remainder",
                        now(),
                        short_id(&blocked, verbose)
                    );
                }
            }
        }
        crate::output::print(&std::mem::take(&mut out));
        let next = s(&eval, "NextEval");
        if next.is_empty() {
            return Ok(code);
        }
        let _ = writeln!(
            out,
            "==> {}: Monitoring next evaluation \"{}\"",
            now(),
            short_id(&next, verbose)
        );
        eval_id = next;
    }
}

/// Blocks on the evaluation until it is no longer pending.
fn wait_done(client: &Client, eval_id: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/evaluation/{eval_id}");
    let mut index = 0u64;
    loop {
        let idx = index.to_string();
        let (eval, meta) = client
            .get::<Value>(&path, &[("index", &idx), ("wait", "30s")])
            .map_err(|e| context("Error reading evaluation", e))?;
        if eval["Status"] != "pending" {
            return Ok(eval);
        }
        index = meta.index.max(index);
    }
}

/// Nomad's placement-failure block: which constraint filtered how many nodes, which resource
/// was exhausted where.
pub fn format_failure(group: &str, metric: &Value, failed: u64, indent: &str) -> String {
    let mut out = String::new();
    let plural = if failed == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "{indent}Task Group \"{group}\" (failed to place {failed} allocation{plural}):"
    );
    let evaluated = metric["NodesEvaluated"].as_u64().unwrap_or(0);
    if evaluated == 0 {
        let _ = writeln!(out, "{indent}  * No nodes were eligible for evaluation");
    }
    let counts = |key: &str| -> Vec<(String, u64)> {
        metric[key]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default()
    };
    for (class, n) in counts("ClassFiltered") {
        let _ = writeln!(out, "{indent}  * Class {class:?}: {n} nodes excluded by filter");
    }
    for (c, n) in counts("ConstraintFiltered") {
        let _ = writeln!(out, "{indent}  * Constraint {c:?}: {n} nodes excluded by filter");
    }
    let exhausted = metric["NodesExhausted"].as_u64().unwrap_or(0);
    if exhausted > 0 {
        let _ = writeln!(out, "{indent}  * Resources exhausted on {exhausted} nodes");
    }
    for (class, n) in counts("ClassExhausted") {
        let _ = writeln!(out, "{indent}  * Class {class:?} exhausted on {n} nodes");
    }
    for (d, n) in counts("DimensionExhausted") {
        let _ = writeln!(out, "{indent}  * Dimension {d:?} exhausted on {n} nodes");
    }
    out
}

/// A "Created"/"Modified" pair of ages for allocation tables.
pub fn ages(a: &Value, now: i64) -> (String, String) {
    (
        ago(a["CreateTime"].as_i64().unwrap_or(0), now),
        ago(a["ModifyTime"].as_i64().unwrap_or(0), now),
    )
}
