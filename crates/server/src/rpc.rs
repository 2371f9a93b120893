//! Server-to-server RPC: one gRPC service (tonic over HTTP/2) whose methods carry opaque bytes.
//!
//! This module owns the gRPC plumbing: method paths, the bytes codec, serving over a
//! [`Listener`], and cached client channels dialled through a [`Connector`]. It deliberately does
//! not know what the bytes mean: the `raft` module encodes requests and replies. Using a bytes
//! codec instead of protobuf keeps `protoc` out of the build.

use crate::transport::{Conn, Connector, Listener};
use bytes::{Buf, BufMut, Bytes};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// The gRPC service name; a method `M` is served at `/orc.server.v1.Rpc/M`.
pub const SERVICE_NAME: &str = "orc.server.v1.Rpc";

/// Failure of one call, as the caller sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The peer could not be reached, or the connection broke.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// No reply within the deadline.
    #[error("peer {addr} did not answer {method} within {timeout_ms} ms")]
    Timeout { addr: String, method: String, timeout_ms: u128 },
    /// The peer answered with an error.
    #[error("peer {addr} failed {method}: {message}")]
    Remote { addr: String, method: String, message: String },
}

/// What serves incoming calls.
pub trait Handler: Send + Sync + 'static {
    /// Handles one call. `Err` is reported to the caller as [`RpcError::Remote`].
    fn handle(&self, method: String, body: Bytes) -> BoxFuture<'static, Result<Bytes, String>>;

    /// True if `method` is server-streaming: served by [`Handler::stream`], not `handle`.
    fn is_stream(&self, _method: &str) -> bool {
        false
    }

    /// Opens one server-streaming call: `Err` refuses it (reported as [`RpcError::Remote`]);
    /// an `Err` item ends the stream with that message.
    fn stream(
        &self,
        method: String,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<MessageStream, String>> {
        Box::pin(async move { Err(format!("{method} is not a stream")) })
    }
}

/// The messages of a server-streaming call, as the handler produces them.
pub type MessageStream = BoxStream<'static, Result<Bytes, String>>;

/// A codec that passes message bytes through unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;
    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The tower service tonic routes our paths to.
#[derive(Clone)]
struct RpcService {
    handler: Arc<dyn Handler>,
}

struct Unary {
    handler: Arc<dyn Handler>,
    method: String,
}

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let fut = self.handler.handle(self.method.clone(), request.into_inner());
        Box::pin(async move { fut.await.map(tonic::Response::new).map_err(Status::unknown) })
    }
}

struct ServerStreaming {
    handler: Arc<dyn Handler>,
    method: String,
}

impl tonic::server::ServerStreamingService<Bytes> for ServerStreaming {
    type Response = Bytes;
    type ResponseStream = BoxStream<'static, Result<Bytes, Status>>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, Status>>;
    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let fut = self.handler.stream(self.method.clone(), request.into_inner());
        Box::pin(async move {
            let stream = fut.await.map_err(Status::unknown)?;
            let stream: Self::ResponseStream =
                Box::pin(futures::StreamExt::map(stream, |item| item.map_err(Status::unknown)));
            Ok(tonic::Response::new(stream))
        })
    }
}

impl<B> tower::Service<http::Request<B>> for RpcService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().strip_prefix(&format!("/{SERVICE_NAME}/")).map(str::to_owned);
        let handler = self.handler.clone();
        Box::pin(async move {
            let Some(method) = method else {
                return Ok(Status::unimplemented("unknown service").into_http());
            };
            let mut grpc = tonic::server::Grpc::new(BytesCodec);
            if handler.is_stream(&method) {
                return Ok(grpc.server_streaming(ServerStreaming { handler, method }, req).await);
            }
            Ok(grpc.unary(Unary { handler, method }, req).await)
        })
    }
}

impl tonic::server::NamedService for RpcService {
    const NAME: &'static str = SERVICE_NAME;
}

/// Serves `handler` on connections from `listener` until `shutdown` resolves. The listener is
/// dropped (its port freed) when this returns.
pub async fn serve(
    mut listener: Box<dyn Listener>,
    handler: Arc<dyn Handler>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Conn>>(16);
    let acceptor = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok(conn) => {
                    if tx.send(Ok(conn)).await.is_err() {
                        return;
                    }
                }
                // A failed accept (for example too many open files) must not end the server.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let result = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(RpcService { handler }, incoming, shutdown)
        .await;
    acceptor.abort();
    result
}

/// Calls peers, keeping one HTTP/2 channel per address.
pub struct Client {
    connector: Arc<dyn Connector>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Client {
    pub fn new(connector: Arc<dyn Connector>) -> Self {
        Client { connector, channels: Mutex::new(HashMap::new()) }
    }

    fn channel(&self, addr: &str) -> Result<Channel, RpcError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| RpcError::Unreachable { addr: addr.to_owned(), reason: e.to_string() })?;
        let connector = self.connector.clone();
        let target = addr.to_owned();
        let channel = endpoint.connect_timeout(Duration::from_secs(1)).connect_with_connector_lazy(
            tower::service_fn(move |_uri: http::Uri| {
                let fut = connector.connect(&target);
                async move { fut.await.map(hyper_util::rt::TokioIo::new) }
            }),
        );
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Calls `method` on the peer at `addr`, giving up after `timeout`.
    pub async fn call(
        &self,
        addr: &str,
        method: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RpcError> {
        let channel = self.channel(addr)?;
        let path = http::uri::PathAndQuery::try_from(format!("/{SERVICE_NAME}/{method}")).map_err(
            |e| RpcError::Remote {
                addr: addr.to_owned(),
                method: method.to_owned(),
                message: format!("bad method name: {e}"),
            },
        )?;
        let call = async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(|e| RpcError::Unreachable {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?;
            grpc.unary(tonic::Request::new(body), path, BytesCodec).await.map_err(|s| {
                if s.code() == tonic::Code::Unknown {
                    RpcError::Remote {
                        addr: addr.to_owned(),
                        method: method.to_owned(),
                        message: s.message().to_owned(),
                    }
                } else {
                    RpcError::Unreachable { addr: addr.to_owned(), reason: s.to_string() }
                }
            })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(reply) => reply.map(tonic::Response::into_inner),
            Err(_) => {
                // A connection that lost bytes in a partition (or whose peer restarted without
                // the reset reaching us) stays open and silent; the cached channel would keep
                // timing out on it forever. Dial afresh next time. Found by tests/sim.
                self.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(addr);
                Err(RpcError::Timeout {
                    addr: addr.to_owned(),
                    method: method.to_owned(),
                    timeout_ms: timeout.as_millis(),
                })
            }
        }
    }

    /// Opens the server-streaming `method` on the peer at `addr`; `open_timeout` bounds only
    /// the opening. The caller bounds the silence between messages (a peer lost in a partition
    /// leaves the stream open and quiet) and calls [`Client::forget`] when it gives up on one.
    pub async fn stream(
        &self,
        addr: &str,
        method: &str,
        body: Bytes,
        open_timeout: Duration,
    ) -> Result<BoxStream<'static, Result<Bytes, RpcError>>, RpcError> {
        let channel = self.channel(addr)?;
        let path = http::uri::PathAndQuery::try_from(format!("/{SERVICE_NAME}/{method}")).map_err(
            |e| RpcError::Remote {
                addr: addr.to_owned(),
                method: method.to_owned(),
                message: format!("bad method name: {e}"),
            },
        )?;
        let to_error = {
            let addr = addr.to_owned();
            let method = method.to_owned();
            move |s: Status| {
                if s.code() == tonic::Code::Unknown {
                    RpcError::Remote {
                        addr: addr.clone(),
                        method: method.clone(),
                        message: s.message().to_owned(),
                    }
                } else {
                    RpcError::Unreachable { addr: addr.clone(), reason: s.to_string() }
                }
            }
        };
        let open = {
            let to_error = to_error.clone();
            async move {
                let mut grpc = tonic::client::Grpc::new(channel);
                grpc.ready().await.map_err(|e| RpcError::Unreachable {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                })?;
                grpc.server_streaming(tonic::Request::new(body), path, BytesCodec)
                    .await
                    .map_err(to_error)
            }
        };
        match tokio::time::timeout(open_timeout, open).await {
            Ok(reply) => {
                let stream = reply?.into_inner();
                Ok(Box::pin(futures::StreamExt::map(stream, move |item| item.map_err(&to_error))))
            }
            Err(_) => {
                self.forget(addr);
                Err(RpcError::Timeout {
                    addr: addr.to_owned(),
                    method: method.to_owned(),
                    timeout_ms: open_timeout.as_millis(),
                })
            }
        }
    }

    /// Drops the cached channel to `addr`, so the next call dials afresh.
    pub fn forget(&self, addr: &str) {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(addr);
    }
}
