//! `/v1/agent/*`, `/v1/status/*` and `/v1/operator/raft/*`: who this server is, who leads, and
//! the Raft membership. Membership changes go through [`crate::ServerHandle`]; this module only
//! shapes them as Nomad's API does.

use super::ApiError;
use super::{param, query_options, Ctx, Pairs, Reply};
use crate::server::MemberStatus;
use axum::extract::State as AxState;
use serde_json::{json, Value};

fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(0)),
        None => (addr.to_owned(), 0),
    }
}

impl Ctx {
    fn member_name(&self, id: u64, addr: &str) -> String {
        let c = &self.config;
        if id == self.handle.id() && !c.name.is_empty() {
            format!("{}.{}", c.name, c.region)
        } else {
            format!("{addr}.{}", c.region)
        }
    }
}

/// `GET /v1/agent/self`, with the lowercase top-level keys Nomad uses for this one endpoint.
pub async fn agent_self(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let c = &ctx.config;
    let (host, port) = split_addr(ctx.handle.addr());
    let leader = ctx.handle.leader();
    let body = json!({
        "config": {
            "Name": c.name,
            "Region": c.region,
            "Datacenter": c.datacenter,
            "Version": {"Version": env!("CARGO_PKG_VERSION"), "VersionPrerelease": "", "VersionMetadata": ""},
            "Server": {"Enabled": true},
            "Client": {"Enabled": false},
        },
        "member": {
            "Name": ctx.member_name(ctx.handle.id(), ctx.handle.addr()),
            "Addr": host,
            "Port": port,
            "Status": "alive",
            "Tags": {"role": "nomad", "region": c.region, "dc": c.datacenter,
                     "id": ctx.handle.id().to_string(), "port": port.to_string(),
                     "build": env!("CARGO_PKG_VERSION")},
        },
        "stats": {
            "nomad": {
                "server": "true",
                "leader": ctx.handle.is_leader().to_string(),
                "leader_addr": leader.map(|m| m.addr).unwrap_or_default(),
                "known_regions": "1",
            },
            "raft": {"applied_index": ctx.handle.applied_index().to_string()},
        },
    });
    Ok(Reply::json(&body, 0, q.pretty))
}

/// `GET /v1/agent/members`: the servers, probed for liveness from here.
pub async fn members(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let c = &ctx.config;
    let members: Vec<Value> = ctx
        .handle
        .members()
        .await
        .into_iter()
        .map(|m| {
            let (host, port) = split_addr(&m.addr);
            json!({
                "Name": ctx.member_name(m.id, &m.addr),
                "Addr": host,
                "Port": port,
                "Tags": {"role": "nomad", "region": c.region, "dc": c.datacenter,
                         "id": m.id.to_string(), "port": port.to_string(),
                         "build": env!("CARGO_PKG_VERSION"), "raft_vsn": "3",
                         "leader": m.leader.to_string(), "voter": m.voter.to_string()},
                "Status": match m.status { MemberStatus::Alive => "alive", MemberStatus::Failed => "failed" },
                "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
            })
        })
        .collect();
    let body = json!({
        "ServerName": c.name,
        "ServerRegion": c.region,
        "ServerDC": c.datacenter,
        "Members": members,
    });
    Ok(Reply::json(&body, 0, q.pretty))
}

/// `GET /v1/agent/servers`: the servers' RPC addresses, as Nomad's clients know them.
pub async fn servers(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let addrs: Vec<String> = ctx.handle.peers().into_iter().map(|m| m.addr).collect();
    Ok(Reply::json(&addrs, 0, q.pretty))
}

/// `GET /v1/regions`: orc clusters are single-region.
pub async fn regions(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    Ok(Reply::json(&[ctx.config.region.as_str()], 0, q.pretty))
}

/// `GET /v1/status/leader`: the leader's RPC address as a JSON string, empty when there is none.
pub async fn leader(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let addr = ctx.handle.leader().map(|m| m.addr).unwrap_or_default();
    Ok(Reply::json(&addr, 0, q.pretty))
}

/// `GET /v1/status/peers`: the voters' RPC addresses.
pub async fn peers(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let peers: Vec<String> =
        ctx.handle.peers().into_iter().filter(|m| m.voter).map(|m| m.addr).collect();
    Ok(Reply::json(&peers, 0, q.pretty))
}

/// `GET /v1/operator/raft/configuration`.
pub async fn raft_configuration(
    AxState(ctx): AxState<Ctx>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let leader = ctx.handle.leader().map(|m| m.id);
    let servers: Vec<Value> = ctx
        .handle
        .peers()
        .into_iter()
        .map(|m| {
            json!({
                "ID": m.id.to_string(),
                "Node": ctx.member_name(m.id, &m.addr),
                "Address": m.addr,
                "Leader": leader == Some(m.id),
                "Voter": m.voter,
                "RaftProtocol": "3",
            })
        })
        .collect();
    let index = ctx.handle.applied_index();
    Ok(Reply::json(&json!({"Servers": servers, "Index": index}), index, q.pretty))
}

/// `DELETE /v1/operator/raft/peer?address=...` (or `?id=...`).
pub async fn remove_peer(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let target = match (param(&pairs, "address"), param(&pairs, "id")) {
        (Some(a), None) if !a.is_empty() => a.to_owned(),
        (None, Some(i)) if !i.is_empty() => i.to_owned(),
        _ => {
            return Err(ApiError::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove"
                    .into(),
            ))
        }
    };
    ctx.handle.remove_peer(&target).await?;
    Ok(Reply::json(&Value::Null, ctx.handle.applied_index(), q.pretty))
}
