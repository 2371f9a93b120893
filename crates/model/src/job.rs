//! The job model: job → task group → task, with services, checks and policies.
//!
//! Field names and JSON keys follow Nomad's `api` package, so `serde_json` of a [`Job`] is what
//! `nomad job run -output` prints and what `/v1/job/:id` returns. [`Job::canonicalize`] applies
//! Nomad's defaults, which depend on the job type; it is the one place those defaults live, used
//! both for parsed job files and for jobs submitted as JSON. Parsing HCL is `jobspec`'s business,
//! not this module's.

use crate::duration::{nanos, opt_nanos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The kind of scheduler a job uses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Long-running work, kept at its count.
    #[default]
    Service,
    /// Work that runs to completion.
    Batch,
    /// One allocation on every feasible node.
    System,
}

impl JobType {
    /// The name used in job files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
        }
    }
}

/// A job: the unit users submit. See Nomad's `api.Job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    pub region: String,
    pub namespace: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub priority: i32,
    pub all_at_once: bool,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub task_groups: Vec<TaskGroup>,
    pub update: Option<UpdateStrategy>,
    pub reschedule: Option<ReschedulePolicy>,
    pub migrate: Option<MigrateStrategy>,
    pub meta: BTreeMap<String, String>,
    /// Set when the job has been stopped (`DELETE /v1/job/:id` without purge).
    pub stop: bool,
    /// `pending`, `running` or `dead`; maintained by the server.
    pub status: String,
    pub status_description: String,
    pub stable: bool,
    /// Incremented by the server on every change to the job's specification.
    pub version: u64,
    /// Unix nanoseconds of the submission; set by the server.
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

/// A task group: the unit of placement. Every allocation is one placed task group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: String,
    pub count: u32,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    pub tasks: Vec<Task>,
    pub restart_policy: Option<RestartPolicy>,
    pub reschedule_policy: Option<ReschedulePolicy>,
    pub ephemeral_disk: Option<EphemeralDisk>,
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub networks: Vec<NetworkResource>,
    pub meta: BTreeMap<String, String>,
    pub services: Vec<Service>,
    #[serde(with = "opt_nanos")]
    pub shutdown_delay: Option<Duration>,
    pub scaling: Option<Scaling>,
}

/// One process (or jail) run by a driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: String,
    pub driver: String,
    pub user: String,
    pub lifecycle: Option<Lifecycle>,
    /// The driver's own settings, opaque to everything but the driver and its validator.
    pub config: BTreeMap<String, serde_json::Value>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub env: BTreeMap<String, String>,
    pub services: Vec<Service>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub meta: BTreeMap<String, String>,
    #[serde(with = "opt_nanos")]
    pub kill_timeout: Option<Duration>,
    pub log_config: Option<LogConfig>,
    pub artifacts: Vec<Artifact>,
    pub templates: Vec<Template>,
    pub leader: bool,
    #[serde(with = "opt_nanos")]
    pub shutdown_delay: Option<Duration>,
    pub kill_signal: String,
}

/// A placement rule. Operands are Nomad's (`=`, `regexp`, `distinct_hosts`, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Constraint {
    #[serde(rename = "LTarget")]
    pub ltarget: String,
    #[serde(rename = "RTarget")]
    pub rtarget: String,
    #[serde(rename = "Operand")]
    pub operand: String,
}

/// A placement preference; `weight` is in -100..=100 and never 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Affinity {
    #[serde(rename = "LTarget")]
    pub ltarget: String,
    #[serde(rename = "RTarget")]
    pub rtarget: String,
    #[serde(rename = "Operand")]
    pub operand: String,
    #[serde(rename = "Weight")]
    pub weight: i8,
}

/// Spread allocations over the values of an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    pub attribute: String,
    pub weight: i8,
    pub spread_target: Vec<SpreadTarget>,
}

/// One target value of a [`Spread`] and the share of allocations it should receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadTarget {
    pub value: String,
    pub percent: u8,
}

/// How a task is restarted locally by the agent before the allocation fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    #[serde(with = "nanos")]
    pub interval: Duration,
    pub attempts: u32,
    #[serde(with = "nanos")]
    pub delay: Duration,
    /// `fail` or `delay`.
    pub mode: String,
    pub render_templates: bool,
}

/// How a failed allocation is replaced by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: u32,
    #[serde(with = "nanos")]
    pub interval: Duration,
    #[serde(with = "nanos")]
    pub delay: Duration,
    /// `constant`, `exponential` or `fibonacci`.
    pub delay_function: String,
    #[serde(with = "nanos")]
    pub max_delay: Duration,
    pub unlimited: bool,
}

/// Rolling-update settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    #[serde(with = "nanos")]
    pub stagger: Duration,
    pub max_parallel: u32,
    /// `checks`, `task_states` or `manual`.
    pub health_check: String,
    #[serde(with = "nanos")]
    pub min_healthy_time: Duration,
    #[serde(with = "nanos")]
    pub healthy_deadline: Duration,
    #[serde(with = "nanos")]
    pub progress_deadline: Duration,
    pub canary: u32,
    pub auto_revert: bool,
    pub auto_promote: bool,
}

/// How allocations leave a draining node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: u32,
    pub health_check: String,
    #[serde(with = "nanos")]
    pub min_healthy_time: Duration,
    #[serde(with = "nanos")]
    pub healthy_deadline: Duration,
}

/// Scratch disk shared by a group's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: bool,
    pub migrate: bool,
    #[serde(rename = "SizeMB")]
    pub size_mb: u32,
}

/// The `scaling` block of a group (read by Traefik's Nomad provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Scaling {
    pub min: Option<u32>,
    pub max: u32,
    pub enabled: bool,
}

/// A network request: ports (and, in Nomad, a mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    /// `host` (default) or `bridge`, `none`, `cni/<name>`.
    pub mode: String,
    pub device: String,
    #[serde(rename = "CIDR")]
    pub cidr: String,
    #[serde(rename = "IP")]
    pub ip: String,
    pub hostname: String,
    #[serde(rename = "MBits")]
    pub mbits: u32,
    pub reserved_ports: Vec<Port>,
    pub dynamic_ports: Vec<Port>,
}

/// One labelled port. `value` is the host port (0 until a dynamic port is assigned); `to` is the
/// port inside the task's network namespace (0 means the same as the host port).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    pub label: String,
    pub value: u16,
    pub to: i32,
    pub host_network: String,
}

/// CPU and memory asked for by a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Resources {
    /// MHz.
    #[serde(rename = "CPU")]
    pub cpu: u32,
    /// Exclusive cores; when set, `cpu` is derived from them by the agent.
    #[serde(rename = "Cores")]
    pub cores: u32,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u32,
    /// Memory oversubscription ceiling; 0 means none.
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: u32,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u32,
    /// Legacy task-level networks (`resources { network { … } }`).
    #[serde(rename = "Networks")]
    pub networks: Vec<NetworkResource>,
}

/// A service registration request, in a group or a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    pub tags: Vec<String>,
    pub canary_tags: Vec<String>,
    pub enable_tag_override: bool,
    pub port_label: String,
    /// `auto`, `host`, `alloc`, `alloc_ipv6` or `driver`.
    pub address_mode: String,
    pub address: String,
    pub checks: Vec<ServiceCheck>,
    pub check_restart: Option<CheckRestart>,
    pub meta: BTreeMap<String, String>,
    pub canary_meta: BTreeMap<String, String>,
    pub task_name: String,
    /// `require_healthy`, `ignore_warnings` or `ignore`.
    pub on_update: String,
    /// `consul` or `nomad`.
    pub provider: String,
}

/// A health check of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    /// `tcp`, `http` or `script`.
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    pub protocol: String,
    pub port_label: String,
    pub address_mode: String,
    #[serde(with = "nanos")]
    pub interval: Duration,
    #[serde(with = "nanos")]
    pub timeout: Duration,
    pub initial_status: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub check_restart: Option<CheckRestart>,
    pub task_name: String,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
    pub failures_before_warning: u32,
    pub on_update: String,
}

/// Restart a task after repeated check failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    pub limit: u32,
    #[serde(with = "nanos")]
    pub grace: Duration,
    pub ignore_warnings: bool,
}

/// Where a task's logs go and how they rotate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    pub max_files: u32,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: u32,
    pub disabled: bool,
}

/// A file the agent renders into the task directory before start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Template {
    pub source_path: String,
    pub dest_path: String,
    pub embedded_tmpl: String,
    /// `restart`, `noop`, `signal` or `script`.
    pub change_mode: String,
    pub change_signal: String,
    #[serde(with = "nanos")]
    pub splay: Duration,
    pub perms: String,
    pub uid: Option<i32>,
    pub gid: Option<i32>,
    pub left_delim: String,
    pub right_delim: String,
    pub envvars: bool,
    #[serde(rename = "ErrMissingKey")]
    pub error_on_missing_key: bool,
    pub once: bool,
    /// How long to wait for quiescence before rendering (`wait { min, max }`).
    pub wait: Option<WaitConfig>,
}

/// A template's quiescence timers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WaitConfig {
    #[serde(with = "opt_nanos")]
    pub min: Option<Duration>,
    #[serde(with = "opt_nanos")]
    pub max: Option<Duration>,
}

/// A file fetched into the task directory before start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Artifact {
    pub getter_source: String,
    pub getter_options: BTreeMap<String, String>,
    pub getter_headers: BTreeMap<String, String>,
    /// `any`, `file` or `dir`.
    pub getter_mode: String,
    pub relative_dest: String,
    pub chown: bool,
}

/// Marks a task as a lifecycle hook rather than a main task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Lifecycle {
    /// `prestart`, `poststart` or `poststop`.
    pub hook: String,
    pub sidecar: bool,
}

/// Nomad's `restart` defaults for a job type.
pub fn default_restart_policy(job_type: JobType) -> RestartPolicy {
    match job_type {
        JobType::Service | JobType::System => RestartPolicy {
            interval: 30 * MINUTE,
            attempts: 2,
            delay: 15 * SECOND,
            mode: "fail".into(),
            render_templates: false,
        },
        JobType::Batch => RestartPolicy {
            interval: 24 * HOUR,
            attempts: 3,
            delay: 15 * SECOND,
            mode: "fail".into(),
            render_templates: false,
        },
    }
}

/// Nomad's `reschedule` defaults; system jobs have none.
pub fn default_reschedule_policy(job_type: JobType) -> Option<ReschedulePolicy> {
    match job_type {
        JobType::Service => Some(ReschedulePolicy {
            attempts: 0,
            interval: Duration::ZERO,
            delay: 30 * SECOND,
            delay_function: "exponential".into(),
            max_delay: HOUR,
            unlimited: true,
        }),
        JobType::Batch => Some(ReschedulePolicy {
            attempts: 1,
            interval: 24 * HOUR,
            delay: 5 * SECOND,
            delay_function: "constant".into(),
            max_delay: Duration::ZERO,
            unlimited: false,
        }),
        JobType::System => None,
    }
}

/// Nomad's `update` defaults; batch jobs have none.
pub fn default_update_strategy(job_type: JobType) -> Option<UpdateStrategy> {
    match job_type {
        JobType::Service | JobType::System => Some(UpdateStrategy {
            stagger: 30 * SECOND,
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: 10 * SECOND,
            healthy_deadline: 5 * MINUTE,
            progress_deadline: 10 * MINUTE,
            canary: 0,
            auto_revert: false,
            auto_promote: false,
        }),
        JobType::Batch => None,
    }
}

/// Nomad's `migrate` defaults; only service jobs migrate.
pub fn default_migrate_strategy(job_type: JobType) -> Option<MigrateStrategy> {
    match job_type {
        JobType::Service => Some(MigrateStrategy {
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: 10 * SECOND,
            healthy_deadline: 5 * MINUTE,
        }),
        JobType::Batch | JobType::System => None,
    }
}

/// Nomad's `logs` defaults.
pub fn default_log_config() -> LogConfig {
    LogConfig { max_files: 10, max_file_size_mb: 10, disabled: false }
}

/// Nomad's `ephemeral_disk` defaults.
pub fn default_ephemeral_disk() -> EphemeralDisk {
    EphemeralDisk { sticky: false, migrate: false, size_mb: 300 }
}

/// The default kill timeout of a task.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Nomad's default CPU ask, in MHz, used when neither `cpu` nor `cores` is given.
pub const DEFAULT_CPU_MHZ: u32 = 100;

/// Nomad's default memory ask, in MB.
pub const DEFAULT_MEMORY_MB: u32 = 300;

impl Job {
    /// Fills every unset field with Nomad's default for this job's type, and pushes job-level
    /// `update`, `reschedule` and `migrate` down into groups (the group's own fields win).
    ///
    /// Idempotent: canonicalizing a canonical job changes nothing.
    pub fn canonicalize(&mut self) {
        if self.name.is_empty() {
            self.name = self.id.clone();
        }
        if self.region.is_empty() {
            self.region = "global".into();
        }
        if self.namespace.is_empty() {
            self.namespace = "default".into();
        }
        if self.node_pool.is_empty() {
            self.node_pool = "default".into();
        }
        if self.datacenters.is_empty() {
            self.datacenters = vec!["*".into()];
        }
        if self.priority == 0 {
            self.priority = 50;
        }
        if self.status.is_empty() {
            self.status = "pending".into();
        }
        for spread in &mut self.spreads {
            if spread.weight == 0 {
                spread.weight = 50;
            }
        }
        canonicalize_affinities(&mut self.affinities);
        let job_type = self.job_type;
        let job_update = self.update.clone().or_else(|| default_update_strategy(job_type));
        let job_reschedule =
            self.reschedule.clone().or_else(|| default_reschedule_policy(job_type));
        let job_migrate = self.migrate.clone().or_else(|| default_migrate_strategy(job_type));
        // Nomad keeps the job-level update block (it drives the deployment), but reschedule and
        // migrate live only on groups after canonicalization.
        if self.update.is_none() {
            self.update = job_update.clone();
        }
        let job_name = self.name.clone();
        for group in &mut self.task_groups {
            group.canonicalize(&job_name, job_type, &job_update, &job_reschedule, &job_migrate);
        }
    }

    /// The group with this name.
    pub fn group(&self, name: &str) -> Option<&TaskGroup> {
        self.task_groups.iter().find(|g| g.name == name)
    }
}

impl TaskGroup {
    fn canonicalize(
        &mut self,
        job_name: &str,
        job_type: JobType,
        update: &Option<UpdateStrategy>,
        reschedule: &Option<ReschedulePolicy>,
        migrate: &Option<MigrateStrategy>,
    ) {
        if self.restart_policy.is_none() {
            self.restart_policy = Some(default_restart_policy(job_type));
        }
        if self.reschedule_policy.is_none() && job_type != JobType::System {
            self.reschedule_policy = reschedule.clone();
        }
        if self.update.is_none() && job_type != JobType::Batch {
            self.update = update.clone();
        }
        if self.migrate.is_none() && job_type == JobType::Service {
            self.migrate = migrate.clone();
        }
        if self.ephemeral_disk.is_none() {
            self.ephemeral_disk = Some(default_ephemeral_disk());
        }
        if self.shutdown_delay.is_none() {
            self.shutdown_delay = Some(Duration::ZERO);
        }
        for network in &mut self.networks {
            network.canonicalize();
        }
        for spread in &mut self.spreads {
            if spread.weight == 0 {
                spread.weight = 50;
            }
        }
        canonicalize_affinities(&mut self.affinities);
        let group_restart = self.restart_policy.clone();
        for service in &mut self.services {
            service.canonicalize(&ServiceNames { job: job_name, group: &self.name, task: None });
        }
        for task in &mut self.tasks {
            task.canonicalize(
                &group_restart,
                &ServiceNames { job: job_name, group: &self.name, task: None },
            );
        }
    }

    /// Every port the group asks for: group networks first, then legacy task networks.
    pub fn ports(&self) -> impl Iterator<Item = &Port> {
        let task_networks =
            self.tasks.iter().filter_map(|t| t.resources.as_ref()).flat_map(|r| r.networks.iter());
        self.networks
            .iter()
            .chain(task_networks)
            .flat_map(|n| n.reserved_ports.iter().chain(n.dynamic_ports.iter()))
    }
}

impl NetworkResource {
    fn canonicalize(&mut self) {
        if self.mode.is_empty() {
            self.mode = "host".into();
        }
    }
}

/// Nomad's default affinity weight.
fn canonicalize_affinities(affinities: &mut [Affinity]) {
    for affinity in affinities {
        if affinity.weight == 0 {
            affinity.weight = 50;
        }
    }
}

/// Names a service's default name and `${JOB}`-style placeholders are built from.
struct ServiceNames<'a> {
    job: &'a str,
    group: &'a str,
    task: Option<&'a str>,
}

impl ServiceNames<'_> {
    /// `<job>-<group>-<task>` for task services, `<job>-<group>` for group services.
    fn base(&self) -> String {
        match self.task {
            Some(task) => format!("{}-{}-{task}", self.job, self.group),
            None => format!("{}-{}", self.job, self.group),
        }
    }
}

impl Service {
    fn canonicalize(&mut self, names: &ServiceNames) {
        if self.name.is_empty() {
            self.name = names.base();
        } else if self.name.contains("${") {
            // Nomad substitutes these placeholders when the job is registered; other `${...}`
            // stays for the client to interpolate.
            let base = format!("{}-{}-{}", names.job, names.group, names.task.unwrap_or_default());
            self.name = self
                .name
                .replace("${JOB}", names.job)
                .replace("${TASKGROUP}", names.group)
                .replace("${TASK}", names.task.unwrap_or_default())
                .replace("${BASE}", &base);
        }
        if self.address_mode.is_empty() {
            self.address_mode = "auto".into();
        }
        if self.on_update.is_empty() {
            self.on_update = "require_healthy".into();
        }
        if self.provider.is_empty() {
            self.provider = "consul".into();
        }
        let service_name = self.name.clone();
        for check in &mut self.checks {
            check.canonicalize(&service_name, &self.provider);
        }
    }
}

impl ServiceCheck {
    fn canonicalize(&mut self, service_name: &str, provider: &str) {
        if self.name.is_empty() {
            self.name = format!("service: \"{service_name}\" check");
        }
        if self.on_update.is_empty() {
            self.on_update = "require_healthy".into();
        }
        if self.check_type == "http" {
            if self.method.is_empty() {
                self.method = "GET".into();
            }
            if self.protocol.is_empty() {
                self.protocol = "http".into();
            }
        }
        if self.initial_status.is_empty() && provider == "nomad" {
            self.initial_status = "pending".into();
        }
    }
}

impl Task {
    fn canonicalize(&mut self, group_restart: &Option<RestartPolicy>, group: &ServiceNames) {
        if self.kill_timeout.is_none() {
            self.kill_timeout = Some(DEFAULT_KILL_TIMEOUT);
        }
        if self.kill_signal.is_empty() {
            self.kill_signal = "SIGINT".into();
        }
        if self.shutdown_delay.is_none() {
            self.shutdown_delay = Some(Duration::ZERO);
        }
        if self.log_config.is_none() {
            self.log_config = Some(default_log_config());
        }
        if self.restart_policy.is_none() {
            self.restart_policy = group_restart.clone();
        }
        let resources = self.resources.get_or_insert_with(|| Resources {
            cpu: 0,
            memory_mb: DEFAULT_MEMORY_MB,
            ..Resources::default()
        });
        if resources.cpu == 0 && resources.cores == 0 {
            resources.cpu = DEFAULT_CPU_MHZ;
        }
        if resources.memory_mb == 0 {
            resources.memory_mb = DEFAULT_MEMORY_MB;
        }
        for network in &mut resources.networks {
            network.canonicalize();
        }
        canonicalize_affinities(&mut self.affinities);
        let names = ServiceNames { job: group.job, group: group.group, task: Some(&self.name) };
        for service in &mut self.services {
            service.canonicalize(&names);
        }
        for template in &mut self.templates {
            template.canonicalize();
        }
        for artifact in &mut self.artifacts {
            if artifact.getter_mode.is_empty() {
                artifact.getter_mode = "any".into();
            }
            if artifact.relative_dest.is_empty() {
                artifact.relative_dest = "local/".into();
            }
        }
    }
}

impl Template {
    fn canonicalize(&mut self) {
        if self.change_mode.is_empty() {
            self.change_mode = "restart".into();
        }
        if self.splay.is_zero() {
            self.splay = 5 * SECOND;
        }
        if self.perms.is_empty() {
            self.perms = "0644".into();
        } else if self.perms.len() == 3 {
            self.perms = format!("0{}", self.perms);
        }
        if self.left_delim.is_empty() {
            self.left_delim = "{{".into();
        }
        if self.right_delim.is_empty() {
            self.right_delim = "}}".into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalize_applies_service_defaults_and_is_idempotent() {
        let mut job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        job.canonicalize();
        assert_eq!(job.name, "web");
        assert_eq!(job.datacenters, vec!["*"]);
        let group = &job.task_groups[0];
        assert_eq!(group.restart_policy.as_ref().unwrap().attempts, 2);
        assert!(group.reschedule_policy.as_ref().unwrap().unlimited);
        assert_eq!(group.migrate.as_ref().unwrap().max_parallel, 1);
        let task = &group.tasks[0];
        assert_eq!(task.resources.as_ref().unwrap().cpu, 100);
        assert_eq!(task.resources.as_ref().unwrap().memory_mb, 300);
        assert_eq!(task.kill_timeout, Some(Duration::from_secs(5)));
        let once = job.clone();
        job.canonicalize();
        assert_eq!(job, once);
    }

    #[test]
    fn batch_jobs_get_no_update_or_migrate() {
        let mut job = Job {
            id: "b".into(),
            job_type: JobType::Batch,
            task_groups: vec![TaskGroup { name: "g".into(), ..TaskGroup::default() }],
            ..Job::default()
        };
        job.canonicalize();
        let group = &job.task_groups[0];
        assert!(job.update.is_none());
        assert!(group.update.is_none());
        assert!(group.migrate.is_none());
        assert_eq!(group.reschedule_policy.as_ref().unwrap().attempts, 1);
        assert_eq!(group.restart_policy.as_ref().unwrap().attempts, 3);
    }

    #[test]
    fn service_names_default_and_substitute_placeholders() {
        let service = |name: &str| Service { name: name.into(), ..Service::default() };
        let mut job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                services: vec![service(""), service("${JOB}-${TASKGROUP}-x")],
                affinities: vec![Affinity {
                    ltarget: "${node.class}".into(),
                    ..Affinity::default()
                }],
                tasks: vec![Task {
                    name: "t".into(),
                    services: vec![
                        service(""),
                        service("${BASE}-${TASK}"),
                        service("${NOMAD_META_x}"),
                    ],
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        job.canonicalize();
        let group = &job.task_groups[0];
        let names: Vec<&str> = group.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["web-g", "web-g-x"]);
        let names: Vec<&str> = group.tasks[0].services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["web-g-t", "web-g-t-t", "${NOMAD_META_x}"]);
        assert_eq!(group.affinities[0].weight, 50);
    }

    #[test]
    fn durations_serialize_as_nanoseconds() {
        let task = Task { kill_timeout: Some(Duration::from_secs(5)), ..Task::default() };
        let json = serde_json::to_value(&task).unwrap();
        assert_eq!(json["KillTimeout"], 5_000_000_000i64);
        let back: Task = serde_json::from_value(json).unwrap();
        assert_eq!(back, task);
    }
}
