//! `orc server members` and `orc operator raft list-peers`: the servers and the Raft
//! configuration as one server reports them over the HTTP API.

use crate::conn::{context, ReadArgs};
use crate::output::{pretty_json, print, s, table};
use serde_json::Value;

/// `orc server members`.
pub fn members(args: &ReadArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let (resp, _) = client
        .get::<Value>("/v1/agent/members", &[])
        .map_err(|e| context("Error querying servers", e))?;
    if args.json {
        print(&format!("{}\n", pretty_json(&resp["Members"])));
        return Ok(0);
    }
    let mut rows = vec![[
        "Name",
        "Address",
        "Port",
        "Status",
        "Leader",
        "Raft Version",
        "Build",
        "Datacenter",
        "Region",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for m in resp["Members"].as_array().into_iter().flatten() {
        let tags = &m["Tags"];
        rows.push(vec![
            s(m, "Name"),
            s(m, "Addr"),
            s(m, "Port"),
            s(m, "Status"),
            s(tags, "leader"),
            s(tags, "raft_vsn"),
            s(tags, "build"),
            s(tags, "dc"),
            s(tags, "region"),
        ]);
    }
    print(&table(&rows));
    Ok(0)
}

/// `orc operator raft list-peers`.
pub fn list_peers(args: &ReadArgs) -> anyhow::Result<u8> {
    let client = args.api.client();
    let (resp, _) = client
        .get::<Value>("/v1/operator/raft/configuration", &[])
        .map_err(|e| context("Error getting peers", e))?;
    if args.json {
        print(&format!("{}\n", pretty_json(&resp)));
        return Ok(0);
    }
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
    for p in resp["Servers"].as_array().into_iter().flatten() {
        let state = if p["Leader"] == true { "leader" } else { "follower" };
        rows.push(vec![
            s(p, "Node"),
            s(p, "ID"),
            s(p, "Address"),
            state.into(),
            s(p, "Voter"),
            s(p, "RaftProtocol"),
        ]);
    }
    print(&table(&rows));
    Ok(0)
}

/// `orc operator raft remove-peer`.
pub fn remove_peer(args: &crate::cli::RemovePeerArgs) -> anyhow::Result<u8> {
    let (key, value, shown) = match (&args.peer_address, &args.peer_id) {
        (Some(a), None) => ("address", a, format!("address {a:?}")),
        (None, Some(i)) => ("id", i, format!("ID {i:?}")),
        _ => anyhow::bail!("Exactly one of -peer-address and -peer-id must be given"),
    };
    args.api
        .client()
        .delete::<Value>("/v1/operator/raft/peer", &[(key, value)])
        .map_err(|e| context("Error removing peer", e))?;
    print(&format!("Removed peer with {shown}\n"));
    Ok(0)
}
