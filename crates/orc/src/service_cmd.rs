//! `orc service list` and `orc service info NAME`: reading orc's own service catalogue
//! (`provider = "nomad"` services) in Nomad's table shapes, with each instance's health. It
//! only reads; agents register, and `DELETE /v1/service/:name/:id` is the API's.

use crate::conn::{context, ReadArgs};
use crate::output::{pretty_json, print, s, short_id, table};
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The namespace to list; `*` lists every namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// A go-bexpr filter on the instances, e.g. `Tags contains "www"`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Only instances whose checks pass.
    #[arg(long)]
    pub passing: bool,
    /// The service's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

fn tags(v: &Value) -> String {
    let t: Vec<String> = v["Tags"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    format!("[{}]", t.join(","))
}

/// `orc service list`.
pub fn list(args: &ListArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let (namespaces, _) = client
        .get::<Vec<Value>>("/v1/services", &[("namespace", &args.namespace)])
        .map_err(|e| context("Error listing services", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&json!(namespaces))));
        return Ok(0);
    }
    print(&list_table(&namespaces, args.namespace == "*"));
    Ok(0)
}

/// The table of `orc service list`; a Namespace column when listing every namespace.
fn list_table(namespaces: &[Value], all: bool) -> String {
    let mut header = vec!["Service Name".to_string()];
    if all {
        header.push("Namespace".into());
    }
    header.push("Tags".into());
    let mut rows = vec![header];
    for ns in namespaces {
        for svc in ns["Services"].as_array().into_iter().flatten() {
            let mut row = vec![s(svc, "ServiceName")];
            if all {
                row.push(s(ns, "Namespace"));
            }
            row.push(tags(svc));
            rows.push(row);
        }
    }
    if rows.len() == 1 {
        return "No service registrations found\n".into();
    }
    table(&rows)
}

/// `orc service info NAME`.
pub fn info(args: &InfoArgs) -> anyhow::Result<u8> {
    let client = args.read.api.client();
    let mut query = vec![("namespace", args.namespace.as_str())];
    if let Some(f) = &args.filter {
        query.push(("filter", f));
    }
    if args.passing {
        query.push(("passing", "true"));
    }
    let (instances, _) = client
        .get::<Vec<Value>>(&format!("/v1/service/{}", args.name), &query)
        .map_err(|e| context("Error reading service", e))?;
    if args.read.json {
        print(&format!("{}\n", pretty_json(&json!(instances))));
        return Ok(0);
    }
    if instances.is_empty() {
        print(&format!("No service registrations found for {:?}\n", args.name));
        return Ok(0);
    }
    print(&info_table(&instances, args.read.verbose));
    Ok(0)
}

/// The table of `orc service info`: one row per instance.
fn info_table(instances: &[Value], verbose: bool) -> String {
    let mut rows = vec![["Job ID", "Address", "Tags", "Node ID", "Alloc ID", "Health"]
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()];
    for i in instances {
        let address = s(i, "Address");
        let address = if address.contains(':') { format!("[{address}]") } else { address };
        let health = match s(i, "Health") {
            h if h.is_empty() => "passing".to_owned(),
            h => h,
        };
        rows.push(vec![
            s(i, "JobID"),
            format!("{address}:{}", s(i, "Port")),
            tags(i),
            short_id(&s(i, "NodeID"), verbose),
            short_id(&s(i, "AllocID"), verbose),
            health,
        ]);
    }
    table(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_nomads_with_health() {
        let listing = json!([
            {"Namespace": "default", "Services": [{"ServiceName": "hello-web", "Tags": ["nginx", "www"]}]},
            {"Namespace": "prod", "Services": [{"ServiceName": "api", "Tags": []}]},
        ]);
        let listing = listing.as_array().unwrap();
        let out = list_table(listing, true);
        let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Service", "Name", "Namespace", "Tags"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["hello-web", "default", "[nginx,www]"]
        );
        assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["api", "prod", "[]"]);
        assert_eq!(list_table(&[], false), "No service registrations found\n");

        let instances = json!([
            {"JobID": "nginx-minipot", "Address": "10.0.0.1", "Port": 23001, "Tags": ["nginx"],
             "NodeID": "0a1b2c3d-0000", "AllocID": "636d3241-1111", "Health": "critical"},
            {"JobID": "nginx-minipot", "Address": "2003:f1::1", "Port": 22854, "Tags": [],
             "NodeID": "0a1b2c3d-0000", "AllocID": "9f00aa11-2222"},
        ]);
        let out = info_table(instances.as_array().unwrap(), false);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[0],
            ["Job", "ID", "Address", "Tags", "Node", "ID", "Alloc", "ID", "Health"]
        );
        assert_eq!(
            rows[1],
            ["nginx-minipot", "10.0.0.1:23001", "[nginx]", "0a1b2c3d", "636d3241", "critical"]
        );
        assert_eq!(
            rows[2],
            ["nginx-minipot", "[2003:f1::1]:22854", "[]", "0a1b2c3d", "9f00aa11", "passing"]
        );
    }
}
