//! Shared by the HTTP benchmarks: a dev server (in-memory store, one voter) on loopback with its
//! HTTP API, and numeric settings read from the environment. Only benchmarks use this.

use server::http::{self, HttpConfig};
use server::raft::RaftTiming;
use server::transport::TcpConnector;
use server::{Config, Seams, Server, ServerHandle};
use std::sync::Arc;

/// A numeric setting from the environment, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts a one-server cluster with fast Raft timings and its HTTP API on a free loopback port;
/// returns the handle and the HTTP address.
pub async fn start() -> (ServerHandle, String) {
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc.local_addr().unwrap().to_string();
    let mut config = Config {
        raft: RaftTiming {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            ..RaftTiming::default()
        },
        ..Config::default()
    };
    config.server.enabled = true;
    let seams = Seams {
        rpc_listener: Box::new(rpc),
        rpc_advertise: addr,
        connector: Arc::new(TcpConnector),
        store: None,
    };
    let handle = Server::start(config.clone(), seams).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(http::serve(
        listener,
        handle.clone(),
        HttpConfig::from_server(&config),
        std::future::pending(),
    ));
    (handle, http_addr)
}
