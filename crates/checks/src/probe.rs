//! One probe of a tcp or http check, bounded in time (the check's timeout covers connecting,
//! sending and reading) and in bytes (only the status line is read, at most
//! [`MAX_RESPONSE_HEAD_BYTES`]). It does not decide what a result means over time; see
//! [`crate::status`].
//!
//! The http probe speaks just enough HTTP/1.1 to read a status line: Consul's rules are 2xx
//! passing, 429 warning, anything else critical. Everything that goes on the wire (method, path,
//! headers, host) is validated when the probe is built, so a job cannot smuggle a second request
//! through a header value.

use crate::status::CheckStatus;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an http reply a probe reads; the status line is all it needs.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 4096;

/// The longest output kept from a probe or script, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub status: CheckStatus,
    /// A human-readable account, as Consul's check `Output`.
    pub output: String,
}

impl ProbeResult {
    fn new(status: CheckStatus, output: impl Into<String>) -> ProbeResult {
        ProbeResult { status, output: truncate(output.into()) }
    }
}

/// Why a check cannot be probed at all (a job error, reported once rather than every interval).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("http check: {0}")]
    InvalidHttp(String),
    #[error("https checks are not supported by orc's check runner; use protocol = \"http\"")]
    HttpsUnsupported,
}

/// Cuts `s` to [`MAX_OUTPUT_BYTES`] on a character boundary.
pub fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT_BYTES {
        let mut end = MAX_OUTPUT_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Connects to `addr` (`host:port`) within `timeout`: passing if the connection is accepted.
pub async fn tcp(addr: &str, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => ProbeResult::new(CheckStatus::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => ProbeResult::new(CheckStatus::Critical, format!("dial tcp {addr}: {e}")),
        Err(_) => ProbeResult::new(
            CheckStatus::Critical,
            format!("dial tcp {addr}: i/o timeout after {timeout:?}"),
        ),
    }
}

/// A validated http probe: what is sent, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    addr: String,
    method: String,
    path: String,
    headers: BTreeMap<String, Vec<String>>,
    body: String,
}

impl HttpProbe {
    /// A probe of `http://<addr><path>`. `protocol` is the check's (`http`, or empty for http).
    pub fn new(
        addr: &str,
        protocol: &str,
        method: &str,
        path: &str,
        headers: &BTreeMap<String, Vec<String>>,
        body: &str,
    ) -> Result<HttpProbe, ProbeError> {
        let bad = |m: String| Err(ProbeError::InvalidHttp(m));
        match protocol {
            "" | "http" => {}
            "https" => return Err(ProbeError::HttpsUnsupported),
            other => return bad(format!("unknown protocol {other:?}")),
        }
        let method = if method.is_empty() { "GET" } else { method };
        if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.len() > 16 {
            return bad(format!("invalid method {method:?}"));
        }
        let path = if path.is_empty() { "/" } else { path };
        if !path.starts_with('/')
            || path.len() > 2048
            || path.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            return bad(format!("invalid path {path:?}: it must start with / and hold no spaces"));
        }
        if addr.is_empty() || addr.bytes().any(|b| b <= b' ' || b == b'/' || b == 0x7f) {
            return bad(format!("invalid address {addr:?}"));
        }
        for (name, values) in headers {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return bad(format!("invalid header name {name:?}"));
            }
            if values.iter().any(|v| v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)) {
                return bad(format!("header {name:?} has a line break in its value"));
            }
        }
        Ok(HttpProbe {
            addr: addr.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: headers.clone(),
            body: body.to_owned(),
        })
    }

    /// The URL, for outputs and for Consul's `HTTP` field.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The request bytes.
    fn request(&self) -> Vec<u8> {
        let mut r = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let has = |h: &str| self.headers.keys().any(|k| k.eq_ignore_ascii_case(h));
        if !has("host") {
            r.push_str(&format!("Host: {}\r\n", self.addr));
        }
        if !has("user-agent") {
            r.push_str("User-Agent: orc health check\r\n");
        }
        for (name, values) in &self.headers {
            for v in values {
                r.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        if !self.body.is_empty() {
            r.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        r.push_str("Connection: close\r\n\r\n");
        r.push_str(&self.body);
        r.into_bytes()
    }

    /// Runs the probe; `timeout` covers the whole exchange.
    pub async fn probe(&self, timeout: Duration) -> ProbeResult {
        let what = format!("HTTP {} {}", self.method, self.url());
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(Ok(code)) => {
                let status = match code {
                    200..=299 => CheckStatus::Passing,
                    429 => CheckStatus::Warning,
                    _ => CheckStatus::Critical,
                };
                ProbeResult::new(status, format!("{what}: {code}"))
            }
            Ok(Err(e)) => ProbeResult::new(CheckStatus::Critical, format!("{what}: {e}")),
            Err(_) => ProbeResult::new(
                CheckStatus::Critical,
                format!("{what}: timed out after {timeout:?}"),
            ),
        }
    }

    async fn exchange(&self) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect(&self.addr).await?;
        stream.write_all(&self.request()).await?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        loop {
            if let Some(code) = status_code(&head)? {
                return Ok(code);
            }
            if head.len() >= MAX_RESPONSE_HEAD_BYTES {
                return Err(invalid("no status line in the first 4096 bytes"));
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(invalid("connection closed before a status line"));
            }
            let room = MAX_RESPONSE_HEAD_BYTES - head.len();
            head.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}

fn invalid(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned())
}

/// The status code once `head` holds a whole status line (`HTTP/1.x NNN ...\r\n`).
fn status_code(head: &[u8]) -> std::io::Result<Option<u16>> {
    let Some(end) = head.iter().position(|b| *b == b'\n') else { return Ok(None) };
    let line = String::from_utf8_lossy(&head[..end]);
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(invalid("malformed status line"));
    }
    code.parse().map(Some).map_err(|_| invalid("malformed status code"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot server that answers `reply` and hands back what it received.
    async fn serve_once(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = vec![0u8; 4096];
            let n = s.read(&mut got).await.unwrap();
            got.truncate(n);
            s.write_all(reply).await.unwrap();
            got
        });
        (addr, h)
    }

    fn probe(addr: &str, headers: &[(&str, &str)]) -> HttpProbe {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])).collect();
        HttpProbe::new(addr, "", "", "/health", &headers, "").unwrap()
    }

    #[tokio::test]
    async fn http_status_maps_to_consul_statuses() {
        for (reply, want) in [
            (&b"HTTP/1.1 200 OK\r\n\r\n"[..], CheckStatus::Passing),
            (b"HTTP/1.0 204 No Content\r\n\r\n", CheckStatus::Passing),
            (b"HTTP/1.1 429 Too Many Requests\r\n\r\n", CheckStatus::Warning),
            (b"HTTP/1.1 503 Unavailable\r\n\r\n", CheckStatus::Critical),
            (b"garbage\r\n", CheckStatus::Critical),
        ] {
            let (addr, server) = serve_once(reply).await;
            let r = probe(&addr, &[("X-Probe", "1")]).probe(Duration::from_secs(2)).await;
            assert_eq!(r.status, want, "{r:?}");
            let sent = String::from_utf8(server.await.unwrap()).unwrap();
            assert_eq!(
                sent,
                format!(
                    "GET /health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: orc health check\r\n\
                     X-Probe: 1\r\nConnection: close\r\n\r\n"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_port_fails() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let r = probe(&addr, &[]).probe(Duration::from_millis(200)).await;
        assert_eq!(r.status, CheckStatus::Critical);
        assert!(r.output.contains("timed out"), "{}", r.output);
        assert_eq!(tcp(&addr, Duration::from_secs(1)).await.status, CheckStatus::Passing);
        drop(l);
        let r = tcp(&addr, Duration::from_secs(1)).await;
        assert_eq!(r.status, CheckStatus::Critical, "{r:?}");
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_off() {
        static LONG: [u8; 8192] = [b'a'; 8192];
        let (addr, _server) = serve_once(&LONG).await;
        let r = probe(&addr, &[]).probe(Duration::from_secs(2)).await;
        assert_eq!(r.status, CheckStatus::Critical);
    }

    #[test]
    fn requests_that_could_smuggle_are_refused() {
        let none = BTreeMap::new();
        let h = |v: &str| BTreeMap::from([("X".to_string(), vec![v.to_string()])]);
        assert!(HttpProbe::new("a:1", "", "GET", "/x y", &none, "").is_err());
        assert!(HttpProbe::new("a:1", "", "GET", "x", &none, "").is_err());
        assert!(HttpProbe::new("a:1", "", "G\r\nET", "/", &none, "").is_err());
        assert!(HttpProbe::new("a:1", "", "GET", "/", &h("a\r\nHost: b"), "").is_err());
        assert!(HttpProbe::new("a:1/x", "", "GET", "/", &none, "").is_err());
        assert_eq!(
            HttpProbe::new("a:1", "https", "GET", "/", &none, ""),
            Err(ProbeError::HttpsUnsupported)
        );
        let p = HttpProbe::new("a:1", "http", "POST", "/p?q=1", &none, "hi").unwrap();
        assert_eq!(
            String::from_utf8(p.request()).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nHost: a:1\r\nUser-Agent: orc health check\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }

    #[test]
    fn output_is_bounded_on_a_char_boundary() {
        let s = truncate("é".repeat(MAX_OUTPUT_BYTES));
        assert!(s.len() <= MAX_OUTPUT_BYTES);
        assert!(s.chars().all(|c| c == 'é'));
    }
}
