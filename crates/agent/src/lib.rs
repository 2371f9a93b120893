//! The orc agent: what runs on every jail host. It fingerprints the node, registers it with the
//! servers, watches the allocations placed on it and runs their tasks through drivers.
//!
//! Pure cores: `taskenv` (the Nomad task environment and interpolation), `pot::plan` (pot
//! command lines), `restart` (the restart policy), `reconcile` (desired allocations vs. local
//! runners → actions). Shells: `driver` (raw_exec, and the pot driver in `pot`), `runner` (the
//! allocation runner), `client` (node lifecycle), `http` (the client HTTP endpoints), `logs`.
//! Seams a simulation replaces through `client::ClientConfig`: the servers (`client::ServerApi`),
//! extra drivers, fixed host facts instead of fingerprinting, and the wall clock (`clock`).
//! The agent never schedules.

pub mod artifact;
pub mod client;
pub mod clock;
pub mod driver;
pub mod fingerprint;
pub mod http;
pub mod logs;
pub mod pot;
pub mod reconcile;
pub mod restart;
pub mod runner;
pub mod services;
pub mod taskenv;
pub mod templates;
