//! Nomad-compatible HCL2 job files: parsing, variables, evaluation, validation and diagnostics,
//! producing `model::Job`. This crate does no IO beyond reading the job and var files it is
//! given, and knows nothing of servers, scheduling or how drivers run tasks.
//!
//! The pipeline is: typographic-quote check → hcl-edit parse (keeps spans) → variables and locals
//! → decode the `job` block into the model while validating → driver config checks →
//! `Job::canonicalize`. Every problem becomes a [`Diagnostic`] with `file:line:col`; as many as
//! the parse tree allows are collected before returning.

mod decode;
mod diag;
mod drivers;
mod eval;
mod format;
mod funcs;
mod quotes;
mod vars;

pub use diag::{Diagnostic, Diagnostics};
pub use drivers::{validate_job as validate_job_drivers, DRIVERS, POT_KEYS, RAW_EXEC_KEYS};

use diag::Source;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Inputs beyond the job file itself.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// `-var name=value` pairs, in command-line order (later ones win).
    pub vars: Vec<(String, String)>,
    /// `-var-file` paths, in order (later ones win). `.json` files are read as JSON objects,
    /// anything else as HCL `name = value` lines.
    pub var_files: Vec<PathBuf>,
    /// The process environment; `NOMAD_VAR_<name>` entries set variables.
    pub env: BTreeMap<String, String>,
    /// Allows the filesystem functions (`file`, `fileexists`, `basename`, `dirname`).
    pub allow_fs: bool,
}

/// Reads and parses a job file; see [`parse_str`].
pub fn parse_file(path: &Path, opts: &ParseOptions) -> Result<model::Job, Diagnostics> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::without_position(&name, format!("cannot read job file: {e}"))])
    })?;
    parse_str(&name, &text, opts)
}

/// Parses, validates and canonicalizes a job file: the result has every Nomad default filled in.
///
/// ```
/// let src = r#"
/// job "web" {
///   group "g" {
///     network {
///       port "http" {}
///     }
///     task "t" {
///       driver = "raw_exec"
///       config {
///         command = "/bin/httpd"
///         args    = ["-p", "${NOMAD_PORT_http}"]
///       }
///     }
///   }
/// }
/// "#;
/// let job = jobspec::parse_str("web.nomad", src, &jobspec::ParseOptions::default()).unwrap();
/// assert_eq!(job.datacenters, vec!["*"]);
/// // Runtime interpolation is kept for the client to fill in.
/// assert_eq!(job.task_groups[0].tasks[0].config["args"][1], "${NOMAD_PORT_http}");
///
/// let err = jobspec::parse_str("bad.nomad", "job \"x\" {\n  priorty = 5\n}\n", &Default::default())
///     .unwrap_err();
/// let typo = err.0.iter().find(|d| d.message.contains("priorty")).unwrap();
/// assert_eq!((typo.line, typo.col), (2, 3));
/// assert!(err.to_string().contains("did you mean \"priority\"?"));
/// ```
pub fn parse_str(
    file_name: &str,
    source: &str,
    opts: &ParseOptions,
) -> Result<model::Job, Diagnostics> {
    let mut job = parse_str_raw(file_name, source, opts)?;
    job.canonicalize();
    Ok(job)
}

/// Parses and validates a job file without applying Nomad's defaults (what
/// `/v1/jobs/parse?canonicalize=false` returns). Defaults that only exist relative to what the
/// file says (count, restart merging, check_restart grace) are still applied.
pub fn parse_str_raw(
    file_name: &str,
    source: &str,
    opts: &ParseOptions,
) -> Result<model::Job, Diagnostics> {
    let src = Source::new(file_name, source);
    let quote_diags = quotes::check(&src);
    if !quote_diags.is_empty() {
        return Err(Diagnostics(quote_diags));
    }
    let body = hcl_edit::parser::parse_body(source)
        .map_err(|e| Diagnostics(vec![parse_error(&src, &e)]))?;
    let mut diags = Vec::new();
    let resolved = vars::resolve(&src, &body, opts, &mut diags);
    let mut ev = eval::Evaluator::new(source, opts.allow_fs);
    ev.set_vars(resolved.vars);
    ev.set_locals(resolved.locals);
    ev.set_failed(resolved.failed);
    let mut cx = decode::Cx { src: &src, ev, diags, group_ports: Vec::new() };
    let job = decode::top_level(&mut cx, &body).map(|b| decode::job(&mut cx, &b));
    let mut diags = cx.diags;
    match job {
        Some(job) if diags.is_empty() => Ok(job),
        _ => {
            // Positionless diagnostics (from -var or the environment) first, then file order.
            diags.sort_by(|a, b| {
                (a.file != file_name, a.line, a.col).cmp(&(b.file != file_name, b.line, b.col))
            });
            diags.dedup();
            Err(Diagnostics(diags))
        }
    }
}

/// Formats a job file canonically, like `nomad fmt`: two-space indentation, `=` aligned within
/// runs of consecutive single-line attributes, one space around operators and after commas,
/// comments kept. Formatting formatted output changes nothing.
///
/// ```
/// let out = jobspec::format_source("x.nomad", "job \"x\" {\n\ttype=\"batch\"\n  priority = 5 # low\n}\n").unwrap();
/// assert_eq!(out, "job \"x\" {\n  type     = \"batch\"\n  priority = 5 # low\n}\n");
/// ```
pub fn format_source(file_name: &str, source: &str) -> Result<String, Diagnostics> {
    let src = Source::new(file_name, source);
    let quote_diags = quotes::check(&src);
    if !quote_diags.is_empty() {
        return Err(Diagnostics(quote_diags));
    }
    let body = hcl_edit::parser::parse_body(source)
        .map_err(|e| Diagnostics(vec![parse_error(&src, &e)]))?;
    Ok(format::body(&body, source))
}

/// Turns an hcl-edit syntax error into a diagnostic, with a hint for the common mistakes.
pub(crate) fn parse_error(src: &Source, err: &hcl_edit::parser::Error) -> Diagnostic {
    let loc = err.location();
    let offset = loc.offset().min(src.text.len());
    let (line, col) = (loc.line(), loc.column());
    let raw = err.message();
    let before = src.text[..offset].trim_end();
    let after = &src.text[offset..];
    let line_text = err.line();
    let message_hint = |m: &str, h: String| (m.to_string(), Some(h));
    let (message, hint) = if raw.contains("redefined attribute") {
        let name: String =
            after.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-').collect();
        message_hint(
            &format!("attribute \"{name}\" is set twice in this block"),
            "remove one of the two; an attribute can be set only once".to_string(),
        )
    } else if raw.contains("expected `]`") && !before.ends_with(',') && !before.ends_with('[') {
        let (prev_line, _) = src.position(before.len().saturating_sub(1));
        message_hint(
            "missing comma between list elements",
            format!(
                "separate list elements with commas: add `,` after the element on line {prev_line}"
            ),
        )
    } else if in_interpolation(&src.text[..offset]) {
        message_hint(
            "invalid expression inside ${ ... }",
            "`${ ... }` holds an HCL expression; to write a literal `${` (for a shell or a template), escape it as `$${`".to_string(),
        )
    } else if has_unterminated_string(line_text) {
        message_hint(
            "unterminated string",
            "close the string with a straight quote (\") on the same line; use a <<EOT heredoc for multi-line text".to_string(),
        )
    } else if after.trim().is_empty() {
        message_hint(
            "unexpected end of file: a block or bracket is not closed",
            "add the missing `}` (or `]`) at the end; every `{` needs a matching `}`".to_string(),
        )
    } else if raw.starts_with("invalid expression") {
        message_hint(
            "expected a value",
            "write a string (\"...\"), number, bool, list ([...]), map ({...}) or expression after `=`".to_string(),
        )
    } else if raw.contains("expected `}`") && before.ends_with(',') {
        message_hint(
            "unexpected comma",
            "attributes in a block are separated by new lines, not commas".to_string(),
        )
    } else {
        (format!("syntax error: {raw}"), None)
    };
    let mut d = src.diag_at(line, col, message);
    d.hint = hint;
    if raw.contains("redefined attribute") {
        // Underline the whole repeated name, not just its first character.
        d.width = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .count()
            .max(1);
    }
    d
}

/// True when a line opens a string it does not close (escapes and comments considered).
fn has_unterminated_string(line: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for c in line.chars() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (false, '"') => in_string = true,
            (false, '#') => break,
            _ => {}
        }
    }
    in_string
}

/// True when the text ends inside an open `${` on its last line (escaped `$${` does not count).
fn in_interpolation(before: &str) -> bool {
    let line = before.rsplit('\n').next().unwrap_or_default();
    match line.rfind("${") {
        Some(open) => {
            let escaped = open > 0 && line[..open].ends_with('$');
            !escaped && !line[open..].contains('}')
        }
        None => false,
    }
}
