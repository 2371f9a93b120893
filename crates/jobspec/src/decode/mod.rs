//! Walks the parsed HCL body of a `job` block and builds the typed model, reporting every unknown,
//! unsupported, mistyped or out-of-range field at its position. It owns Nomad's jobspec grammar
//! (block → field) and the checks that need source positions; job-type defaults live in
//! `model::Job::canonicalize`, and driver `config` rules live in `drivers`. This module holds the
//! shared machinery (sorting a body into known fields, typed getters, unsupported features);
//! the submodules decode one family of blocks each.

use crate::diag::{Diagnostic, Source, Span};
use crate::drivers::{self, ConfigEntry};
use crate::eval::{closest, type_name, EvalError, Evaluator};
use crate::funcs;
use hcl::Value;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::Span as _;
use model::{
    Affinity, Artifact, CheckRestart, Constraint, EphemeralDisk, Job, JobType, Lifecycle,
    LogConfig, MigrateStrategy, NetworkResource, Port, ReschedulePolicy, Resources, RestartPolicy,
    Scaling, Service, ServiceCheck, Spread, SpreadTarget, Task, TaskGroup, Template,
    UpdateStrategy, WaitConfig,
};
use std::collections::BTreeMap;
use std::time::Duration;

mod job;
mod placement;
mod policies;
mod service;
mod task;

pub(crate) use self::job::job;
use self::job::*;
use self::placement::*;
use self::policies::*;
use self::service::*;
use self::task::*;

/// Nomad features orc refuses rather than silently dropping, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("vault", "orc has no Vault integration; deliver secrets with a template block or env"),
    ("vault_token", "orc has no Vault integration"),
    ("vault_namespace", "orc has no Vault integration"),
    ("consul_token", "orc does not take per-job Consul tokens; the agent's Consul settings apply"),
    ("consul_namespace", "orc does not take per-job Consul namespaces; the agent's Consul settings apply"),
    ("connect", "orc has no Consul Connect service mesh; expose the service on a host port instead"),
    ("expose", "orc has no Consul Connect service mesh"),
    ("volume", "orc does not manage host or CSI volumes; mount host directories with the pot driver's `mount` option"),
    ("volume_mount", "orc does not manage host or CSI volumes; mount host directories with the pot driver's `mount` option"),
    ("csi_plugin", "orc does not run CSI plugins"),
    ("multiregion", "orc runs a single region"),
    ("periodic", "orc does not run periodic jobs; start a batch job from cron with `orc job run` instead"),
    ("parameterized", "orc does not dispatch parameterized jobs"),
    ("dispatch_payload", "orc does not dispatch parameterized jobs"),
    ("device", "orc does not schedule devices"),
    ("consul", "orc does not configure Consul per group or task; services use the agent's Consul settings"),
    ("identity", "orc does not issue workload identities"),
    ("numa", "orc does not do NUMA-aware scheduling"),
    ("disconnect", "orc treats a disconnected client like a down one; remove this block"),
    ("max_client_disconnect", "orc treats a disconnected client like a down one; remove this setting"),
    ("stop_after_client_disconnect", "orc treats a disconnected client like a down one; remove this setting"),
    ("prevent_reschedule_on_lost", "orc always reschedules allocations of lost clients"),
    ("ui", "orc has no web UI; remove this block"),
    ("secret", "orc has no secret providers; deliver secrets with a template block or env"),
    ("action", "orc does not run task actions"),
    ("schedule", "time-based task schedules are a Nomad Enterprise feature"),
    ("change_script", "orc does not run template change scripts; use change_mode = \"restart\" or \"signal\""),
    ("dns", "orc does not configure per-group DNS; jails use the host's resolver"),
    ("policy", "orc has no autoscaler, so scaling policies would never be evaluated"),
    ("grpc_service", "orc does not run gRPC checks; use an http or tcp check"),
    ("grpc_use_tls", "orc does not run gRPC checks; use an http or tcp check"),
    ("csi", "orc does not manage CSI volumes"),
];

/// An attribute found in a body.
pub(crate) struct Attr<'a> {
    pub name: &'a str,
    pub key_span: Span,
    pub expr: &'a Expression,
}

impl Attr<'_> {
    pub fn span(&self) -> Span {
        self.expr.span().unwrap_or_else(|| self.key_span.clone())
    }
}

/// A block found in a body; `dynamic` blocks are expanded into one of these per element.
pub(crate) struct Blk<'a> {
    pub name: String,
    pub ident_span: Span,
    pub labels: Vec<(String, Span)>,
    pub body: &'a Body,
    iterator: Option<(String, Value)>,
}

/// The attributes and blocks of one body, after unknown ones were reported.
pub(crate) struct Fields<'a> {
    attrs: Vec<Attr<'a>>,
    blocks: Vec<Blk<'a>>,
}

impl<'a> Fields<'a> {
    pub fn attr(&self, name: &str) -> Option<&Attr<'a>> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn blocks<'f>(&'f self, name: &'f str) -> impl Iterator<Item = &'f Blk<'a>> + 'f {
        self.blocks.iter().filter(move |b| b.name == name)
    }
}

/// Decoding state: the source, the evaluator and the diagnostics collected so far.
pub(crate) struct Cx<'s> {
    pub src: &'s Source<'s>,
    pub ev: Evaluator<'s>,
    pub diags: Vec<Diagnostic>,
    /// Ports declared in the group being decoded (group and task networks), with the span of
    /// their label, so duplicates across networks are caught.
    pub group_ports: Vec<(Port, Span)>,
}

fn valid_keys(attrs: &[&str], blocks: &[&str]) -> String {
    let mut all: Vec<&str> = attrs.iter().chain(blocks).copied().collect();
    all.sort_unstable();
    all.dedup();
    format!("valid keys are: {}", all.join(", "))
}

fn unsupported(name: &str) -> Option<&'static str> {
    UNSUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, hint)| *hint)
}

impl<'s> Cx<'s> {
    pub fn error(&mut self, span: &Span, message: impl Into<String>) {
        let d = self.src.diag(span, message);
        self.diags.push(d);
    }

    pub fn error_hint(&mut self, span: &Span, message: impl Into<String>, hint: impl Into<String>) {
        let d = self.src.diag(span, message).with_hint(hint);
        self.diags.push(d);
    }

    fn eval_error(&mut self, e: EvalError) {
        if e.already_reported {
            return;
        }
        let mut d = self.src.diag(&e.span, e.message);
        d.hint = e.hint;
        self.diags.push(d);
    }

    /// Sorts a body into known attributes and blocks, reporting everything else.
    pub fn fields<'a>(
        &mut self,
        body: &'a Body,
        what: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Fields<'a> {
        let mut out = Fields { attrs: Vec::new(), blocks: Vec::new() };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let name = a.key.as_str();
                    let key_span = a.key.span().unwrap_or_default();
                    if attrs.contains(&name) {
                        if let Some(prev) = out.attr(name) {
                            let (line, _) = self.src.position(prev.key_span.start);
                            self.error(&key_span, format!("attribute \"{name}\" is set twice in {what} (first on line {line})"));
                        } else {
                            out.attrs.push(Attr { name, key_span, expr: &a.value });
                        }
                    } else if let Some(hint) = unsupported(name) {
                        self.error_hint(
                            &key_span,
                            format!("\"{name}\" is not supported by orc"),
                            hint,
                        );
                    } else if blocks.contains(&name) {
                        self.error_hint(
                            &key_span,
                            format!("\"{name}\" is a block in {what}, not an attribute"),
                            format!("write `{name} {{ ... }}`"),
                        );
                    } else {
                        self.unknown(&key_span, "attribute", name, what, attrs, blocks);
                    }
                }
                Structure::Block(b) => {
                    let name = b.ident.as_str();
                    let ident_span = b.ident.span().unwrap_or_default();
                    if name == "dynamic" && !blocks.is_empty() {
                        self.expand_dynamic(b, what, blocks, &mut out);
                    } else if blocks.contains(&name) {
                        out.blocks.push(Blk {
                            name: name.to_string(),
                            ident_span,
                            labels: b
                                .labels
                                .iter()
                                .map(|l| (l.as_str().to_string(), l.span().unwrap_or_default()))
                                .collect(),
                            body: &b.body,
                            iterator: None,
                        });
                    } else if let Some(hint) = unsupported(name) {
                        self.error_hint(
                            &ident_span,
                            format!("\"{name}\" blocks are not supported by orc"),
                            hint,
                        );
                    } else if attrs.contains(&name) {
                        self.error_hint(
                            &ident_span,
                            format!("\"{name}\" is an attribute in {what}, not a block"),
                            format!("write `{name} = ...`"),
                        );
                    } else {
                        self.unknown(&ident_span, "block", name, what, attrs, blocks);
                    }
                }
            }
        }
        out
    }

    fn unknown(
        &mut self,
        span: &Span,
        kind: &str,
        name: &str,
        what: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) {
        let all: Vec<&str> = attrs.iter().chain(blocks).copied().collect();
        let mut hint = valid_keys(attrs, blocks);
        if let Some(near) = closest(name, &all) {
            hint = format!("did you mean \"{near}\"? {hint}");
        }
        self.error_hint(span, format!("unknown {kind} \"{name}\" in {what}"), hint);
    }

    /// `dynamic "x" { for_each, iterator, labels, content {} }` → one `x` block per element.
    fn expand_dynamic<'a>(
        &mut self,
        b: &'a Block,
        what: &str,
        blocks: &[&str],
        out: &mut Fields<'a>,
    ) {
        let ident_span = b.ident.span().unwrap_or_default();
        let [label] = b.labels.as_slice() else {
            self.error_hint(
                &ident_span,
                "a dynamic block needs one label: the block type to generate",
                "write `dynamic \"port\" { ... }`",
            );
            return;
        };
        let name = label.as_str().to_string();
        let label_span = label.span().unwrap_or_default();
        if !blocks.contains(&name.as_str()) {
            self.unknown(&label_span, "block", &name, what, &[], blocks);
            return;
        }
        let f = self.fields(
            &b.body,
            "dynamic block",
            &["for_each", "iterator", "labels"],
            &["content"],
        );
        let Some(for_each) = f.attr("for_each") else {
            self.error(&ident_span, "dynamic block needs a for_each attribute");
            return;
        };
        let Some(content) = f.blocks("content").next() else {
            self.error(&ident_span, "dynamic block needs a content block");
            return;
        };
        let iterator = match f.attr("iterator") {
            Some(a) => match a.expr {
                Expression::Variable(v) => v.as_str().to_string(),
                _ => {
                    self.error(&a.span(), "iterator must be a bare name, like `iterator = p`");
                    return;
                }
            },
            None => name.clone(),
        };
        let items: Vec<(Value, Value)> = match self.value(for_each) {
            Some(Value::Array(items)) => {
                items.into_iter().enumerate().map(|(i, v)| (Value::from(i as u64), v)).collect()
            }
            Some(Value::Object(m)) => m.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
            Some(other) => {
                self.error(
                    &for_each.span(),
                    format!("for_each must be a list or a map, got {}", type_name(&other)),
                );
                return;
            }
            None => return,
        };
        for (key, value) in items {
            let it: Value = Value::Object(
                [("key".to_string(), key), ("value".to_string(), value)].into_iter().collect(),
            );
            self.ev.push_scope(iterator.clone(), it.clone());
            let labels = match f.attr("labels") {
                Some(a) => {
                    self.strings(a).unwrap_or_default().into_iter().map(|l| (l, a.span())).collect()
                }
                None => Vec::new(),
            };
            self.ev.pop_scope();
            out.blocks.push(Blk {
                name: name.clone(),
                ident_span: label_span.clone(),
                labels,
                body: content.body,
                iterator: Some((iterator.clone(), it)),
            });
        }
    }

    /// Runs `f` with the block's `dynamic` iterator (if any) in scope.
    pub fn within<T>(&mut self, b: &Blk, f: impl FnOnce(&mut Self) -> T) -> T {
        if let Some((name, value)) = &b.iterator {
            self.ev.push_scope(name.clone(), value.clone());
            let out = f(self);
            self.ev.pop_scope();
            out
        } else {
            f(self)
        }
    }

    /// The single label of a block such as `group "web"`.
    fn label(&mut self, b: &Blk, example: &str) -> Option<(String, Span)> {
        match b.labels.as_slice() {
            [one] => Some(one.clone()),
            [] => {
                self.error_hint(
                    &b.ident_span,
                    format!("{} block needs a name", b.name),
                    format!("write `{example}`"),
                );
                None
            }
            [_, extra, ..] => {
                self.error_hint(
                    &extra.1,
                    format!("{} block takes one label", b.name),
                    format!("write `{example}`"),
                );
                None
            }
        }
    }

    fn no_labels(&mut self, b: &Blk) {
        if let Some((_, span)) = b.labels.first() {
            self.error_hint(
                span,
                format!("{} block takes no label", b.name),
                format!("write `{} {{ ... }}`", b.name),
            );
        }
    }

    /// At most one block of this kind; later ones are reported.
    fn single<'f, 'a>(&mut self, f: &'f Fields<'a>, name: &'f str) -> Option<&'f Blk<'a>> {
        let mut found = f.blocks(name);
        let first = found.next();
        for extra in found {
            if let Some(first) = first {
                let (line, _) = self.src.position(first.ident_span.start);
                self.error(
                    &extra.ident_span,
                    format!("only one {name} block is allowed here (first on line {line})"),
                );
            }
        }
        first
    }

    pub fn value(&mut self, a: &Attr) -> Option<Value> {
        match self.ev.eval(a.expr) {
            Ok(v) => Some(v),
            Err(e) => {
                self.eval_error(e);
                None
            }
        }
    }

    fn type_error(&mut self, a: &Attr, want: &str, got: &Value) {
        let span = a.span();
        self.error(&span, format!("{} must be {want}, got {}", a.name, describe(got)));
    }

    pub fn string(&mut self, a: &Attr) -> Option<String> {
        let v = self.value(a)?;
        match funcs::primitive_string(&v) {
            Some(s) => Some(s),
            None => {
                self.type_error(a, "a string", &v);
                None
            }
        }
    }

    /// A string from a fixed set of choices.
    fn choice(&mut self, a: &Attr, choices: &[&str]) -> Option<String> {
        let s = self.string(a)?;
        if choices.contains(&s.as_str()) {
            return Some(s);
        }
        let quoted: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
        self.error_hint(
            &a.span(),
            format!("invalid {} \"{s}\"", a.name),
            format!("{} must be one of {}", a.name, quoted.join(", ")),
        );
        None
    }

    pub fn bool(&mut self, a: &Attr) -> Option<bool> {
        let v = self.value(a)?;
        match &v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" || s == "false" => Some(s == "true"),
            _ => {
                self.type_error(a, "a bool (true or false)", &v);
                None
            }
        }
    }

    pub fn int(&mut self, a: &Attr, min: i64, max: i64) -> Option<i64> {
        let v = self.value(a)?;
        let n = match &v {
            Value::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
            }
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let Some(n) = n else {
            self.type_error(a, "a whole number", &v);
            return None;
        };
        if n < min || n > max {
            let range = if max == i64::from(u32::MAX) {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            self.error(&a.span(), format!("{} must be {range}, got {n}", a.name));
            return None;
        }
        Some(n)
    }

    pub fn u32(&mut self, a: &Attr) -> Option<u32> {
        self.int(a, 0, i64::from(u32::MAX)).map(|n| n as u32)
    }

    pub fn duration(&mut self, a: &Attr) -> Option<Duration> {
        let v = self.value(a)?;
        match &v {
            Value::String(s) => match model::duration::parse_go_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error_hint(
                        &a.span(),
                        format!("{}: {e}", a.name),
                        "write a duration such as \"500ms\", \"30s\", \"5m\" or \"1h30m\"",
                    );
                    None
                }
            },
            // Nomad's HCL decoder reads a bare number as nanoseconds.
            Value::Number(n) => match n.as_u64() {
                Some(ns) => Some(Duration::from_nanos(ns)),
                None => {
                    self.error(&a.span(), format!("{} must not be negative", a.name));
                    None
                }
            },
            _ => {
                self.type_error(a, "a duration string such as \"30s\"", &v);
                None
            }
        }
    }

    pub fn strings(&mut self, a: &Attr) -> Option<Vec<String>> {
        let v = self.value(a)?;
        let Value::Array(items) = &v else {
            self.type_error(a, "a list of strings", &v);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match funcs::primitive_string(item) {
                Some(s) => out.push(s),
                None => {
                    self.type_error(a, "a list of strings", &v);
                    return None;
                }
            }
        }
        Some(out)
    }

    fn string_map_value(&mut self, a: &Attr) -> Option<BTreeMap<String, String>> {
        let v = self.value(a)?;
        let Value::Object(m) = &v else {
            self.type_error(a, "a map of strings", &v);
            return None;
        };
        let mut out = BTreeMap::new();
        for (k, item) in m {
            match funcs::primitive_string(item) {
                Some(s) => {
                    out.insert(k.clone(), s);
                }
                None => {
                    self.error(
                        &a.span(),
                        format!("{}.{k} must be a string, got {}", a.name, describe(item)),
                    );
                }
            }
        }
        Some(out)
    }

    /// `meta`/`env` style maps: a `name { k = "v" }` block or a `name = { k = "v" }` attribute.
    fn string_map(&mut self, f: &Fields, name: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(a) = f.attr(name) {
            out.extend(self.string_map_value(a).unwrap_or_default());
        }
        for b in f.blocks(name) {
            self.no_labels(b);
            self.within(b, |cx| {
                for s in b.body.iter() {
                    match s {
                        Structure::Attribute(attr) => {
                            let a = Attr {
                                name: attr.key.as_str(),
                                key_span: attr.key.span().unwrap_or_default(),
                                expr: &attr.value,
                            };
                            if let Some(v) = cx.string(&a) {
                                out.insert(a.name.to_string(), v);
                            }
                        }
                        Structure::Block(inner) => {
                            cx.error(
                                &inner.ident.span().unwrap_or_default(),
                                format!(
                                    "blocks are not allowed in {name}; write `key = \"value\"`"
                                ),
                            );
                        }
                    }
                }
            });
        }
        out
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() <= 40 => format!("\"{s}\""),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("a {}", type_name(other)),
    }
}

/// What a job's decoding learns about one group's ports and providers, checked once all of the
/// group's services and networks are known.
#[derive(Default)]
struct GroupRefs {
    /// Port labels referenced by services, checks and drivers, with where.
    ports_used: Vec<(String, Span, &'static str)>,
    /// Service providers, with where they were set (or the service block when defaulted).
    providers: Vec<(String, Span)>,
    /// Where each task's `logs` block is (or its name, when it has none).
    logs_at: Vec<(String, Span)>,
}

/// The top level of a job file: exactly one `job`, plus variables and locals handled elsewhere.
pub(crate) fn top_level<'a>(cx: &mut Cx, body: &'a Body) -> Option<Blk<'a>> {
    let f = cx.fields(body, "the job file", &[], &["job", "variable", "variables", "locals"]);
    let mut jobs = f.blocks.into_iter().filter(|b| b.name == "job");
    let first = jobs.next();
    for extra in jobs {
        cx.error_hint(
            &extra.ident_span,
            "a job file holds exactly one job",
            "put each job in its own file",
        );
    }
    if first.is_none() {
        let d = Diagnostic { width: 1, ..cx.src.diag(&(0..0), "no job block found") }.with_hint(
            "a job file needs `job \"name\" { group \"name\" { task \"name\" { ... } } }`",
        );
        cx.diags.push(d);
    }
    first
}
