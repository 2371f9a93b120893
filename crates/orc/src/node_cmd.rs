//! `orc node status`, `orc node drain` and `orc node eligibility`: reading nodes and changing
//! whether new work may land on them. The server writes the evaluations that migrate work.

use crate::conn::{context, resolve, ApiArgs, ReadArgs};
use crate::output::{kv, now_nanos, pretty_json, print, s, short_id, table};
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// A node ID or prefix; without one, every node is listed.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

fn node_row(n: &Value, verbose: bool) -> Vec<String> {
    let class = match s(n, "NodeClass") {
        c if c.is_empty() => "<none>".to_owned(),
        c => c,
    };
    vec![
        short_id(&s(n, "ID"), verbose),
        s(n, "NodePool"),
        s(n, "Datacenter"),
        s(n, "Name"),
        class,
        s(n, "Drain"),
        s(n, "SchedulingEligibility"),
        s(n, "Status"),
    ]
}

const NODE_HEADER: [&str; 8] =
    ["ID", "Node Pool", "DC", "Name", "Class", "Drain", "Eligibility", "Status"];

/// `orc node status [ID]`.
pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let v = args.read.verbose;
    let Some(prefix) = &args.id else {
        let (nodes, _) = client
            .get::<Vec<Value>>("/v1/nodes", &[])
            .map_err(|e| context("Error querying node status", e))?;
        if args.read.json {
            print(&format!("{}\n", pretty_json(&json!(nodes))));
        } else if nodes.is_empty() {
            print("No nodes registered\n");
        } else {
            let mut rows = vec![NODE_HEADER.iter().map(|s| s.to_string()).collect()];
            rows.extend(nodes.iter().map(|n| node_row(n, v)));
            print(&table(&rows));
        }
        return Ok(0);
    };
    let stub = resolve(&client, "/v1/nodes", prefix, "node")?;
    let id = s(&stub, "ID");
    let (node, _) = client
        .get::<Value>(&format!("/v1/node/{id}"), &[])
        .map_err(|e| context("Error querying node info", e))?;
    let (allocs, _) = client
        .get::<Vec<Value>>(&format!("/v1/node/{id}/allocations"), &[])
        .map_err(|e| context("Error querying node allocations", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&node)));
        return Ok(0);
    }
    let drivers: Vec<String> = node["Drivers"]
        .as_object()
        .map(|d| d.iter().filter(|(_, i)| i["Detected"] == true).map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut out = kv(&[
        ("ID", short_id(&id, v)),
        ("Name", s(&node, "Name")),
        ("Node Pool", s(&node, "NodePool")),
        ("Class", s(&node, "NodeClass")),
        ("DC", s(&node, "Datacenter")),
        ("Drain", s(&node, "Drain")),
        ("Eligibility", s(&node, "SchedulingEligibility")),
        ("Status", s(&node, "Status")),
        ("Drivers", drivers.join(",")),
    ]);
    let live: Vec<&Value> = allocs
        .iter()
        .filter(|a| {
            a["DesiredStatus"] == "run"
                && !["complete", "failed", "lost"].contains(&s(a, "ClientStatus").as_str())
        })
        .collect();
    let cpu: u64 = live
        .iter()
        .flat_map(|a| a["AllocatedResources"]["Tasks"].as_object().into_iter().flatten())
        .map(|(_, t)| t["Cpu"]["CpuShares"].as_u64().unwrap_or(0))
        .sum();
    let mem: u64 = live
        .iter()
        .flat_map(|a| a["AllocatedResources"]["Tasks"].as_object().into_iter().flatten())
        .map(|(_, t)| t["Memory"]["MemoryMB"].as_u64().unwrap_or(0))
        .sum();
    let total_cpu = node["NodeResources"]["Cpu"]["CpuShares"].as_u64().unwrap_or(0);
    let total_mem = node["NodeResources"]["Memory"]["MemoryMB"].as_u64().unwrap_or(0);
    out.push_str("\nAllocated Resources\n");
    out.push_str(&table(&[
        vec!["CPU".into(), "Memory".into()],
        vec![format!("{cpu}/{total_cpu} MHz"), format!("{mem} MiB/{total_mem} MiB")],
    ]));
    out.push_str("\nAllocations\n");
    if allocs.is_empty() {
        out.push_str("No allocations placed\n");
    } else {
        let now = now_nanos();
        let mut rows = vec![[
            "ID",
            "Eval ID",
            "Job ID",
            "Task Group",
            "Version",
            "Desired",
            "Status",
            "Created",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
        for a in &allocs {
            rows.push(vec![
                short_id(&s(a, "ID"), v),
                short_id(&s(a, "EvalID"), v),
                s(a, "JobID"),
                s(a, "TaskGroup"),
                s(a, "JobVersion"),
                s(a, "DesiredStatus"),
                s(a, "ClientStatus"),
                crate::output::ago(a["CreateTime"].as_i64().unwrap_or(0), now),
            ]);
        }
        out.push_str(&table(&rows));
    }
    print(&out);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Start draining: no new work, running allocations migrate.
    #[arg(long, conflicts_with = "disable", required_unless_present_any = ["disable", "monitor"])]
    pub enable: bool,
    /// Stop draining.
    #[arg(long)]
    pub disable: bool,
    /// How long allocations may take to migrate before they are stopped (Go duration; default
    /// 1h). A negative value forces an immediate drain.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub deadline: Option<String>,
    /// With -enable: leave system jobs' allocations running.
    #[arg(long = "ignore-system")]
    pub ignore_system: bool,
    /// With -disable: keep the node ineligible for new work.
    #[arg(long = "keep-ineligible")]
    pub keep_ineligible: bool,
    /// Drain now: allocations are migrated without waiting for a deadline.
    #[arg(long, conflicts_with_all = ["deadline", "no_deadline"])]
    pub force: bool,
    /// Drain without a deadline.
    #[arg(long = "no-deadline", conflicts_with = "deadline")]
    pub no_deadline: bool,
    /// Accepted for Nomad compatibility; orc never prompts.
    #[arg(long)]
    pub yes: bool,
    /// Return once the drain strategy is set instead of monitoring the drain.
    #[arg(long)]
    pub detach: bool,
    /// Monitor a drain already in progress without changing it.
    #[arg(long, conflicts_with_all = ["enable", "disable", "detach"])]
    pub monitor: bool,
    /// The node ID or prefix.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Nomad's default drain deadline.
const DEFAULT_DEADLINE_NS: i64 = 3600 * 1_000_000_000;

/// `orc node drain -enable|-disable|-monitor ID`.
pub fn drain(args: &DrainArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let stub = resolve(&client, "/v1/nodes", &args.id, "node")?;
    let id = s(&stub, "ID");
    if args.monitor {
        monitor_drain(&client, &id, args.ignore_system)?;
        return Ok(0);
    }
    let body = if args.enable {
        let deadline_ns: i64 = match args.deadline.as_deref() {
            _ if args.force => -1,
            _ if args.no_deadline => 0,
            None => DEFAULT_DEADLINE_NS,
            Some(d) if d.starts_with('-') => -1,
            Some(d) => model::duration::parse_go_duration(d)
                .map_err(|e| anyhow::anyhow!("Error parsing -deadline: {e}"))?
                .as_nanos() as i64,
        };
        json!({"NodeID": id, "DrainSpec": {"Deadline": deadline_ns, "IgnoreSystemJobs": args.ignore_system}, "MarkEligible": false})
    } else {
        json!({"NodeID": id, "DrainSpec": null, "MarkEligible": !args.keep_ineligible})
    };
    client
        .put::<_, Value>(&format!("/v1/node/{id}/drain"), &[], &body)
        .map_err(|e| context("Error updating drain specification", e))?;
    if !args.enable {
        print(&format!("Node {id:?} drain strategy unset\n"));
        return Ok(0);
    }
    if args.detach {
        print(&format!("Node {id:?} drain strategy set\n"));
        return Ok(0);
    }
    let now = crate::output::timestamp(now_nanos());
    print(&format!("{now}: Ctrl-C to stop monitoring: will not cancel the node drain\n"));
    print(&format!("{now}: Node {id:?} drain strategy set\n"));
    monitor_drain(&client, &id, args.ignore_system)?;
    Ok(0)
}

/// What the monitor remembers of an allocation between polls.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    marked: bool,
    desired: String,
    client: String,
}

fn seen(a: &Value) -> Seen {
    Seen {
        marked: a["DesiredTransition"]["Migrate"] == true,
        desired: s(a, "DesiredStatus"),
        client: s(a, "ClientStatus"),
    }
}

/// Follows a drain like Nomad's `MonitorDrain`: prints each allocation marked for migration,
/// stopped and changing status, then when the drain completes, and returns once it has and no
/// allocation on the node is pending or running (system ones aside with `ignore_system`).
fn monitor_drain(
    client: &api::client::Client,
    id: &str,
    ignore_system: bool,
) -> anyhow::Result<()> {
    let line = |msg: String| print(&format!("{}: {msg}\n", crate::output::timestamp(now_nanos())));
    let mut known: std::collections::BTreeMap<String, Seen> = Default::default();
    let (mut all_marked, mut complete) = (false, false);
    let mut index = 0u64;
    loop {
        let index_s = index.to_string();
        let (allocs, meta) = client
            .get::<Vec<Value>>(
                &format!("/v1/node/{id}/allocations"),
                &[("index", &index_s), ("wait", "1s")],
            )
            .map_err(|e| context("Error monitoring node drain", e))?;
        index = meta.index;
        let (node, _) = client
            .get::<Value>(&format!("/v1/node/{id}"), &[])
            .map_err(|e| context("Error monitoring node drain", e))?;
        let mut running = 0;
        let mut unmarked = 0;
        for a in &allocs {
            let now = seen(a);
            let alloc_id = short_id(&s(a, "ID"), false);
            // An allocation first seen already marked was marked by this drain: report it
            // from the start. Anything else first seen is where the monitor starts from.
            let before = known.get(&s(a, "ID")).cloned().or_else(|| {
                now.marked.then(|| Seen {
                    marked: false,
                    desired: "run".into(),
                    client: if now.desired == "run" {
                        now.client.clone()
                    } else {
                        "running".into()
                    },
                })
            });
            if let Some(b) = before {
                if !b.marked && now.marked {
                    line(format!("Alloc {alloc_id:?} marked for migration"));
                }
                if b.desired != now.desired && now.desired == "stop" {
                    line(format!("Alloc {alloc_id:?} draining"));
                }
                if b.client != now.client {
                    line(format!("Alloc {alloc_id:?} status {} -> {}", b.client, now.client));
                }
            }
            let system = a["JobType"] == "system";
            let live = matches!(now.client.as_str(), "pending" | "running");
            if live && !(ignore_system && system) {
                running += 1;
            }
            if live && now.desired == "run" && !now.marked && !(ignore_system && system) {
                unmarked += 1;
            }
            known.insert(s(a, "ID"), now);
        }
        let draining = !node["DrainStrategy"].is_null();
        if !all_marked && draining && unmarked == 0 {
            all_marked = true;
            line(format!("Node {id:?} has marked all allocations for migration"));
        }
        if !complete && !draining {
            complete = true;
            let last = node["LastDrain"]["Status"].as_str().unwrap_or("");
            if last == "canceled" {
                line(format!("Node {id:?} drain canceled"));
                return Ok(());
            }
            line(format!("Node {id:?} drain complete"));
        }
        if complete && running == 0 {
            line(format!("All allocations on node {id:?} have stopped"));
            return Ok(());
        }
    }
}

#[derive(Debug, Args)]
pub struct EligibilityArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Mark the node eligible for new work.
    #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
    pub enable: bool,
    /// Mark the node ineligible for new work.
    #[arg(long)]
    pub disable: bool,
    /// The node ID or prefix.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `orc node eligibility -enable|-disable ID`.
pub fn eligibility(args: &EligibilityArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let stub = resolve(&client, "/v1/nodes", &args.id, "node")?;
    let id = s(&stub, "ID");
    let value = if args.enable { "eligible" } else { "ineligible" };
    client
        .put::<_, Value>(
            &format!("/v1/node/{id}/eligibility"),
            &[],
            &json!({"NodeID": id, "Eligibility": value}),
        )
        .map_err(|e| context("Error updating scheduling eligibility", e))?;
    print(&format!("Node {id:?} scheduling eligibility set: {value} for scheduling\n"));
    Ok(0)
}
