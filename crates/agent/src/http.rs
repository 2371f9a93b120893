//! The agent's own HTTP endpoints: `GET /v1/client/fs/logs/:alloc` (Nomad's framed log stream,
//! or `plain=true`), `POST /v1/client/allocation/:id/restart` and `/signal`. Servers proxy to
//! these through the node's `HTTPAddr`.
//!
//! Path safety: the fs API only ever opens `<alloc dir>/alloc/logs/<task>.<stdout|stderr>.<n>`
//! of an allocation this agent runs; the task name is checked to be a single path component and
//! the file list comes from a directory listing, never from the request.

use crate::client::Client;
use crate::logs;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The router for the client endpoints.
pub fn router(client: Client) -> Router {
    Router::new()
        .route("/v1/client/fs/logs/{alloc}", get(logs_handler))
        .route("/v1/client/allocation/{alloc}/restart", post(restart).put(restart))
        .route("/v1/client/allocation/{alloc}/signal", post(signal).put(signal))
        .with_state(client)
}

/// Serves `router(client)` on `listener` until the process ends or the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, client: Client) -> std::io::Result<()> {
    axum::serve(listener, router(client)).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

fn truthy(v: Option<&String>) -> bool {
    v.is_some_and(|s| s == "true" || s == "1")
}

async fn logs_handler(
    State(client): State<Client>,
    Path(alloc_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(alloc_dir) = client.alloc_dir(&alloc_id) else {
        return error(StatusCode::NOT_FOUND, format!("unknown allocation {alloc_id}"));
    };
    let kind = q.get("type").map_or("stdout", String::as_str);
    if !logs::valid_kind(kind) {
        return error(StatusCode::BAD_REQUEST, "type must be stdout or stderr");
    }
    let task = match q.get("task") {
        Some(t) => t.clone(),
        None => match only_task(&alloc_dir) {
            Some(t) => t,
            None => return error(StatusCode::BAD_REQUEST, "task is required"),
        },
    };
    if !logs::valid_task_name(&task) {
        return error(StatusCode::BAD_REQUEST, format!("invalid task name {task:?}"));
    }
    let follow = truthy(q.get("follow"));
    let plain = truthy(q.get("plain"));
    let offset: u64 = match q.get("offset").map(|s| s.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "offset must be a number"),
    };
    let from_end = match q.get("origin").map(String::as_str) {
        None | Some("start") => false,
        Some("end") => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, "origin must be start or end"),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let spec =
        StreamSpec { alloc_dir, task, kind: kind.to_string(), follow, plain, offset, from_end };
    tokio::spawn(stream_logs(spec, tx));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    }));
    let content_type = if plain { "text/plain; charset=utf-8" } else { "application/json" };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// The task whose logs exist, when there is exactly one.
fn only_task(alloc_dir: &std::path::Path) -> Option<String> {
    let mut tasks: Vec<String> = std::fs::read_dir(logs::logs_dir(alloc_dir))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (task, _) = name.split_once(".std")?;
            Some(task.to_string())
        })
        .collect();
    tasks.sort();
    tasks.dedup();
    (tasks.len() == 1).then(|| tasks.remove(0))
}

struct StreamSpec {
    alloc_dir: PathBuf,
    task: String,
    kind: String,
    follow: bool,
    plain: bool,
    offset: u64,
    from_end: bool,
}

/// Nomad's `StreamFrame`: `{"Offset":…,"Data":"<base64>","File":"alloc/logs/…"}`; `{}` is a
/// heartbeat.
fn frame(file: &str, offset: u64, data: &[u8]) -> Bytes {
    let value = serde_json::json!({
        "Offset": offset,
        "Data": base64::engine::general_purpose::STANDARD.encode(data),
        "File": file,
    });
    Bytes::from(value.to_string())
}

const CHUNK: usize = 64 * 1024;

async fn stream_logs(spec: StreamSpec, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let send = |file: &str, offset: u64, data: Vec<u8>| {
        if spec.plain {
            Bytes::from(data)
        } else {
            frame(file, offset, &data)
        }
    };
    let files = logs::files_in_order(&spec.alloc_dir, &spec.task, &spec.kind);
    let sizes: Vec<u64> =
        files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).collect();
    let total: u64 = sizes.iter().sum();
    let mut skip = if spec.from_end { total.saturating_sub(spec.offset) } else { spec.offset };
    let rel = |p: &std::path::Path| {
        format!("alloc/logs/{}", p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
    };
    // History, oldest file first.
    for (path, size) in files.iter().zip(&sizes) {
        if skip >= *size {
            skip -= size;
            continue;
        }
        let mut pos = skip;
        skip = 0;
        while pos < *size {
            let Ok(data) = logs::read_at(path, pos, CHUNK.min((size - pos) as usize)) else {
                break;
            };
            if data.is_empty() {
                break;
            }
            pos += data.len() as u64;
            if tx.send(send(&rel(path), pos, data)).await.is_err() {
                return;
            }
        }
    }
    if !spec.follow {
        return;
    }
    // Follow the live file. After a rotation (the file shrank) reading resumes at its start.
    let live = logs::log_file(&spec.alloc_dir, &spec.task, &spec.kind, 0);
    let live_name = rel(&live);
    let mut pos = std::fs::metadata(&live).map_or(0, |m| m.len());
    if files.last() == Some(&live) && sizes.last().is_some_and(|s| *s > pos) {
        pos = *sizes.last().unwrap_or(&0);
    }
    let mut last_sent = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let size = std::fs::metadata(&live).map_or(0, |m| m.len());
        if size < pos {
            pos = 0;
        }
        if size > pos {
            let Ok(data) = logs::read_at(&live, pos, CHUNK) else { continue };
            pos += data.len() as u64;
            if tx.send(send(&live_name, pos, data)).await.is_err() {
                return;
            }
            last_sent = Instant::now();
        } else if last_sent.elapsed() >= Duration::from_secs(1) {
            // Heartbeats keep proxies and clients from timing the stream out; plain streams
            // have no frame to carry one.
            let beat = if spec.plain { None } else { Some(Bytes::from_static(b"{}")) };
            if let Some(b) = beat {
                if tx.send(b).await.is_err() {
                    return;
                }
            } else if tx.is_closed() {
                return;
            }
            last_sent = Instant::now();
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RestartBody {
    task_name: String,
    all_tasks: bool,
}

async fn restart(
    State(client): State<Client>,
    Path(alloc_id): Path<String>,
    body: Bytes,
) -> Response {
    let req: RestartBody = if body.is_empty() {
        RestartBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
        }
    };
    let task = (!req.all_tasks && !req.task_name.is_empty()).then_some(req.task_name);
    match client.restart(&alloc_id, task).await {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(e) if e.starts_with("unknown allocation") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SignalBody {
    task: String,
    signal: String,
}

async fn signal(
    State(client): State<Client>,
    Path(alloc_id): Path<String>,
    body: Bytes,
) -> Response {
    let req: SignalBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let signal = if req.signal.is_empty() { "SIGKILL".to_string() } else { req.signal };
    let task = (!req.task.is_empty()).then_some(req.task);
    match client.signal(&alloc_id, task, signal).await {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(e) if e.starts_with("unknown allocation") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}
