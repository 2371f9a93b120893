//! The adapter from the agent's server seam (`agent::client::ServerApi`, and the catalogue's
//! `agent::services::CatalogApi`) to the servers' node RPCs (`node_endpoint::NodeClient`), so
//! that `orc agent` and the simulator run the real agent against real servers through one piece
//! of code. The transport is the caller's: `NodeClient::new` takes a `transport::Connector`
//! (TCP in production, simulated TCP in tests/sim). It adds no behaviour of its own: errors are
//! mapped, reports converted, and the allocation watch's jobs paired with their allocations.

use crate::node_endpoint::{job_key, NodeClient, NodeRpcError, ServicesRequest};
use crate::state::AllocClientUpdate;
use agent::client::{ApiError, NodeAllocs, ServerApi};
use agent::runner::AllocReport;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use model::Node;
use std::time::Duration;

/// The agent's view of the servers, over their node RPCs.
pub struct GrpcServers(NodeClient);

impl GrpcServers {
    /// The servers `client` reaches.
    pub fn new(client: NodeClient) -> Self {
        GrpcServers(client)
    }
}

fn api_error(e: NodeRpcError) -> ApiError {
    match e {
        NodeRpcError::Unreachable(m) => ApiError::Unreachable(m),
        NodeRpcError::Remote(m) if m.contains("is not registered") => ApiError::UnknownNode,
        NodeRpcError::Remote(m) => ApiError::Other(m),
    }
}

impl ServerApi for GrpcServers {
    fn register<'a>(&'a self, node: &'a Node) -> BoxFuture<'a, Result<Duration, ApiError>> {
        Box::pin(async move { self.0.register(node).await.map_err(api_error) })
    }

    fn heartbeat<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<Duration, ApiError>> {
        Box::pin(async move { self.0.heartbeat(node_id).await.map_err(api_error) })
    }

    fn watch_allocs<'a>(
        &'a self,
        node_id: &'a str,
        min_index: u64,
        keepalive: Duration,
    ) -> BoxFuture<'a, Result<BoxStream<'static, Result<NodeAllocs, ApiError>>, ApiError>> {
        Box::pin(async move {
            let stream =
                self.0.watch_allocs(node_id, min_index, keepalive).await.map_err(api_error)?;
            let stream = stream.map(|reply| {
                let mut reply = reply.map_err(api_error)?;
                let allocs = reply
                    .allocs
                    .drain(..)
                    .map(|a| {
                        let job = reply.jobs.get(&job_key(&a)).cloned();
                        (a, job)
                    })
                    .collect();
                Ok(NodeAllocs { index: reply.index, allocs })
            });
            Ok(Box::pin(stream) as BoxStream<'static, _>)
        })
    }

    fn update_allocs(&self, reports: Vec<AllocReport>) -> BoxFuture<'_, Result<(), ApiError>> {
        let updates = reports
            .into_iter()
            .map(|r| AllocClientUpdate {
                alloc_id: r.alloc_id,
                client_status: r.client_status,
                client_description: r.client_description,
                task_states: r.task_states,
                deployment_status: r.deployment_status,
                modify_time: r.modify_time,
            })
            .collect();
        Box::pin(async move { self.0.update_allocs(updates).await.map(|_| ()).map_err(api_error) })
    }
}

impl agent::services::CatalogApi for GrpcServers {
    fn write(
        &self,
        upserts: Vec<model::ServiceRegistration>,
        deletes: Vec<String>,
    ) -> BoxFuture<'_, Result<(), String>> {
        let req = ServicesRequest { upserts, deletes };
        Box::pin(async move {
            self.0.upsert_services(&req).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }

    fn read<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        min_index: u64,
        wait: std::time::Duration,
    ) -> BoxFuture<'a, Result<(u64, Vec<model::ServiceRegistration>), String>> {
        Box::pin(async move {
            let reply = self.0.services(namespace, name, min_index, wait).await;
            reply.map(|r| (r.index, r.services)).map_err(|e| e.to_string())
        })
    }
}
