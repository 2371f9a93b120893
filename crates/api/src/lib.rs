//! Nomad's HTTP API conventions, independent of any HTTP framework or server state.
//!
//! This crate owns the wire-level rules every endpoint shares: the go-bexpr `filter` language,
//! the common query parameters (`index`/`wait` blocking, `prefix`, paging, `namespace`, `stale`),
//! and Nomad's duration syntax, plus the CLI's HTTP [`client`]. Apart from the client it does no IO;
//! the HTTP server and the CLI both use it.

pub mod client;
pub mod filter;
pub mod query;
