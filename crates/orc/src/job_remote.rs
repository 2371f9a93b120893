//! The job commands that talk to a server: submitting (`run`), planning, status, allocations,
//! history, inspect, scale and stop.
//!
//! Each turns arguments into API calls and prints Nomad-shaped output; the job file is parsed
//! by `jobspec` (in `job_cmd`) and everything else is decided by the server.

use crate::conn::{context, resolve, ApiArgs, ReadArgs};
use crate::monitor::{ages, format_failure, monitor};
use crate::output::{kv, now_nanos, pretty_json, print, s, short_id, table, timestamp};
use api::client::Client;
use clap::Args;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Submits a parsed job and, unless detached, monitors its evaluation.
pub fn submit(
    api: &ApiArgs,
    job: &model::Job,
    check_index: Option<u64>,
    detach: bool,
    verbose: bool,
) -> anyhow::Result<u8> {
    let client = api.client();
    let mut body = json!({ "Job": job });
    if let Some(i) = check_index {
        body["EnforceIndex"] = json!(true);
        body["JobModifyIndex"] = json!(i);
    }
    let (resp, _) = client.put::<_, Value>("/v1/jobs", &[], &body).map_err(|e| {
        if e.status() == Some(409) && check_index.is_some() {
            anyhow::anyhow!(
                "Error submitting job: {e}\n\nThe job was modified since the plan; plan again"
            )
        } else {
            context("Error submitting job", e)
        }
    })?;
    let warnings = s(&resp, "Warnings");
    if !warnings.is_empty() {
        eprintln!("Job Warnings:\n{warnings}\n");
    }
    let eval_id = s(&resp, "EvalID");
    if detach || eval_id.is_empty() {
        print("Job registration successful\n");
        if !eval_id.is_empty() {
            print(&format!("Evaluation ID: {eval_id}\n"));
        }
        return Ok(0);
    }
    monitor(&client, &eval_id, verbose)
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub vars: crate::cli::VarArgs,
    /// Show full IDs.
    #[arg(long)]
    pub verbose: bool,
    /// Do not show the job diff.
    #[arg(long = "diff", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub diff: bool,
    /// The job file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// `orc plan FILE`. Exit codes as `nomad job plan`: 0 nothing would change, 1 allocations would
/// be created or destroyed, 255 an error.
pub fn plan(args: &PlanArgs) -> anyhow::Result<u8> {
    let opts = args.vars.parse_options()?;
    let job = match jobspec::parse_file(&args.file, &opts) {
        Ok(job) => job,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(255);
        }
    };
    let client = args.api.client();
    let body = json!({"Job": job, "Diff": true});
    let (resp, _) = client
        .put::<_, Value>(&format!("/v1/job/{}/plan", job.id), &[], &body)
        .map_err(|e| context("Error during plan", e))?;
    let mut out = String::new();
    if args.diff {
        out.push_str(&format_diff(&resp["Diff"], args.verbose));
        out.push('\n');
    }
    out.push_str("Scheduler dry-run:\n");
    let failed = resp["FailedTGAllocs"].as_object().filter(|f| !f.is_empty());
    match failed {
        None => out.push_str("- All tasks successfully allocated.\n"),
        Some(f) => {
            out.push_str("- WARNING: Failed to place all allocations.\n");
            for (g, m) in f {
                let place =
                    resp["Annotations"]["DesiredTGUpdates"][g]["Place"].as_u64().unwrap_or(1);
                out.push_str(&format_failure(g, m, place.max(1), "  "));
            }
        }
    }
    let index = resp["JobModifyIndex"].as_u64().unwrap_or(0);
    let _ = write!(
        out,
        "\nJob Modify Index: {index}\n\
         To submit the job with version verification run:\n\n\
         orc job run -check-index {index} {}\n\n\
         When running the job with the check-index flag, the job will only be run if the\n\
         job modify index given matches the server-side version. If the index has\n\
         changed, another user has modified the job and the plan's results are\n\
         potentially invalid.\n",
        args.file.display()
    );
    print(&out);
    let changes = resp["Annotations"]["DesiredTGUpdates"]
        .as_object()
        .map(|u| {
            u.values().any(|g| {
                ["Place", "Stop", "Migrate", "DestructiveUpdate"]
                    .iter()
                    .any(|k| g[*k].as_u64().unwrap_or(0) > 0)
            })
        })
        .unwrap_or(false);
    Ok(u8::from(changes))
}

fn marker(kind: &str) -> &'static str {
    match kind {
        "Added" => "+",
        "Deleted" => "-",
        "Edited" => "+/-",
        _ => "",
    }
}

/// The marker and its space, or nothing for an unchanged object.
fn prefix(marker: &str) -> String {
    if marker.is_empty() {
        String::new()
    } else {
        format!("{marker} ")
    }
}

fn fields(out: &mut String, fields: &Value, indent: &str) {
    for f in fields.as_array().into_iter().flatten() {
        let (kind, name) = (s(f, "Type"), s(f, "Name"));
        let ann = annotations(f);
        let _ = match kind.as_str() {
            "Added" => writeln!(out, "{indent}+ {name}: {:?}{ann}", s(f, "New")),
            "Deleted" => writeln!(out, "{indent}- {name}: {:?}{ann}", s(f, "Old")),
            _ => writeln!(out, "{indent}+/- {name}: {:?} => {:?}{ann}", s(f, "Old"), s(f, "New")),
        };
    }
}

/// A diff's `Annotations` as `nomad job plan` appends them: ` (forces create, …)`, or nothing.
fn annotations(diff: &Value) -> String {
    diff["Annotations"]
        .as_array()
        .filter(|a| !a.is_empty())
        .map(|a| {
            let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            format!(" ({})", words.join(", "))
        })
        .unwrap_or_default()
}

/// Nomad's `ObjectDiff`s: `+/- Name {`, its fields and nested objects two spaces in, `}`.
fn objects(out: &mut String, list: &Value, indent: &str) {
    for o in list.as_array().into_iter().flatten() {
        let _ = writeln!(out, "{indent}{}{} {{", prefix(marker(&s(o, "Type"))), s(o, "Name"));
        let inner = format!("{indent}  ");
        fields(out, &o["Fields"], &inner);
        objects(out, &o["Objects"], &inner);
        let _ = writeln!(out, "{indent}}}");
    }
}

/// Renders Nomad's `JobDiff` as `nomad job plan` does.
fn format_diff(diff: &Value, verbose: bool) -> String {
    let mut out = String::new();
    let kind = s(diff, "Type");
    let _ = writeln!(out, "{}Job: {:?}", prefix(marker(&kind)), s(diff, "ID"));
    if kind != "Added" || verbose {
        fields(&mut out, &diff["Fields"], "");
        objects(&mut out, &diff["Objects"], "");
    }
    for tg in diff["TaskGroups"].as_array().into_iter().flatten() {
        let updates: Vec<String> = tg["Updates"]
            .as_object()
            .map(|u| u.iter().map(|(k, v)| format!("{v} {k}")).collect())
            .unwrap_or_default();
        let suffix =
            if updates.is_empty() { String::new() } else { format!(" ({})", updates.join(", ")) };
        let m = prefix(marker(&s(tg, "Type")));
        let _ = writeln!(out, "{m}Task Group: {:?}{suffix}", s(tg, "Name"));
        if s(tg, "Type") != "Added" || verbose {
            fields(&mut out, &tg["Fields"], "  ");
            objects(&mut out, &tg["Objects"], "  ");
        }
        for t in tg["Tasks"].as_array().into_iter().flatten() {
            let tk = s(t, "Type");
            let ann = annotations(t);
            let m = prefix(marker(&tk));
            let _ = writeln!(out, "  {m}Task: {:?}{ann}", s(t, "Name"));
            if tk == "Edited" || (tk != "None" && verbose) {
                fields(&mut out, &t["Fields"], "    ");
                objects(&mut out, &t["Objects"], "    ");
            }
        }
    }
    out
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// A job ID or prefix; without one, every job is listed.
    #[arg(value_name = "JOB")]
    pub job: Option<String>,
}

/// Finds a job by ID or prefix and reads it in full.
fn find_job(client: &Client, prefix: &str) -> anyhow::Result<Value> {
    let stub = resolve(client, "/v1/jobs", prefix, "job")?;
    let (job, _) = client
        .get::<Value>(&format!("/v1/job/{}", s(&stub, "ID")), &[])
        .map_err(|e| context("Error querying job", e))?;
    Ok(job)
}

fn alloc_rows(allocs: &[Value], verbose: bool, with_node: bool) -> String {
    let now = now_nanos();
    let mut rows = vec![[
        "ID",
        "Node ID",
        "Task Group",
        "Version",
        "Desired",
        "Status",
        "Created",
        "Modified",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    if !with_node {
        rows[0].remove(1);
    }
    let mut sorted: Vec<&Value> = allocs.iter().collect();
    sorted.sort_by_key(|a| std::cmp::Reverse(a["CreateIndex"].as_u64().unwrap_or(0)));
    for a in sorted {
        let (created, modified) = ages(a, now);
        let mut row = vec![
            short_id(&s(a, "ID"), verbose),
            short_id(&s(a, "NodeID"), verbose),
            s(a, "TaskGroup"),
            s(a, "JobVersion"),
            s(a, "DesiredStatus"),
            s(a, "ClientStatus"),
            created,
            modified,
        ];
        if !with_node {
            row.remove(1);
        }
        rows.push(row);
    }
    table(&rows)
}

/// `orc job status [JOB]`.
pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let Some(prefix) = &args.job else {
        let (jobs, _) = client
            .get::<Vec<Value>>("/v1/jobs", &[])
            .map_err(|e| context("Error querying jobs", e))?;
        if args.read.json {
            print(&format!("{}\n", pretty_json(&json!(jobs))));
        } else if jobs.is_empty() {
            print("No running jobs\n");
        } else {
            let mut rows = vec![vec![
                "ID".into(),
                "Type".into(),
                "Priority".into(),
                "Status".into(),
                "Submit Date".into(),
            ]];
            for j in &jobs {
                rows.push(vec![
                    s(j, "ID"),
                    s(j, "Type"),
                    s(j, "Priority"),
                    s(j, "Status"),
                    timestamp(j["SubmitTime"].as_i64().unwrap_or(0)),
                ]);
            }
            print(&table(&rows));
        }
        return Ok(0);
    };
    let job = find_job(&client, prefix)?;
    let id = s(&job, "ID");
    let (summary, _) = client
        .get::<Value>(&format!("/v1/job/{id}/summary"), &[])
        .map_err(|e| context("Error querying job summary", e))?;
    let (allocs, _) = client
        .get::<Vec<Value>>(&format!("/v1/job/{id}/allocations"), &[])
        .map_err(|e| context("Error querying job allocations", e))?;
    if args.read.json {
        print(&format!(
            "{}\n",
            pretty_json(&json!({"Job": job, "Summary": summary, "Allocations": allocs}))
        ));
        return Ok(0);
    }
    let dcs: Vec<String> = job["Datacenters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_owned))
        .collect();
    let mut out = kv(&[
        ("ID", id.clone()),
        ("Name", s(&job, "Name")),
        ("Submit Date", timestamp(job["SubmitTime"].as_i64().unwrap_or(0))),
        ("Type", s(&job, "Type")),
        ("Priority", s(&job, "Priority")),
        ("Datacenters", dcs.join(",")),
        ("Namespace", s(&job, "Namespace")),
        ("Node Pool", s(&job, "NodePool")),
        ("Status", status_of(&job)),
        ("Periodic", "false".into()),
        ("Parameterized", "false".into()),
    ]);
    out.push_str("\nSummary\n");
    let mut rows = vec![[
        "Task Group",
        "Queued",
        "Starting",
        "Running",
        "Failed",
        "Complete",
        "Lost",
        "Unknown",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    if let Some(groups) = summary["Summary"].as_object() {
        for (g, c) in groups {
            rows.push(vec![
                g.clone(),
                s(c, "Queued"),
                s(c, "Starting"),
                s(c, "Running"),
                s(c, "Failed"),
                s(c, "Complete"),
                s(c, "Lost"),
                s(c, "Unknown"),
            ]);
        }
    }
    out.push_str(&table(&rows));
    out.push_str("\nAllocations\n");
    if allocs.is_empty() {
        out.push_str("No allocations placed\n");
    } else {
        out.push_str(&alloc_rows(&allocs, args.read.verbose, true));
    }
    print(&out);
    Ok(0)
}

fn status_of(job: &Value) -> String {
    let status = s(job, "Status");
    if job["Stop"] == true {
        format!("{status} (stopped)")
    } else {
        status
    }
}

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// A job ID or prefix.
    #[arg(value_name = "JOB")]
    pub job: String,
}

/// `orc job allocs JOB`.
pub fn allocs(args: &JobArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let stub = resolve(&client, "/v1/jobs", &args.job, "job")?;
    let (allocs, _) = client
        .get::<Vec<Value>>(&format!("/v1/job/{}/allocations", s(&stub, "ID")), &[])
        .map_err(|e| context("Error querying job allocations", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&json!(allocs))));
    } else if allocs.is_empty() {
        print("No allocations placed\n");
    } else {
        print(&alloc_rows(&allocs, args.read.verbose, true));
    }
    Ok(0)
}

/// `orc job history JOB`.
pub fn history(args: &JobArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let stub = resolve(&client, "/v1/jobs", &args.job, "job")?;
    let (versions, _) = client
        .get::<Value>(&format!("/v1/job/{}/versions", s(&stub, "ID")), &[])
        .map_err(|e| context("Error querying job versions", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&versions["Versions"])));
        return Ok(0);
    }
    let blocks: Vec<String> = versions["Versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            kv(&[
                ("Version", s(v, "Version")),
                ("Stable", s(v, "Stable")),
                ("Submit Date", timestamp(v["SubmitTime"].as_i64().unwrap_or(0))),
            ])
        })
        .collect();
    print(&blocks.join("\n"));
    Ok(0)
}

/// `orc job inspect JOB`: the job as the API's JSON, wrapped as `{"Job": ...}`.
pub fn inspect(args: &JobArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let job = find_job(&client, &args.job)?;
    print(&format!("{}\n", pretty_json(&json!({ "Job": job }))));
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Return after submitting instead of monitoring the evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Show full IDs.
    #[arg(long)]
    pub verbose: bool,
    /// The job ID or prefix.
    #[arg(value_name = "JOB")]
    pub job: String,
    /// The task group (may be omitted when the job has only one).
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// The new count (when GROUP is omitted, the second argument is the count).
    #[arg(value_name = "COUNT")]
    pub count: Option<String>,
}

/// `orc job scale JOB [GROUP] COUNT`.
pub fn scale(args: &ScaleArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let job = find_job(&client, &args.job)?;
    let (group, count) = match &args.count {
        Some(c) => (args.group.clone(), c.clone()),
        None => {
            let groups = job["TaskGroups"].as_array().cloned().unwrap_or_default();
            if groups.len() != 1 {
                anyhow::bail!(
                    "Group name required: job {:?} has {} task groups",
                    s(&job, "ID"),
                    groups.len()
                );
            }
            (s(&groups[0], "Name"), args.group.clone())
        }
    };
    let count: i64 =
        count.parse().ok().filter(|c| *c >= 0).ok_or_else(|| {
            anyhow::anyhow!("Scaling value {count:?} is not a non-negative integer")
        })?;
    let body = json!({"Count": count, "Target": {"Group": group, "Job": s(&job, "ID"), "Namespace": s(&job, "Namespace")}, "Message": "submitted using the orc CLI"});
    let (resp, _) = client
        .put::<_, Value>(&format!("/v1/job/{}/scale", s(&job, "ID")), &[], &body)
        .map_err(|e| context("Error submitting scaling request", e))?;
    let eval_id = s(&resp, "EvalID");
    if args.detach {
        print(&format!("Evaluation ID: {eval_id}\n"));
        return Ok(0);
    }
    monitor(&client, &eval_id, args.verbose)
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Also remove the job from the server instead of leaving it as "dead".
    #[arg(long)]
    pub purge: bool,
    /// Return after submitting instead of monitoring the evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Show full IDs.
    #[arg(long)]
    pub verbose: bool,
    /// The job ID or prefix.
    #[arg(value_name = "JOB")]
    pub job: String,
}

/// `orc stop JOB [-purge]`.
pub fn stop(args: &StopArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let stub = resolve(&client, "/v1/jobs", &args.job, "job")?;
    let id = s(&stub, "ID");
    let purge = if args.purge { "true" } else { "false" };
    let (resp, _) = client
        .delete::<Value>(&format!("/v1/job/{id}"), &[("purge", purge)])
        .map_err(|e| context("Error deregistering job", e))?;
    let eval_id = s(&resp, "EvalID");
    if args.detach || eval_id.is_empty() {
        print(&format!("{eval_id}\n"));
        return Ok(0);
    }
    monitor(&client, &eval_id, args.verbose)
}
