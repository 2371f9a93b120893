//! `orc fmt`: rewrite job files in canonical HCL layout, or check that they already are.
//!
//! The formatting itself is `jobspec::format_source`; this module reads and writes files.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Do not write; exit 1 if any file is not canonically formatted.
    #[arg(long)]
    pub check: bool,
    /// Files to format.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Formats each file in place (or checks it); true when every file was already formatted or was
/// written successfully.
pub fn fmt(args: &FmtArgs) -> anyhow::Result<bool> {
    let mut ok = true;
    for file in &args.files {
        let source = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        let name = file.display().to_string();
        let formatted = match jobspec::format_source(&name, &source) {
            Ok(f) => f,
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                ok = false;
                continue;
            }
        };
        if formatted == source {
            continue;
        }
        if args.check {
            eprintln!("{name}: not formatted");
            ok = false;
        } else {
            std::fs::write(file, formatted)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
            println!("{name}");
        }
    }
    Ok(ok)
}
