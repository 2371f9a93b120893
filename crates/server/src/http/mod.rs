//! The Nomad-compatible HTTP API (axum): routing, the headers every reply carries, blocking
//! queries and request bodies.
//!
//! Each endpoint family has its own module that turns a request into a read of [`State`] or a
//! [`crate::state::Command`] and back into Nomad's JSON; errors map to status codes only in
//! [`error`]. This module does not bind sockets (the listener is passed to [`serve`]) and does
//! not schedule: writes only record evaluations for the scheduling pipeline to pick up.

mod agent;
mod allocs;
mod body;
mod client_proxy;
mod error;
mod evals;
mod events;
mod jobs;
mod nodes;
mod plan;
mod services;
mod ui;

pub use error::ApiError;

use crate::server::{Consistency, ServerHandle};
use crate::state::{State, Table};
use api::query::QueryOptions;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, Request, State as AxState};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use tokio::time::Instant;

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Request bodies larger than this are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
    /// This server's name, region and datacenter, for `/v1/agent/*`.
    pub name: String,
    pub region: String,
    pub datacenter: String,
    /// How often `/v1/event/stream` sends a `{}` line when nothing happens (Nomad: 30 s).
    pub event_heartbeat: std::time::Duration,
}

impl HttpConfig {
    /// The API settings that follow from a server's configuration.
    pub fn from_server(config: &crate::Config) -> HttpConfig {
        HttpConfig {
            name: config.name.clone(),
            region: config.region.clone(),
            datacenter: config.datacenter.clone(),
            ..HttpConfig::default()
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        // Nomad sets no limit; 8 MiB holds any sane job (the largest real ones are a few hundred
        // KiB) while stopping a client from making the server buffer gigabytes.
        HttpConfig {
            max_body_bytes: 8 << 20,
            name: String::new(),
            region: "global".into(),
            datacenter: "dc1".into(),
            event_heartbeat: std::time::Duration::from_secs(30),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub handle: ServerHandle,
    pub config: Arc<HttpConfig>,
    /// Recent events for `/v1/event/stream`.
    pub events: Arc<events::Buffer>,
}

/// Raw query pairs, decoded; each endpoint picks its own parameters from them.
pub(crate) type Pairs = Query<Vec<(String, String)>>;

/// Builds the API's router for `handle`.
pub fn router(handle: ServerHandle, config: HttpConfig) -> Router {
    let events = events::Buffer::new(events::EVENT_BUFFER_SIZE);
    if tokio::runtime::Handle::try_current().is_ok() {
        // Start buffering now, so `index=N` can replay what happened before the first stream.
        events.start(&handle);
    }
    let ctx = Ctx { handle, config: Arc::new(config), events };
    let limit = ctx.config.max_body_bytes;
    Router::new()
        .route("/v1/jobs", get(jobs::list).put(jobs::register).post(jobs::register))
        .route("/v1/jobs/parse", post(jobs::parse).put(jobs::parse))
        .route(
            "/v1/job/{id}",
            get(jobs::read).put(jobs::register_at).post(jobs::register_at).delete(jobs::deregister),
        )
        .route("/v1/job/{id}/plan", post(plan::plan).put(plan::plan))
        .route("/v1/job/{id}/allocations", get(jobs::allocations))
        .route("/v1/job/{id}/evaluations", get(jobs::evaluations))
        .route("/v1/job/{id}/versions", get(jobs::versions))
        .route("/v1/job/{id}/summary", get(jobs::summary))
        .route("/v1/job/{id}/deployments", get(jobs::deployments))
        .route("/v1/job/{id}/deployment", get(jobs::deployment))
        .route("/v1/job/{id}/scale", get(jobs::scale_status).put(jobs::scale).post(jobs::scale))
        .route("/v1/allocations", get(allocs::list))
        .route("/v1/allocation/{id}", get(allocs::read))
        .route("/v1/allocation/{id}/stop", post(allocs::stop).put(allocs::stop))
        .route("/v1/client/fs/logs/{alloc}", get(client_proxy::logs))
        .route(
            "/v1/client/allocation/{alloc}/restart",
            post(client_proxy::restart).put(client_proxy::restart),
        )
        .route(
            "/v1/client/allocation/{alloc}/signal",
            post(client_proxy::signal).put(client_proxy::signal),
        )
        .route("/v1/evaluations", get(evals::list))
        .route("/v1/evaluation/{id}", get(evals::read))
        .route("/v1/evaluation/{id}/allocations", get(evals::allocations))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/node/{id}", get(nodes::read))
        .route("/v1/node/{id}/allocations", get(nodes::allocations))
        .route("/v1/node/{id}/drain", post(nodes::drain).put(nodes::drain))
        .route("/v1/node/{id}/eligibility", post(nodes::eligibility).put(nodes::eligibility))
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/servers", get(agent::servers))
        .route("/v1/regions", get(agent::regions))
        .route("/v1/status/leader", get(agent::leader))
        .route("/v1/status/peers", get(agent::peers))
        .route("/v1/operator/raft/configuration", get(agent::raft_configuration))
        .route("/v1/operator/raft/peer", axum::routing::delete(agent::remove_peer))
        .route("/v1/event/stream", get(events::stream))
        .route("/v1/services", get(services::list))
        .route("/v1/service/{name}", get(services::read))
        .route("/v1/service/{name}/{id}", axum::routing::delete(services::delete))
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("Invalid URL path".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(ctx.clone(), meta_headers))
        .with_state(ctx)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: ServerHandle,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(handle, config)).with_graceful_shutdown(shutdown).await
}

const INDEX: HeaderName = HeaderName::from_static("x-nomad-index");
const KNOWN_LEADER: HeaderName = HeaderName::from_static("x-nomad-knownleader");
const LAST_CONTACT: HeaderName = HeaderName::from_static("x-nomad-lastcontact");
const NEXT_TOKEN: HeaderName = HeaderName::from_static("x-nomad-nexttoken");

/// Adds Nomad's query metadata to every reply, errors included: the Go client parses
/// `X-Nomad-Index` on every response, and a missing one makes blocking loops spin.
async fn meta_headers(AxState(ctx): AxState<Ctx>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let known_leader = ctx.handle.leader().is_some();
    let headers = resp.headers_mut();
    if !headers.contains_key(INDEX) {
        let index = ctx.handle.applied_index().max(1);
        headers.insert(INDEX, HeaderValue::from(index));
    }
    headers.insert(KNOWN_LEADER, HeaderValue::from_static(bool_str(known_leader)));
    headers.insert(LAST_CONTACT, HeaderValue::from(ctx.handle.last_contact_ms()));
    resp
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// A successful reply: JSON with its index (and, for listings, the next page's token).
pub(crate) struct Reply {
    body: Result<Vec<u8>, ApiError>,
    index: u64,
    next_token: String,
}

impl Reply {
    /// `value` as JSON, pretty-printed when the request said `?pretty`.
    pub fn json(value: &impl Serialize, index: u64, pretty: bool) -> Reply {
        let body =
            if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
        Reply {
            body: body.map_err(|e| ApiError::Internal(format!("encoding the reply: {e}"))),
            index,
            next_token: String::new(),
        }
    }

    /// An already serialised JSON body.
    pub fn raw(body: Vec<u8>, index: u64) -> Reply {
        Reply { body: Ok(body), index, next_token: String::new() }
    }

    pub fn with_next_token(mut self, token: String) -> Reply {
        self.next_token = token;
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = match self.body {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        };
        let mut resp = Response::new(Body::from(body));
        let h = resp.headers_mut();
        h.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(INDEX, HeaderValue::from(self.index.max(1)));
        if !self.next_token.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.next_token) {
                h.insert(NEXT_TOKEN, v);
            }
        }
        *resp.status_mut() = StatusCode::OK;
        resp
    }
}

/// Parses the common query options.
pub(crate) fn query_options(pairs: &[(String, String)]) -> Result<QueryOptions, ApiError> {
    QueryOptions::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The value of an endpoint-specific parameter.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// An endpoint-specific boolean parameter, read like Go's `strconv.ParseBool` (a bare `?all`
/// means true).
pub(crate) fn bool_param(
    pairs: &[(String, String)],
    name: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match param(pairs, name) {
        None => Ok(default),
        Some("" | "1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!(
            "invalid value for {name:?}: {other:?} is not a boolean"
        ))),
    }
}

/// A number in `[0, 1)` for the blocking-query jitter. The standard library's hasher keys are
/// random per instance, which is all jitter needs.
/// A uniform number in `[0, 1)` from the server's clock: the system's randomness, or a
/// simulation's seeded sequence.
fn unit_random(clock: &crate::clock::Clock) -> f64 {
    (clock.random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Ctx {
    /// Runs a read as a Nomad blocking query: answers at once unless `index` was given and the
    /// tables' index is not past it yet, in which case it waits for a change to them or for the
    /// (jittered) wait to end. Returns the result and the index to send back.
    pub async fn query<T>(
        &self,
        q: &QueryOptions,
        tables: &[Table],
        f: impl Fn(&State) -> T,
    ) -> Result<(T, u64), ApiError> {
        let index_of = |s: &State| tables.iter().map(|t| s.table_index(*t)).max().unwrap_or(0);
        let consistency = if q.allow_stale { Consistency::Stale } else { Consistency::Consistent };
        let (mut out, mut index) = self.handle.read(consistency, |s| (f(s), index_of(s))).await?;
        if !q.is_blocking() || index > q.min_index {
            return Ok((out, index));
        }
        // tokio's clock, so a simulated server waits in simulated time.
        let deadline = Instant::now() + q.wait_with_jitter(unit_random(self.handle.clock()));
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok((out, index));
            }
            // Wake on the next applied entry, whichever table it touched, and look again.
            let applied = self.handle.applied_index();
            self.handle.wait_for_index(applied + 1, remaining).await;
            (out, index) = self.handle.read(Consistency::Stale, |s| (f(s), index_of(s))).await?;
            if index > q.min_index {
                return Ok((out, index));
            }
        }
    }

    /// Reads without blocking, with the consistency the request asked for.
    pub async fn read<T>(
        &self,
        q: &QueryOptions,
        f: impl FnOnce(&State) -> T,
    ) -> Result<T, ApiError> {
        let consistency = if q.allow_stale { Consistency::Stale } else { Consistency::Consistent };
        Ok(self.handle.read(consistency, f).await?)
    }
}

/// Unix nanoseconds now: the server stamps times on the commands it builds, never in `apply`.
pub(crate) fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A fresh UUID for evaluations the API creates.
pub(crate) fn new_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_unix_nanos());
    scheduler::Rng::new(h.finish()).uuid()
}
