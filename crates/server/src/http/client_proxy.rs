//! Client endpoints through any server: `/v1/client/fs/logs/:alloc` and
//! `/v1/client/allocation/:alloc/{restart,signal}` are forwarded to the agent that runs the
//! allocation, found through the node's `HTTPAddr`, and its answer (a stream, for `follow`) is
//! relayed as it comes. This module only forwards: what the paths may name is the agent's rule.

use super::{ApiError, Ctx};
use crate::server::Consistency;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The node address of the agent running `alloc_id`.
async fn agent_addr(ctx: &Ctx, alloc_id: &str) -> Result<String, ApiError> {
    let addr = ctx
        .handle
        .read(Consistency::Stale, |s| {
            let alloc = s.alloc(alloc_id)?;
            s.node(&alloc.node_id).map(|n| n.http_addr.clone())
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match addr {
        Some(a) if !a.is_empty() => Ok(a),
        Some(_) => Err(ApiError::Internal("the allocation's node has no HTTP address".into())),
        None => Err(ApiError::NotFound("Unknown allocation".into())),
    }
}

/// Sends one HTTP/1.0 request (so the answer is delimited by the connection's end, streams
/// included) and relays the answer.
async fn forward(
    addr: &str,
    method: Method,
    path: &str,
    query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    if query.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(ApiError::BadRequest("malformed query".into()));
    }
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let unreachable = |e: std::io::Error| ApiError::Internal(format!("client {addr}: {e}"));
    let mut conn = tokio::net::TcpStream::connect(addr).await.map_err(unreachable)?;
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.map_err(unreachable)?;
    conn.write_all(&body).await.map_err(unreachable)?;
    // Read the response head (bounded), then relay the rest as it arrives.
    let mut buf = Vec::new();
    let split = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(ApiError::Internal(format!("client {addr}: response head too large")));
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.map_err(unreachable)?;
        if n == 0 {
            return Err(ApiError::Internal(format!("client {addr}: closed without answering")));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = Bytes::copy_from_slice(&buf[split + 4..]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    let first = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(rest) });
    let tail = futures::stream::unfold(conn, |mut conn| async move {
        let mut chunk = vec![0u8; 16 * 1024];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Bytes::from(chunk)), conn))
            }
        }
    });
    use futures::StreamExt;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(first.chain(tail)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /v1/client/fs/logs/:alloc`.
pub async fn logs(
    AxState(ctx): AxState<Ctx>,
    Path(alloc): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let addr = agent_addr(&ctx, &alloc).await?;
    forward(&addr, Method::GET, &format!("/v1/client/fs/logs/{alloc}"), query, Bytes::new()).await
}

/// `POST /v1/client/allocation/:alloc/restart`.
pub async fn restart(
    AxState(ctx): AxState<Ctx>,
    Path(alloc): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let addr = agent_addr(&ctx, &alloc).await?;
    forward(&addr, Method::POST, &format!("/v1/client/allocation/{alloc}/restart"), None, body)
        .await
}

/// `POST /v1/client/allocation/:alloc/signal`.
pub async fn signal(
    AxState(ctx): AxState<Ctx>,
    Path(alloc): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let addr = agent_addr(&ctx, &alloc).await?;
    forward(&addr, Method::POST, &format!("/v1/client/allocation/{alloc}/signal"), None, body).await
}
