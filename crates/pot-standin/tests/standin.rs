//! The one integration-test binary of pot-standin: it runs the built `pot` binary the way orc's driver
//! will (separate processes, real exit codes, stdout, on-disk files). It owns no production code.

#[path = "standin/harness.rs"]
mod harness;

#[path = "standin/grammar.rs"]
mod grammar;

#[path = "standin/files.rs"]
mod files;

#[path = "standin/lifecycle.rs"]
mod lifecycle;

#[path = "standin/nginx.rs"]
mod nginx;
