//! The pot driver: runs the commands `plan` produces, by execve of the configured pot binary
//! (never a host shell), with an environment of only PATH and the operator's `pot_env`.
//!
//! Compared with nomad-pot-driver it honours kill_timeout (the runner sends `pot signal` with the
//! kill_signal, waits, then calls `kill`, which is `destroy -F`), reports pot's own output when a
//! step fails, asks pot (`info -r -p`) whether a re-adopted pot runs instead of grepping process
//! titles, destroys each pot exactly once, and sweeps pots it created that no task owns. It does
//! not decide when to start or stop: the allocation runner does.

use super::config::PotConfig;
use super::plan::{self, PotCommand, PotInvocation, StartOutcome};
use crate::driver::process::start_time;
use crate::driver::{
    Driver, DriverError, ExecOutput, ExitResult, Handle, TaskSpec, MAX_EXEC_OUTPUT,
};
use futures::future::BoxFuture;
use model::DriverInfo;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// The pot binary's default location on FreeBSD.
pub const DEFAULT_POT_PATH: &str = "/usr/local/bin/pot";

/// How the pot driver reaches pot.
#[derive(Debug, Clone)]
pub struct PotDriverConfig {
    /// The pot binary (the jail-runtime seam: tests point it at the stand-in).
    pub pot_path: PathBuf,
    /// Variables pot itself needs (e.g. `POT_FS_ROOT` for the stand-in); they reach the pot
    /// process only, never the jail.
    pub pot_env: BTreeMap<String, String>,
    /// Where the driver records the pots it created, for the orphan sweep.
    pub state_dir: PathBuf,
}

/// The pot driver.
pub struct PotDriver {
    config: PotDriverConfig,
    children: Mutex<HashMap<String, tokio::process::Child>>,
    /// Pots destroyed by this process: destroy runs at most once per pot.
    destroyed: Mutex<BTreeSet<String>>,
    /// Pots between prepare and a running `pot start`: never swept.
    starting: Mutex<BTreeSet<String>>,
    /// Serialises updates of the created-pots file.
    created_lock: tokio::sync::Mutex<()>,
}

/// The output of one pot run.
struct Output {
    status: i32,
    text: String,
}

impl PotDriver {
    pub fn new(config: PotDriverConfig) -> Self {
        PotDriver {
            config,
            children: Mutex::new(HashMap::new()),
            destroyed: Mutex::new(BTreeSet::new()),
            starting: Mutex::new(BTreeSet::new()),
            created_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn command(&self, cmd: &PotCommand) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.config.pot_path);
        c.args(&cmd.args)
            .env_clear()
            .env("PATH", crate::driver::raw_exec::DEFAULT_PATH)
            .envs(&self.config.pot_env)
            .stdin(std::process::Stdio::null());
        c
    }

    async fn run(&self, cmd: &PotCommand) -> Result<Output, DriverError> {
        let out =
            self.command(cmd).output().await.map_err(|e| {
                DriverError(format!("running {}: {e}", self.config.pot_path.display()))
            })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(Output { status: out.status.code().unwrap_or(-1), text })
    }

    /// Runs `cmd` and fails with pot's own output when it exits non-zero.
    async fn run_ok(&self, cmd: &PotCommand) -> Result<Output, DriverError> {
        let out = self.run(cmd).await?;
        if out.status != 0 {
            return Err(DriverError(format!("`{cmd}` exited {}: {}", out.status, out.text.trim())));
        }
        Ok(out)
    }

    fn created_file(&self) -> PathBuf {
        self.config.state_dir.join("pots-created")
    }

    async fn update_created(&self, f: impl FnOnce(&mut BTreeSet<String>)) {
        let _guard = self.created_lock.lock().await;
        let path = self.created_file();
        let mut set: BTreeSet<String> = std::fs::read_to_string(&path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        f(&mut set);
        let text: String = set.iter().map(|n| format!("{n}\n")).collect();
        let _ = std::fs::create_dir_all(&self.config.state_dir);
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    async fn destroy_once(&self, name: &str) {
        if name.is_empty()
            || !self.destroyed.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string())
        {
            return;
        }
        match self.run(&plan::destroy_command(name)).await {
            Ok(out) if out.status != 0 => {
                tracing::warn!(pot = name, output = %out.text.trim(), "pot destroy failed")
            }
            Err(e) => tracing::warn!(pot = name, error = %e, "pot destroy failed"),
            Ok(_) => {}
        }
        self.update_created(|s| {
            s.remove(name);
        })
        .await;
    }

    /// `pot exec -p <name> <command> <args…>` (script checks): the command's exit status and its
    /// output, stdout then stderr, cut at [`MAX_EXEC_OUTPUT`] bytes. pot exec runs in its own
    /// process group; if the future is dropped (the check timed out) the whole group is killed,
    /// which with real pot includes the jexec'd command. pot's own refusals (exit 1 with a `###>`
    /// line, e.g. "The pot is not running") are errors carrying pot's words.
    async fn exec_in(
        &self,
        name: &str,
        env: &BTreeMap<String, String>,
        argv: &[String],
    ) -> Result<ExecOutput, DriverError> {
        if name.is_empty() {
            return Err(DriverError("the task has no pot to run a command in".into()));
        }
        let cmd = plan::exec_command(name, env, argv);
        let mut c = self.command(&cmd);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = c
            .spawn()
            .map_err(|e| DriverError(format!("running {}: {e}", self.config.pot_path.display())))?;
        let mut group = GroupKill(child.id());
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (out, err, status) =
            tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
        let status = status.map_err(|e| DriverError(format!("waiting for `{cmd}`: {e}")))?;
        // Finished: the group leader is reaped, so its id may be reused; nothing to kill.
        group.0 = None;
        let mut bytes = out;
        bytes.extend_from_slice(&err);
        bytes.truncate(MAX_EXEC_OUTPUT);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let code = status.code();
        if code == Some(1) && text.lines().any(|l| l.starts_with("###>  ")) {
            return Err(DriverError(format!("`{cmd}` exited 1: {}", text.trim())));
        }
        Ok(ExecOutput { exit_code: code, output: text })
    }

    async fn exit_code_from_stats(&self, name: &str) -> Option<i32> {
        let out = self.run(&plan::last_run_stats_command(name)).await.ok()?;
        plan::parse_last_run_stats(&out.text)
    }

    /// Destroys every pot this agent created that is not in `live`: what a crash between
    /// prepare and destroy would otherwise leave behind. Returns the pots destroyed.
    pub async fn sweep(&self, live: &BTreeSet<String>) -> Vec<String> {
        let created: BTreeSet<String> = std::fs::read_to_string(self.created_file())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let existing: BTreeSet<String> = match self.run(&plan::list_command()).await {
            Ok(out) if out.status == 0 => out.text.lines().map(|l| l.trim().to_string()).collect(),
            _ => return Vec::new(),
        };
        let mut destroyed = Vec::new();
        for name in created.difference(live) {
            let busy = self.starting.lock().unwrap_or_else(|e| e.into_inner()).contains(name)
                || self.children.lock().unwrap_or_else(|e| e.into_inner()).contains_key(name);
            if busy {
                continue;
            }
            if existing.contains(name) {
                self.destroy_once(name).await;
                destroyed.push(name.clone());
            } else {
                self.update_created(|s| {
                    s.remove(name);
                })
                .await;
            }
        }
        destroyed
    }

    async fn start_pot(
        &self,
        spec: &TaskSpec,
        inv: &PotInvocation<'_>,
        name: &str,
        commands: &[PotCommand],
    ) -> Result<Handle, DriverError> {
        let name = name.to_string();

        // Recorded before prepare, so a crash during setup still leaves a trace to sweep.
        self.update_created(|s| {
            s.insert(name.clone());
        })
        .await;
        for cmd in commands {
            if let Err(e) = self.run_ok(cmd).await {
                self.destroy_once(&name).await;
                return Err(e);
            }
        }
        let log = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| DriverError(format!("opening log file {}: {e}", p.display())))
        };
        let mut start = self.command(&inv.start_command());
        start.stdout(log(&spec.stdout_path)?).stderr(log(&spec.stderr_path)?).process_group(0);
        let child = match start.spawn() {
            Ok(c) => c,
            Err(e) => {
                self.destroy_once(&name).await;
                return Err(DriverError(format!("running pot start: {e}")));
            }
        };
        let pid = child.id().unwrap_or(0);
        self.children.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), child);
        Ok(Handle {
            driver: "pot".into(),
            pid,
            start_time: start_time(pid).unwrap_or_default(),
            pot_name: name,
        })
    }
}

impl Driver for PotDriver {
    fn name(&self) -> &'static str {
        "pot"
    }

    fn fingerprint(&self) -> BoxFuture<'_, Option<DriverInfo>> {
        Box::pin(async move {
            let out = self.run(&plan::version_command()).await.ok()?;
            let version = (out.status == 0).then(|| plan::parse_version(&out.text)).flatten()?;
            Some(DriverInfo {
                attributes: BTreeMap::from([
                    ("driver.pot".into(), "true".into()),
                    ("driver.pot.version".into(), version),
                ]),
                detected: true,
                healthy: true,
                health_description: "Healthy".into(),
            })
        })
    }

    fn start<'a>(&'a self, spec: &'a TaskSpec) -> BoxFuture<'a, Result<Handle, DriverError>> {
        Box::pin(async move {
            let config = PotConfig::decode(&spec.config).map_err(|e| DriverError(e.to_string()))?;
            let inv = PotInvocation {
                task_name: &spec.task_name,
                alloc_id: &spec.alloc_id,
                invocation_id: &spec.invocation_id,
                config: &config,
                env: &spec.env,
                dirs: &spec.dirs,
                host_ports: &spec.host_ports,
                memory_mb: spec.memory_mb,
                cpu_mhz: spec.cpu_mhz,
                cores: spec.cores,
                mhz_per_core: spec.mhz_per_core,
            };
            let commands = inv.setup_commands().map_err(|e| DriverError(e.to_string()))?;
            let name = inv.pot_name();
            self.starting.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone());
            let result = self.start_pot(spec, &inv, &name, &commands).await;
            self.starting.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            result
        })
    }
    fn wait<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ExitResult> {
        Box::pin(async move {
            let name = &handle.pot_name;
            let child = self.children.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
            let result = if let Some(mut child) = child {
                match child.wait().await {
                    Ok(status) => match status.code().map(plan::start_outcome) {
                        Some(StartOutcome::Exited(code)) => {
                            ExitResult { exit_code: code, signal: 0, unknown: false }
                        }
                        Some(StartOutcome::ReadLastRunStats) => {
                            match self.exit_code_from_stats(name).await {
                                Some(code) => {
                                    ExitResult { exit_code: code, signal: 0, unknown: false }
                                }
                                None => ExitResult { exit_code: 125, signal: 0, unknown: true },
                            }
                        }
                        Some(StartOutcome::StartFailed) => ExitResult {
                            exit_code: status.code().unwrap_or(1),
                            signal: 0,
                            unknown: false,
                        },
                        None => ExitResult {
                            exit_code: -1,
                            signal: status.signal().unwrap_or(0),
                            unknown: false,
                        },
                    },
                    Err(_) => ExitResult { exit_code: -1, signal: 0, unknown: true },
                }
            } else {
                // Re-adopted: ask pot, once a second, whether the pot still runs.
                loop {
                    match self.run(&plan::is_running_command(name)).await {
                        Ok(out) if out.status == 0 => {
                            tokio::time::sleep(Duration::from_secs(1)).await
                        }
                        _ => break,
                    }
                }
                match self.exit_code_from_stats(name).await {
                    Some(code) => ExitResult { exit_code: code, signal: 0, unknown: false },
                    None => ExitResult { exit_code: -1, signal: 0, unknown: true },
                }
            };
            result
        })
    }

    fn signal<'a>(
        &'a self,
        handle: &'a Handle,
        signal: &'a str,
    ) -> BoxFuture<'a, Result<(), DriverError>> {
        Box::pin(async move {
            self.run_ok(&plan::signal_command(&handle.pot_name, signal)).await.map(|_| ())
        })
    }

    fn kill<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(self.destroy_once(&handle.pot_name))
    }

    fn destroy<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, ()> {
        Box::pin(self.destroy_once(&handle.pot_name))
    }

    fn exec<'a>(
        &'a self,
        handle: &'a Handle,
        spec: &'a TaskSpec,
        command: &'a str,
        args: &'a [String],
    ) -> BoxFuture<'a, Result<ExecOutput, DriverError>> {
        Box::pin(async move {
            let mut argv = Vec::with_capacity(args.len() + 1);
            argv.push(command.to_string());
            argv.extend(args.iter().cloned());
            self.exec_in(&handle.pot_name, &spec.env, &argv).await
        })
    }

    fn recover<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            matches!(
                self.run(&plan::is_running_command(&handle.pot_name)).await,
                Ok(Output { status: 0, .. })
            )
        })
    }
}

/// Kills a process group when dropped: `pot exec` and whatever it started.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let pid = self.0.and_then(|p| rustix::process::Pid::from_raw(p as i32));
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Reads a pipe to its end, keeping the first [`MAX_EXEC_OUTPUT`] bytes: a chatty command
/// cannot make the agent buffer without bound, nor block on a full pipe.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else { return kept };
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
