//! The part of Nomad's `template` language orc renders: Go `text/template` syntax (custom
//! delimiters, `{{-`/`-}}` whitespace trimming, `{{/* comments */}}`, string literals such as
//! `{{ "{{" }}`), `range`/`if`/`else`/`end`, `{{ .Field }}`, `eq`/`ne`, consul-template's `env`,
//! and the service lookups `nomadService "[tag.]name"` (orc's own catalogue) and
//! `service "[tag.]name"` (Consul's healthy instances).
//!
//! Everything else (`key`, `secret`, `nomadVar`, pipelines, variables, `with`, ...) is a parse
//! error naming what is unsupported, so a job that uses it is refused when it is submitted
//! (jobspec calls [`parse`]) rather than rendering something else at run time. Pure: no IO; the
//! caller answers `env` and the service lookups through [`Context`], and learns which lookups a
//! template makes from [`Template::dependencies`] so it can watch them.

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Output(Expr),
    Range { expr: Expr, body: Vec<Node>, otherwise: Vec<Node>, at: usize },
    If { cond: Expr, then: Vec<Node>, otherwise: Vec<Node>, at: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Literal(String),
    Int(i64),
    Env(String),
    /// `.A.B`; empty is `.` itself.
    Field(Vec<String>, usize),
    Services(Dependency),
    Compare {
        equal: bool,
        left: Box<Expr>,
        right: Box<Expr>,
        at: usize,
    },
}

/// Which service catalogue a lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Catalog {
    /// `nomadService`: orc's own catalogue (services with `provider = "nomad"`).
    Nomad,
    /// `service`: Consul's healthy instances.
    Consul,
}

/// One service lookup a template makes: the catalogue and the service name (a `tag.` prefix
/// filter is applied when rendering, so it is not part of what is watched).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dependency {
    pub catalog: Catalog,
    pub name: String,
    tag: Option<String>,
}

/// One instance of a service as templates see it (`.Name .Address .Port .Tags .ID .AllocID
/// .NodeID .Datacenter`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instance {
    pub name: String,
    pub id: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub alloc_id: String,
    pub node_id: String,
    pub datacenter: String,
}

/// What a template reads from outside.
pub trait Context {
    /// `{{ env "NAME" }}` (unset renders empty, as in consul-template).
    fn env(&self, name: &str) -> Option<String>;
    /// The instances of a service, or why they cannot be read.
    fn services(&self, catalog: Catalog, name: &str) -> Result<Vec<Instance>, String>;
}

/// A [`Context`] with only an environment: service lookups fail.
pub struct EnvOnly<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Context for EnvOnly<F> {
    fn env(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }
    fn services(&self, _: Catalog, name: &str) -> Result<Vec<Instance>, String> {
        Err(format!("no service catalogue to look up {name:?} in"))
    }
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

/// One action (or text run) before the tree is built.
enum Act {
    Text(String),
    Output(Expr),
    Range(Expr),
    If(Expr),
    Else,
    End,
}

/// Parses `text` with the given delimiters (empty means `{{` and `}}`).
pub fn parse(text: &str, left: &str, right: &str) -> Result<Template, ParseError> {
    let left = if left.is_empty() { "{{" } else { left };
    let right = if right.is_empty() { "}}" } else { right };
    let mut acts: Vec<(Act, usize)> = Vec::new();
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
            acts.push((Act::Text(chunk), start));
        }
        if let Some(act) = action(inner.trim(), start)? {
            acts.push((act, start));
        }
    }
    let mut rest = text[pos..].to_string();
    if trim_next {
        rest = rest.trim_start().to_string();
    }
    if !rest.is_empty() {
        acts.push((Act::Text(rest), text.len()));
    }
    let mut acts = acts.into_iter().peekable();
    let (nodes, stop) = build(&mut acts)?;
    if let Some((what, at)) = stop {
        return Err(error(at, format!("unexpected {{{{ {what} }}}} with nothing open")));
    }
    Ok(Template { nodes })
}

type Acts = std::iter::Peekable<std::vec::IntoIter<(Act, usize)>>;

/// Nodes up to an `else`/`end` (which one, and where) or the end of the input.
type Built = (Vec<Node>, Option<(&'static str, usize)>);

/// Builds nodes until `else`/`end` (returned with its offset) or the end of the input.
fn build(acts: &mut Acts) -> Result<Built, ParseError> {
    let mut nodes = Vec::new();
    while let Some((act, at)) = acts.next() {
        match act {
            Act::Text(t) => nodes.push(Node::Text(t)),
            Act::Output(e) => nodes.push(Node::Output(e)),
            Act::Else => return Ok((nodes, Some(("else", at)))),
            Act::End => return Ok((nodes, Some(("end", at)))),
            Act::Range(expr) => {
                let (body, otherwise) = block(acts, "range", at)?;
                nodes.push(Node::Range { expr, body, otherwise, at });
            }
            Act::If(cond) => {
                let (then, otherwise) = block(acts, "if", at)?;
                nodes.push(Node::If { cond, then, otherwise, at });
            }
        }
    }
    Ok((nodes, None))
}

/// The body of a `range`/`if` and its `else` part, up to the matching `end`.
fn block(acts: &mut Acts, what: &str, at: usize) -> Result<(Vec<Node>, Vec<Node>), ParseError> {
    let unclosed = || error(at, format!("{{{{ {what} }}}} without a matching {{{{ end }}}}"));
    let (body, stop) = build(acts)?;
    match stop {
        Some(("end", _)) => Ok((body, Vec::new())),
        Some(("else", _)) => match build(acts)? {
            (otherwise, Some(("end", _))) => Ok((body, otherwise)),
            (_, Some((_, else_at))) => Err(error(else_at, format!("a second else in {what}"))),
            (_, None) => Err(unclosed()),
        },
        _ => Err(unclosed()),
    }
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
        "services" | "nomadServices" | "connect" => {
            "only nomadService and service lookups are supported by orc's template renderer"
        }
        "key" | "keyOrDefault" | "ls" | "tree" | "safeLs" | "safeTree" => {
            "orc does not support Consul KV"
        }
        "secret" | "secrets" | "pkiCert" => "orc does not support Vault",
        "nomadVar" | "nomadVarList" | "nomadVarExists" => "orc does not support Nomad variables",
        "with" | "define" | "template" | "block" | "break" | "continue" => {
            "orc's template renderer supports only range, if, else and end"
        }
        _ => {
            "orc's template renderer supports only env, nomadService, service, eq, ne, .Field, \
             string literals, range and if"
        }
    };
    error(at, format!("{word:?} in a template: {why}"))
}

#[derive(Debug)]
enum Tok {
    Str(String),
    Int(i64),
    Field(Vec<String>),
    Word(String),
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn tokens(inner: &str, at: usize) -> Result<Vec<Tok>, ParseError> {
    let mut toks = Vec::new();
    let mut s = inner.trim_start();
    while let Some(c) = s.chars().next() {
        if c == '"' || c == '`' {
            let (lit, rest) = literal(s, at)?.expect("starts with a quote");
            toks.push(Tok::Str(lit));
            s = rest;
        } else if c == '.' {
            let end = s[1..].find(|c: char| !is_ident(c) && c != '.').map_or(s.len(), |e| e + 1);
            let path = &s[1..end];
            let parts: Vec<String> = if path.is_empty() {
                Vec::new()
            } else {
                path.split('.').map(String::from).collect()
            };
            if parts.iter().any(String::is_empty) {
                return Err(error(at, format!("bad field {:?}", &s[..end])));
            }
            toks.push(Tok::Field(parts));
            s = &s[end..];
        } else if c.is_ascii_digit()
            || (c == '-' && s[1..].starts_with(|c: char| c.is_ascii_digit()))
        {
            let end = s[1..].find(|c: char| !c.is_ascii_digit()).map_or(s.len(), |e| e + 1);
            let n =
                s[..end].parse().map_err(|_| error(at, format!("bad number {:?}", &s[..end])))?;
            toks.push(Tok::Int(n));
            s = &s[end..];
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
            toks.push(Tok::Word(s[..end].to_string()));
            s = &s[end..];
        } else if c == '|' {
            return Err(error(at, "pipelines are not supported by orc's template renderer"));
        } else if c == '$' {
            return Err(error(at, "variables are not supported by orc's template renderer"));
        } else if c == '(' || c == ')' {
            return Err(error(
                at,
                "parenthesised expressions are not supported by orc's template renderer",
            ));
        } else {
            return Err(error(at, format!("unexpected {c:?} in an action")));
        }
        // Tokens are separated by spaces; `|`, `$` and parentheses are refused just above.
        if let Some(next) = s.chars().next() {
            if !next.is_whitespace() && !matches!(next, '|' | '$' | '(' | ')') {
                return Err(error(at, format!("unexpected {next:?} in an action")));
            }
        }
        s = s.trim_start();
    }
    Ok(toks)
}

fn action(inner: &str, at: usize) -> Result<Option<Act>, ParseError> {
    if inner.starts_with("/*") {
        if inner.ends_with("*/") {
            return Ok(None);
        }
        return Err(error(at, "unclosed comment"));
    }
    if inner.is_empty() {
        return Err(error(at, "empty action"));
    }
    let toks = tokens(inner, at)?;
    let keyword = match toks.first() {
        Some(Tok::Word(w)) => w.as_str(),
        _ => "",
    };
    let alone = |act: Act| {
        if toks.len() == 1 {
            Ok(Some(act))
        } else if keyword == "else" && matches!(toks.get(1), Some(Tok::Word(w)) if w == "if") {
            Err(error(at, "else if is not supported by orc's template renderer; nest an if"))
        } else {
            Err(error(at, format!("{keyword} takes no arguments")))
        }
    };
    match keyword {
        "range" => Ok(Some(Act::Range(expr(&toks[1..], at, "range")?))),
        "if" => Ok(Some(Act::If(expr(&toks[1..], at, "if")?))),
        "else" => alone(Act::Else),
        "end" => alone(Act::End),
        _ => Ok(Some(Act::Output(expr(&toks, at, "")?))),
    }
}

fn string_arg(toks: &[Tok], at: usize, usage: &str) -> Result<String, ParseError> {
    match toks {
        [Tok::Str(s)] => Ok(s.clone()),
        _ => Err(error(at, format!("expected {usage}"))),
    }
}

fn operand(tok: &Tok, at: usize) -> Result<Expr, ParseError> {
    match tok {
        Tok::Str(s) => Ok(Expr::Literal(s.clone())),
        Tok::Int(n) => Ok(Expr::Int(*n)),
        Tok::Field(f) => Ok(Expr::Field(f.clone(), at)),
        Tok::Word(w) => Err(error(
            at,
            format!("{w:?} as an argument: orc compares only fields, strings and numbers"),
        )),
    }
}

fn expr(toks: &[Tok], at: usize, after: &str) -> Result<Expr, ParseError> {
    let Some(first) = toks.first() else {
        return Err(error(at, format!("missing value after {after}")));
    };
    let args = &toks[1..];
    let only = |e: Expr| {
        if args.is_empty() {
            Ok(e)
        } else {
            Err(error(at, format!("unexpected {:?} after a value", args[0])))
        }
    };
    match first {
        Tok::Str(_) | Tok::Int(_) | Tok::Field(_) => only(operand(first, at)?),
        Tok::Word(w) => match w.as_str() {
            "env" => {
                Ok(Expr::Env(string_arg(args, at, "one string argument: {{ env \"NAME\" }}")?))
            }
            "nomadService" | "service" => {
                let usage = format!("one string argument: {{{{ range {w} \"[tag.]name\" }}}}");
                let arg = string_arg(args, at, &usage)?;
                let catalog = if w == "service" { Catalog::Consul } else { Catalog::Nomad };
                Ok(Expr::Services(dependency(catalog, &arg, at)?))
            }
            "eq" | "ne" => match args {
                [l, r] => Ok(Expr::Compare {
                    equal: w == "eq",
                    left: Box::new(operand(l, at)?),
                    right: Box::new(operand(r, at)?),
                    at,
                }),
                _ => Err(error(at, format!("{w} takes two arguments"))),
            },
            other => Err(unsupported(other, at)),
        },
    }
}

/// `[tag.]name` as consul-template reads it; `@datacenter` and `|filter` are refused.
fn dependency(catalog: Catalog, arg: &str, at: usize) -> Result<Dependency, ParseError> {
    if arg.contains('@') || arg.contains('|') || arg.contains(':') {
        return Err(error(
            at,
            format!(
                "service {arg:?}: datacenter, filter and near options are not supported by orc"
            ),
        ));
    }
    let (tag, name) = match arg.rsplit_once('.') {
        Some((tag, name)) => (Some(tag.to_string()), name),
        None => (None, arg),
    };
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| is_ident(c) || c == '-');
    if !valid(name) || tag.as_deref().is_some_and(|t| t.is_empty()) {
        return Err(error(at, format!("service {arg:?}: not a service name")));
    }
    Ok(Dependency { catalog, name: name.to_string(), tag })
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

/// A value while rendering.
#[derive(Debug, Clone)]
enum Value {
    Nil,
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
    Instances(Vec<Instance>),
    Instance(Instance),
}

impl Value {
    /// Go's truth: false, 0, nil and empty strings and lists are false.
    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Str(s) => !s.is_empty(),
            Value::Int(n) => *n != 0,
            Value::Bool(b) => *b,
            Value::Strs(v) => !v.is_empty(),
            Value::Instances(v) => !v.is_empty(),
            Value::Instance(_) => true,
        }
    }

    /// As `fmt.Print` prints it.
    fn print(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<no value>"),
            Value::Str(s) => out.push_str(s),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Strs(v) => {
                out.push('[');
                out.push_str(&v.join(" "));
                out.push(']');
            }
            Value::Instances(v) => {
                out.push('[');
                for (i, inst) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    Value::Instance(inst.clone()).print(out);
                }
                out.push(']');
            }
            Value::Instance(i) => out.push_str(&format!(
                "{{{} {} {} {} {}}}",
                i.name, i.id, i.address, i.port, i.alloc_id
            )),
        }
    }
}

/// Why rendering failed (a service could not be read, a field does not exist, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for RenderError {}

fn render_error(offset: usize, message: impl Into<String>) -> RenderError {
    RenderError { offset, message: message.into() }
}

impl Template {
    /// Renders with `cx` answering `env` and service lookups.
    pub fn render(&self, cx: &dyn Context) -> Result<String, RenderError> {
        let mut out = String::new();
        render_nodes(&self.nodes, cx, &Value::Nil, &mut out)?;
        Ok(out)
    }

    /// The service lookups the template makes, each once, in order.
    pub fn dependencies(&self) -> Vec<Dependency> {
        let mut deps = Vec::new();
        collect(&self.nodes, &mut deps);
        let mut seen = std::collections::BTreeSet::new();
        deps.retain(|d: &Dependency| seen.insert((d.catalog, d.name.clone())));
        deps
    }
}

fn collect(nodes: &[Node], deps: &mut Vec<Dependency>) {
    for node in nodes {
        match node {
            Node::Text(_) => {}
            Node::Output(e) => collect_expr(e, deps),
            Node::Range { expr, body, otherwise, .. } => {
                collect_expr(expr, deps);
                collect(body, deps);
                collect(otherwise, deps);
            }
            Node::If { cond, then, otherwise, .. } => {
                collect_expr(cond, deps);
                collect(then, deps);
                collect(otherwise, deps);
            }
        }
    }
}

fn collect_expr(e: &Expr, deps: &mut Vec<Dependency>) {
    match e {
        Expr::Services(d) => deps.push(d.clone()),
        Expr::Compare { left, right, .. } => {
            collect_expr(left, deps);
            collect_expr(right, deps);
        }
        _ => {}
    }
}

fn render_nodes(
    nodes: &[Node],
    cx: &dyn Context,
    dot: &Value,
    out: &mut String,
) -> Result<(), RenderError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(e) => eval(e, cx, dot)?.print(out),
            Node::If { cond, then, otherwise, .. } => {
                let branch = if eval(cond, cx, dot)?.truthy() { then } else { otherwise };
                render_nodes(branch, cx, dot, out)?;
            }
            Node::Range { expr, body, otherwise, at } => {
                let items: Vec<Value> = match eval(expr, cx, dot)? {
                    Value::Instances(v) => v.into_iter().map(Value::Instance).collect(),
                    Value::Strs(v) => v.into_iter().map(Value::Str).collect(),
                    Value::Nil => Vec::new(),
                    other => {
                        return Err(render_error(
                            *at,
                            format!("range can't iterate over {other:?}"),
                        ))
                    }
                };
                if items.is_empty() {
                    render_nodes(otherwise, cx, dot, out)?;
                }
                for item in &items {
                    render_nodes(body, cx, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval(e: &Expr, cx: &dyn Context, dot: &Value) -> Result<Value, RenderError> {
    Ok(match e {
        Expr::Literal(s) => Value::Str(s.clone()),
        Expr::Int(n) => Value::Int(*n),
        Expr::Env(name) => Value::Str(cx.env(name).unwrap_or_default()),
        Expr::Field(path, at) => {
            let mut v = dot.clone();
            for name in path {
                v = field(&v, name).ok_or_else(|| {
                    render_error(*at, format!("can't evaluate field {name} in {}", kind(&v)))
                })?;
            }
            v
        }
        Expr::Services(d) => {
            let mut found = cx
                .services(d.catalog, &d.name)
                .map_err(|e| render_error(0, format!("looking up service {:?}: {e}", d.name)))?;
            if let Some(tag) = &d.tag {
                found.retain(|i| i.tags.contains(tag));
            }
            Value::Instances(found)
        }
        Expr::Compare { equal, left, right, at } => {
            let same = match (eval(left, cx, dot)?, eval(right, cx, dot)?) {
                (Value::Str(a), Value::Str(b)) => a == b,
                (Value::Int(a), Value::Int(b)) => a == b,
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (a, b) => {
                    return Err(render_error(
                        *at,
                        format!("incompatible types for comparison: {} and {}", kind(&a), kind(&b)),
                    ))
                }
            };
            Value::Bool(same == *equal)
        }
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Str(_) => "string",
        Value::Int(_) => "int",
        Value::Bool(_) => "bool",
        Value::Strs(_) => "[]string",
        Value::Instances(_) => "a list of services",
        Value::Instance(_) => "a service",
    }
}

fn field(v: &Value, name: &str) -> Option<Value> {
    let Value::Instance(i) = v else { return None };
    Some(match name {
        "Name" | "ServiceName" => Value::Str(i.name.clone()),
        "ID" => Value::Str(i.id.clone()),
        "Address" => Value::Str(i.address.clone()),
        "Port" => Value::Int(i64::from(i.port)),
        "Tags" => Value::Strs(i.tags.clone()),
        "AllocID" => Value::Str(i.alloc_id.clone()),
        "NodeID" | "Node" => Value::Str(i.node_id.clone()),
        "Datacenter" => Value::Str(i.datacenter.clone()),
        _ => return None,
    })
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

    struct Fake;

    impl Context for Fake {
        fn env(&self, k: &str) -> Option<String> {
            (k == "NOMAD_ALLOC_ID").then(|| "a1".to_string())
        }
        fn services(&self, catalog: Catalog, name: &str) -> Result<Vec<Instance>, String> {
            let inst = |addr: &str, port, tags: &[&str]| Instance {
                name: name.to_string(),
                id: format!("{name}-{port}"),
                address: addr.to_string(),
                port,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                alloc_id: "al".into(),
                node_id: "n1".into(),
                datacenter: "dc1".into(),
            };
            match (catalog, name) {
                (Catalog::Nomad, "web") => Ok(vec![
                    inst("10.0.0.1", 8080, &["blue"]),
                    inst("10.0.0.2", 8081, &["green", "x"]),
                ]),
                (Catalog::Consul, "db") => Ok(vec![inst("10.0.0.9", 5432, &[])]),
                (_, "down") => Err("catalogue unreachable".into()),
                _ => Ok(Vec::new()),
            }
        }
    }

    fn render(text: &str) -> Result<String, ParseError> {
        parse(text, "", "").map(|t| t.render(&Fake).unwrap())
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
        assert_eq!(custom.render(&EnvOnly(|_| Some("z".into()))).unwrap(), "z {{ kept }}");
    }

    #[test]
    fn ranges_over_services_with_fields_conditions_and_else() {
        let upstreams =
            "{{ range nomadService \"web\" }}server {{ .Address }}:{{ .Port }};\n{{ end }}";
        assert_eq!(render(upstreams).unwrap(), "server 10.0.0.1:8080;\nserver 10.0.0.2:8081;\n");
        let all = "{{- range nomadService \"web\" }}\n{{ .Name }} {{ .ID }} {{ .Tags }} {{ .AllocID }} {{ .NodeID }} {{ .Datacenter }}\n{{- end }}";
        assert_eq!(
            render(all).unwrap(),
            "\nweb web-8080 [blue] al n1 dc1\nweb web-8081 [green x] al n1 dc1"
        );
        assert_eq!(
            render("{{ range nomadService \"green.web\" }}{{ .Port }}{{ end }}").unwrap(),
            "8081"
        );
        assert_eq!(
            render("{{ range nomadService \"none\" }}x{{ else }}no instances{{ end }}").unwrap(),
            "no instances"
        );
        assert_eq!(
            render("{{ range service \"db\" }}{{ .Address }}{{ end }}|{{ range nomadService \"db\" }}n{{ end }}").unwrap(),
            "10.0.0.9|"
        );
        let cond = "{{ range nomadService \"web\" }}{{ if eq .Port 8080 }}A{{ else }}B{{ end }}{{ if ne .Address \"10.0.0.1\" }}!{{ end }}{{ end }}";
        assert_eq!(render(cond).unwrap(), "AB!");
        assert_eq!(render("{{ if nomadService \"web\" }}some{{ end }}{{ if nomadService \"none\" }}none{{ end }}").unwrap(), "some");
        assert_eq!(
            render("{{ range nomadService \"web\" }}{{ range .Tags }}<{{ . }}>{{ end }}{{ end }}")
                .unwrap(),
            "<blue><green><x>"
        );
        let t = parse("{{ range nomadService \"web\" }}{{ end }}{{ if service \"db\" }}{{ range nomadService \"web\" }}{{ end }}{{ end }}", "", "").unwrap();
        let deps: Vec<_> = t.dependencies().into_iter().map(|d| (d.catalog, d.name)).collect();
        assert_eq!(
            deps,
            [(Catalog::Nomad, "web".to_string()), (Catalog::Consul, "db".to_string())]
        );
    }

    #[test]
    fn render_errors_name_the_problem() {
        let e = parse("{{ range nomadService \"down\" }}{{ end }}", "", "")
            .unwrap()
            .render(&Fake)
            .unwrap_err();
        assert!(e.message.contains("catalogue unreachable"), "{e}");
        let e = parse("{{ .Address }}", "", "").unwrap().render(&Fake).unwrap_err();
        assert!(e.message.contains("can't evaluate field Address"), "{e}");
        let e = parse(
            "{{ range nomadService \"web\" }}{{ if eq .Port \"8080\" }}{{ end }}{{ end }}",
            "",
            "",
        )
        .unwrap()
        .render(&Fake)
        .unwrap_err();
        assert!(e.message.contains("incompatible types"), "{e}");
        let e = parse("{{ range nomadService \"web\" }}{{ end }}", "", "")
            .unwrap()
            .render(&EnvOnly(|_| None))
            .unwrap_err();
        assert!(e.message.contains("no service catalogue"), "{e}");
    }

    #[test]
    fn refuses_what_it_cannot_render_with_a_position() {
        let text = "line one\n  {{ range key \"web\" }}{{ .Address }}{{ end }}";
        let e = parse(text, "", "").unwrap_err();
        assert!(e.message.contains("\"key\""), "{e}");
        assert_eq!(e.line_col(text), (2, 3));
        let text = "a\n{{ range nomadService \"web\" }}\n{{ .Address }}";
        let e = parse(text, "", "").unwrap_err();
        assert!(e.message.contains("without a matching"), "{e}");
        assert_eq!(e.line_col(text), (2, 1));
        for (t, needle) in [
            ("{{ key \"a/b\" }}", "Consul KV"),
            ("{{ nomadVar \"x\" }}", "Nomad variables"),
            ("{{ with nomadService \"x\" }}{{ end }}", "only range, if"),
            ("{{ env \"A\" | toUpper }}", "pipelines"),
            ("{{ $x := 1 }}", "variables"),
            ("{{ range (nomadService \"x\") }}{{ end }}", "parenthesised"),
            ("{{ Foo }}", "supports only"),
            ("{{ env }}", "one string argument"),
            ("{{ nomadService \"x@dc2\" }}", "datacenter"),
            ("{{ nomadService \"a b\" }}", "not a service name"),
            ("{{ nomadService \"x\" 1 \"y\" }}", "one string argument"),
            ("{{ eq .A }}", "two arguments"),
            ("{{ end }}", "nothing open"),
            ("{{ if 1 }}{{ else }}{{ else }}{{ end }}", "second else"),
            ("{{ if 1 }}{{ else if 2 }}{{ end }}", "else if"),
            ("{{ .A..B }}", "bad field"),
            ("{{ \"a\"\"b\" }}", "unexpected"),
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
