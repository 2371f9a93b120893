//! `orc job validate` and `orc job run`: read job files and report, or print their API JSON.
//!
//! Parsing, evaluation and validation are `jobspec`'s; this module only reads files, prints and
//! picks exit codes.

use crate::cli::VarArgs;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub vars: VarArgs,
    /// Job files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the job as canonical API JSON ({"Job": {...}}) instead of submitting it.
    #[arg(long)]
    pub output: bool,
    #[command(flatten)]
    pub api: crate::conn::ApiArgs,
    /// Return after submitting instead of monitoring the evaluation.
    #[arg(long)]
    pub detach: bool,
    /// Submit only if the job's modify index is still this one (from `orc plan`).
    #[arg(long = "check-index", value_name = "INDEX")]
    pub check_index: Option<u64>,
    /// Show full IDs.
    #[arg(long)]
    pub verbose: bool,
    #[command(flatten)]
    pub vars: VarArgs,
    /// The job file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Validates every file, reporting every error of every file; true when all are valid.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<bool> {
    let opts = args.vars.parse_options()?;
    let mut all_valid = true;
    for file in &args.files {
        match jobspec::parse_file(file, &opts) {
            Ok(_) if args.files.len() == 1 => println!("Job validation successful"),
            Ok(_) => println!("{}: Job validation successful", file.display()),
            Err(diagnostics) => {
                all_valid = false;
                eprintln!("{diagnostics}");
                eprintln!("Job validation failed: {}", file.display());
            }
        }
    }
    Ok(all_valid)
}

/// `orc job run`: parses locally, then submits and monitors (or, with `-output`, prints the
/// API JSON). Returns the exit code.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let opts = args.vars.parse_options()?;
    let job = match jobspec::parse_file(&args.file, &opts) {
        Ok(job) => job,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            return Ok(1);
        }
    };
    if !args.output {
        return crate::job_remote::submit(
            &args.api,
            &job,
            args.check_index,
            args.detach,
            args.verbose,
        );
    }
    write_stdout(&to_pretty_json(&serde_json::json!({ "Job": job }))?)?;
    Ok(0)
}

/// Writes a line to stdout; a closed pipe (`orc ... | head`) is not an error.
fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// JSON indented with four spaces, as `nomad job run -output` prints it.
fn to_pretty_json(value: &serde_json::Value) -> anyhow::Result<String> {
    use serde::Serialize;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}
