//! The pot driver: runs each task in a FreeBSD jail managed by the `pot` CLI.
//!
//! `config` decodes the task's driver config; `plan` turns one task invocation into the exact pot
//! command lines; `driver` runs them. Only this module knows pot's command grammar, and only
//! `driver` runs pot.

pub mod config;
pub mod driver;
pub mod plan;

pub use config::{PotConfig, Proto};
pub use driver::{PotDriver, PotDriverConfig};
pub use plan::{PotCommand, PotInvocation};
