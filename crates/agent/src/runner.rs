//! The allocation runner: one tokio task per allocation and one per task, running lifecycle
//! order (prestart, main, poststop), the restart policy, kill_signal then a hard kill after
//! kill_timeout, leader tasks, and Nomad's task states and events. Every change is persisted to
//! the allocation's state file (so a restarted agent can re-adopt its tasks) and sent to the
//! client for batching to the servers. Drivers do the work; this module decides when.

use crate::clock::Clock;
use crate::driver::{Driver, DriverError, ExitResult, Handle, TaskSpec};
use crate::logs;
use crate::restart::{Decision, RestartTracker};
use crate::taskenv::{FsIsolation, TaskDirs, TaskEnv, TaskEnvInput};
use model::{
    default_restart_policy, Allocation, ClientStatus, Job, JobType, Node, Task, TaskEvent,
    TaskState,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What the runner reports to the servers about one allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocReport {
    pub alloc_id: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The allocation's health once decided (`services` fills it in; the runner never does).
    #[serde(default)]
    pub deployment_status: Option<model::AllocDeploymentStatus>,
    /// Unix nanoseconds.
    pub modify_time: i64,
}

/// The state file of an allocation: enough to re-adopt its tasks after an agent restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedAlloc {
    pub alloc: Allocation,
    pub job: Job,
    /// The running invocation of each task.
    pub handles: BTreeMap<String, Handle>,
    pub task_states: BTreeMap<String, TaskState>,
    pub client_status: ClientStatus,
}

/// What the runner shares with every allocation.
pub struct RunnerEnv {
    pub drivers: BTreeMap<String, Arc<dyn Driver>>,
    pub node: Node,
    pub region: String,
    /// `<data_dir>/alloc`: one directory per allocation.
    pub alloc_root: PathBuf,
    /// Where allocation state files live.
    pub state_root: PathBuf,
    pub reports: mpsc::UnboundedSender<AllocReport>,
    /// Where templates read services: orc's catalogue (`nomadService`) and, when the agent
    /// has Consul, Consul (`service`).
    pub template_sources: crate::templates::Sources,
    /// What task events, task states and reports are stamped with.
    pub clock: Clock,
}

/// Commands to a running allocation.
#[derive(Debug)]
pub enum AllocCommand {
    /// Stop every task (desired status stop, or the server forgot the allocation).
    Stop,
    /// Restart one task, or all with `None`, without counting against the restart policy.
    Restart { task: Option<String>, reply: oneshot::Sender<Result<(), String>> },
    /// Deliver a signal to one task, or all with `None`.
    Signal { task: Option<String>, signal: String, reply: oneshot::Sender<Result<(), String>> },
    /// Run a command inside a running task through its driver (script checks).
    Exec {
        task: String,
        command: String,
        args: Vec<String>,
        reply: oneshot::Sender<Result<crate::driver::ExecOutput, String>>,
    },
    /// An in-place update: the allocation now runs this job version. Running tasks keep
    /// running; what they read later (kill_signal, kill_timeout, the definition a restart
    /// starts from) comes from the new version.
    Update { alloc: Box<Allocation>, job: Box<Job> },
}

/// A handle on a running allocation.
pub struct AllocHandle {
    pub commands: mpsc::UnboundedSender<AllocCommand>,
    /// Becomes true once every task is dead and the allocation is terminal.
    pub done: watch::Receiver<bool>,
    pub stopping: bool,
}

enum TaskCommand {
    Kill,
    Restart,
    Signal(String, oneshot::Sender<Result<(), String>>),
    /// A template with `change_mode = "restart"` re-rendered.
    TemplateRestart,
    /// A template with `change_mode = "signal"` re-rendered.
    TemplateSignal(String),
}

/// Shared, persisted state of one allocation.
struct Shared {
    persisted: Mutex<PersistedAlloc>,
    env: Arc<RunnerEnv>,
    /// The main and sidecar tasks: the allocation runs once all of them have started.
    main_tasks: Vec<String>,
}

fn rfc3339_now(clock: &Clock) -> String {
    // Seconds precision is enough for started/finished times shown to users.
    let secs = clock.unix_nanos() / 1_000_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { era * 400 + yoe + 1 } else { era * 400 + yoe }, m, d)
}

/// Eight hex characters, new on every start, as Nomad's invocation IDs.
fn invocation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(Clock::system().unix_nanos());
    format!("{:08x}", h.finish() as u32)
}

fn event(clock: &Clock, kind: &str, message: impl Into<String>) -> TaskEvent {
    let message = message.into();
    TaskEvent {
        event_type: kind.into(),
        time: clock.unix_nanos(),
        display_message: message.clone(),
        message,
        ..TaskEvent::default()
    }
}

/// The state file of allocation `alloc_id`.
pub fn state_file(state_root: &Path, alloc_id: &str) -> PathBuf {
    state_root.join(format!("{alloc_id}.json"))
}

/// Loads every persisted allocation (agent start).
pub fn load_persisted(state_root: &Path) -> Vec<PersistedAlloc> {
    std::fs::read_dir(state_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect()
}

impl Shared {
    fn save(&self) {
        let p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
        let path = state_file(&self.env.state_root, &p.alloc.id);
        let tmp = path.with_extension("tmp");
        match serde_json::to_vec(&*p) {
            Ok(bytes) => {
                if std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)).is_err()
                {
                    tracing::warn!(alloc = %p.alloc.id, "could not persist allocation state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode allocation state"),
        }
    }

    fn report(&self) {
        let report = {
            let p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
            AllocReport {
                alloc_id: p.alloc.id.clone(),
                client_status: p.client_status,
                client_description: describe(p.client_status).into(),
                task_states: p.task_states.clone(),
                deployment_status: None,
                modify_time: self.env.clock.unix_nanos(),
            }
        };
        let _ = self.env.reports.send(report);
    }

    fn update(&self, task: &str, f: impl FnOnce(&mut TaskState)) {
        {
            let mut p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
            let state = p.task_states.entry(task.to_string()).or_default();
            f(state);
            // Nomad keeps the last 10 events per task.
            if state.events.len() > 10 {
                let extra = state.events.len() - 10;
                state.events.drain(..extra);
            }
            let started = |name: &String| {
                p.task_states.get(name).is_some_and(|s| s.state == "running" || s.state == "dead")
            };
            if p.client_status == ClientStatus::Pending && self.main_tasks.iter().all(started) {
                p.client_status = ClientStatus::Running;
            }
        }
        self.save();
        self.report();
    }

    fn push_event(&self, task: &str, ev: TaskEvent) {
        self.update(task, |s| s.events.push(ev));
    }

    fn set_handle(&self, task: &str, handle: Option<Handle>) {
        {
            let mut p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
            match handle {
                Some(h) => p.handles.insert(task.to_string(), h),
                None => p.handles.remove(task),
            };
        }
        self.save();
    }

    /// Takes an in-place update: the new allocation and job version, persisted.
    fn apply_update(&self, alloc: Allocation, job: Job) {
        {
            let mut p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
            if p.alloc.id != alloc.id {
                return;
            }
            p.alloc = alloc;
            p.job = job;
        }
        self.save();
        // Reported so the services follow the new version while the allocation runs.
        self.report();
    }

    /// The allocation, its job version and task `name`'s definition as they stand now.
    fn current(&self, name: &str) -> Option<(Allocation, Job, Task)> {
        let p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
        let group = p.job.task_groups.iter().find(|g| g.name == p.alloc.task_group)?;
        let task = group.tasks.iter().find(|t| t.name == name)?.clone();
        Some((p.alloc.clone(), p.job.clone(), task))
    }

    fn set_client_status(&self, status: ClientStatus) {
        {
            let mut p = self.persisted.lock().unwrap_or_else(|e| e.into_inner());
            if p.client_status == status {
                return;
            }
            p.client_status = status;
        }
        self.save();
        self.report();
    }
}

/// The allocation's client description for a status, as Nomad's client words it.
pub(crate) fn describe(status: ClientStatus) -> &'static str {
    match status {
        ClientStatus::Pending => "No tasks have started",
        ClientStatus::Running => "Tasks are running",
        ClientStatus::Complete => "All tasks have completed",
        ClientStatus::Failed => "Failed tasks",
        ClientStatus::Lost => "Allocation lost",
        ClientStatus::Unknown => "Unknown",
    }
}

/// Where a task sits in the allocation's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prestart,
    Sidecar,
    Main,
    Poststop,
}

fn phase(task: &Task) -> Phase {
    match &task.lifecycle {
        Some(l) if l.hook == "prestart" && l.sidecar => Phase::Sidecar,
        Some(l) if l.hook == "prestart" => Phase::Prestart,
        Some(l) if l.hook == "poststop" => Phase::Poststop,
        _ => Phase::Main,
    }
}

/// Starts (or, with a persisted state, re-adopts) an allocation.
pub fn spawn(env: Arc<RunnerEnv>, persisted: PersistedAlloc) -> AllocHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let main_tasks = persisted
        .job
        .task_groups
        .iter()
        .filter(|g| g.name == persisted.alloc.task_group)
        .flat_map(|g| g.tasks.iter())
        .filter(|t| matches!(phase(t), Phase::Main | Phase::Sidecar))
        .map(|t| t.name.clone())
        .collect();
    let shared = Arc::new(Shared { persisted: Mutex::new(persisted), env, main_tasks });
    tokio::spawn(run_alloc(shared, rx, done_tx));
    AllocHandle { commands: tx, done: done_rx, stopping: false }
}

/// A fresh allocation's persisted state.
pub fn new_alloc(alloc: Allocation, job: Job) -> PersistedAlloc {
    PersistedAlloc {
        alloc,
        job,
        handles: BTreeMap::new(),
        task_states: BTreeMap::new(),
        client_status: ClientStatus::Pending,
    }
}

struct RunningTask {
    commands: mpsc::UnboundedSender<TaskCommand>,
    /// The task's outcome: `Some(failed)` once dead.
    outcome: watch::Receiver<Option<bool>>,
    leader: bool,
}

async fn run_alloc(
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<AllocCommand>,
    done: watch::Sender<bool>,
) {
    let (alloc, job, recovering) = {
        let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
        (p.alloc.clone(), p.job.clone(), !p.handles.is_empty() || !p.task_states.is_empty())
    };
    if recovering {
        // What the previous agent last recorded may never have reached the servers (it
        // stopped, or they were unreachable, between the change and the report): say it again.
        shared.report();
    }
    let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group).cloned() else {
        shared.set_client_status(ClientStatus::Failed);
        let _ = done.send(true);
        return;
    };
    let alloc_dir = shared.env.alloc_root.join(&alloc.id);
    if let Err(e) = make_dirs(&alloc_dir, &group.tasks) {
        for task in &group.tasks {
            shared.push_event(
                &task.name,
                event(&shared.env.clock, "Setup Failure", format!("task dir: {e}")),
            );
        }
        shared.set_client_status(ClientStatus::Failed);
        let _ = done.send(true);
        return;
    }
    if !recovering {
        for task in &group.tasks {
            shared.update(&task.name, |s| {
                s.state = "pending".into();
                s.events.push(event(&shared.env.clock, "Received", "Task received by client"));
            });
        }
    }
    let rotation = tokio::spawn(rotate_logs(alloc_dir.clone(), group.tasks.clone()));

    let mut stop_requested = false;
    let mut running: BTreeMap<String, RunningTask> = BTreeMap::new();
    let by_phase = |p: Phase| group.tasks.iter().filter(move |t| phase(t) == p).cloned();

    // Prestart tasks run to completion before anything else; a task already finished in a
    // previous agent life is not run again.
    let finished = |name: &str| {
        let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
        p.task_states.get(name).is_some_and(|s| s.state == "dead")
    };
    let mut prestart_failed = false;
    for task in by_phase(Phase::Prestart) {
        if finished(&task.name) {
            continue;
        }
        let mut rt = spawn_task(&shared, &alloc, &job, &task, &alloc_dir);
        let failed =
            wait_outcome(&shared, &mut rt, &mut commands, &mut stop_requested, &mut running).await;
        if failed || stop_requested {
            prestart_failed = true;
            break;
        }
    }
    if !prestart_failed {
        for task in by_phase(Phase::Sidecar).chain(by_phase(Phase::Main)) {
            if finished(&task.name) {
                continue;
            }
            let rt = spawn_task(&shared, &alloc, &job, &task, &alloc_dir);
            running.insert(task.name.clone(), rt);
        }
        supervise(&shared, &group.tasks, &mut running, &mut commands, &mut stop_requested).await;
    }
    // Main tasks are dead; sidecars are killed, then poststop tasks run.
    for rt in running.values() {
        let _ = rt.commands.send(TaskCommand::Kill);
    }
    for rt in running.values_mut() {
        let _ = rt.outcome.wait_for(Option::is_some).await;
    }
    for task in by_phase(Phase::Poststop) {
        if finished(&task.name) {
            continue;
        }
        let mut rt = spawn_task(&shared, &alloc, &job, &task, &alloc_dir);
        let mut ignored = BTreeMap::new();
        wait_outcome(&shared, &mut rt, &mut commands, &mut stop_requested, &mut ignored).await;
    }
    rotation.abort();
    let failed = {
        let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
        p.task_states.values().any(|s| s.failed)
    };
    shared.set_client_status(if failed { ClientStatus::Failed } else { ClientStatus::Complete });
    let _ = done.send(true);
    // Keep answering commands so callers get errors rather than hangs.
    while let Some(cmd) = commands.recv().await {
        match cmd {
            AllocCommand::Stop | AllocCommand::Update { .. } => {}
            AllocCommand::Restart { reply, .. } | AllocCommand::Signal { reply, .. } => {
                let _ = reply.send(Err("allocation is not running".into()));
            }
            AllocCommand::Exec { reply, .. } => {
                let _ = reply.send(Err("allocation is not running".into()));
            }
        }
    }
}

/// Waits for one task (prestart or poststop) while still obeying allocation commands.
async fn wait_outcome(
    shared: &Shared,
    rt: &mut RunningTask,
    commands: &mut mpsc::UnboundedReceiver<AllocCommand>,
    stop_requested: &mut bool,
    others: &mut BTreeMap<String, RunningTask>,
) -> bool {
    loop {
        tokio::select! {
            r = rt.outcome.wait_for(Option::is_some) => {
                return r.map(|v| v.unwrap_or(true)).unwrap_or(true);
            }
            cmd = commands.recv() => match cmd {
                Some(AllocCommand::Stop) | None => {
                    *stop_requested = true;
                    let _ = rt.commands.send(TaskCommand::Kill);
                }
                Some(other) => forward(shared, other, others),
            }
        }
    }
}

fn forward(shared: &Shared, cmd: AllocCommand, running: &BTreeMap<String, RunningTask>) {
    match cmd {
        AllocCommand::Exec { task, command, args, reply } => {
            let handle = {
                let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
                p.handles.get(&task).cloned()
            };
            let current = shared.current(&task);
            let (Some(handle), Some((alloc, job, t))) = (handle, current) else {
                let _ = reply.send(Err(format!("task {task:?} is not running")));
                return;
            };
            let Some(driver) = shared.env.drivers.get(&t.driver).cloned() else {
                let _ = reply.send(Err(format!("driver {:?} is not available", t.driver)));
                return;
            };
            let alloc_dir = shared.env.alloc_root.join(&alloc.id);
            let spec = build_spec(&shared.env, &alloc, &job, &t, &alloc_dir);
            let mut reply = reply;
            tokio::spawn(async move {
                // A caller that gave up (a check's timeout) drops the exec, which kills it.
                let out = tokio::select! {
                    out = driver.exec(&handle, &spec, &command, &args) => out,
                    () = reply.closed() => return,
                };
                let _ = reply.send(out.map_err(|e| e.0));
            });
        }
        AllocCommand::Update { alloc, job } => shared.apply_update(*alloc, *job),
        AllocCommand::Stop => {
            for rt in running.values() {
                let _ = rt.commands.send(TaskCommand::Kill);
            }
        }
        AllocCommand::Restart { task, reply } => {
            let targets: Vec<&RunningTask> = match &task {
                Some(t) => running.get(t).into_iter().collect(),
                None => running.values().collect(),
            };
            if targets.is_empty() {
                let _ = reply.send(Err(format!("task {:?} is not running", task)));
                return;
            }
            for rt in targets {
                let _ = rt.commands.send(TaskCommand::Restart);
            }
            let _ = reply.send(Ok(()));
        }
        AllocCommand::Signal { task, signal, reply } => {
            let targets: Vec<&RunningTask> = match &task {
                Some(t) => running.get(t).into_iter().collect(),
                None => running.values().collect(),
            };
            if targets.is_empty() {
                let _ = reply.send(Err(format!("task {:?} is not running", task)));
                return;
            }
            let mut replies = Vec::new();
            for rt in targets {
                let (tx, rx) = oneshot::channel();
                let _ = rt.commands.send(TaskCommand::Signal(signal.clone(), tx));
                replies.push(rx);
            }
            tokio::spawn(async move {
                let mut result = Ok(());
                for rx in replies {
                    if let Ok(Err(e)) = rx.await {
                        result = Err(e);
                    }
                }
                let _ = reply.send(result);
            });
        }
    }
}

/// Runs until every main task is dead: forwards commands, kills the rest when a leader dies or
/// a task fails for good.
async fn supervise(
    shared: &Arc<Shared>,
    tasks: &[Task],
    running: &mut BTreeMap<String, RunningTask>,
    commands: &mut mpsc::UnboundedReceiver<AllocCommand>,
    stop_requested: &mut bool,
) {
    let mains: Vec<String> =
        tasks.iter().filter(|t| phase(t) == Phase::Main).map(|t| t.name.clone()).collect();
    let mut killing = false;
    loop {
        let dead: Vec<(String, bool, bool)> = running
            .iter()
            .filter_map(|(n, rt)| {
                (*rt.outcome.borrow()).map(|failed| (n.clone(), failed, rt.leader))
            })
            .collect();
        // A main task not in `running` finished in an earlier agent life (a re-adopted
        // allocation, complete or not, whose state file is still here): it is dead too.
        let all_mains_dead =
            mains.iter().all(|m| !running.contains_key(m) || dead.iter().any(|(n, _, _)| n == m));
        if all_mains_dead {
            return;
        }
        let trigger = dead.iter().any(|(_, failed, leader)| *failed || *leader);
        if trigger && !killing {
            killing = true;
            for (name, rt) in running.iter() {
                if rt.outcome.borrow().is_none() {
                    shared.push_event(
                        name,
                        event(
                            &shared.env.clock,
                            "Sibling Task Failed",
                            "a task in the group failed or the leader exited",
                        ),
                    );
                    let _ = rt.commands.send(TaskCommand::Kill);
                }
            }
        }
        let mut watches: Vec<watch::Receiver<Option<bool>>> = running
            .values()
            .filter(|rt| rt.outcome.borrow().is_none())
            .map(|rt| rt.outcome.clone())
            .collect();
        let any_change = async {
            let futs = watches.iter_mut().map(|w| Box::pin(w.changed()));
            let _ = futures::future::select_all(futs).await;
        };
        tokio::select! {
            () = any_change => {}
            cmd = commands.recv() => match cmd {
                Some(AllocCommand::Stop) | None => {
                    *stop_requested = true;
                    forward(shared, AllocCommand::Stop, running);
                }
                Some(other) => forward(shared, other, running),
            }
        }
    }
}

fn make_dirs(alloc_dir: &Path, tasks: &[Task]) -> std::io::Result<()> {
    std::fs::create_dir_all(logs::logs_dir(alloc_dir))?;
    std::fs::create_dir_all(alloc_dir.join("alloc").join("data"))?;
    std::fs::create_dir_all(alloc_dir.join("alloc").join("tmp"))?;
    for task in tasks {
        if !logs::valid_task_name(&task.name) {
            return Err(std::io::Error::other(format!("invalid task name {:?}", task.name)));
        }
        let dir = alloc_dir.join(&task.name);
        std::fs::create_dir_all(dir.join("local"))?;
        std::fs::create_dir_all(dir.join("secrets"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("secrets"), std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

async fn rotate_logs(alloc_dir: PathBuf, tasks: Vec<Task>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for task in &tasks {
            let (files, size_mb) = task
                .log_config
                .as_ref()
                .map_or((10, 10), |l| (l.max_files.max(1), l.max_file_size_mb.max(1)));
            for kind in ["stdout", "stderr"] {
                let _ = logs::rotate_if_needed(
                    &alloc_dir,
                    &task.name,
                    kind,
                    files,
                    u64::from(size_mb) * 1024 * 1024,
                );
            }
        }
    }
}

fn spawn_task(
    shared: &Arc<Shared>,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
) -> RunningTask {
    let (tx, rx) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = watch::channel(None);
    let leader = task.leader;
    tokio::spawn(run_task(
        shared.clone(),
        alloc.clone(),
        job.clone(),
        task.clone(),
        alloc_dir.to_path_buf(),
        (rx, tx.downgrade()),
        out_tx,
    ));
    RunningTask { commands: tx, outcome: out_rx, leader }
}

/// The task's environment (for the process and for `${...}` interpolation) and directories.
fn build_task_env(
    env: &RunnerEnv,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
) -> (TaskEnv, TaskDirs) {
    let group = job.task_groups.iter().find(|g| g.name == alloc.task_group);
    let task_dir = alloc_dir.join(&task.name);
    let dirs = TaskDirs {
        alloc_dir: alloc_dir.join("alloc").display().to_string(),
        local_dir: task_dir.join("local").display().to_string(),
        secrets_dir: task_dir.join("secrets").display().to_string(),
    };
    let isolation = if task.driver == "pot" { FsIsolation::Image } else { FsIsolation::None };
    let host_ip = env
        .node
        .attributes
        .get("unique.network.ip-address")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let task_env = match group {
        Some(group) => TaskEnv::build(&TaskEnvInput {
            node: &env.node,
            region: &env.region,
            job,
            group,
            task,
            alloc,
            dirs: &dirs,
            isolation,
            host_ip: &host_ip,
        }),
        None => TaskEnv::default(),
    };
    (task_env, dirs)
}

fn build_spec(
    env: &RunnerEnv,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
) -> TaskSpec {
    let (task_env, dirs) = build_task_env(env, alloc, job, task, alloc_dir);
    let task_dir = alloc_dir.join(&task.name);
    let config =
        task.config.iter().map(|(k, v)| (k.clone(), task_env.interpolate_value(v))).collect();
    let resources = task.resources.clone().unwrap_or_default();
    let cpu = &env.node.node_resources.cpu;
    TaskSpec {
        alloc_id: alloc.id.clone(),
        task_name: task.name.clone(),
        invocation_id: invocation_id(),
        env: task_env.env,
        config,
        dirs,
        task_dir: task_dir.clone(),
        stdout_path: logs::log_file(alloc_dir, &task.name, "stdout", 0),
        stderr_path: logs::log_file(alloc_dir, &task.name, "stderr", 0),
        host_ports: alloc
            .allocated_resources
            .shared
            .ports
            .iter()
            .map(|p| (p.label.clone(), p.value))
            .collect(),
        memory_mb: u64::from(resources.memory_mb),
        cpu_mhz: u64::from(resources.cpu),
        cores: resources.cores,
        mhz_per_core: cpu.cpu_shares / u64::from(cpu.total_cpu_cores.max(1)),
    }
}

/// Fetches the task's artifacts, their fields interpolated with the task's environment.
async fn fetch_artifacts(
    env: &RunnerEnv,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
) -> Result<(), crate::artifact::ArtifactError> {
    let (task_env, _) = build_task_env(env, alloc, job, task, alloc_dir);
    let i = |m: &BTreeMap<String, String>| {
        m.iter().map(|(k, v)| (k.clone(), task_env.interpolate(v))).collect()
    };
    let artifacts: Vec<model::Artifact> = task
        .artifacts
        .iter()
        .map(|a| model::Artifact {
            getter_source: task_env.interpolate(&a.getter_source),
            relative_dest: task_env.interpolate(&a.relative_dest),
            getter_options: i(&a.getter_options),
            getter_headers: i(&a.getter_headers),
            ..a.clone()
        })
        .collect();
    let task_dir = alloc_dir.join(&task.name);
    tokio::task::spawn_blocking(move || {
        artifacts.iter().try_for_each(|a| crate::artifact::fetch(&task_dir, a))
    })
    .await
    .unwrap_or_else(|e| Err(crate::artifact::ArtifactError(format!("fetching artifacts: {e}"))))
}

/// Renders the task's templates into its directory (reading the services they use); returns
/// the variables of `env = true` templates for the task's environment, and what was read.
async fn render_templates(
    env: &RunnerEnv,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
) -> Result<(Vec<(String, String)>, crate::templates::Snapshot), String> {
    let (task_env, _) = build_task_env(env, alloc, job, task, alloc_dir);
    let task_dir = alloc_dir.join(&task.name);
    let (rendered, snapshot) = crate::templates::render(
        &env.template_sources,
        &alloc.namespace,
        &task_env,
        &task_dir,
        &task.templates,
    )
    .await?;
    Ok((rendered.vars, snapshot))
}

/// Aborts the template watch when the task's supervision ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the watch that re-renders the task's templates when the services they read change
/// and restarts or signals the task as `change_mode` says.
fn spawn_template_watch(
    shared: &Arc<Shared>,
    alloc: &Allocation,
    job: &Job,
    task: &Task,
    alloc_dir: &Path,
    snapshot: crate::templates::Snapshot,
    commands: mpsc::WeakUnboundedSender<TaskCommand>,
) -> AbortOnDrop {
    let name = task.name.clone();
    let current = {
        let (shared, alloc, job, task) = (shared.clone(), alloc.clone(), job.clone(), task.clone());
        let (alloc_dir, name) = (alloc_dir.to_path_buf(), name.clone());
        move || {
            let (alloc, job, task) =
                shared.current(&name).unwrap_or_else(|| (alloc.clone(), job.clone(), task.clone()));
            let (task_env, _) = build_task_env(&shared.env, &alloc, &job, &task, &alloc_dir);
            (task_env, alloc_dir.join(&task.name), task.templates.clone())
        }
    };
    let apply = move |change: crate::templates::Change| {
        if let Some(tx) = commands.upgrade() {
            let _ = tx.send(match change {
                crate::templates::Change::Restart => TaskCommand::TemplateRestart,
                crate::templates::Change::Signal(s) => TaskCommand::TemplateSignal(s),
            });
        }
    };
    let sources = shared.env.template_sources.clone();
    let namespace = alloc.namespace.clone();
    AbortOnDrop(tokio::spawn(crate::templates::watch(sources, namespace, snapshot, current, apply)))
}

/// Writes `bytes` to `path` with `mode`, replacing it whole (write then rename).
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("orc-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))?;
    std::fs::rename(&tmp, path)
}

/// Why the supervision loop of one invocation ended.
enum Ended {
    Exited(ExitResult),
    /// Killed on request, with how the process ended if the driver saw it.
    Killed(Option<ExitResult>),
    RestartRequested,
}

async fn run_task(
    shared: Arc<Shared>,
    alloc: Allocation,
    job: Job,
    task: Task,
    alloc_dir: PathBuf,
    (mut commands, own_commands): (
        mpsc::UnboundedReceiver<TaskCommand>,
        mpsc::WeakUnboundedSender<TaskCommand>,
    ),
    outcome: watch::Sender<Option<bool>>,
) {
    let name = task.name.clone();
    // The template watch, started after the first start whose templates were rendered.
    let mut template_watch: Option<AbortOnDrop> = None;
    let Some(driver) = shared.env.drivers.get(&task.driver).cloned() else {
        shared.update(&name, |s| {
            s.state = "dead".into();
            s.failed = true;
            s.finished_at = Some(rfc3339_now(&shared.env.clock));
            s.events.push(event(
                &shared.env.clock,
                "Driver Failure",
                format!("driver {:?} is not available on this node", task.driver),
            ));
        });
        let _ = outcome.send(Some(true));
        return;
    };
    let group = job.task_groups.iter().find(|g| g.name == alloc.task_group);
    let policy = task
        .restart_policy
        .clone()
        .or_else(|| group.and_then(|g| g.restart_policy.clone()))
        .unwrap_or_else(|| default_restart_policy(job.job_type));
    let batch =
        job.job_type == JobType::Batch || matches!(phase(&task), Phase::Prestart | Phase::Poststop);
    let mut tracker = RestartTracker::new(policy, batch);

    let recovered = {
        let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
        p.handles.get(&name).cloned()
    };
    // Artifacts are fetched once, before the first start (not again on restarts, nor for a
    // task re-adopted or restarted in a later agent life), as Nomad's artifact hook does.
    let mut artifacts_fetched = task.artifacts.is_empty() || {
        let p = shared.persisted.lock().unwrap_or_else(|e| e.into_inner());
        recovered.is_some() || p.task_states.get(&name).is_some_and(|s| s.started_at.is_some())
    };
    let mut adopted = match recovered {
        Some(h) if driver.recover(&h).await => {
            shared.push_event(
                &name,
                event(&shared.env.clock, "Started", "Task re-adopted after an agent restart"),
            );
            Some(h)
        }
        Some(h) => {
            // It ended while the agent was away. The driver may still know how (pot keeps its
            // last run's stats; a raw_exec process's status went to init, so it is unknown);
            // then the restart policy applies as to any exit, so a batch task that finished
            // is not run again and a restart counts against the policy.
            let result = driver.wait(&h).await;
            driver.destroy(&h).await;
            shared.set_handle(&name, None);
            let exit = Exit { result, while_away: true };
            if !after_exit(&shared, &name, &mut tracker, &exit, &mut commands, &outcome).await {
                return;
            }
            None
        }
        None => None,
    };

    loop {
        let handle = match adopted.take() {
            Some(h) => {
                // A task re-adopted after an agent restart: its files were rendered by the
                // previous agent; the watch compares with them and acts only on a change.
                if template_watch.is_none() && !task.templates.is_empty() {
                    template_watch = Some(spawn_template_watch(
                        &shared,
                        &alloc,
                        &job,
                        &task,
                        &alloc_dir,
                        crate::templates::Snapshot::default(),
                        own_commands.clone(),
                    ));
                }
                h
            }
            None => {
                shared.update(&name, |s| {
                    s.events.push(event(
                        &shared.env.clock,
                        "Task Setup",
                        "Building Task Directory",
                    ));
                });
                // An in-place update since the last start applies to this one.
                let (alloc, job, task) = shared
                    .current(&name)
                    .unwrap_or_else(|| (alloc.clone(), job.clone(), task.clone()));
                if !artifacts_fetched {
                    shared.push_event(
                        &name,
                        event(
                            &shared.env.clock,
                            "Downloading Artifacts",
                            "Client is downloading artifacts",
                        ),
                    );
                    match fetch_artifacts(&shared.env, &alloc, &job, &task, &alloc_dir).await {
                        Ok(()) => artifacts_fetched = true,
                        Err(e) => {
                            shared.push_event(
                                &name,
                                event(&shared.env.clock, "Failed Artifact Download", e.0),
                            );
                            if restart_or_stop(
                                &shared,
                                &name,
                                &mut tracker,
                                -1,
                                true,
                                &mut commands,
                            )
                            .await
                            {
                                continue;
                            }
                            let _ = outcome.send(Some(true));
                            return;
                        }
                    }
                }
                // Templates render before every start, so a restart sees what they say now.
                let template_env = if task.templates.is_empty() {
                    Vec::new()
                } else {
                    let rendered =
                        render_templates(&shared.env, &alloc, &job, &task, &alloc_dir).await;
                    match rendered {
                        Ok((vars, snapshot)) => {
                            if template_watch.is_none() {
                                template_watch = Some(spawn_template_watch(
                                    &shared,
                                    &alloc,
                                    &job,
                                    &task,
                                    &alloc_dir,
                                    snapshot,
                                    own_commands.clone(),
                                ));
                            }
                            vars
                        }
                        Err(message) => {
                            shared.push_event(
                                &name,
                                event(&shared.env.clock, "Task hook failed", message),
                            );
                            if restart_or_stop(
                                &shared,
                                &name,
                                &mut tracker,
                                -1,
                                true,
                                &mut commands,
                            )
                            .await
                            {
                                continue;
                            }
                            let _ = outcome.send(Some(true));
                            return;
                        }
                    }
                };
                let mut spec = build_spec(&shared.env, &alloc, &job, &task, &alloc_dir);
                spec.env.extend(template_env);
                match driver.start(&spec).await {
                    Ok(h) => {
                        shared.set_handle(&name, Some(h.clone()));
                        shared.update(&name, |s| {
                            s.state = "running".into();
                            s.started_at = Some(rfc3339_now(&shared.env.clock));
                            s.events.push(event(
                                &shared.env.clock,
                                "Started",
                                "Task started by client",
                            ));
                        });
                        h
                    }
                    Err(DriverError(message)) => {
                        shared
                            .push_event(&name, event(&shared.env.clock, "Driver Failure", message));
                        match restart_or_stop(&shared, &name, &mut tracker, -1, true, &mut commands)
                            .await
                        {
                            true => continue,
                            false => {
                                let _ = outcome.send(Some(true));
                                return;
                            }
                        }
                    }
                }
            }
        };
        // One waiter per invocation; kills and restarts watch the same exit.
        let (exit_tx, mut exit_rx) = watch::channel(None::<ExitResult>);
        let waiter = {
            let (driver, handle) = (driver.clone(), handle.clone());
            tokio::spawn(async move {
                let result = driver.wait(&handle).await;
                let _ = exit_tx.send(Some(result));
            })
        };
        let fallback = task.clone();
        let ended = control(
            &shared,
            &name,
            &fallback,
            driver.as_ref(),
            &handle,
            &mut commands,
            &mut exit_rx,
        )
        .await;
        waiter.abort();
        driver.destroy(&handle).await;
        shared.set_handle(&name, None);
        match ended {
            Ended::Killed(result) => {
                // As Nomad: the exit (code, or the signal that ended it) before "Killed".
                if let Some(result) = result {
                    shared.push_event(&name, terminated(&shared.env.clock, &result, false));
                }
                shared.update(&name, |s| {
                    s.state = "dead".into();
                    s.finished_at = Some(rfc3339_now(&shared.env.clock));
                    s.events.push(event(&shared.env.clock, "Killed", "Task successfully killed"));
                });
                let _ = outcome.send(Some(task_failed(&shared, &name)));
                return;
            }
            Ended::RestartRequested => {
                shared.update(&name, |s| {
                    s.restarts += 1;
                    s.last_restart = Some(rfc3339_now(&shared.env.clock));
                    s.events.push(event(&shared.env.clock, "Restarting", "Task restarting in 0s"));
                });
                continue;
            }
            Ended::Exited(result) => {
                let exit = Exit { result, while_away: false };
                if !after_exit(&shared, &name, &mut tracker, &exit, &mut commands, &outcome).await {
                    return;
                }
            }
        }
    }
}

/// How a task's process ended, and whether it ended while no agent was watching it.
struct Exit {
    result: ExitResult,
    while_away: bool,
}

/// Records an exit and applies the restart policy. Returns true to start again; false when the
/// task is dead, after sending whether it failed to `outcome`.
async fn after_exit(
    shared: &Arc<Shared>,
    name: &str,
    tracker: &mut RestartTracker,
    exit: &Exit,
    commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
    outcome: &watch::Sender<Option<bool>>,
) -> bool {
    let result = &exit.result;
    shared.push_event(name, terminated(&shared.env.clock, result, exit.while_away));
    let code = if result.successful() { 0 } else { result.exit_code.max(1) };
    if restart_or_stop(shared, name, tracker, code, false, commands).await {
        return true;
    }
    let _ = outcome.send(Some(task_failed(shared, name)));
    false
}

/// Whether the task's state says it failed.
fn task_failed(shared: &Shared, name: &str) -> bool {
    shared
        .persisted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .task_states
        .get(name)
        .is_some_and(|s| s.failed)
}

/// The "Terminated" event of one exit; `while_away`: it ended while no agent watched it.
fn terminated(clock: &Clock, result: &ExitResult, while_away: bool) -> TaskEvent {
    let code = if result.signal != 0 {
        format!("Exit Code: {}, Signal: {}", result.exit_code, result.signal)
    } else {
        format!("Exit Code: {}", result.exit_code)
    };
    let message = match (while_away, result.unknown) {
        (true, true) => "Exited while the agent was down; the exit code is unknown".to_string(),
        (true, false) => format!("Exited while the agent was down; {code}"),
        (false, true) => "Exited; the exit code is unknown (re-adopted task)".to_string(),
        (false, false) => code,
    };
    let mut ev = event(clock, "Terminated", message);
    ev.exit_code = result.exit_code;
    ev.signal = result.signal;
    ev
}

/// Applies the restart policy after an exit. Returns true to start again (after the delay,
/// which a kill interrupts), false when the task is dead.
async fn restart_or_stop(
    shared: &Arc<Shared>,
    name: &str,
    tracker: &mut RestartTracker,
    exit_code: i32,
    start_failed: bool,
    commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
) -> bool {
    let jitter = (shared.env.clock.unix_nanos() % 1000) as f64 / 1000.0;
    match tracker.on_exit(crate::clock::instant(), exit_code, start_failed, jitter) {
        Decision::Restart(delay) => {
            shared.update(name, |s| {
                s.state = "pending".into();
                s.restarts = tracker.restarts;
                s.last_restart = Some(rfc3339_now(&shared.env.clock));
                s.events.push(event(
                    &shared.env.clock,
                    "Restarting",
                    format!("Task restarting in {:.3}s", delay.as_secs_f64()),
                ));
            });
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => return true,
                    cmd = commands.recv() => match cmd {
                        Some(TaskCommand::Kill) | None => {
                            shared.update(name, |s| {
                                s.state = "dead".into();
                                s.finished_at = Some(rfc3339_now(&shared.env.clock));
                                s.events.push(event(&shared.env.clock, "Killed", "Task killed while waiting to restart"));
                            });
                            return false;
                        }
                        Some(TaskCommand::Restart | TaskCommand::TemplateRestart) => return true,
                        Some(TaskCommand::Signal(_, reply)) => {
                            let _ = reply.send(Err("task is not running".into()));
                        }
                        Some(TaskCommand::TemplateSignal(_)) => {}
                    }
                }
            }
        }
        Decision::Stop { failed } => {
            shared.update(name, |s| {
                s.state = "dead".into();
                s.failed = failed;
                s.finished_at = Some(rfc3339_now(&shared.env.clock));
                if failed {
                    s.events.push(event(
                        &shared.env.clock,
                        "Not Restarting",
                        "Exceeded allowed attempts, applying a delay or failing",
                    ));
                }
            });
            false
        }
    }
}

/// The task's kill_signal (Nomad's default: SIGINT) and kill_timeout (default 5 s), from its
/// current definition, so an in-place update of either applies to the running task.
fn kill_settings(shared: &Shared, name: &str, fallback: &Task) -> (String, Duration) {
    let task = shared.current(name).map(|(_, _, t)| t);
    let task = task.as_ref().unwrap_or(fallback);
    let signal =
        if task.kill_signal.is_empty() { "SIGINT".to_string() } else { task.kill_signal.clone() };
    (signal, task.kill_timeout.unwrap_or(Duration::from_secs(5)))
}

/// Serves commands for a running invocation until it exits, is killed or is restarted.
async fn control(
    shared: &Arc<Shared>,
    name: &str,
    fallback: &Task,
    driver: &dyn Driver,
    handle: &Handle,
    commands: &mut mpsc::UnboundedReceiver<TaskCommand>,
    exit: &mut watch::Receiver<Option<ExitResult>>,
) -> Ended {
    loop {
        let cmd = tokio::select! {
            r = exit.wait_for(Option::is_some) => {
                let result = r.ok().and_then(|v| v.clone()).unwrap_or(ExitResult {
                    exit_code: -1,
                    signal: 0,
                    unknown: true,
                });
                return Ended::Exited(result);
            }
            cmd = commands.recv() => cmd,
        };
        match cmd {
            Some(TaskCommand::Signal(signal, reply)) => {
                shared.push_event(
                    name,
                    event(&shared.env.clock, "Signaling", format!("Task being sent {signal}")),
                );
                let _ = reply.send(driver.signal(handle, &signal).await.map_err(|e| e.0));
            }
            Some(TaskCommand::Kill) | None => {
                let (kill_signal, kill_timeout) = kill_settings(shared, name, fallback);
                shared.push_event(
                    name,
                    event(
                        &shared.env.clock,
                        "Killing",
                        format!(
                            "Sent interrupt. Waiting {}s before force killing",
                            kill_timeout.as_secs_f64()
                        ),
                    ),
                );
                return Ended::Killed(stop(driver, handle, exit, &kill_signal, kill_timeout).await);
            }
            Some(TaskCommand::TemplateSignal(signal)) => {
                let mut ev = event(&shared.env.clock, "Signaling", "Template re-rendered");
                ev.details.insert("task_signal".into(), signal.clone());
                shared.push_event(name, ev);
                if let Err(e) = driver.signal(handle, &signal).await {
                    shared.push_event(
                        name,
                        event(
                            &shared.env.clock,
                            "Signaling",
                            format!("Failed to send {signal}: {}", e.0),
                        ),
                    );
                }
            }
            Some(TaskCommand::TemplateRestart) => {
                shared.push_event(
                    name,
                    event(
                        &shared.env.clock,
                        "Restart Signaled",
                        "Template with change_mode restart re-rendered",
                    ),
                );
                let (kill_signal, kill_timeout) = kill_settings(shared, name, fallback);
                stop(driver, handle, exit, &kill_signal, kill_timeout).await;
                return Ended::RestartRequested;
            }
            Some(TaskCommand::Restart) => {
                shared.push_event(
                    name,
                    event(&shared.env.clock, "Restart Signaled", "User requested task to restart"),
                );
                let (kill_signal, kill_timeout) = kill_settings(shared, name, fallback);
                stop(driver, handle, exit, &kill_signal, kill_timeout).await;
                return Ended::RestartRequested;
            }
        }
    }
}

/// kill_signal, then a hard kill if the task outlives kill_timeout. Returns the exit, if seen.
async fn stop(
    driver: &dyn Driver,
    handle: &Handle,
    exit: &mut watch::Receiver<Option<ExitResult>>,
    kill_signal: &str,
    kill_timeout: Duration,
) -> Option<ExitResult> {
    if driver.signal(handle, kill_signal).await.is_ok()
        && tokio::time::timeout(kill_timeout, exit.wait_for(Option::is_some)).await.is_ok()
    {
        return exit.borrow().clone();
    }
    driver.kill(handle).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), exit.wait_for(Option::is_some)).await;
    let seen = exit.borrow().clone();
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(invocation_id().len(), 8);
    }
}
