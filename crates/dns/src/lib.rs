//! A DNS interface to orc's service catalogue (hashicorp/nomad#12588): `<name>.service.<domain>`
//! answers A/AAAA with the addresses of the service's healthy instances and SRV with their
//! ports; `_<name>._tcp.service.<domain>` answers SRV as RFC 2782 clients (HAProxy's
//! `server-template`, for one) ask. SRV targets are `<hex address>.addr.<domain>`, which this
//! server also resolves, and whose records go in the additional section.
//!
//! [`respond`] is pure: one query datagram in, one reply out, with strict parsing (one
//! question, no compression in it, bounded names) because every byte is untrusted. Replies fit
//! in 512 bytes (no EDNS0): records that do not fit are left out and the TC bit is set. [`serve`]
//! is the UDP shell; the catalogue is behind [`Catalog`], so this crate knows nothing of the
//! server's state. No TCP, no recursion, no zone transfers.

use futures::future::BoxFuture;
use std::net::IpAddr;
use std::sync::Arc;

/// The largest reply sent (and query accepted), as plain DNS over UDP allows.
pub const MAX_UDP_BYTES: usize = 512;

/// One healthy instance of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub address: IpAddr,
    pub port: u16,
}

/// Where the answers come from: the healthy instances of a service, `None` when no service of
/// that name exists.
pub trait Catalog: Send + Sync {
    fn healthy(&self, service: &str) -> BoxFuture<'_, Option<Vec<Instance>>>;
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// A parsed question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lower-cased labels.
    pub labels: Vec<String>,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question ends in the query (the reply echoes it).
    end: usize,
}

/// What a query asks about, within `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `<name>.service.<domain>` or `_<name>._tcp.service.<domain>`.
    Service(String),
    /// `<hex>.addr.<domain>`.
    Addr(IpAddr),
    /// A name under the domain that means nothing.
    Unknown,
    /// Not our domain.
    Foreign,
}

/// Parses the question of `query`; `Err(rcode)` for what must be refused.
pub fn parse_query(query: &[u8]) -> Result<Question, u8> {
    if query.len() < 12 || query.len() > MAX_UDP_BYTES {
        return Err(RCODE_FORMERR);
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & 0x8000 != 0 {
        return Err(RCODE_FORMERR); // a response, not a query
    }
    if (flags >> 11) & 0xf != 0 {
        return Err(RCODE_NOTIMP); // only standard queries
    }
    let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 {
        return Err(RCODE_FORMERR);
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    let mut name_len = 0usize;
    loop {
        let len = *query.get(pos).ok_or(RCODE_FORMERR)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // 0xC0 is a compression pointer, which has no place in a lone question; 0x40 and 0x80
        // are reserved.
        if len > 63 {
            return Err(RCODE_FORMERR);
        }
        name_len += len + 1;
        if name_len > 255 {
            return Err(RCODE_FORMERR);
        }
        let label = query.get(pos..pos + len).ok_or(RCODE_FORMERR)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let tail = query.get(pos..pos + 4).ok_or(RCODE_FORMERR)?;
    Ok(Question {
        labels,
        qtype: u16::from_be_bytes([tail[0], tail[1]]),
        qclass: u16::from_be_bytes([tail[2], tail[3]]),
        end: pos + 4,
    })
}

/// What `labels` ask about in `domain` (itself possibly several labels, e.g. `orc` or
/// `cluster.example`).
pub fn classify(labels: &[String], domain: &str) -> Lookup {
    let domain: Vec<String> =
        domain.split('.').filter(|l| !l.is_empty()).map(str::to_ascii_lowercase).collect();
    if labels.len() < domain.len() || labels[labels.len() - domain.len()..] != domain[..] {
        return Lookup::Foreign;
    }
    let rest = &labels[..labels.len() - domain.len()];
    match rest {
        [name, kind] if kind == "service" && !name.starts_with('_') => {
            Lookup::Service(name.clone())
        }
        [name, proto, kind] if kind == "service" && proto == "_tcp" => match name.strip_prefix('_')
        {
            Some(n) if !n.is_empty() => Lookup::Service(n.to_owned()),
            _ => Lookup::Unknown,
        },
        [hex, kind] if kind == "addr" => decode_addr(hex).map_or(Lookup::Unknown, Lookup::Addr),
        _ => Lookup::Unknown,
    }
}

fn decode_addr(hex: &str) -> Option<IpAddr> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<_>>()?;
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn encode_addr(ip: IpAddr) -> String {
    let bytes = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a reply in 512 bytes, leaving out records that do not fit and saying so with TC.
struct Reply {
    buf: Vec<u8>,
    answers: u16,
    additional: u16,
    truncated: bool,
}

impl Reply {
    fn new(query: &[u8], q: &Question, rcode: u8) -> Reply {
        let mut buf = Vec::with_capacity(MAX_UDP_BYTES);
        buf.extend_from_slice(&query[..2]);
        let rd = query[2] & 0x01;
        buf.push(0x80 | 0x04 | rd); // QR, AA, RD copied
        buf.push(rcode);
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&query[12..q.end]);
        Reply { buf, answers: 0, additional: 0, truncated: false }
    }

    /// Appends one record; `name` is `None` for "the question's name" (a pointer to offset 12).
    fn record(&mut self, name: Option<&[String]>, rtype: u16, data: &[u8], additional: bool) {
        let mut rec = Vec::with_capacity(32 + data.len());
        match name {
            None => rec.extend_from_slice(&[0xc0, 0x0c]),
            Some(labels) => rec.extend_from_slice(&encode_name(labels)),
        }
        rec.extend_from_slice(&rtype.to_be_bytes());
        rec.extend_from_slice(&CLASS_IN.to_be_bytes());
        // TTL 0: health changes must reach clients at once, as Consul's default for services.
        rec.extend_from_slice(&0u32.to_be_bytes());
        rec.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rec.extend_from_slice(data);
        if self.buf.len() + rec.len() > MAX_UDP_BYTES {
            // Missing additional records are fine (the client can ask); missing answers are not.
            self.truncated |= !additional;
            return;
        }
        self.buf.extend_from_slice(&rec);
        if additional {
            self.additional += 1;
        } else {
            self.answers += 1;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[6..8].copy_from_slice(&self.answers.to_be_bytes());
        self.buf[10..12].copy_from_slice(&self.additional.to_be_bytes());
        if self.truncated {
            self.buf[2] |= 0x02;
        }
        self.buf
    }
}

fn encode_name(labels: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l.as_bytes());
    }
    out.push(0);
    out
}

fn addr_record(reply: &mut Reply, name: Option<&[String]>, ip: IpAddr, qtype: u16, extra: bool) {
    match ip {
        IpAddr::V4(v4) if matches!(qtype, TYPE_A | TYPE_ANY | TYPE_SRV) => {
            reply.record(name, TYPE_A, &v4.octets(), extra)
        }
        IpAddr::V6(v6) if matches!(qtype, TYPE_AAAA | TYPE_ANY | TYPE_SRV) => {
            reply.record(name, TYPE_AAAA, &v6.octets(), extra)
        }
        _ => {}
    }
}

/// The reply to one query datagram, or `None` when it is too broken to answer at all.
pub async fn respond(query: &[u8], domain: &str, catalog: &dyn Catalog) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let q = match parse_query(query) {
        Ok(q) => q,
        Err(rcode) => {
            // Echo no question: it may be what was malformed.
            let mut buf = query[..12].to_vec();
            buf[2] = 0x80 | (query[2] & 0x01);
            buf[3] = rcode;
            buf[4..12].fill(0);
            return Some(buf);
        }
    };
    if q.qclass != CLASS_IN {
        return Some(Reply::new(query, &q, RCODE_REFUSED).finish());
    }
    let domain_labels: Vec<String> =
        domain.split('.').filter(|l| !l.is_empty()).map(str::to_ascii_lowercase).collect();
    match classify(&q.labels, domain) {
        Lookup::Foreign => Some(Reply::new(query, &q, RCODE_REFUSED).finish()),
        Lookup::Unknown => Some(Reply::new(query, &q, RCODE_NXDOMAIN).finish()),
        Lookup::Addr(ip) => {
            let mut r = Reply::new(query, &q, 0);
            addr_record(&mut r, None, ip, if q.qtype == TYPE_SRV { 0 } else { q.qtype }, false);
            Some(r.finish())
        }
        Lookup::Service(name) => {
            let Some(instances) = catalog.healthy(&name).await else {
                return Some(Reply::new(query, &q, RCODE_NXDOMAIN).finish());
            };
            let mut r = Reply::new(query, &q, 0);
            if q.qtype == TYPE_SRV || q.qtype == TYPE_ANY {
                let targets: Vec<Vec<String>> = instances
                    .iter()
                    .map(|i| {
                        let mut t = vec![encode_addr(i.address), "addr".to_owned()];
                        t.extend(domain_labels.iter().cloned());
                        t
                    })
                    .collect();
                for (i, target) in instances.iter().zip(&targets) {
                    let mut data = Vec::with_capacity(6 + 40);
                    data.extend_from_slice(&1u16.to_be_bytes()); // priority
                    data.extend_from_slice(&1u16.to_be_bytes()); // weight
                    data.extend_from_slice(&i.port.to_be_bytes());
                    data.extend_from_slice(&encode_name(target));
                    r.record(None, TYPE_SRV, &data, false);
                }
                for (i, target) in instances.iter().zip(&targets) {
                    addr_record(&mut r, Some(target), i.address, TYPE_SRV, true);
                }
            }
            if q.qtype != TYPE_SRV {
                for i in &instances {
                    addr_record(&mut r, None, i.address, q.qtype, false);
                }
            }
            Some(r.finish())
        }
    }
}

/// Answers queries on `socket` until `shutdown` completes. Each query is answered in turn:
/// lookups are reads of local state, and a slow one must not let a flood queue up tasks.
pub async fn serve(
    socket: tokio::net::UdpSocket,
    domain: String,
    catalog: Arc<dyn Catalog>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut buf = [0u8; MAX_UDP_BYTES + 1];
    loop {
        let (n, peer) = tokio::select! {
            _ = &mut shutdown => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: receive failed");
                    continue;
                }
            },
        };
        // A datagram longer than plain DNS allows is dropped unanswered.
        if n > MAX_UDP_BYTES {
            continue;
        }
        if let Some(reply) = respond(&buf[..n], &domain, catalog.as_ref()).await {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

#[cfg(test)]
mod tests;
