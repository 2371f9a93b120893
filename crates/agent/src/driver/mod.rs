//! The driver seam: how a task is started, waited for, signalled, killed, destroyed and
//! re-adopted after an agent restart. `raw_exec` runs host processes; `pot` (in `crate::pot`)
//! runs jails through the pot CLI. The allocation runner decides *when*; drivers only do.

pub mod exit_watch;
pub mod process;
pub mod raw_exec;

use crate::taskenv::TaskDirs;
use futures::future::BoxFuture;
use model::DriverInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything a driver needs to start one invocation of a task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub alloc_id: String,
    pub task_name: String,
    /// Eight hex characters, new on every (re)start.
    pub invocation_id: String,
    /// The task's environment: Nomad's variables and `env {}`, nothing from the agent's host.
    pub env: BTreeMap<String, String>,
    /// The driver `config`, already interpolated.
    pub config: BTreeMap<String, serde_json::Value>,
    pub dirs: TaskDirs,
    /// `<alloc dir>/<task>`: the working directory of raw_exec tasks.
    pub task_dir: PathBuf,
    /// Files the task's stdout and stderr are appended to.
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    pub host_ports: BTreeMap<String, u16>,
    pub memory_mb: u64,
    pub cpu_mhz: u64,
    pub cores: u32,
    pub mhz_per_core: u64,
}

/// What the agent persists about a running task so a restarted agent can find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Handle {
    pub driver: String,
    /// The task's process (raw_exec) or the `pot start` process (pot).
    pub pid: u32,
    /// The process's start time as the OS reports it, to tell a reused pid from ours.
    pub start_time: String,
    /// The pot's name (pot driver only).
    #[serde(default)]
    pub pot_name: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitResult {
    pub exit_code: i32,
    /// The signal that killed it, 0 if none.
    pub signal: i32,
    /// Set when the exit status is not known: a re-adopted task that exited before anything
    /// could watch it, or on a host where no exit watcher opens (see `exit_watch`).
    pub unknown: bool,
}

impl ExitResult {
    /// True when the task succeeded.
    pub fn successful(&self) -> bool {
        self.exit_code == 0 && self.signal == 0 && !self.unknown
    }
}

/// What a command run inside a task produced (script checks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    /// Its stdout then stderr, cut at [`MAX_EXEC_OUTPUT`] bytes.
    pub output: String,
}

/// How much of a command's output is kept (Consul keeps 4 KiB of a check's output).
pub const MAX_EXEC_OUTPUT: usize = 4096;

/// A driver failure, with the output of whatever failed so the task event can show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriverError(pub String);

/// A task driver.
pub trait Driver: Send + Sync + 'static {
    /// The name jobs use in `driver = "..."`.
    fn name(&self) -> &'static str;
    /// Detects the driver on this host; `None` means not available.
    fn fingerprint(&self) -> BoxFuture<'_, Option<DriverInfo>>;
    /// Prepares and starts the task; returns once it runs.
    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<Handle, DriverError>>;
    /// Resolves when the task has exited.
    fn wait<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ExitResult>;
    /// Delivers `signal` (a name such as `SIGTERM`) to the task.
    fn signal<'a>(
        &'a self,
        handle: &'a Handle,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), DriverError>>;
    /// Kills the task hard (after kill_timeout).
    fn kill<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()>;
    /// Cleans up after the task exited (pot: `destroy -F`, exactly once).
    fn destroy<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()>;
    /// After an agent restart: true if the task still runs and has been adopted.
    fn recover<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, bool>;
    /// Runs `command` with `args` inside the running task (its environment and directory),
    /// for script checks; the command is killed if the future is dropped. Drivers that cannot
    /// say so.
    fn exec<'a>(
        &'a self,
        handle: &'a Handle,
        spec: &'a TaskSpec,
        command: &'a str,
        args: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        let _ = (handle, spec, args);
        Box::pin(async move {
            Err(DriverError(format!("the {} driver cannot run {command} in a task", self.name())))
        })
    }
}
