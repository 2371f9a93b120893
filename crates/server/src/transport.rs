//! The transport seams: how a server accepts connections from peers and opens connections to
//! them. Servers never bind or dial sockets themselves; callers pass a [`Listener`] and a
//! [`Connector`], so tests and the simulator can substitute simulated networks, and TLS can wrap
//! both. This module owns the seam traits and the plain-TCP implementations; it does not know
//! gRPC or what flows over the streams.

use futures::future::BoxFuture;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A byte stream to or from a peer.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// One accepted or opened connection.
pub struct Conn(pub Box<dyn Io>);

impl Conn {
    /// Wraps any byte stream.
    pub fn new(io: impl Io) -> Self {
        Conn(Box::new(io))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// Accepts connections from peers. Already bound when handed to the server.
pub trait Listener: Send + 'static {
    /// Waits for the next connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Conn>>;
}

impl Listener for tokio::net::TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Conn>> {
        Box::pin(async move {
            let (stream, _) = tokio::net::TcpListener::accept(self).await?;
            // Raft heartbeats and forwarded writes are small; Nagle would add up to 40 ms each.
            stream.set_nodelay(true)?;
            Ok(Conn::new(stream))
        })
    }
}

/// Opens connections to peers by address (`host:port`).
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>>;
}

/// Plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Conn::new(stream))
        })
    }
}
