//! Serves the DNS interface (`dns` crate) from a server's replicated state: the healthy
//! instances of a service in the `default` namespace (DNS names carry no namespace). It only
//! adapts; the wire format and its checks are the `dns` crate's.

use futures::future::BoxFuture;
use model::ServiceHealth;
use server::{Consistency, ServerHandle};
use std::net::IpAddr;

/// The catalogue as the DNS server sees it.
pub struct StateCatalog {
    pub handle: ServerHandle,
}

impl dns::Catalog for StateCatalog {
    fn healthy(&self, service: &str) -> BoxFuture<'_, Option<Vec<dns::Instance>>> {
        let service = service.to_owned();
        Box::pin(async move {
            let read = self.handle.read(Consistency::Stale, |s| {
                let mut exists = false;
                let mut out = Vec::new();
                for r in s.services() {
                    if r.service_name != service || r.namespace != "default" {
                        continue;
                    }
                    exists = true;
                    // Registrations whose address is a host name have no A record to give.
                    if let (ServiceHealth::Passing, Ok(address)) =
                        (r.health, r.address.parse::<IpAddr>())
                    {
                        out.push(dns::Instance { address, port: r.port });
                    }
                }
                exists.then_some(out)
            });
            read.await.ok().flatten()
        })
    }
}
