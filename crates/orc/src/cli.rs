//! Top-level command definitions and dispatch for the `orc` binary.
//!
//! Exit codes follow Nomad's CLI: 0 on success, 1 on any error (invalid input, failed command,
//! no server answering), and clap's 2 for unusable arguments. `run` exits 2 when placements
//! failed; `plan` exits 0 (no changes), 1 (allocations would change) or 255 (error).

use crate::conn::ReadArgs;
use crate::{
    alloc_client_cmd, alloc_cmd, flags, fmt_cmd, job_cmd, job_remote, node_cmd, operator_cmd,
    server_cmd, service_cmd,
};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// orc: a small orchestrator for FreeBSD jail hosts that speaks Nomad's job files and API.
#[derive(Debug, Parser)]
#[command(name = "orc", version, about, long_about = None, disable_help_subcommand = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with jobs: validate, run, plan, status, allocs, history, inspect, scale, stop.
    #[command(subcommand)]
    Job(JobCommand),
    /// Alias for `orc job run`.
    Run(job_cmd::RunArgs),
    /// Alias for `orc job plan`.
    Plan(job_remote::PlanArgs),
    /// Alias for `orc job stop`.
    Stop(job_remote::StopArgs),
    /// Inspect allocations.
    #[command(subcommand)]
    Alloc(AllocCommand),
    /// Inspect evaluations.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Inspect and manage client nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Inspect the servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Read orc's own service catalogue.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Cluster operations.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Run a server (with -dev: one in-memory server on 127.0.0.1) with its HTTP API.
    Agent(server_cmd::AgentArgs),
    /// Print a shell completion script: orc completion bash|zsh|fish|elvish|powershell.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Alias for `orc job validate`.
    Validate(job_cmd::ValidateArgs),
    /// Rewrite job files in canonical format.
    Fmt(fmt_cmd::FmtArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Check job files for errors without submitting them.
    Validate(job_cmd::ValidateArgs),
    /// Run a job (with -output: print its canonical API JSON instead).
    Run(job_cmd::RunArgs),
    /// Show what running a job would change, without changing anything.
    Plan(job_remote::PlanArgs),
    /// List jobs, or show one job's status and allocations.
    Status(job_remote::StatusArgs),
    /// List a job's allocations.
    Allocs(job_remote::JobArgs),
    /// Show a job's versions.
    History(job_remote::JobArgs),
    /// Print a job as the API's JSON.
    Inspect(job_remote::JobArgs),
    /// Change a task group's count.
    Scale(job_remote::ScaleArgs),
    /// Stop a job (with -purge: remove it).
    Stop(job_remote::StopArgs),
}

#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show one allocation.
    Status(alloc_cmd::StatusArgs),
    /// Print (or follow with -f) a task's stdout or stderr.
    Logs(alloc_client_cmd::LogsArgs),
    /// Restart an allocation's tasks in place.
    Restart(alloc_client_cmd::RestartArgs),
    /// Send a signal to an allocation's tasks.
    Signal(alloc_client_cmd::SignalArgs),
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Show one evaluation.
    Status(alloc_cmd::StatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes, or show one node.
    Status(node_cmd::StatusArgs),
    /// Start or stop draining a node.
    Drain(node_cmd::DrainArgs),
    /// Allow or forbid new work on a node.
    Eligibility(node_cmd::EligibilityArgs),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List the registered services.
    List(service_cmd::ListArgs),
    /// Show the instances of one service, with their health.
    Info(service_cmd::InfoArgs),
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// List the servers and their liveness.
    Members(ReadArgs),
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Raft operations.
    #[command(subcommand)]
    Raft(RaftCommand),
}

#[derive(Debug, Subcommand)]
pub enum RaftCommand {
    /// List the Raft peers.
    ListPeers(ReadArgs),
    /// Remove a (dead) server from the Raft configuration.
    RemovePeer(RemovePeerArgs),
}

/// `orc operator raft remove-peer -peer-address=IP:port` (or `-peer-id=ID`).
#[derive(Debug, Clone, Default, Args)]
pub struct RemovePeerArgs {
    #[command(flatten)]
    pub api: crate::conn::ApiArgs,
    /// The RPC address of the server to remove.
    #[arg(long = "peer-address", value_name = "IP:PORT")]
    pub peer_address: Option<String>,
    /// The Raft ID of the server to remove.
    #[arg(long = "peer-id", value_name = "ID")]
    pub peer_id: Option<String>,
}

/// Flags shared by every command that reads a job file.
#[derive(Debug, Clone, Default, Args)]
pub struct VarArgs {
    /// Set an HCL2 input variable: -var 'name=value'. Repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Read HCL2 input variables from a file. Repeatable.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

impl VarArgs {
    /// Builds the parse options: `-var` pairs, var files, and the process environment (for
    /// `NOMAD_VAR_<name>`).
    pub fn parse_options(&self) -> anyhow::Result<jobspec::ParseOptions> {
        let mut vars = Vec::with_capacity(self.vars.len());
        for v in &self.vars {
            let Some((name, value)) = v.split_once('=') else {
                anyhow::bail!("-var {v:?} must have the form name=value");
            };
            vars.push((name.trim().to_string(), value.to_string()));
        }
        Ok(jobspec::ParseOptions {
            vars,
            var_files: self.var_files.clone(),
            env: std::env::vars().collect(),
            ..jobspec::ParseOptions::default()
        })
    }
}

/// Runs the CLI with the given argv (argv[0] included) and returns the process exit code.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(flags::normalize(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = |ok: bool| u8::from(!ok);
    let result: anyhow::Result<u8> = match cli.command {
        Command::Job(JobCommand::Validate(a)) | Command::Validate(a) => {
            job_cmd::validate(&a).map(code)
        }
        Command::Job(JobCommand::Run(a)) | Command::Run(a) => job_cmd::run(&a),
        Command::Job(JobCommand::Plan(a)) | Command::Plan(a) => {
            // `nomad job plan` reserves 1 for "changes"; its errors exit 255.
            return match job_remote::plan(&a) {
                Ok(c) => ExitCode::from(c),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    ExitCode::from(255)
                }
            };
        }
        Command::Job(JobCommand::Status(a)) => job_remote::status(&a),
        Command::Job(JobCommand::Allocs(a)) => job_remote::allocs(&a),
        Command::Job(JobCommand::History(a)) => job_remote::history(&a),
        Command::Job(JobCommand::Inspect(a)) => job_remote::inspect(&a),
        Command::Job(JobCommand::Scale(a)) => job_remote::scale(&a),
        Command::Job(JobCommand::Stop(a)) | Command::Stop(a) => job_remote::stop(&a),
        Command::Alloc(AllocCommand::Status(a)) => alloc_cmd::alloc_status(&a),
        Command::Alloc(AllocCommand::Logs(a)) => alloc_client_cmd::logs(&a),
        Command::Alloc(AllocCommand::Restart(a)) => alloc_client_cmd::restart(&a),
        Command::Alloc(AllocCommand::Signal(a)) => alloc_client_cmd::signal(&a),
        Command::Eval(EvalCommand::Status(a)) => alloc_cmd::eval_status(&a),
        Command::Node(NodeCommand::Status(a)) => node_cmd::status(&a),
        Command::Node(NodeCommand::Drain(a)) => node_cmd::drain(&a),
        Command::Node(NodeCommand::Eligibility(a)) => node_cmd::eligibility(&a),
        Command::Server(ServerCommand::Members(a)) => operator_cmd::members(&a),
        Command::Service(ServiceCommand::List(a)) => service_cmd::list(&a),
        Command::Service(ServiceCommand::Info(a)) => service_cmd::info(&a),
        Command::Operator(OperatorCommand::Raft(RaftCommand::ListPeers(a))) => {
            operator_cmd::list_peers(&a)
        }
        Command::Operator(OperatorCommand::Raft(RaftCommand::RemovePeer(a))) => {
            operator_cmd::remove_peer(&a)
        }
        Command::Agent(a) => server_cmd::run_agent(&a).map(|()| 0),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "orc", &mut std::io::stdout());
            Ok(0)
        }
        Command::Fmt(a) => fmt_cmd::fmt(&a).map(code),
        Command::Version => {
            println!("orc v{}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    };
    match result {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
