//! orc's transport seams over turmoil's simulated TCP: what lets the real `Server::start` and
//! the real `NodeClient` run on simulated hosts. Nothing here knows Raft or gRPC.

use futures::future::BoxFuture;
use server::transport::{Conn, Connector, Listener};
use std::io;

/// Accepts simulated connections on the current simulated host.
pub struct SimListener(pub turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Conn>> {
        Box::pin(async move {
            let (stream, _) = self.0.accept().await?;
            Ok(Conn::new(stream))
        })
    }
}

/// Dials `host:port` through turmoil's network, from whichever simulated host runs the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimConnector;

impl Connector for SimConnector {
    fn connect(&self, addr: &str) -> BoxFuture<'static, io::Result<Conn>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Conn::new(stream))
        })
    }
}
