//! Detects typographic quotes (“ ” ‘ ’ and friends) pasted from PDFs and word processors, before
//! the HCL parser sees them. It only reports; it never rewrites the user's file.

use crate::diag::{Diagnostic, Source};

/// Characters that look like a quote to a human but are not one to HCL, with their Unicode names.
const LOOKALIKES: &[(char, &str)] = &[
    ('\u{201C}', "LEFT DOUBLE QUOTATION MARK"),
    ('\u{201D}', "RIGHT DOUBLE QUOTATION MARK"),
    ('\u{201E}', "DOUBLE LOW-9 QUOTATION MARK"),
    ('\u{201F}', "DOUBLE HIGH-REVERSED-9 QUOTATION MARK"),
    ('\u{2033}', "DOUBLE PRIME"),
    ('\u{00AB}', "LEFT-POINTING DOUBLE ANGLE QUOTATION MARK"),
    ('\u{00BB}', "RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK"),
    ('\u{FF02}', "FULLWIDTH QUOTATION MARK"),
    ('\u{2018}', "LEFT SINGLE QUOTATION MARK"),
    ('\u{2019}', "RIGHT SINGLE QUOTATION MARK"),
    ('\u{201A}', "SINGLE LOW-9 QUOTATION MARK"),
    ('\u{201B}', "SINGLE HIGH-REVERSED-9 QUOTATION MARK"),
    ('\u{2032}', "PRIME"),
];

/// At most this many lines are reported; a pasted file has quotes on nearly every line and the
/// first few are enough to recognise the problem.
const MAX_REPORTED_LINES: usize = 5;

/// One diagnostic per affected line (the first lookalike on it), outside comments.
///
/// Lookalikes inside a correctly quoted string are legitimate text (`"it’s"`), so they are only
/// reported where HCL would see them as syntax: outside straight-quoted strings and comments.
pub(crate) fn check(src: &Source) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut affected_lines = 0usize;
    let mut line_start = 0usize;
    // Heredoc bodies are free text (often templates) where any character is fine.
    let mut heredoc: Option<String> = None;
    for line in src.text.split_inclusive('\n') {
        if let Some(delim) = &heredoc {
            if line.trim() == delim {
                heredoc = None;
            }
            line_start += line.len();
            continue;
        }
        let (found, opens) = scan_line(line);
        heredoc = opens;
        if let Some((offset, ch, name)) = found {
            affected_lines += 1;
            if out.len() < MAX_REPORTED_LINES {
                let at = line_start + offset;
                let d = src
                    .diag(&(at..at + ch.len_utf8()), format!("typographic quote U+{:04X} {name} {ch} is not valid HCL", ch as u32))
                    .with_hint(format!(
                        "replace typographic quotes with straight ASCII quotes (\"), e.g. `{}`; this usually comes from copying a job out of a PDF or a word processor",
                        straighten(line.trim())
                    ));
                out.push(d);
            }
        }
        line_start += line.len();
    }
    if affected_lines > MAX_REPORTED_LINES {
        if let Some(last) = out.last_mut() {
            let more = affected_lines - MAX_REPORTED_LINES;
            let hint = last.hint.take().unwrap_or_default();
            last.hint = Some(format!("{hint} ({more} more lines have typographic quotes)"));
        }
    }
    out
}

/// Straight-quote version of a line, to show the fix.
fn straighten(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => '\'',
            c if LOOKALIKES.iter().any(|(l, _)| *l == c) => '"',
            c => c,
        })
        .collect()
}

type Lookalike = (usize, char, &'static str);

/// The first lookalike outside strings and comments, and the delimiter of a heredoc the line opens.
fn scan_line(line: &str) -> (Option<Lookalike>, Option<String>) {
    let mut found = None;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '#' => break,
            '/' if matches!(chars.peek(), Some((_, '/'))) => break,
            '<' if line[i..].starts_with("<<") => {
                let rest = line[i + 2..].trim_start_matches('-');
                let delim: String =
                    rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !delim.is_empty() {
                    return (found, Some(delim));
                }
            }
            _ => {
                if found.is_none() {
                    if let Some((_, name)) = LOOKALIKES.iter().find(|(l, _)| *l == c) {
                        found = Some((i, c, *name));
                    }
                }
            }
        }
    }
    (found, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_first_lookalike_per_line_with_its_name() {
        let text = "job “web” {\n  type = ”service”\n  name = \"it’s fine\"\n  # “comment”\n}\n";
        let src = Source::new("j", text);
        let diags = check(&src);
        let got: Vec<_> = diags.iter().map(|d| (d.line, d.col, d.message.clone())).collect();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    5,
                    "typographic quote U+201C LEFT DOUBLE QUOTATION MARK “ is not valid HCL"
                        .to_string()
                ),
                (
                    2,
                    10,
                    "typographic quote U+201D RIGHT DOUBLE QUOTATION MARK ” is not valid HCL"
                        .to_string()
                ),
            ]
        );
        assert!(diags[0].hint.as_deref().unwrap().contains("`job \"web\" {`"));
    }

    #[test]
    fn ignores_heredoc_bodies() {
        let text = "data = <<EOT\nit’s “fine”\nEOT\nx = “y”\n";
        let diags = check(&Source::new("j", text));
        assert_eq!(diags.len(), 1);
        assert_eq!((diags[0].line, diags[0].col), (4, 5));
    }

    #[test]
    fn caps_the_number_of_reported_lines() {
        let text = "a = ‘x’\n".repeat(9);
        let diags = check(&Source::new("j", &text));
        assert_eq!(diags.len(), MAX_REPORTED_LINES);
        assert!(diags[4]
            .hint
            .as_deref()
            .unwrap()
            .ends_with("(4 more lines have typographic quotes)"));
    }
}
