//! A stand-in for a Consul agent, so orc's Consul integration can be tested on any machine:
//! the agent API orc uses (`/v1/agent/service/register`, `…/deregister/:id`, `/v1/agent/services`,
//! `/v1/agent/checks`, `/v1/agent/check/update/:id`) plus `/v1/health/service/:name`, with
//! tcp and http checks that really run at their interval, TTL checks that expire, an optional
//! ACL token, and a log of every request for exact assertions (also served at
//! `GET /fake/requests`).
//!
//! It is not Consul: no catalog beyond this one agent, no KV, no blocking queries, no https
//! checks. It parses requests with its own types rather than orc's, so a test against it checks
//! the wire format orc sends, not orc against itself.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use checks::{CheckHandle, CheckKind, CheckSpec, CheckStatus, HttpProbe, Thresholds};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Request bodies above this are refused, as a real agent would refuse absurd registrations.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The most requests kept in the log; older ones are dropped.
const MAX_LOGGED_REQUESTS: usize = 100_000;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `X-Consul-Token` header, if any.
    pub token: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

/// A registered service, as `/v1/agent/services` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub address: String,
    pub enable_tag_override: bool,
}

/// A registered check, as `/v1/agent/checks` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    /// `tcp`, `http` or `ttl`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The check's definition as registered (`TCP`, `HTTP`, `Interval`, `Timeout`, `TTL`, …).
    pub definition: Value,
}

struct Entry {
    check: Check,
    /// Runs tcp and http checks; dropped (stopping the check) with the entry.
    _runner: Option<CheckHandle>,
    ttl: Option<(Duration, Instant)>,
    generation: u64,
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, Entry>,
    requests: Vec<Recorded>,
    generation: u64,
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
    token: Option<String>,
    updates: mpsc::UnboundedSender<checks::CheckUpdate>,
}

/// A running fake Consul agent. Dropping it stops the server and its checks.
pub struct FakeConsul {
    ctx: Ctx,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeConsul {
    /// Serves on `listener`; requests must carry `token` as `X-Consul-Token` when it is set.
    pub fn start(listener: TcpListener, token: Option<String>) -> std::io::Result<FakeConsul> {
        let addr = listener.local_addr()?;
        let (updates, rx) = mpsc::unbounded_channel();
        let ctx = Ctx { inner: Arc::default(), token, updates };
        tokio::spawn(apply_updates(Arc::downgrade(&ctx.inner), rx));
        tokio::spawn(expire_ttls(Arc::downgrade(&ctx.inner)));
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(ctx.clone());
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                eprintln!("consul-fake: {e}");
            }
        });
        Ok(FakeConsul { ctx, addr, stop: Some(stop) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn services(&self) -> BTreeMap<String, Service> {
        self.ctx.inner.lock().expect("fake lock").services.clone()
    }

    pub fn checks(&self) -> BTreeMap<String, Check> {
        let inner = self.ctx.inner.lock().expect("fake lock");
        inner.checks.iter().map(|(k, e)| (k.clone(), e.check.clone())).collect()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.ctx.inner.lock().expect("fake lock").requests.clone()
    }

    /// Waits until `f` holds for the services and checks, or `timeout` passes; returns whether
    /// it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        f: impl Fn(&BTreeMap<String, Service>, &BTreeMap<String, Check>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if f(&self.services(), &self.checks()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving (a Consul agent going away); its state is lost, as a dev-mode Consul's is.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Stop the checks' runners even if a request handler still holds the context.
        self.ctx.inner.lock().expect("fake lock").checks.clear();
    }
}

/// The binary's entry point: `[-addr HOST:PORT] [-token TOKEN]`.
pub fn cli_main(args: Vec<String>) -> Result<(), String> {
    let mut addr = "127.0.0.1:8500".to_string();
    let mut token = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.trim_start_matches('-') {
            "addr" => addr = it.next().ok_or("-addr needs a value")?,
            "token" => token = Some(it.next().ok_or("-token needs a value")?),
            other => {
                return Err(format!(
                    "unknown flag -{other}; usage: consul-fake [-addr HOST:PORT] [-token TOKEN]"
                ))
            }
        }
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let l = TcpListener::bind(&addr).await.map_err(|e| format!("binding {addr}: {e}"))?;
        let fake = FakeConsul::start(l, token).map_err(|e| e.to_string())?;
        println!("listening on {}", fake.addr());
        std::future::pending::<()>().await;
        Ok(())
    })
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/services", get(list_services))
        .route("/v1/agent/checks", get(list_checks))
        .route("/v1/agent/check/update/{id}", put(update_ttl))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/fake/requests", get(list_requests))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(ctx.clone(), record_and_authorize))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// Logs every request (body included), then enforces the ACL token.
async fn record_and_authorize(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let token = header(&parts.headers, "x-consul-token");
    if parts.uri.path() != "/fake/requests" {
        let rec = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            token: token.clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        let mut inner = ctx.inner.lock().expect("fake lock");
        if inner.requests.len() >= MAX_LOGGED_REQUESTS {
            inner.requests.remove(0);
        }
        inner.requests.push(rec);
    }
    if ctx.token.is_some() && token != ctx.token && parts.uri.path() != "/fake/requests" {
        return (StatusCode::FORBIDDEN, "ACL not found").into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, msg.into()).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterBody {
    #[serde(rename = "ID", default)]
    id: String,
    name: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    address: String,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    enable_tag_override: bool,
    #[serde(default)]
    checks: Option<Vec<Value>>,
    #[serde(default)]
    check: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CheckBody {
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    #[serde(rename = "TCP")]
    tcp: String,
    #[serde(rename = "HTTP")]
    http: String,
    method: String,
    header: BTreeMap<String, Vec<String>>,
    body: String,
    #[serde(rename = "TTL")]
    ttl: String,
    interval: String,
    timeout: String,
    status: String,
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
}

async fn register(
    State(ctx): State<Ctx>,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    if body.is_empty() {
        return bad("Request decode failed: EOF");
    }
    let reg: RegisterBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("Request decode failed: {e}")),
    };
    if reg.name.is_empty() {
        return bad("Missing service name");
    }
    let id = if reg.id.is_empty() { reg.name.clone() } else { reg.id.clone() };
    let mut defs: Vec<Value> = reg.checks.unwrap_or_default();
    defs.extend(reg.check);
    let mut parsed = Vec::with_capacity(defs.len());
    for (n, raw) in defs.into_iter().enumerate() {
        let c: CheckBody = match serde_json::from_value(raw.clone()) {
            Ok(c) => c,
            Err(e) => return bad(format!("Invalid check: {e}")),
        };
        let check_id = if c.check_id.is_empty() {
            format!("service:{id}:{}", n + 1)
        } else {
            c.check_id.clone()
        };
        let kind = match (c.tcp.is_empty(), c.http.is_empty(), c.ttl.is_empty()) {
            (false, true, true) => "tcp",
            (true, false, true) => "http",
            (true, true, false) => "ttl",
            _ => return bad(format!("Invalid check {check_id:?}: exactly one of TCP, HTTP, TTL")),
        };
        let status = if c.status.is_empty() { "critical" } else { c.status.as_str() };
        if CheckStatus::parse(status).is_none() || status == "pending" {
            return bad(format!("Invalid check status {status:?}"));
        }
        let timing = if kind == "ttl" {
            match parse_duration(&c.ttl) {
                Some(ttl) if !ttl.is_zero() => Timing::Ttl(ttl),
                _ => return bad(format!("Invalid TTL {:?}", c.ttl)),
            }
        } else {
            let interval = parse_duration(&c.interval).filter(|d| !d.is_zero());
            let Some(interval) = interval else {
                return bad(format!("Invalid interval {:?}", c.interval));
            };
            let timeout = if c.timeout.is_empty() {
                Some(Duration::from_secs(10))
            } else {
                parse_duration(&c.timeout)
            };
            let Some(timeout) = timeout else {
                return bad(format!("Invalid timeout {:?}", c.timeout));
            };
            Timing::Every { interval, timeout }
        };
        parsed.push((check_id, kind, status.to_owned(), timing, c, raw));
    }
    let replace = q.get("replace-existing-checks").is_some_and(|v| v.is_empty() || v == "true");
    let mut inner = ctx.inner.lock().expect("fake lock");
    inner.services.insert(
        id.clone(),
        Service {
            id: id.clone(),
            service: reg.name.clone(),
            tags: reg.tags.unwrap_or_default(),
            meta: reg.meta.unwrap_or_default(),
            port: reg.port,
            address: reg.address,
            enable_tag_override: reg.enable_tag_override,
        },
    );
    if replace {
        let keep: Vec<&String> = parsed.iter().map(|p| &p.0).collect();
        inner.checks.retain(|cid, e| e.check.service_id != id || keep.contains(&cid));
    }
    for (check_id, kind, status, timing, c, raw) in parsed {
        // Re-registering an unchanged check keeps its status, as Consul does.
        if let Some(e) = inner.checks.get(&check_id) {
            if e.check.definition == raw && e.check.service_id == id {
                continue;
            }
        }
        inner.generation += 1;
        let generation = inner.generation;
        let thresholds = Thresholds {
            success_before_passing: c.success_before_passing,
            failures_before_warning: c.failures_before_warning,
            failures_before_critical: c.failures_before_critical,
        };
        let (runner, ttl) = match timing {
            Timing::Ttl(ttl) => (None, Some((ttl, Instant::now() + ttl))),
            Timing::Every { interval, timeout } => {
                let probe = if kind == "tcp" {
                    CheckKind::Tcp { addr: c.tcp.clone() }
                } else {
                    match http_probe(&c) {
                        Ok(p) => CheckKind::Http(p),
                        Err(e) => return bad(format!("Invalid check {check_id:?}: {e}")),
                    }
                };
                let spec = CheckSpec {
                    id: format!("{generation} {check_id}"),
                    kind: probe,
                    interval,
                    timeout,
                    initial: CheckStatus::parse(&status).unwrap_or(CheckStatus::Critical),
                    thresholds,
                };
                (Some(checks::runner::spawn(spec, None, ctx.updates.clone())), None)
            }
        };
        let check = Check {
            check_id: check_id.clone(),
            name: if c.name.is_empty() { format!("Service '{}' check", reg.name) } else { c.name },
            status,
            output: String::new(),
            service_id: id.clone(),
            service_name: reg.name.clone(),
            kind: kind.to_owned(),
            definition: raw,
        };
        inner.checks.insert(check_id, Entry { check, _runner: runner, ttl, generation });
    }
    StatusCode::OK.into_response()
}

enum Timing {
    Ttl(Duration),
    Every { interval: Duration, timeout: Duration },
}

fn http_probe(c: &CheckBody) -> Result<HttpProbe, String> {
    let (protocol, rest) = c.http.split_once("://").ok_or("HTTP must be a URL")?;
    let (addr, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    HttpProbe::new(addr, protocol, &c.method, path, &c.header, &c.body).map_err(|e| e.to_string())
}

/// Go's `time.ParseDuration` for what Consul clients send: `"5s"`, `"1500ms"`, `"1m30s"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() || rest.len() > 64 {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let num: f64 = num.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(num * secs).ok()?;
        rest = tail;
    }
    Some(total)
}

async fn deregister(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    let mut inner = ctx.inner.lock().expect("fake lock");
    if inner.services.remove(&id).is_none() {
        return (StatusCode::NOT_FOUND, format!("Unknown service ID {id:?}")).into_response();
    }
    inner.checks.retain(|_, e| e.check.service_id != id);
    StatusCode::OK.into_response()
}

async fn list_services(State(ctx): State<Ctx>) -> Response {
    let inner = ctx.inner.lock().expect("fake lock");
    Json(&inner.services).into_response()
}

async fn list_checks(State(ctx): State<Ctx>) -> Response {
    let inner = ctx.inner.lock().expect("fake lock");
    let checks: BTreeMap<&String, &Check> =
        inner.checks.iter().map(|(k, e)| (k, &e.check)).collect();
    Json(checks).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlBody {
    #[serde(default)]
    status: String,
    #[serde(default)]
    output: String,
}

async fn update_ttl(State(ctx): State<Ctx>, Path(id): Path<String>, body: Bytes) -> Response {
    let upd: TtlBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("Request decode failed: {e}")),
    };
    if !matches!(upd.status.as_str(), "passing" | "warning" | "critical") {
        return bad(format!("Invalid status {:?}", upd.status));
    }
    let mut inner = ctx.inner.lock().expect("fake lock");
    let Some(e) = inner.checks.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}")).into_response();
    };
    let Some((ttl, deadline)) = e.ttl.as_mut() else {
        return bad(format!("Check {id:?} is not a TTL check"));
    };
    *deadline = Instant::now() + *ttl;
    e.check.status = upd.status;
    e.check.output = checks::probe::truncate(upd.output);
    StatusCode::OK.into_response()
}

async fn health_service(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    method: Method,
) -> Response {
    debug_assert_eq!(method, Method::GET);
    let passing_only =
        uri.query().is_some_and(|q| q.split('&').any(|p| p == "passing" || p == "passing=true"));
    let inner = ctx.inner.lock().expect("fake lock");
    let mut out = Vec::new();
    for s in inner.services.values().filter(|s| s.service == name) {
        let checks: Vec<&Check> =
            inner.checks.values().map(|e| &e.check).filter(|c| c.service_id == s.id).collect();
        if passing_only && checks.iter().any(|c| c.status != "passing") {
            continue;
        }
        out.push(json!({
            "Node": {"Node": "consul-fake", "Address": "127.0.0.1"},
            "Service": s,
            "Checks": checks,
        }));
    }
    Json(out).into_response()
}

async fn list_requests(State(ctx): State<Ctx>) -> Response {
    let inner = ctx.inner.lock().expect("fake lock");
    Json(&inner.requests).into_response()
}

/// Writes check results into the state; results of replaced checks are dropped.
async fn apply_updates(
    inner: std::sync::Weak<Mutex<Inner>>,
    mut rx: mpsc::UnboundedReceiver<checks::CheckUpdate>,
) {
    while let Some(u) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let Some((generation, check_id)) = u.id.split_once(' ') else { continue };
        let mut inner = inner.lock().expect("fake lock");
        if let Some(e) = inner.checks.get_mut(check_id) {
            if e.generation.to_string() == generation {
                e.check.status = u.status.as_str().to_owned();
                e.check.output = u.output;
            }
        }
    }
}

/// Marks TTL checks critical once their TTL passes without an update.
async fn expire_ttls(inner: std::sync::Weak<Mutex<Inner>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let mut inner = inner.lock().expect("fake lock");
        for e in inner.checks.values_mut() {
            if let Some((_, deadline)) = e.ttl {
                if now >= deadline && e.check.status != "critical" {
                    e.check.status = "critical".into();
                    e.check.output = "TTL expired".into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "1e400s", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    fn put(url: &str, body: &Value) -> (u16, String) {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut r = agent
            .put(url)
            .header("Content-Type", "application/json")
            .send(&serde_json::to_vec(body).unwrap()[..])
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_tcp_and_http_checks_and_expires_ttls() {
        let fake =
            FakeConsul::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), None).unwrap();
        // The fake's own address answers both a tcp connect and an http GET (with 404).
        let target = fake.addr().to_string();
        let url = format!("{}/v1/agent/service/register?replace-existing-checks=true", fake.url());
        let body = json!({
            "ID": "s1", "Name": "web", "Port": 1, "Address": "127.0.0.1",
            "Checks": [
                {"CheckID": "tcp", "Name": "tcp", "TCP": target, "Interval": "1s", "Timeout": "1s"},
                {"CheckID": "http", "HTTP": format!("http://{target}/v1/agent/services"),
                 "Interval": "1s", "Timeout": "1s"},
                {"CheckID": "http404", "HTTP": format!("http://{target}/nope"),
                 "Interval": "1s", "Timeout": "1s", "Status": "passing"},
                {"CheckID": "ttl", "TTL": "300ms", "Status": "passing"},
            ],
        });
        let (status, _) = tokio::task::spawn_blocking(move || put(&url, &body)).await.unwrap();
        assert_eq!(status, 200);
        let settled = fake
            .wait_for(Duration::from_secs(5), |_, c| {
                c["tcp"].status == "passing"
                    && c["http"].status == "passing"
                    && c["http404"].status == "critical"
                    && c["ttl"].status == "critical"
            })
            .await;
        assert!(settled, "{:#?}", fake.checks());
        assert_eq!(fake.checks()["ttl"].output, "TTL expired");
        assert_eq!(fake.checks()["tcp"].name, "tcp");
        assert_eq!(fake.checks()["http"].name, "Service 'web' check");

        // A TTL update sets the status; an invalid one is refused.
        let u = format!("{}/v1/agent/check/update/ttl", fake.url());
        let (s1, _) = {
            let u = u.clone();
            tokio::task::spawn_blocking(move || {
                put(&u, &json!({"Status": "passing", "Output": "ok"}))
            })
            .await
            .unwrap()
        };
        assert_eq!(s1, 200);
        let (s2, _) =
            tokio::task::spawn_blocking(move || put(&u, &json!({"Status": "fine"}))).await.unwrap();
        assert_eq!(s2, 400);

        let r = fake.requests();
        assert_eq!(r[0].method, "PUT");
        assert_eq!(r[0].path, "/v1/agent/service/register");
        assert_eq!(r[0].query, "replace-existing-checks=true");
        assert_eq!(r[0].body["Checks"][0]["CheckID"], "tcp");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_bad_registrations_and_wrong_tokens() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeConsul::start(l, Some("tok".into())).unwrap();
        let base = fake.url();
        let res = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent =
                ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let reg = format!("{base}/v1/agent/service/register");
            let send = |token: &str, body: Value| {
                agent
                    .put(&reg)
                    .header("X-Consul-Token", token)
                    .send(&serde_json::to_vec(&body).unwrap()[..])
                    .unwrap()
                    .status()
                    .as_u16()
            };
            vec![
                send("wrong", json!({"Name": "a"})),
                send("tok", json!({"ID": "a"})),
                send("tok", json!({"Name": "a", "Checks": [{"TCP": "x:1"}]})),
                send("tok", json!({"Name": "a", "Checks": [{"TCP": "x:1", "HTTP": "http://x/", "Interval": "1s"}]})),
                send("tok", json!({"Name": "a", "Checks": [{"HTTP": "http://x/\r\n", "Interval": "1s"}]})),
                send("tok", json!({"Name": "a"})),
            ]
        })
        .await
        .unwrap();
        assert_eq!(res, [403, 400, 400, 400, 400, 200]);
        assert_eq!(fake.services().keys().collect::<Vec<_>>(), ["a"]);
    }
}
