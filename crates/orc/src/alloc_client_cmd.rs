//! `orc alloc logs`, `orc alloc restart` and `orc alloc signal`: commands served by the client
//! agent that runs the allocation. Any server resolves the allocation and names its node; the
//! command then talks to that node's HTTP address (`HTTPAddr`), as Nomad's CLI does first.
//!
//! It owns the flags and the printing; the log stream format and path rules are the agent's.

use crate::conn::{context, resolve, ApiArgs};
use crate::output::s;
use clap::Args;
use serde_json::Value;
use std::io::{Read, Write};

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Keep streaming new output.
    #[arg(short = 'f')]
    pub follow: bool,
    /// Show stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Show only the end of the log (the last -n lines, 10 by default).
    #[arg(long)]
    pub tail: bool,
    /// With -tail, how many lines.
    #[arg(short = 'n', value_name = "LINES")]
    pub lines: Option<usize>,
    /// The allocation ID or a unique prefix.
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// The task; optional when the group has one.
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The allocation ID or a unique prefix.
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// Restart only this task.
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignalArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The signal (default SIGKILL, as Nomad).
    #[arg(short = 's', value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// The allocation ID or a unique prefix.
    #[arg(value_name = "ALLOC")]
    pub alloc: String,
    /// Signal only this task.
    #[arg(value_name = "TASK")]
    pub task: Option<String>,
}

/// The allocation (full) and where its client endpoints answer: the node itself first, then the
/// server, which forwards to the node (for when the node is not reachable from here).
fn locate(api: &ApiArgs, prefix: &str) -> anyhow::Result<(Value, Vec<String>)> {
    let client = api.client();
    let stub = resolve(&client, "/v1/allocations", prefix, "allocation")?;
    let (alloc, _) = client
        .get::<Value>(&format!("/v1/allocation/{}", s(&stub, "ID")), &[])
        .map_err(|e| context("Error querying allocation", e))?;
    let (node, _) = client
        .get::<Value>(&format!("/v1/node/{}", s(&alloc, "NodeID")), &[])
        .map_err(|e| context("Error querying node", e))?;
    let addr = s(&node, "HTTPAddr");
    let mut bases = Vec::new();
    if !addr.is_empty() {
        bases.push(format!("http://{addr}"));
    }
    bases.push(client.addr().trim_end_matches('/').to_string());
    Ok((alloc, bases))
}

/// The task to use: the one named, or the group's only task.
fn pick_task(alloc: &Value, task: Option<&str>) -> anyhow::Result<String> {
    let group = s(alloc, "TaskGroup");
    let tasks: Vec<String> = alloc["Job"]["TaskGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| s(g, "Name") == group)
        .flat_map(|g| g["Tasks"].as_array().cloned().unwrap_or_default())
        .map(|t| s(&t, "Name"))
        .collect();
    match task {
        Some(t) if tasks.is_empty() || tasks.iter().any(|x| x == t) => Ok(t.to_string()),
        Some(t) => {
            anyhow::bail!("Could not find task named: {t}; the group has: {}", tasks.join(", "))
        }
        None if tasks.len() == 1 => Ok(tasks[0].clone()),
        None if tasks.is_empty() => {
            anyhow::bail!("Allocation has no task list; name the task: orc alloc logs ALLOC TASK")
        }
        None => anyhow::bail!(
            "Allocation {:?} is running the following tasks:\n  * {}\n\nPlease specify the task.",
            s(alloc, "ID"),
            tasks.join("\n  * ")
        ),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().new_agent()
}

/// GETs `path` from the first base that answers.
fn get_stream(bases: &[String], path: &str) -> anyhow::Result<Box<dyn Read + Send>> {
    let mut last = None;
    let mut resp = None;
    for base in bases {
        match agent().get(format!("{base}{path}")).call() {
            Ok(r) => {
                resp = Some(r);
                break;
            }
            Err(e) => last = Some(anyhow::anyhow!("reaching {base}: {e}")),
        }
    }
    let Some(resp) = resp else {
        return Err(last.unwrap_or_else(|| anyhow::anyhow!("nowhere to ask")));
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status != 200 {
        let text = body.read_to_string().unwrap_or_default();
        anyhow::bail!("Error reading logs: {status} {}", text.trim());
    }
    Ok(Box::new(body.into_reader()))
}

/// `orc alloc logs`.
pub fn logs(args: &LogsArgs) -> anyhow::Result<u8> {
    let (alloc, bases) = locate(&args.api, &args.alloc)?;
    let task = pick_task(&alloc, args.task.as_deref())?;
    let id = s(&alloc, "ID");
    let kind = if args.stderr { "stderr" } else { "stdout" };
    let url =
        |extra: &str| format!("/v1/client/fs/logs/{id}?task={task}&type={kind}&plain=true{extra}");
    let mut out = std::io::stdout().lock();
    if args.tail {
        let lines = args.lines.unwrap_or(10);
        // Enough bytes for the wanted lines in all but pathological logs.
        let bytes = (lines * 512).max(16 * 1024);
        let mut text = Vec::new();
        get_stream(&bases, &url(&format!("&origin=end&offset={bytes}")))?.read_to_end(&mut text)?;
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.split_inclusive('\n').collect();
        for line in &all[all.len().saturating_sub(lines)..] {
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        if !args.follow {
            return Ok(0);
        }
        // Follow from the end: what was printed above is not repeated.
        return copy_stream(
            get_stream(&bases, &url("&origin=end&offset=0&follow=true"))?,
            &mut out,
        );
    }
    let follow = if args.follow { "&follow=true" } else { "" };
    copy_stream(get_stream(&bases, &url(follow))?, &mut out)
}

fn copy_stream(mut from: Box<dyn Read + Send>, out: &mut impl Write) -> anyhow::Result<u8> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(0);
        }
        // Written and flushed at once, so `-f` shows lines as they arrive.
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

fn post(bases: &[String], path: &str, body: &Value) -> anyhow::Result<()> {
    let mut result = None;
    for base in bases {
        let sent = agent()
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/json")
            .send(body.to_string());
        match sent {
            Ok(r) => {
                result = Some(Ok(r));
                break;
            }
            Err(e) => result = Some(Err(anyhow::anyhow!("reaching {base}: {e}"))),
        }
    }
    let resp = result.unwrap_or_else(|| Err(anyhow::anyhow!("nowhere to ask")))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let text = resp.into_body().read_to_string().unwrap_or_default();
        anyhow::bail!("{status} {}", text.trim());
    }
    Ok(())
}

/// `orc alloc restart`.
pub fn restart(args: &RestartArgs) -> anyhow::Result<u8> {
    let (alloc, bases) = locate(&args.api, &args.alloc)?;
    let id = s(&alloc, "ID");
    let body = match &args.task {
        Some(t) => serde_json::json!({ "TaskName": pick_task(&alloc, Some(t))? }),
        None => serde_json::json!({ "AllTasks": true }),
    };
    post(&bases, &format!("/v1/client/allocation/{id}/restart"), &body)
        .map_err(|e| anyhow::anyhow!("Failed to restart allocation: {e}"))?;
    Ok(0)
}

/// `orc alloc signal`.
pub fn signal(args: &SignalArgs) -> anyhow::Result<u8> {
    let (alloc, bases) = locate(&args.api, &args.alloc)?;
    let id = s(&alloc, "ID");
    let task = match &args.task {
        Some(t) => pick_task(&alloc, Some(t))?,
        None => String::new(),
    };
    let body = serde_json::json!({
        "Task": task,
        "Signal": args.signal.clone().unwrap_or_else(|| "SIGKILL".into()),
    });
    post(&bases, &format!("/v1/client/allocation/{id}/signal"), &body)
        .map_err(|e| anyhow::anyhow!("Error signalling allocation: {e}"))?;
    Ok(0)
}
