//! POSIX `getopts` as pot's shell scripts use it; it owns option parsing only and knows no subcommand.
//!
//! Semantics kept on purpose: options may be clustered (`-vq`), an option's argument may be glued
//! (`-pname`) or the next word, parsing stops at the first operand or at `--`, and an unknown option
//! or a missing argument is an error (pot then prints its help and exits 1).

/// One parsed option: its letter and, for options declared with `:`, its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub letter: char,
    pub arg: Option<String>,
}

/// Why parsing stopped early. Pot treats both the same way (help text, exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetoptsError {
    Unknown(char),
    MissingArgument(char),
}

impl std::fmt::Display for GetoptsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetoptsError::Unknown(c) => write!(f, "Illegal option -{c}"),
            GetoptsError::MissingArgument(c) => write!(f, "Option -{c} requires an argument"),
        }
    }
}

/// Parses `args` against a getopts spec such as `"hvp:U:"`.
/// Returns the options in order and the operands that follow them.
pub fn parse(spec: &str, args: &[String]) -> Result<(Vec<Opt>, Vec<String>), GetoptsError> {
    let mut opts = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        if word == "--" {
            i += 1;
            break;
        }
        if !word.starts_with('-') || word == "-" {
            break;
        }
        let letters: Vec<char> = word[1..].chars().collect();
        let mut j = 0;
        while j < letters.len() {
            let c = letters[j];
            let takes_arg = match spec_lookup(spec, c) {
                Some(takes_arg) => takes_arg,
                None => return Err(GetoptsError::Unknown(c)),
            };
            if takes_arg {
                let rest: String = letters[j + 1..].iter().collect();
                let arg = if !rest.is_empty() {
                    rest
                } else {
                    i += 1;
                    match args.get(i) {
                        Some(next) => next.clone(),
                        None => return Err(GetoptsError::MissingArgument(c)),
                    }
                };
                opts.push(Opt { letter: c, arg: Some(arg) });
                break;
            }
            opts.push(Opt { letter: c, arg: None });
            j += 1;
        }
        i += 1;
    }
    Ok((opts, args[i.min(args.len())..].to_vec()))
}

/// `Some(true)` if `c` takes an argument, `Some(false)` if it is a flag, `None` if unknown.
fn spec_lookup(spec: &str, c: char) -> Option<bool> {
    if c == ':' {
        return None;
    }
    let chars: Vec<char> = spec.chars().collect();
    let pos = chars.iter().position(|&s| s == c)?;
    Some(chars.get(pos + 1) == Some(&':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn clustered_glued_and_separate_arguments() {
        let (opts, rest) = parse("hvp:U:", &words("-vv -pweb -U file:///x op1 -v")).unwrap();
        let letters: Vec<char> = opts.iter().map(|o| o.letter).collect();
        assert_eq!(letters, vec!['v', 'v', 'p', 'U']);
        assert_eq!(opts[2].arg.as_deref(), Some("web"));
        assert_eq!(opts[3].arg.as_deref(), Some("file:///x"));
        assert_eq!(rest, words("op1 -v"));
    }

    #[test]
    fn errors_for_unknown_and_missing() {
        assert_eq!(parse("hvp:", &words("-x")), Err(GetoptsError::Unknown('x')));
        assert_eq!(parse("hvp:", &words("-v -p")), Err(GetoptsError::MissingArgument('p')));
        assert_eq!(parse("hv:", &words("-:")), Err(GetoptsError::Unknown(':')));
    }

    #[test]
    fn double_dash_ends_options_and_argument_may_look_like_an_option() {
        let (opts, rest) = parse("p:", &words("-p -v -- -q")).unwrap();
        assert_eq!(opts[0].arg.as_deref(), Some("-v"));
        assert_eq!(rest, words("-q"));
    }
}
