//! Service health checks, shared by the agent (which runs checks for orc's own catalogue) and the
//! test stand-in for Consul (which runs the checks registered with it).
//!
//! Pure cores: [`status`] (a check's status from its consecutive results, Consul's
//! `success_before_passing`/`failures_before_*` thresholds), [`restart`] (`check_restart`:
//! when repeated failures should restart a task) and [`health`] (an allocation's health for
//! deployments: tasks running and checks passing for `min_healthy_time`). Shells: [`probe`]
//! (one tcp or http probe, bounded in time and bytes) and [`runner`] (a check run at its interval). Script checks are run
//! by whoever owns the task's driver, through [`runner::ScriptExec`]; this crate never starts
//! processes and knows nothing of Consul's or Nomad's wire formats.

pub mod health;
pub mod probe;
pub mod restart;
pub mod runner;
pub mod status;

pub use health::{AllocHealth, HealthMode, HealthParams, TasksView};
pub use probe::{HttpProbe, ProbeError, ProbeResult};
pub use restart::{CheckRestartPolicy, CheckRestartTracker};
pub use runner::{CheckHandle, CheckKind, CheckSpec, CheckUpdate, ScriptExec, ScriptOutcome};
pub use status::{CheckState, CheckStatus, Thresholds};
