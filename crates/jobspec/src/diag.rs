//! Diagnostics: positions (file:line:col), the caret rendering users see, and the source map that
//! turns byte spans into them. This module decides nothing about what is an error; the parser,
//! evaluator and validators do.

use std::fmt;
use std::ops::Range;

/// A byte range into the job file's source text.
pub(crate) type Span = Range<usize>;

/// One problem found in a job file, with the position of the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name as given to the parser (or the var file's path).
    pub file: String,
    /// 1-based line; 0 when the problem has no position (e.g. the file could not be read).
    pub line: usize,
    /// 1-based column, counted in characters (not bytes).
    pub col: usize,
    /// What is wrong, in one line.
    pub message: String,
    /// How to fix it, when we know.
    pub hint: Option<String>,
    /// The whole source line `line` refers to (empty when `line` is 0).
    pub source_line: String,
    /// How many characters the caret underline spans (at least 1).
    pub width: usize,
}

impl Diagnostic {
    /// A diagnostic without a source position, for problems with the file as a whole.
    pub fn without_position(file: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            line: 0,
            col: 0,
            message: message.into(),
            hint: None,
            source_line: String::new(),
            width: 0,
        }
    }

    /// Adds or replaces the help text.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// Tabs are shown as this many spaces so the caret lines up under the right character.
const TAB_WIDTH: usize = 4;

fn expand_tabs(s: &str) -> String {
    s.replace('\t', &" ".repeat(TAB_WIDTH))
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if self.line == 0 {
            write!(f, "  --> {}", self.file)?;
            if let Some(hint) = &self.hint {
                write!(f, "\n   = help: {hint}")?;
            }
            return Ok(());
        }
        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        writeln!(f, "{pad}--> {}:{}:{}", self.file, self.line, self.col)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{number} | {}", expand_tabs(&self.source_line).trim_end())?;
        let before: String = self.source_line.chars().take(self.col.saturating_sub(1)).collect();
        let indent = expand_tabs(&before).chars().count();
        write!(f, "{pad} | {}{}", " ".repeat(indent), "^".repeat(self.width.max(1)))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = help: {hint}")?;
        }
        Ok(())
    }
}

/// Every diagnostic found in one job file; the error type of the public API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The first diagnostic (there is always at least one when returned as an error).
    pub fn first(&self) -> Option<&Diagnostic> {
        self.0.first()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n\n{} errors in {}", self.0.len(), self.0[0].file)?;
        }
        Ok(())
    }
}

/// A job file's text with a line index, to turn byte spans into diagnostics.
pub(crate) struct Source<'a> {
    pub file: &'a str,
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Source<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { file, text, line_starts }
    }

    /// 1-based line and character column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char(offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let col = self.text[self.line_starts[line]..offset].chars().count() + 1;
        (line + 1, col)
    }

    fn floor_char(&self, mut offset: usize) -> usize {
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    fn line_text(&self, line: usize) -> &'a str {
        let start = self.line_starts[line - 1];
        let end = self.line_starts.get(line).copied().unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// The source text of a span.
    pub fn slice(&self, span: &Span) -> &'a str {
        let start = self.floor_char(span.start.min(self.text.len()));
        let end = self.floor_char(span.end.min(self.text.len()));
        &self.text[start..end.max(start)]
    }

    /// A diagnostic underlining `span` (clipped to its first line).
    pub fn diag(&self, span: &Span, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.position(span.start);
        let source_line = self.line_text(line).to_string();
        let rest = source_line.chars().count().saturating_sub(col - 1);
        let wanted = self.slice(span).chars().take_while(|&c| c != '\n').count();
        Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            hint: None,
            source_line,
            width: wanted.min(rest).max(1),
        }
    }

    /// A diagnostic at a 1-based line and column (from the HCL parser).
    pub fn diag_at(&self, line: usize, col: usize, message: impl Into<String>) -> Diagnostic {
        let line = line.clamp(1, self.line_starts.len());
        let source_line = self.line_text(line).to_string();
        // Parsers report end-of-input one past the newline; the caret goes right after the text.
        let col = col.clamp(1, source_line.chars().count() + 1);
        Diagnostic {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            hint: None,
            source_line,
            width: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_not_bytes() {
        let src = Source::new("f", "a = 1\nb = “x”\n");
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        let quote = src.text.find('x').unwrap();
        assert_eq!(src.position(quote), (2, 6));
    }

    #[test]
    fn renders_caret_under_span_with_tabs_expanded() {
        let src = Source::new("j.nomad", "job {\n\tfoo = 1\n}\n");
        let d = src.diag(&(7..10), "unknown attribute \"foo\"").with_hint("valid keys are: bar");
        assert_eq!(
            d.to_string(),
            "error: unknown attribute \"foo\"\n --> j.nomad:2:2\n  |\n2 |     foo = 1\n  |     ^^^\n  = help: valid keys are: bar"
        );
    }
}
