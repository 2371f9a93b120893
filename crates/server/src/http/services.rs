//! `/v1/services` and `/v1/service/:name`: orc's own service catalogue (`provider = "nomad"`,
//! or `"orc"`), in Nomad's shapes, plus the health the agents record with each instance
//! (`?passing` returns only healthy instances). It reads and deletes registrations; agents create
//! them, and the agent runs the checks.

use super::ApiError;
use super::{bool_param, param, query_options, Ctx, Pairs, Reply};
use crate::state::{Command, Table};
use axum::extract::{Path, State as AxState};
use model::{ServiceHealth, ServiceRegistration};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The longest `choose` key accepted, in bytes.
const MAX_CHOOSE_KEY_LEN: usize = 256;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NamespaceServices<'a> {
    namespace: &'a str,
    services: Vec<ServiceStub<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceStub<'a> {
    service_name: &'a str,
    tags: Vec<&'a str>,
}

/// `GET /v1/services`: every service name per namespace, with the union of its instances' tags.
pub async fn list(AxState(ctx): AxState<Ctx>, pairs: Pairs) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let (body, index) = ctx
        .query(&q, &[Table::Services], |s| {
            let mut by_ns: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
            for r in s.services() {
                if q.namespace != "*" && r.namespace != q.namespace {
                    continue;
                }
                let tags =
                    by_ns.entry(&r.namespace).or_default().entry(&r.service_name).or_default();
                tags.extend(r.tags.iter().map(String::as_str));
            }
            let out: Vec<NamespaceServices> = by_ns
                .into_iter()
                .map(|(namespace, services)| NamespaceServices {
                    namespace,
                    services: services
                        .into_iter()
                        .map(|(service_name, tags)| ServiceStub {
                            service_name,
                            tags: tags.into_iter().collect(),
                        })
                        .collect(),
                })
                .collect();
            serde_json::to_vec(&out)
        })
        .await?;
    let body = body.map_err(|e| ApiError::Internal(format!("encoding the reply: {e}")))?;
    if q.pretty {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return Ok(Reply::json(&v, index, true));
    }
    Ok(Reply::raw(body, index))
}

/// `choose=<n>|<key>`: the `n` instances that rank highest for `key` under rendezvous hashing,
/// so every client asking with the same key gets the same subset while it exists, and losing
/// one instance moves only the clients that had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choose {
    pub count: usize,
    pub key: String,
}

pub(crate) fn parse_choose(v: &str) -> Result<Choose, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(format!("invalid value for \"choose\": {m}"));
    let (n, key) = v.split_once('|').ok_or_else(|| bad("must be <number>|<key>"))?;
    let count: usize = n.parse().map_err(|_| bad("the number is not a positive integer"))?;
    if count == 0 {
        return Err(bad("the number must be at least 1"));
    }
    if key.is_empty() || key.len() > MAX_CHOOSE_KEY_LEN {
        return Err(bad("the key must be 1 to 256 bytes"));
    }
    Ok(Choose { count, key: key.to_owned() })
}

/// FNV-1a then a 64-bit finaliser: a fixed, portable hash, so the choice does not change with
/// the Rust version or between servers.
fn rendezvous_score(key: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0u8]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Keeps the `choose.count` best-ranked instances, in ID order.
pub(crate) fn choose<T>(items: Vec<T>, id: impl Fn(&T) -> &str, c: &Choose) -> Vec<T> {
    let mut ranked: Vec<(u64, T)> =
        items.into_iter().map(|i| (rendezvous_score(&c.key, id(&i)), i)).collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.0));
    ranked.truncate(c.count);
    let mut out: Vec<T> = ranked.into_iter().map(|(_, i)| i).collect();
    out.sort_by(|a, b| id(a).cmp(id(b)));
    out
}

/// The instances of service `name` a query asks for: namespace, `passing`, `filter`.
pub(crate) fn instances<'a>(
    services: impl Iterator<Item = &'a ServiceRegistration>,
    name: &str,
    namespace: &str,
    passing_only: bool,
    filter: Option<&api::filter::Filter>,
) -> Vec<&'a ServiceRegistration> {
    services
        .filter(|r| r.service_name == name)
        .filter(|r| namespace == "*" || r.namespace == namespace)
        .filter(|r| !passing_only || r.health == ServiceHealth::Passing)
        .filter(|r| filter.is_none_or(|f| serde_json::to_value(r).is_ok_and(|v| f.matches(&v))))
        .collect()
}

/// `GET /v1/service/:name`: the instances of one service.
pub async fn read(
    AxState(ctx): AxState<Ctx>,
    Path(name): Path<String>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let passing = bool_param(&pairs, "passing", false)?;
    let chosen = param(&pairs, "choose").map(parse_choose).transpose()?;
    let (items, index) = ctx
        .query(&q, &[Table::Services], |s| {
            instances(s.services(), &name, &q.namespace, passing, q.filter.as_ref())
                .into_iter()
                .cloned()
                .collect::<Vec<ServiceRegistration>>()
        })
        .await?;
    let mut items = match &chosen {
        Some(c) => choose(items, |r| r.id.as_str(), c),
        None => items,
    };
    if q.reverse {
        items.reverse();
    }
    let page = api::query::paginate(items, |r| r.id.as_str(), &q);
    Ok(Reply::json(&page.items, index, q.pretty).with_next_token(page.next_token))
}

/// `DELETE /v1/service/:name/:id`: removes one registration, as an operator cleaning up after a
/// node that will not come back. A live agent registers it again on its next sync.
pub async fn delete(
    AxState(ctx): AxState<Ctx>,
    Path((name, id)): Path<(String, String)>,
    pairs: Pairs,
) -> Result<Reply, ApiError> {
    let q = query_options(&pairs)?;
    let found = ctx
        .read(&q, |s| {
            s.service(&id).is_some_and(|r| {
                r.service_name == name && (q.namespace == "*" || r.namespace == q.namespace)
            })
        })
        .await?;
    if !found {
        return Err(ApiError::NotFound(format!("service registration {id:?} not found")));
    }
    let written = ctx.handle.write(Command::ServiceDeregister { ids: vec![id] }).await?;
    Ok(Reply::json(&Value::Null, written.index, q.pretty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_is_stable_and_moves_little_when_an_instance_goes() {
        let ids: Vec<String> = (0..20).map(|i| format!("svc-{i:02}")).collect();
        let c = parse_choose("3|client-a").unwrap();
        let picked = choose(ids.clone(), |s| s.as_str(), &c);
        assert_eq!(picked.len(), 3);
        assert_eq!(choose(ids.clone(), |s| s.as_str(), &c), picked, "same input, same choice");
        // Removing an instance that was not chosen changes nothing.
        let spare = ids.iter().find(|i| !picked.contains(i)).unwrap().clone();
        let fewer: Vec<String> = ids.iter().filter(|i| **i != spare).cloned().collect();
        assert_eq!(choose(fewer, |s| s.as_str(), &c), picked);
        // Removing a chosen one keeps the other two.
        let fewer: Vec<String> = ids.iter().filter(|i| **i != picked[0]).cloned().collect();
        let again = choose(fewer, |s| s.as_str(), &c);
        assert!(again.contains(&picked[1]) && again.contains(&picked[2]));
        // Different keys spread over different instances.
        let others: BTreeSet<String> = (0..10)
            .flat_map(|k| {
                choose(ids.clone(), |s| s.as_str(), &parse_choose(&format!("1|k{k}")).unwrap())
            })
            .collect();
        assert!(others.len() > 3, "{others:?}");
    }

    #[test]
    fn choose_values_are_checked() {
        for bad in ["3", "0|k", "x|k", "2|", &format!("1|{}", "k".repeat(300))] {
            assert!(parse_choose(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_choose("2|a|b").unwrap(), Choose { count: 2, key: "a|b".into() });
    }
}
