//! The `orc` command line: argument parsing and the subcommands' user-facing behaviour.
//!
//! Each subcommand lives in its own module and only turns arguments into calls on the library
//! crates (`jobspec`, and later the API client and the agent); none of them owns domain logic.

pub mod cli;
mod flags;
mod fmt_cmd;
mod job_cmd;
