//! The `orc` command line: argument parsing and the subcommands' user-facing behaviour.
//!
//! Each subcommand lives in its own module and only turns arguments into calls on the library
//! crates (`jobspec`, the `api` client, and later the agent); none of them owns domain logic.

mod alloc_client_cmd;
mod alloc_cmd;
mod catalog_dns;
pub mod cli;
mod client_cmd;
mod conn;
mod flags;
mod fmt_cmd;
mod job_cmd;
mod job_remote;
mod monitor;
mod node_cmd;
mod operator_cmd;
mod output;
mod server_cmd;
mod service_cmd;
