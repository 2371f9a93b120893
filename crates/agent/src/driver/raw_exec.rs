//! The raw_exec driver: one host process per task, in its own process group, with the task
//! environment only (plus a minimal PATH), never the agent's. Output goes straight to the task's
//! log files, so the task outlives an agent crash with no helper process in between. After an
//! agent restart the process is re-adopted by pid and start time. It is no longer our child, so
//! its exit status comes from the kernel's exit events instead ([`ExitWatcher`]: one socket or
//! kqueue for all re-adopted tasks, opened at the first re-adoption). Where that is not possible
//! (not root, another namespace, another OS) the driver polls until the process is gone and
//! reports its exit code unknown, as it does for a task that ended while the agent was down.

use super::exit_watch::{ExitWatcher, SubscribeError, Subscription};
use super::process::{is_same_process, parse_signal, signal_group, start_time};
use super::{Driver, DriverError, ExecOutput, ExitResult, Handle, TaskSpec, MAX_EXEC_OUTPUT};
use futures::future::BoxFuture;
use model::DriverInfo;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::time::Duration;

/// The PATH a task gets when its env sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The raw_exec driver.
pub struct RawExec {
    enabled: bool,
    children: Mutex<HashMap<u32, tokio::process::Child>>,
    /// Opened at the first re-adoption; why not when it cannot be (logged once).
    exit_watcher: tokio::sync::OnceCell<Result<ExitWatcher, String>>,
    /// Re-adopted processes, subscribed to by `recover` until `wait` takes them.
    adopted: Mutex<HashMap<u32, Subscription>>,
}

/// How the exit of a re-adopted process can be learnt.
enum Watch {
    Subscribed(Subscription),
    /// It is gone already: it exited before anything could watch it.
    Gone,
    /// The OS offers no watcher to this agent; poll.
    Unavailable,
}

/// The exit result when nobody can know the exit code.
const UNKNOWN: ExitResult = ExitResult { exit_code: -1, signal: 0, unknown: true };

impl RawExec {
    /// raw_exec runs anything as the agent's user, so it is off unless configured on.
    pub fn new(enabled: bool) -> Self {
        RawExec {
            enabled,
            children: Mutex::new(HashMap::new()),
            exit_watcher: tokio::sync::OnceCell::new(),
            adopted: Mutex::new(HashMap::new()),
        }
    }

    /// Whether exit codes of re-adopted tasks are known on this host: opens the shared exit
    /// watcher if it is not open yet, and says why not when it cannot be.
    pub async fn exit_watch_available(&self) -> Result<(), String> {
        self.open_watcher().await.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    async fn open_watcher(&self) -> &Result<ExitWatcher, String> {
        self.exit_watcher
            .get_or_init(|| async {
                ExitWatcher::open().await.map_err(|e| {
                    tracing::warn!("exit codes of re-adopted raw_exec tasks will be unknown: {e}");
                    e.to_string()
                })
            })
            .await
    }

    /// Subscribes to the exit of a re-adopted process, then checks it is still the process
    /// the agent started: in this order, an exit can never slip between the two.
    async fn subscribe(&self, handle: &Handle) -> Watch {
        let Ok(watcher) = self.open_watcher().await else { return Watch::Unavailable };
        match watcher.subscribe(handle.pid) {
            Ok(sub) if is_same_process(handle.pid, &handle.start_time) => Watch::Subscribed(sub),
            Ok(_) | Err(SubscribeError::Gone(_)) => Watch::Gone,
            Err(e) => {
                tracing::warn!("exit code of re-adopted task {} will be unknown: {e}", handle.pid);
                Watch::Unavailable
            }
        }
    }

    /// Waits for a process that is not our child.
    async fn wait_adopted(&self, handle: &Handle) -> ExitResult {
        let stashed = self.adopted.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle.pid);
        let watch = match stashed {
            Some(sub) => Watch::Subscribed(sub),
            None => self.subscribe(handle).await,
        };
        let mut sub = match watch {
            Watch::Subscribed(sub) => sub,
            Watch::Gone => return UNKNOWN,
            Watch::Unavailable => {
                while is_same_process(handle.pid, &handle.start_time) {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                return UNKNOWN;
            }
        };
        loop {
            // Exit events come per thread; the process is over once it is gone (or a zombie),
            // which follows its main thread's exit closely. Checking now and then also covers
            // an event the kernel dropped (queue overflow).
            let interval = if sub.exit().is_some_and(|e| e.leader) { 20 } else { 1000 };
            tokio::select! {
                _ = sub.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(interval)) => {}
            }
            if is_same_process(handle.pid, &handle.start_time) {
                continue;
            }
            // The kernel queues the exit event before the process turns zombie, but the
            // reader task may not have delivered it yet.
            if sub.exit().is_none() {
                let _ = tokio::time::timeout(Duration::from_secs(2), sub.changed()).await;
            }
            return match sub.exit() {
                Some(e) => ExitResult {
                    exit_code: e.status.exit_code,
                    signal: e.status.signal,
                    unknown: false,
                },
                None => UNKNOWN,
            };
        }
    }
}

fn config_strings(
    config: &BTreeMap<String, serde_json::Value>,
) -> Result<(String, Vec<String>), DriverError> {
    let command = config
        .get("command")
        .and_then(|v| v.as_str())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| DriverError("raw_exec config: \"command\" is required".into()))?;
    let args = match config.get("args") {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(_) => return Err(DriverError("raw_exec config: \"args\" must be a list".into())),
    };
    Ok((command.to_string(), args))
}

fn append(path: &std::path::Path) -> Result<std::fs::File, DriverError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| DriverError(format!("opening log file {}: {e}", path.display())))
}

impl Driver for RawExec {
    fn name(&self) -> &'static str {
        "raw_exec"
    }

    fn exec<'a>(
        &'a self,
        _handle: &'a Handle,
        spec: &'a TaskSpec,
        command: &'a str,
        args: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        Box::pin(async move {
            // As the task itself: its environment only, in its directory, its own process
            // group; dropped (timed out) means killed.
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args)
                .env_clear()
                .envs(&spec.env)
                .current_dir(&spec.task_dir)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            if !spec.env.contains_key("PATH") {
                cmd.env("PATH", DEFAULT_PATH);
            }
            let out = cmd.output().await.map_err(|e| DriverError(format!("{command}: {e}")))?;
            let mut bytes = out.stdout;
            bytes.extend_from_slice(&out.stderr);
            bytes.truncate(MAX_EXEC_OUTPUT);
            Ok(ExecOutput {
                exit_code: out.status.code(),
                output: String::from_utf8_lossy(&bytes).into_owned(),
            })
        })
    }

    fn fingerprint(&self) -> BoxFuture<'_, Option<DriverInfo>> {
        Box::pin(async move {
            self.enabled.then(|| DriverInfo {
                attributes: BTreeMap::from([("driver.raw_exec".into(), "true".into())]),
                detected: true,
                healthy: true,
                health_description: "Healthy".into(),
            })
        })
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<Handle, DriverError>> {
        Box::pin(async move {
            let (command, args) = config_strings(&spec.config)?;
            let mut cmd = tokio::process::Command::new(&command);
            cmd.args(&args)
                .env_clear()
                .envs(&spec.env)
                .current_dir(&spec.task_dir)
                .stdin(std::process::Stdio::null())
                .stdout(append(&spec.stdout_path)?)
                .stderr(append(&spec.stderr_path)?)
                .process_group(0);
            if !spec.env.contains_key("PATH") {
                cmd.env("PATH", DEFAULT_PATH);
            }
            let child = cmd.spawn().map_err(|e| DriverError(format!("starting {command}: {e}")))?;
            let pid = child.id().ok_or_else(|| DriverError("process exited at once".into()))?;
            let start = start_time(pid).unwrap_or_default();
            self.children.lock().unwrap_or_else(|e| e.into_inner()).insert(pid, child);
            Ok(Handle {
                driver: "raw_exec".into(),
                pid,
                start_time: start,
                pot_name: String::new(),
            })
        })
    }

    fn wait<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ExitResult> {
        Box::pin(async move {
            let child = self.children.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle.pid);
            if let Some(mut child) = child {
                return match child.wait().await {
                    Ok(status) => ExitResult {
                        exit_code: status.code().unwrap_or(-1),
                        signal: status.signal().unwrap_or(0),
                        unknown: false,
                    },
                    Err(_) => ExitResult { exit_code: -1, signal: 0, unknown: true },
                };
            }
            self.wait_adopted(handle).await
        })
    }

    fn signal<'a>(
        &'a self,
        handle: &'a Handle,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            let sig = parse_signal(signal)
                .ok_or_else(|| DriverError(format!("unknown signal {signal:?}")))?;
            signal_group(handle.pid, sig).map_err(|e| DriverError(format!("signal: {e}")))
        })
    }

    fn kill<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = signal_group(handle.pid, rustix::process::Signal::KILL);
        })
    }

    fn destroy<'a>(&'a self, _handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn recover<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            if !is_same_process(handle.pid, &handle.start_time) {
                return false;
            }
            match self.subscribe(handle).await {
                Watch::Subscribed(sub) => {
                    self.adopted.lock().unwrap_or_else(|e| e.into_inner()).insert(handle.pid, sub);
                    true
                }
                Watch::Gone => false,
                Watch::Unavailable => true,
            }
        })
    }
}
