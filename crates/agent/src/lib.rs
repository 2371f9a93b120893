//! The orc agent: what runs on every jail host.
//!
//! Today this crate holds the agent's pure cores: the Nomad task environment and runtime
//! interpolation (`taskenv`), and the pot driver's command planning (`pot`). The IO shells that
//! execute them (the allocation runner, the driver processes, the node lifecycle) build on these.
//! The agent never schedules.

pub mod pot;
pub mod taskenv;
