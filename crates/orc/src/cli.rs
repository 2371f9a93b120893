//! Top-level command definitions and dispatch for the `orc` binary.
//!
//! Exit codes follow Nomad's CLI: 0 on success, 1 on any error (invalid input, failed command),
//! and clap's 2 for unusable arguments.

use crate::{flags, fmt_cmd, job_cmd};
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
    /// Work with jobs: validate, run.
    #[command(subcommand)]
    Job(JobCommand),
    /// Alias for `orc job run`.
    Run(job_cmd::RunArgs),
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
    let result = match cli.command {
        Command::Job(JobCommand::Validate(a)) | Command::Validate(a) => job_cmd::validate(&a),
        Command::Job(JobCommand::Run(a)) | Command::Run(a) => job_cmd::run(&a),
        Command::Fmt(a) => fmt_cmd::fmt(&a),
        Command::Version => {
            println!("orc v{}", env!("CARGO_PKG_VERSION"));
            Ok(true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
