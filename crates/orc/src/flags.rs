//! Nomad-style flags: Go's `flag` package accepts `-name` and `-name=value` as well as `--name`.
//!
//! Operators type `orc job run -output nginx.job` and `orc agent -dev` from muscle memory, so
//! every single-dash word of two or more letters is rewritten to its double-dash form before clap
//! sees it. Single-letter flags (`-h`) and negative numbers (`-1`) are left alone, and nothing
//! after a literal `--` is touched.

use std::ffi::OsString;

/// Rewrites `-word` and `-word=value` to `--word` and `--word=value`.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest_is_positional = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest_is_positional {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_is_positional = true;
            out.push(arg);
            continue;
        }
        if is_go_style_long_flag(s) {
            out.push(OsString::from(format!("-{s}")));
        } else {
            out.push(arg);
        }
    }
    out
}

fn is_go_style_long_flag(s: &str) -> bool {
    let Some(body) = s.strip_prefix('-') else { return false };
    if body.starts_with('-') {
        return false;
    }
    let name = body.split('=').next().unwrap_or("");
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn rewrites_go_style_flags_only() {
        assert_eq!(
            norm(&["orc", "job", "run", "-output", "-var=a=b", "-h", "-1", "--check", "x.job"]),
            ["orc", "job", "run", "--output", "--var=a=b", "-h", "-1", "--check", "x.job"]
        );
        assert_eq!(norm(&["orc", "fmt", "--", "-weird.job"]), ["orc", "fmt", "--", "-weird.job"]);
    }
}
