//! Canonical formatting of job files (`orc fmt`), in the style of `nomad fmt`/hclwrite: two-space
//! indentation, `=` aligned within runs of consecutive attributes, normalised spacing in lists and
//! maps, comments and single blank lines kept. Strings, heredocs and other expressions are copied
//! byte for byte, so formatting never changes a value. It does not validate the job.

use hcl_edit::expr::{Array, Expression, Object, ObjectKey, ObjectValueTerminator};
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::{Decorate, Span};

const INDENT: &str = "  ";

/// One line-level piece of decor: a comment or a blank line.
#[derive(Debug, PartialEq)]
enum Trivia {
    Blank,
    Comment(String),
    /// A continuation line of a `/* */` comment, printed exactly as written.
    Raw(String),
}

/// Splits decor text into the comment that ends the current line (if any) and the comments and
/// blank lines on the following lines.
fn split_decor(text: &str) -> (Option<String>, Vec<Trivia>) {
    let mut segments = text.split('\n');
    let same_line = segments.next().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let rest: Vec<&str> = segments.collect();
    let mut out = Vec::new();
    let mut in_block_comment = false;
    for (i, seg) in rest.iter().enumerate() {
        let t = seg.trim();
        let is_last = i + 1 == rest.len();
        if in_block_comment {
            // Inside a /* */ comment the author's own layout is kept.
            out.push(Trivia::Raw(seg.trim_end().to_string()));
            in_block_comment = !t.contains("*/");
            continue;
        }
        if t.is_empty() {
            // The last segment is the indentation before the item itself.
            if !is_last && out.last() != Some(&Trivia::Blank) {
                out.push(Trivia::Blank);
            }
            continue;
        }
        in_block_comment = t.contains("/*") && !t[t.rfind("/*").unwrap_or(0)..].contains("*/");
        out.push(Trivia::Comment(t.to_string()));
    }
    (same_line, out)
}

fn has_comment(text: &str) -> bool {
    text.contains('#') || text.contains("//") || text.contains("/*")
}

struct Formatter<'s> {
    src: &'s str,
    out: String,
}

/// Formats a whole file.
pub(crate) fn body(b: &Body, src: &str) -> String {
    let mut f = Formatter { src, out: String::new() };
    f.body(b, 0);
    let (same, trailing) = split_decor(b.decor().suffix().map(|r| &**r).unwrap_or_default());
    if let Some(c) = same {
        f.push_trivia(&[Trivia::Comment(c)], 0);
    }
    f.push_trivia(&trailing, 0);
    let mut out = f.out.trim_end().to_string();
    out.push('\n');
    let trimmed_start = out.trim_start_matches('\n');
    trimmed_start.to_string()
}

impl<'s> Formatter<'s> {
    fn raw(&self, span: Option<std::ops::Range<usize>>) -> &'s str {
        span.and_then(|s| self.src.get(s)).unwrap_or_default()
    }

    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str(INDENT);
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn push_trivia(&mut self, trivia: &[Trivia], depth: usize) {
        for t in trivia {
            match t {
                Trivia::Blank => {
                    if !self.out.is_empty()
                        && !self.out.ends_with("{\n")
                        && !self.out.ends_with("\n\n")
                    {
                        self.out.push('\n');
                    }
                }
                Trivia::Comment(c) => self.line(depth, c),
                Trivia::Raw(text) => {
                    self.out.push_str(text);
                    self.out.push('\n');
                }
            }
        }
    }

    /// Appends a comment to the line just written.
    fn append_to_last_line(&mut self, comment: &str) {
        if self.out.ends_with('\n') {
            self.out.pop();
            self.out.push(' ');
            self.out.push_str(comment);
            self.out.push('\n');
        }
    }

    fn body(&mut self, b: &Body, depth: usize) {
        let structures: Vec<&Structure> = b.iter().collect();
        let mut i = 0;
        while i < structures.len() {
            // A run: consecutive attributes with nothing but the line break between them.
            let mut end = i + 1;
            if matches!(structures[i], Structure::Attribute(_)) {
                while end < structures.len() {
                    let Structure::Attribute(a) = structures[end] else { break };
                    let prefix = a.decor().prefix().map(|r| &**r).unwrap_or_default();
                    let (_, pre) = split_decor(&format!("\n{prefix}"));
                    if !pre.is_empty() || self.multiline_attr(structures[end - 1]) {
                        break;
                    }
                    end += 1;
                }
            }
            let width = structures[i..end]
                .iter()
                .filter_map(|s| match s {
                    Structure::Attribute(a) => Some(a.key.as_str().chars().count()),
                    Structure::Block(_) => None,
                })
                .max()
                .unwrap_or(0);
            for s in &structures[i..end] {
                // A structure's decor starts at the beginning of its first line.
                let prefix = s.decor().prefix().map(|r| &**r).unwrap_or_default();
                let (_, pre) = split_decor(&format!("\n{prefix}"));
                self.push_trivia(&pre, depth);
                match s {
                    Structure::Attribute(a) => {
                        let value = self.expr(&a.value, depth);
                        let key = a.key.as_str();
                        let pad = " ".repeat(width - key.chars().count());
                        self.line(depth, &format!("{key}{pad} = {value}"));
                    }
                    Structure::Block(blk) => self.block(blk, depth),
                }
                let suffix = s.decor().suffix().map(|r| &**r).unwrap_or_default();
                if has_comment(suffix) {
                    self.append_to_last_line(suffix.trim());
                }
            }
            i = end;
        }
    }

    fn multiline_attr(&self, s: &Structure) -> bool {
        match s {
            Structure::Attribute(a) => self.expr(&a.value, 0).contains('\n'),
            Structure::Block(_) => true,
        }
    }

    fn block(&mut self, b: &Block, depth: usize) {
        let mut head = b.ident.as_str().to_string();
        for label in &b.labels {
            head.push(' ');
            let raw = self.raw(label.span());
            head.push_str(if raw.is_empty() { label.as_str() } else { raw });
        }
        let open = b.body.decor().prefix().map(|r| &**r).unwrap_or_default();
        let close = b.body.decor().suffix().map(|r| &**r).unwrap_or_default();
        if b.body.is_empty() && !has_comment(open) && !has_comment(close) {
            self.line(depth, &format!("{head} {{}}"));
            return;
        }
        if b.body.prefer_oneline() && b.body.len() == 1 && !has_comment(open) && !has_comment(close)
        {
            if let Some(Structure::Attribute(a)) = b.body.get(0) {
                let value = self.expr(&a.value, depth + 1);
                if !value.contains('\n') {
                    self.line(depth, &format!("{head} {{ {} = {value} }}", a.key.as_str()));
                    return;
                }
            }
        }
        let (same, pre) = split_decor(open);
        match same {
            Some(c) => self.line(depth, &format!("{head} {{ {c}")),
            None => self.line(depth, &format!("{head} {{")),
        }
        self.push_trivia(&pre, depth + 1);
        self.body(&b.body, depth + 1);
        let (same, trailing) = split_decor(close);
        if let Some(c) = same {
            self.line(depth + 1, &c);
        }
        let trailing: Vec<Trivia> = trailing.into_iter().filter(|t| *t != Trivia::Blank).collect();
        self.push_trivia(&trailing, depth + 1);
        // A blank line right before the closing brace is dropped.
        while self.out.ends_with("\n\n") {
            self.out.pop();
        }
        self.line(depth, "}");
    }

    fn expr(&self, e: &Expression, depth: usize) -> String {
        match e {
            Expression::Array(a) => self.array(a, depth),
            Expression::Object(o) => self.object(o, depth),
            other => self.raw(other.span()).to_string(),
        }
    }

    fn array(&self, a: &Array, depth: usize) -> String {
        if a.is_empty() {
            return "[]".into();
        }
        let decor_texts: Vec<&str> = a
            .iter()
            .flat_map(|e| [e.decor().prefix(), e.decor().suffix()])
            .map(|r| r.map(|r| &**r).unwrap_or_default())
            .chain(std::iter::once(&**a.trailing()))
            .collect();
        let multiline = decor_texts.iter().any(|t| t.contains('\n') || has_comment(t));
        if !multiline {
            let items: Vec<String> = a.iter().map(|e| self.expr(e, depth)).collect();
            return format!("[{}]", items.join(", "));
        }
        let inner = INDENT.repeat(depth + 1);
        let mut lines: Vec<String> = Vec::new();
        let n = a.len();
        for (i, e) in a.iter().enumerate() {
            let (same, pre) = split_decor(e.decor().prefix().map(|r| &**r).unwrap_or_default());
            if let Some(c) = same {
                push_comment(&mut lines, &inner, &c);
            }
            for t in pre {
                match t {
                    Trivia::Comment(c) => lines.push(format!("{inner}{c}")),
                    Trivia::Raw(text) => lines.push(text),
                    Trivia::Blank => {}
                }
            }
            let comma = if i + 1 < n || a.trailing_comma() { "," } else { "" };
            let mut line = format!("{inner}{}{comma}", self.expr(e, depth + 1));
            let suffix = e.decor().suffix().map(|r| &**r).unwrap_or_default();
            if has_comment(suffix) {
                line.push(' ');
                line.push_str(suffix.trim());
            }
            lines.push(line);
        }
        let (same, trailing) = split_decor(a.trailing());
        if let Some(c) = same {
            push_comment(&mut lines, &inner, &c);
        }
        for t in trailing {
            match t {
                Trivia::Comment(c) => lines.push(format!("{inner}{c}")),
                Trivia::Raw(text) => lines.push(text),
                Trivia::Blank => {}
            }
        }
        format!("[\n{}\n{}]", lines.join("\n"), INDENT.repeat(depth))
    }

    fn object(&self, o: &Object, depth: usize) -> String {
        if o.is_empty() {
            return "{}".into();
        }
        let decor_texts: Vec<&str> = o
            .iter()
            .flat_map(|(k, v)| [k.decor().prefix(), v.expr().decor().suffix()])
            .map(|r| r.map(|r| &**r).unwrap_or_default())
            .chain(std::iter::once(&**o.trailing()))
            .collect();
        let newline_terminated =
            o.iter().any(|(_, v)| v.terminator() == ObjectValueTerminator::Newline);
        let multiline =
            newline_terminated || decor_texts.iter().any(|t| t.contains('\n') || has_comment(t));
        let key_text = |k: &ObjectKey| match k {
            ObjectKey::Ident(i) => i.as_str().to_string(),
            ObjectKey::Expression(e) => self.raw(e.span()).to_string(),
        };
        if !multiline {
            let items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{} = {}", key_text(k), self.expr(v.expr(), depth)))
                .collect();
            return format!("{{ {} }}", items.join(", "));
        }
        let inner = INDENT.repeat(depth + 1);
        let width = o.iter().map(|(k, _)| key_text(k).chars().count()).max().unwrap_or(0);
        let mut lines: Vec<String> = Vec::new();
        for (k, v) in o.iter() {
            let (same, pre) = split_decor(k.decor().prefix().map(|r| &**r).unwrap_or_default());
            if let Some(c) = same {
                push_comment(&mut lines, &inner, &c);
            }
            for t in pre {
                match t {
                    Trivia::Comment(c) => lines.push(format!("{inner}{c}")),
                    Trivia::Raw(text) => lines.push(text),
                    Trivia::Blank => {}
                }
            }
            let key = key_text(k);
            let pad = " ".repeat(width - key.chars().count());
            let comma = if v.terminator() == ObjectValueTerminator::Comma { "," } else { "" };
            let mut line = format!("{inner}{key}{pad} = {}{comma}", self.expr(v.expr(), depth + 1));
            let suffix = v.expr().decor().suffix().map(|r| &**r).unwrap_or_default();
            if has_comment(suffix) {
                line.push(' ');
                line.push_str(suffix.trim());
            }
            lines.push(line);
        }
        let (same, trailing) = split_decor(o.trailing());
        if let Some(c) = same {
            push_comment(&mut lines, &inner, &c);
        }
        for t in trailing {
            match t {
                Trivia::Comment(c) => lines.push(format!("{inner}{c}")),
                Trivia::Raw(text) => lines.push(text),
                Trivia::Blank => {}
            }
        }
        format!("{{\n{}\n{}}}", lines.join("\n"), INDENT.repeat(depth))
    }
}

/// A comment that followed the previous item on its line stays on that line.
fn push_comment(lines: &mut Vec<String>, inner: &str, comment: &str) {
    match lines.last_mut() {
        Some(last) => {
            last.push(' ');
            last.push_str(comment);
        }
        None => lines.push(format!("{inner}{comment}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        body(&hcl_edit::parser::parse_body(src).unwrap(), src)
    }

    #[test]
    fn formats_and_is_idempotent() {
        let src = "# top\njob \"x\" { # brace\n    type = \"service\"\n  datacenters=[\"a\",\"b\"] # dcs\n\n\n\n  group \"g\" {\n\tcount = 1\n    network {\n      port \"http\" {}\n    }\n    task \"t\" {\n      config {\n        args = [\n          \"-g\", # flag\n   \"x\"\n        ]\n        port_map = {\n          http = \"80\"\n          https = \"443\"\n        }\n      }\n      # before end\n    }\n  }\n}\n";
        let once = fmt(src);
        assert_eq!(
            once,
            "# top\njob \"x\" { # brace\n  type        = \"service\"\n  datacenters = [\"a\", \"b\"] # dcs\n\n  group \"g\" {\n    count = 1\n    network {\n      port \"http\" {}\n    }\n    task \"t\" {\n      config {\n        args = [\n          \"-g\", # flag\n          \"x\"\n        ]\n        port_map = {\n          http  = \"80\"\n          https = \"443\"\n        }\n      }\n      # before end\n    }\n  }\n}\n"
        );
        assert_eq!(fmt(&once), once);
    }
}
