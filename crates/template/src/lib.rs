//! The part of Nomad's `template` language orc renders: Go `text/template` syntax (custom
//! delimiters, `{{-`/`-}}` whitespace trimming, `{{/* comments */}}`, string literals such as
//! `{{ "{{" }}`) with consul-template's `env` function, whose output cannot change while a task
//! runs.
//!
//! Everything else (`service`, `nomadService`, `key`, `range`, pipelines, variables, ...) is a
//! parse error naming what is unsupported, so a job that uses it is refused when it is submitted
//! (jobspec calls [`parse`]) rather than rendering something else at run time. Pure: no IO; the
//! caller supplies the environment.

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Literal(String),
    Env(String),
}

/// Why a template cannot be rendered by orc; `offset` is the byte offset of the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    /// 1-based line and column of the error in `text`.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let before = &text[..self.offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

fn error(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError { offset, message: message.into() }
}

/// Parses `text` with the given delimiters (empty means `{{` and `}}`).
pub fn parse(text: &str, left: &str, right: &str) -> Result<Template, ParseError> {
    let left = if left.is_empty() { "{{" } else { left };
    let right = if right.is_empty() { "}}" } else { right };
    let mut nodes = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while let Some(found) = text[pos..].find(left) {
        let start = pos + found;
        let mut chunk = text[pos..start].to_string();
        if trim_next {
            chunk = chunk.trim_start().to_string();
        }
        let inner_start = start + left.len();
        let Some(len) = find_close(&text[inner_start..], right) else {
            return Err(error(start, format!("unclosed action: no {right:?} after {left:?}")));
        };
        let mut inner = &text[inner_start..inner_start + len];
        pos = inner_start + len + right.len();
        // `{{- ` trims the text before, ` -}}` the text after (Go requires the space).
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            chunk = chunk.trim_end().to_string();
            inner = &inner[1..];
        }
        trim_next = false;
        if inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-") {
            trim_next = true;
            inner = &inner[..inner.len() - 1];
        }
        if !chunk.is_empty() {
            nodes.push(Node::Text(chunk));
        }
        if let Some(node) = action(inner.trim(), start)? {
            nodes.push(node);
        }
    }
    let mut rest = text[pos..].to_string();
    if trim_next {
        rest = rest.trim_start().to_string();
    }
    if !rest.is_empty() {
        nodes.push(Node::Text(rest));
    }
    Ok(Template { nodes })
}

/// Where `right` closes an action that starts at the beginning of `s`, skipping delimiters
/// inside string literals.
fn find_close(s: &str, right: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        match quote {
            Some(b'"') if bytes[i] == b'\\' => i += 1,
            Some(q) if bytes[i] == q => quote = None,
            Some(_) => {}
            None if bytes[i] == b'"' || bytes[i] == b'`' => quote = Some(bytes[i]),
            None if s.is_char_boundary(i) && s[i..].starts_with(right) => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// What is unsupported, said once for every function orc knows of but does not render.
fn unsupported(word: &str, at: usize) -> ParseError {
    let why = match word {
        "service" | "services" | "nomadService" | "nomadServices" | "connect" => {
            "service lookups are not supported by orc's template renderer yet"
        }
        "key" | "keyOrDefault" | "ls" | "tree" | "safeLs" | "safeTree" => {
            "orc does not support Consul KV"
        }
        "secret" | "secrets" | "pkiCert" => "orc does not support Vault",
        "nomadVar" | "nomadVarList" | "nomadVarExists" => "orc does not support Nomad variables",
        "range" | "if" | "with" | "else" | "end" | "define" | "template" | "block" => {
            "control structures are not supported by orc's template renderer"
        }
        _ => "orc's template renderer supports only {{ env \"NAME\" }} and string literals",
    };
    error(at, format!("{word:?} in a template: {why}"))
}

fn action(inner: &str, at: usize) -> Result<Option<Node>, ParseError> {
    if inner.starts_with("/*") {
        if inner.ends_with("*/") {
            return Ok(None);
        }
        return Err(error(at, "unclosed comment"));
    }
    if inner.is_empty() {
        return Err(error(at, "empty action"));
    }
    if inner.contains('|') && !inner.starts_with('"') && !inner.starts_with('`') {
        return Err(error(at, "pipelines are not supported by orc's template renderer"));
    }
    if let Some((lit, rest)) = literal(inner, at)? {
        if !rest.trim().is_empty() {
            return Err(error(at, format!("unexpected {:?} after a string literal", rest.trim())));
        }
        return Ok(Some(Node::Literal(lit)));
    }
    let word_end = inner.find(char::is_whitespace).unwrap_or(inner.len());
    let word = &inner[..word_end];
    if word != "env" {
        return Err(unsupported(word, at));
    }
    let args = inner[word_end..].trim();
    match literal(args, at)? {
        Some((name, rest)) if rest.trim().is_empty() => Ok(Some(Node::Env(name))),
        _ => Err(error(at, "env takes one string argument: {{ env \"NAME\" }}")),
    }
}

/// A Go string literal at the start of `s` ("…" with escapes, or `…`), and what follows it.
fn literal(s: &str, at: usize) -> Result<Option<(String, &str)>, ParseError> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`').ok_or_else(|| error(at, "unclosed raw string"))?;
        return Ok(Some((raw[..end].to_string(), &raw[end + 1..])));
    }
    let Some(body) = s.strip_prefix('"') else { return Ok(None) };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(Some((out, &body[i + 1..]))),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => {
                    return Err(error(at, format!("unsupported escape \\{other} in a string")))
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(error(at, "unclosed string literal"))
}

impl Template {
    /// Renders with `env` answering `{{ env "NAME" }}` (unset renders as empty, as in
    /// consul-template).
    pub fn render(&self, env: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) | Node::Literal(t) => out.push_str(t),
                Node::Env(name) => out.push_str(&env(name).unwrap_or_default()),
            }
        }
        out
    }
}

/// Parses a rendered `env = true` template: `KEY=VALUE` lines (an optional `export `, quotes
/// around the value removed, `#` comments and blank lines skipped), as Nomad reads them.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", n + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: {key:?} is not a variable name", n + 1));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.push((key.to_string(), unquoted.to_string()));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Result<String, ParseError> {
        let env = |k: &str| (k == "NOMAD_ALLOC_ID").then(|| "a1".to_string());
        parse(text, "", "").map(|t| t.render(&env))
    }

    #[test]
    fn renders_the_supported_subset() {
        assert_eq!(render("plain\n").unwrap(), "plain\n");
        assert_eq!(
            render("id={{ env \"NOMAD_ALLOC_ID\" }};x={{env \"UNSET\"}}").unwrap(),
            "id=a1;x="
        );
        assert_eq!(render("{{ \"{{\" }} literal {{ `}}` }}").unwrap(), "{{ literal }}");
        assert_eq!(render("a  {{- /* note */ -}}  b").unwrap(), "ab");
        assert_eq!(render("a\n{{- \"x\" }}\n").unwrap(), "ax\n");
        assert_eq!(render("q={{ \"say \\\"hi\\\"\\n\" }}").unwrap(), "q=say \"hi\"\n");
        let custom = parse("[[ env \"NOMAD_ALLOC_ID\" ]] {{ kept }}", "[[", "]]").unwrap();
        assert_eq!(custom.render(&|_| Some("z".into())), "z {{ kept }}");
    }

    #[test]
    fn refuses_what_it_cannot_render_with_a_position() {
        let text = "line one\n  {{ range service \"web\" }}{{ .Address }}{{ end }}";
        let e = parse(text, "", "").unwrap_err();
        assert!(e.message.contains("\"range\""), "{e}");
        assert_eq!(e.line_col(text), (2, 3));
        for (t, needle) in [
            ("{{ key \"a/b\" }}", "Consul KV"),
            ("{{ nomadService \"x\" }}", "service lookups"),
            ("{{ env \"A\" | toUpper }}", "pipelines"),
            ("{{ .Foo }}", "supports only"),
            ("{{ env }}", "one string argument"),
            ("{{ env \"A\"", "unclosed action"),
            ("{{ \"x }}", "unclosed"),
            ("é{{ `x }}", "unclosed"),
        ] {
            let e = parse(t, "", "").unwrap_err();
            assert!(e.message.contains(needle), "{t}: {e}");
        }
    }

    #[test]
    fn env_files() {
        let vars = parse_env_file("# c\nA=1\nexport B=\"two words\"\n\nC='x'\n").unwrap();
        assert_eq!(
            vars,
            [("A", "1"), ("B", "two words"), ("C", "x")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(parse_env_file("no equals").is_err());
        assert!(parse_env_file("BAD KEY=1").is_err());
    }
}
