//! A blocking HTTP client for orc's (and Nomad's) API, as the CLI uses it: the address from
//! `-address`, `ORC_ADDR` or `NOMAD_ADDR`, the token from `ORC_TOKEN` or `NOMAD_TOKEN`, JSON in
//! and out, and errors that name the address tried.
//!
//! It knows the API's conventions (only 200 is success, errors are plain text, the index comes
//! back in `X-Nomad-Index`), not any endpoint's meaning; the CLI's commands own that.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Where the CLI looks when nothing says otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:4646";

/// The largest reply body read, in bytes; a listing of 100,000 allocations fits.
const MAX_REPLY_BYTES: u64 = 512 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered: connection refused, DNS failure, timeout.
    #[error("no server answered at {addr}: {message}")]
    Unreachable { addr: String, message: String },
    /// The server answered with something other than 200.
    #[error("Unexpected response code: {status} ({body})")]
    Status { status: u16, body: String },
    /// The server answered 200 with a body this client cannot read.
    #[error("reading the reply from {url}: {message}")]
    Decode { url: String, message: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The metadata of a reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// `X-Nomad-Index`.
    pub index: u64,
    /// `X-Nomad-NextToken`: the next page's token, empty on the last page.
    pub next_token: String,
}

/// A connection to one API address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Picks the address: the flag, then `ORC_ADDR`, then `NOMAD_ADDR`, then [`DEFAULT_ADDR`].
/// `env` is passed in so callers (and tests) decide where the environment comes from.
pub fn resolve_addr(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    let raw = flag
        .map(str::to_owned)
        .or_else(|| env("ORC_ADDR").filter(|a| !a.is_empty()))
        .or_else(|| env("NOMAD_ADDR").filter(|a| !a.is_empty()))
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let raw = raw.trim_end_matches('/');
    if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    }
}

impl Client {
    /// A client for `addr` (with or without `http://`), sending `token` as `X-Nomad-Token`.
    pub fn new(addr: &str, token: Option<String>) -> Client {
        let addr = resolve_addr(Some(addr), |_| None);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            // Blocking queries wait up to 5 minutes plus jitter on the server.
            .timeout_global(Some(Duration::from_secs(330)))
            .build()
            .into();
        Client { addr, token: token.filter(|t| !t.is_empty()), agent }
    }

    /// The address requests go to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `GET path?query`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(T, Meta), ClientError> {
        let url = format!("{}{path}", self.addr);
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(t) = &self.token {
            req = req.header("X-Nomad-Token", t);
        }
        self.finish(&url, req.call())
    }

    /// `PUT path?query` with `body` as JSON.
    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &B,
    ) -> Result<(T, Meta), ClientError> {
        let url = format!("{}{path}", self.addr);
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::Decode { url: url.clone(), message: e.to_string() })?;
        let mut req = self.agent.put(&url).header("Content-Type", "application/json");
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(t) = &self.token {
            req = req.header("X-Nomad-Token", t);
        }
        self.finish(&url, req.send(&bytes[..]))
    }

    /// `DELETE path?query`.
    pub fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<(T, Meta), ClientError> {
        let url = format!("{}{path}", self.addr);
        let mut req = self.agent.delete(&url);
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        if let Some(t) = &self.token {
            req = req.header("X-Nomad-Token", t);
        }
        self.finish(&url, req.call())
    }

    fn finish<T: DeserializeOwned>(
        &self,
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(T, Meta), ClientError> {
        let mut resp = result.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            message: e.to_string(),
        })?;
        let header = |name: &str| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
        };
        let meta = Meta {
            index: header("X-Nomad-Index").parse().unwrap_or(0),
            next_token: header("X-Nomad-NextToken"),
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string()
            .map_err(|e| ClientError::Decode { url: url.to_owned(), message: e.to_string() })?;
        if status != 200 {
            return Err(ClientError::Status { status, body: text.trim().to_owned() });
        }
        let value = serde_json::from_str(&text)
            .map_err(|e| ClientError::Decode { url: url.to_owned(), message: e.to_string() })?;
        Ok((value, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_precedence_and_scheme() {
        let env = |k: &str| match k {
            "ORC_ADDR" => Some("10.0.0.1:4646".to_string()),
            "NOMAD_ADDR" => Some("http://nomad:4646".to_string()),
            _ => None,
        };
        assert_eq!(resolve_addr(Some("https://x:1/"), env), "https://x:1");
        assert_eq!(resolve_addr(None, env), "http://10.0.0.1:4646");
        assert_eq!(
            resolve_addr(None, |k| (k == "NOMAD_ADDR").then(|| "http://nomad:4646".into())),
            "http://nomad:4646"
        );
        assert_eq!(resolve_addr(None, |_| None), DEFAULT_ADDR);
    }

    #[test]
    fn unreachable_names_the_address() {
        // Port 9 (discard) on loopback is closed on test machines; nothing listens there.
        let c = Client::new("127.0.0.1:9", None);
        let err = c.get::<serde_json::Value>("/v1/jobs", &[]).unwrap_err();
        assert!(err.to_string().starts_with("no server answered at http://127.0.0.1:9: "), "{err}");
    }
}
