//! Runs one check at its interval on the tokio runtime and reports every result. It owns the
//! timing (first run at once, then every interval, never two runs of a check at a time); what a
//! result means over time is [`crate::status`]'s business and what to do about it is the caller's.

use crate::probe::{self, HttpProbe, ProbeResult};
use crate::status::{CheckState, CheckStatus, Thresholds};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a check does each interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Connect to `host:port`.
    Tcp {
        addr: String,
    },
    Http(HttpProbe),
    /// Run a command in the task's environment, through its driver.
    Script {
        command: String,
        args: Vec<String>,
    },
}

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// Whatever identifies the check to the caller; it comes back in every [`CheckUpdate`].
    pub id: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub initial: CheckStatus,
    pub thresholds: Thresholds,
}

/// What a script run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOutcome {
    /// `None` when the command could not be run or was killed.
    pub exit_code: Option<i32>,
    pub output: String,
}

impl ScriptOutcome {
    /// Consul's rule for script checks: exit 0 is passing, 1 warning, anything else critical.
    pub fn result(&self) -> ProbeResult {
        let status = match self.exit_code {
            Some(0) => CheckStatus::Passing,
            Some(1) => CheckStatus::Warning,
            _ => CheckStatus::Critical,
        };
        ProbeResult { status, output: probe::truncate(self.output.clone()) }
    }
}

/// Runs a script check's command inside the task (a driver's exec). The runner enforces the
/// timeout by dropping the future; implementations must kill the command when dropped.
pub trait ScriptExec: Send + Sync {
    fn exec(&self, command: &str, args: &[String]) -> BoxFuture<'static, ScriptOutcome>;
}

/// One result of one check, and the check's status after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckUpdate {
    pub id: String,
    /// The probe's own verdict.
    pub result: CheckStatus,
    /// The check's status once thresholds are applied.
    pub status: CheckStatus,
    pub output: String,
    pub at: Instant,
}

/// A running check; dropping it stops the check.
#[derive(Debug)]
pub struct CheckHandle {
    task: JoinHandle<()>,
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one probe of `kind` within `timeout`.
pub async fn run_once(
    kind: &CheckKind,
    timeout: Duration,
    script: Option<&Arc<dyn ScriptExec>>,
) -> ProbeResult {
    match kind {
        CheckKind::Tcp { addr } => probe::tcp(addr, timeout).await,
        CheckKind::Http(p) => p.probe(timeout).await,
        CheckKind::Script { command, args } => {
            let Some(script) = script else {
                return ProbeResult {
                    status: CheckStatus::Critical,
                    output: "script checks need a driver that can exec in the task".into(),
                };
            };
            match tokio::time::timeout(timeout, script.exec(command, args)).await {
                Ok(outcome) => outcome.result(),
                Err(_) => ProbeResult {
                    status: CheckStatus::Critical,
                    output: format!("{command}: timed out after {timeout:?}"),
                },
            }
        }
    }
}

/// Starts `spec`: the first probe at once, then one every interval. Every result is sent to
/// `updates`; the check stops when the handle is dropped or the receiver goes away.
pub fn spawn(
    spec: CheckSpec,
    script: Option<Arc<dyn ScriptExec>>,
    updates: mpsc::UnboundedSender<CheckUpdate>,
) -> CheckHandle {
    let task = tokio::spawn(async move {
        let mut state = CheckState::new(spec.initial, spec.thresholds);
        // A zero interval would spin; the jobspec refuses anything under a second anyway.
        let mut tick = tokio::time::interval(spec.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = run_once(&spec.kind, spec.timeout, script.as_ref()).await;
            let status = state.observe(r.status);
            let update = CheckUpdate {
                id: spec.id.clone(),
                result: r.status,
                status,
                output: r.output,
                at: Instant::now(),
            };
            if updates.send(update).is_err() {
                return;
            }
        }
    });
    CheckHandle { task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    struct Exit(i32);
    impl ScriptExec for Exit {
        fn exec(&self, command: &str, _: &[String]) -> BoxFuture<'static, ScriptOutcome> {
            let (code, output) = (self.0, format!("ran {command}"));
            Box::pin(async move {
                if code < 0 {
                    std::future::pending::<()>().await;
                }
                ScriptOutcome { exit_code: Some(code), output }
            })
        }
    }

    #[tokio::test]
    async fn a_tcp_check_reports_each_interval_and_sees_the_listener_go() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spec = CheckSpec {
            id: "c1".into(),
            kind: CheckKind::Tcp { addr },
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            initial: CheckStatus::Pending,
            thresholds: Thresholds { failures_before_critical: 2, ..Thresholds::default() },
        };
        let handle = spawn(spec, None, tx);
        let first = rx.recv().await.unwrap();
        assert_eq!((first.id.as_str(), first.status), ("c1", CheckStatus::Passing));
        drop(l);
        let mut seen = Vec::new();
        while seen.last() != Some(&CheckStatus::Critical) {
            let u = rx.recv().await.unwrap();
            if u.result == CheckStatus::Critical {
                seen.push(u.status);
            }
        }
        // The first failure is held back by failures_before_critical = 2.
        assert_eq!(seen, [CheckStatus::Passing, CheckStatus::Critical]);
        drop(handle);
        // The channel closes once the check's task is gone.
        while rx.recv().await.is_some() {}
    }

    #[tokio::test]
    async fn scripts_map_exit_codes_and_time_out() {
        let t = Duration::from_millis(100);
        let kind = CheckKind::Script { command: "/bin/check".into(), args: vec![] };
        let run = |code: i32| {
            let s: Arc<dyn ScriptExec> = Arc::new(Exit(code));
            let kind = kind.clone();
            async move { run_once(&kind, t, Some(&s)).await }
        };
        assert_eq!(run(0).await.status, CheckStatus::Passing);
        assert_eq!(run(1).await.status, CheckStatus::Warning);
        assert_eq!(run(2).await.status, CheckStatus::Critical);
        let hung = run(-1).await;
        assert_eq!(hung.status, CheckStatus::Critical);
        assert!(hung.output.contains("timed out"), "{}", hung.output);
        assert_eq!(run_once(&kind, t, None).await.status, CheckStatus::Critical);
    }
}
