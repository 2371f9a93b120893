//! Walks the parsed HCL body of a `job` block and builds the typed model, reporting every unknown,
//! unsupported, mistyped or out-of-range field at its position. It owns Nomad's jobspec grammar
//! (block → field) and the checks that need source positions; job-type defaults live in
//! `model::Job::canonicalize`, and driver `config` rules live in `drivers`.

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

/// Constraint operators Nomad's feasibility checker knows.
const CONSTRAINT_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "version",
    "semver",
    "is_set",
    "is_not_set",
    "distinct_hosts",
    "distinct_property",
];

/// Affinity operators: constraints minus the ones that do not rank (`distinct_*`, `is_set`).
const AFFINITY_OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    "<",
    "<=",
    ">",
    ">=",
    "regexp",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "version",
    "semver",
];

/// Check durations below this are refused, as Nomad does.
const MIN_CHECK_DURATION: Duration = Duration::from_secs(1);

/// Reschedule delays below this are refused, as Nomad does.
const MIN_RESCHEDULE_DELAY: Duration = Duration::from_secs(5);

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

const JOB_ATTRS: &[&str] = &[
    "id",
    "name",
    "type",
    "region",
    "namespace",
    "datacenters",
    "priority",
    "all_at_once",
    "node_pool",
    "meta",
];
const JOB_BLOCKS: &[&str] = &[
    "meta",
    "constraint",
    "affinity",
    "spread",
    "update",
    "migrate",
    "reschedule",
    "group",
    "task",
];

/// Decodes the `job "<id>" { ... }` block.
pub(crate) fn job(cx: &mut Cx, b: &Blk) -> Job {
    let mut job = Job::default();
    if let Some((id, _)) = cx.label(b, "job \"name\" { ... }") {
        job.id = id;
    }
    let f = cx.fields(b.body, "job", JOB_ATTRS, JOB_BLOCKS);
    if let Some(a) = f.attr("type") {
        if let Some(t) = cx.string(a) {
            match t.as_str() {
                "service" => job.job_type = JobType::Service,
                "batch" => job.job_type = JobType::Batch,
                "system" => job.job_type = JobType::System,
                "sysbatch" => cx.error_hint(&a.span(), "sysbatch jobs are not supported by orc", "use type = \"batch\" for run-to-completion work, or \"system\" to run on every node"),
                other => cx.error_hint(&a.span(), format!("invalid job type \"{other}\""), "type must be one of \"service\", \"batch\" or \"system\""),
            }
        }
    }
    if let Some(a) = f.attr("id") {
        job.id = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("name") {
        job.name = cx.string(a).unwrap_or_default();
    }
    if job.id.is_empty() {
        cx.error(&b.ident_span, "the job has no ID");
    } else if job.id.contains(' ') || job.id.contains('\0') {
        let span = b.labels.first().map_or(b.ident_span.clone(), |l| l.1.clone());
        cx.error_hint(
            &span,
            format!("job ID \"{}\" contains a space", job.id),
            "job IDs are used in URLs and names; use dashes instead",
        );
    }
    for (name, field) in [
        ("region", &mut job.region),
        ("namespace", &mut job.namespace),
        ("node_pool", &mut job.node_pool),
    ] {
        if let Some(a) = f.attr(name) {
            *field = cx.string(a).unwrap_or_default();
        }
    }
    if let Some(a) = f.attr("datacenters") {
        job.datacenters = cx.strings(a).unwrap_or_default();
        if job.datacenters.iter().any(String::is_empty) {
            cx.error(&a.span(), "datacenters must not contain an empty name");
        }
    }
    if let Some(a) = f.attr("priority") {
        job.priority = cx.int(a, 1, 100).unwrap_or(0) as i32;
    }
    if let Some(a) = f.attr("all_at_once") {
        job.all_at_once = cx.bool(a).unwrap_or(false);
    }
    job.meta = cx.string_map(&f, "meta");
    job.constraints = constraints(cx, &f);
    job.affinities = affinities(cx, &f);
    job.spreads = spreads(cx, &f);
    let job_type = job.job_type;
    if let Some(u) = cx.single(&f, "update").filter(|u| allowed_for_type(cx, u, job_type)) {
        let base = model::default_update_strategy(job_type).unwrap_or_else(|| {
            model::default_update_strategy(JobType::Service).unwrap_or_default()
        });
        job.update = Some(cx.within(u, |cx| update(cx, u, base)));
    }
    if let Some(r) = cx.single(&f, "reschedule") {
        if job_type == JobType::System {
            cx.error_hint(
                &r.ident_span,
                "system jobs cannot have a reschedule block",
                "system jobs run one allocation per node and are never rescheduled",
            );
        } else {
            let base = model::default_reschedule_policy(job_type).unwrap_or_default();
            job.reschedule = Some(cx.within(r, |cx| reschedule(cx, r, base)));
        }
    }
    if let Some(m) = cx.single(&f, "migrate").filter(|m| allowed_for_type(cx, m, job_type)) {
        let base = model::default_migrate_strategy(JobType::Service).unwrap_or_default();
        job.migrate = Some(cx.within(m, |cx| migrate(cx, m, base)));
    }
    let mut group_spans: Vec<(String, Span)> = Vec::new();
    for g in f.blocks.iter().filter(|b| b.name == "group" || b.name == "task") {
        let decoded = cx.within(g, |cx| {
            if g.name == "group" {
                group(cx, g, &job)
            } else {
                lone_task_group(cx, g, &job)
            }
        });
        if let Some((group, span)) = decoded {
            if let Some((_, prev)) = group_spans.iter().find(|(n, _)| *n == group.name) {
                let (line, _) = cx.src.position(prev.start);
                cx.error(
                    &span,
                    format!("group \"{}\" is defined twice (first on line {line})", group.name),
                );
            }
            group_spans.push((group.name.clone(), span));
            job.task_groups.push(group);
        }
    }
    if job.task_groups.is_empty() && !b.ident_span.is_empty() {
        cx.error_hint(
            &b.ident_span,
            "the job has no groups",
            "add a `group \"name\" { task \"name\" { ... } }` block",
        );
    }
    job
}

/// Nomad refuses `update` in batch jobs and `migrate` outside service jobs: they describe
/// deployments and drains of long-running allocations. Reports and returns false when refused.
fn allowed_for_type(cx: &mut Cx, b: &Blk, job_type: JobType) -> bool {
    let allowed = match b.name.as_str() {
        "update" => job_type != JobType::Batch,
        "migrate" => job_type == JobType::Service,
        _ => true,
    };
    if !allowed {
        cx.error_hint(
            &b.ident_span,
            format!("job type \"{}\" does not allow {} blocks", job_type.as_str(), b.name),
            if b.name == "update" {
                "rolling updates apply to service and system jobs; remove this block"
            } else {
                "migrate applies to service jobs only; remove this block"
            },
        );
    }
    allowed
}

/// A `task` written directly in `job` is a group of the same name holding that task.
fn lone_task_group(cx: &mut Cx, b: &Blk, job: &Job) -> Option<(TaskGroup, Span)> {
    let (name, span) = cx.label(b, "task \"name\" { ... }")?;
    let mut refs = GroupRefs::default();
    cx.group_ports.clear();
    let group_restart = None;
    let task = task(cx, b, job, &[], &group_restart, &mut refs)?;
    let mut group =
        TaskGroup { name: name.clone(), count: 1, tasks: vec![task], ..TaskGroup::default() };
    finish_group(cx, &mut group, &refs, &span, None);
    Some((group, span))
}

const GROUP_ATTRS: &[&str] = &["count", "shutdown_delay", "meta"];
const GROUP_BLOCKS: &[&str] = &[
    "network",
    "service",
    "restart",
    "reschedule",
    "ephemeral_disk",
    "update",
    "migrate",
    "constraint",
    "affinity",
    "spread",
    "meta",
    "scaling",
    "task",
];

fn group(cx: &mut Cx, b: &Blk, job: &Job) -> Option<(TaskGroup, Span)> {
    let (name, span) = cx.label(b, "group \"name\" { ... }")?;
    let what = format!("group \"{name}\"");
    let f = cx.fields(b.body, &what, GROUP_ATTRS, GROUP_BLOCKS);
    let mut g = TaskGroup { name: name.clone(), ..TaskGroup::default() };
    let mut refs = GroupRefs::default();
    cx.group_ports.clear();
    let job_type = job.job_type;

    for n in f.blocks("network") {
        let net = cx.within(n, |cx| network(cx, n, true));
        g.networks.push(net);
    }
    if g.networks.len() > 1 {
        cx.error(
            &f.blocks("network").nth(1).map(|b| b.ident_span.clone()).unwrap_or_default(),
            "only one network block is allowed per group",
        );
    }
    if let Some(s) = cx.single(&f, "scaling") {
        g.scaling = cx.within(s, |cx| scaling(cx, s));
    }
    let count_attr = f.attr("count");
    g.count = match count_attr {
        Some(a) => cx.u32(a).unwrap_or(1),
        None => g.scaling.as_ref().and_then(|s| s.min).unwrap_or(1),
    };
    if let (Some(scaling), Some(a)) = (&mut g.scaling, count_attr) {
        let min = scaling.min.unwrap_or(g.count);
        if g.count < min || g.count > scaling.max {
            cx.error(
                &a.span(),
                format!("count {} is outside the scaling range {min}..={}", g.count, scaling.max),
            );
        }
    }
    if let Some(scaling) = &mut g.scaling {
        // Nomad fills an unset minimum with the group's count.
        scaling.min.get_or_insert(g.count);
    }
    if let Some(a) = f.attr("shutdown_delay") {
        g.shutdown_delay = cx.duration(a);
    }
    g.meta = cx.string_map(&f, "meta");
    g.constraints = constraints(cx, &f);
    g.affinities = affinities(cx, &f);
    g.spreads = spreads(cx, &f);
    if let Some(r) = cx.single(&f, "restart") {
        g.restart_policy =
            Some(cx.within(r, |cx| restart(cx, r, model::default_restart_policy(job_type))));
    }
    if let Some(r) = cx.single(&f, "reschedule") {
        if job_type == JobType::System {
            cx.error_hint(
                &r.ident_span,
                "system jobs cannot have a reschedule block",
                "system jobs run one allocation per node and are never rescheduled",
            );
        } else {
            let base = job
                .reschedule
                .clone()
                .or_else(|| model::default_reschedule_policy(job_type))
                .unwrap_or_default();
            g.reschedule_policy = Some(cx.within(r, |cx| reschedule(cx, r, base)));
        }
    }
    if let Some(u) = cx.single(&f, "update").filter(|u| allowed_for_type(cx, u, job_type)) {
        let base = job
            .update
            .clone()
            .or_else(|| model::default_update_strategy(job_type))
            .or_else(|| model::default_update_strategy(JobType::Service))
            .unwrap_or_default();
        g.update = Some(cx.within(u, |cx| update(cx, u, base)));
    }
    if let Some(m) = cx.single(&f, "migrate").filter(|m| allowed_for_type(cx, m, job_type)) {
        let base = job
            .migrate
            .clone()
            .or_else(|| model::default_migrate_strategy(JobType::Service))
            .unwrap_or_default();
        g.migrate = Some(cx.within(m, |cx| migrate(cx, m, base)));
    }
    let mut disk_span = None;
    if let Some(d) = cx.single(&f, "ephemeral_disk") {
        let (disk, span) = cx.within(d, |cx| ephemeral_disk(cx, d));
        g.ephemeral_disk = Some(disk);
        disk_span = Some(span);
    }
    for s in f.blocks("service") {
        if let Some(svc) = cx.within(s, |cx| service(cx, s, &mut refs, true)) {
            g.services.push(svc);
        }
    }
    let group_ports: Vec<String> = g.networks.iter().flat_map(port_labels).collect();
    let mut task_spans: Vec<(String, Span)> = Vec::new();
    for t in f.blocks("task") {
        let decoded =
            cx.within(t, |cx| task(cx, t, job, &group_ports, &g.restart_policy, &mut refs));
        if let Some(task) = decoded {
            let span = t.labels.first().map_or(t.ident_span.clone(), |l| l.1.clone());
            if let Some((_, prev)) = task_spans.iter().find(|(n, _)| *n == task.name) {
                let (line, _) = cx.src.position(prev.start);
                cx.error(
                    &span,
                    format!(
                        "task \"{}\" is defined twice in group \"{name}\" (first on line {line})",
                        task.name
                    ),
                );
            }
            task_spans.push((task.name.clone(), span));
            g.tasks.push(task);
        }
    }
    if g.tasks.is_empty() && f.blocks("task").next().is_none() {
        cx.error_hint(
            &span,
            format!("group \"{name}\" has no tasks"),
            "add a `task \"name\" { driver = \"pot\" ... }` block",
        );
    }
    let leaders: Vec<&(String, Span)> = task_spans
        .iter()
        .filter(|(n, _)| g.tasks.iter().any(|t| t.leader && &t.name == n))
        .collect();
    if leaders.len() > 1 {
        cx.error(&leaders[1].1, "only one task in a group may be the leader");
    }
    finish_group(cx, &mut g, &refs, &span, disk_span);
    Some((g, span))
}

/// Checks that need the whole group: port references, one provider, log storage vs. disk.
fn finish_group(
    cx: &mut Cx,
    g: &mut TaskGroup,
    refs: &GroupRefs,
    span: &Span,
    disk_span: Option<Span>,
) {
    let labels: Vec<String> = g.ports().map(|p| p.label.clone()).collect();
    for (label, at, what) in &refs.ports_used {
        if label.parse::<u16>().is_ok() || label.contains("${") || labels.contains(label) {
            continue;
        }
        let hint = if labels.is_empty() {
            format!("declare it in the group: `network {{ port \"{label}\" {{}} }}`")
        } else {
            format!("declared ports are: {}", labels.join(", "))
        };
        cx.error_hint(
            at,
            format!("{what} refers to port \"{label}\", which is not declared"),
            hint,
        );
    }
    if let Some((first, _)) = refs.providers.first() {
        for (p, at) in &refs.providers[1..] {
            if p != first {
                cx.error_hint(at, format!("service provider \"{p}\" differs from \"{first}\" used by another service in this group"), "all services in a group must use the same provider");
            }
        }
    }
    // Nomad checks each task's log ceiling against the group's disk on its own.
    let disk = g.ephemeral_disk.clone().unwrap_or_else(model::default_ephemeral_disk);
    for task in &g.tasks {
        let logs = task.log_config.clone().unwrap_or_else(model::default_log_config);
        let usage = u64::from(logs.max_files) * u64::from(logs.max_file_size_mb);
        if logs.disabled || usage < u64::from(disk.size_mb) {
            continue;
        }
        let at = refs
            .logs_at
            .iter()
            .find(|(name, _)| *name == task.name)
            .map(|(_, s)| s.clone())
            .or_else(|| disk_span.clone())
            .unwrap_or_else(|| span.clone());
        cx.error_hint(
            &at,
            format!(
                "log storage of task \"{}\" ({usage} MB) must be less than the group's ephemeral disk ({} MB)",
                task.name, disk.size_mb
            ),
            "raise the group's ephemeral_disk { size = ... } or lower logs { max_files, max_file_size }",
        );
    }
}

fn port_labels(n: &NetworkResource) -> Vec<String> {
    n.reserved_ports.iter().chain(&n.dynamic_ports).map(|p| p.label.clone()).collect()
}

const NETWORK_ATTRS: &[&str] = &["mode", "hostname", "mbits"];
const NETWORK_BLOCKS: &[&str] = &["port"];
const PORT_ATTRS: &[&str] = &["static", "to", "host_network"];

fn network(cx: &mut Cx, b: &Blk, group_level: bool) -> NetworkResource {
    cx.no_labels(b);
    let what = if group_level { "network" } else { "resources network" };
    let f = cx.fields(b.body, what, NETWORK_ATTRS, NETWORK_BLOCKS);
    let mut n = NetworkResource::default();
    if let Some(a) = f.attr("mode") {
        if let Some(mode) = cx.string(a) {
            if ["host", "bridge", "none"].contains(&mode.as_str()) || mode.starts_with("cni/") {
                n.mode = mode;
            } else {
                cx.error_hint(
                    &a.span(),
                    format!("invalid network mode \"{mode}\""),
                    "mode must be \"host\", \"bridge\", \"none\" or \"cni/<name>\"",
                );
            }
        }
    }
    if let Some(a) = f.attr("hostname") {
        n.hostname = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("mbits") {
        n.mbits = cx.u32(a).unwrap_or(0);
    }
    let mut seen: Vec<String> = Vec::new();
    for p in f.blocks("port") {
        let Some((label, span)) = cx.label(p, "port \"http\" { ... }") else { continue };
        if seen.contains(&label) {
            cx.error(&span, format!("port \"{label}\" is declared twice"));
            continue;
        }
        seen.push(label.clone());
        let label_span = span.clone();
        let pf =
            cx.within(p, |cx| cx.fields(p.body, &format!("port \"{label}\""), PORT_ATTRS, &[]));
        let mut port = Port { label, ..Port::default() };
        cx.within(p, |cx| {
            if let Some(a) = pf.attr("static") {
                port.value = cx.int(a, 0, 65535).unwrap_or(0) as u16;
            }
            if let Some(a) = pf.attr("to") {
                port.to = cx.int(a, -1, 65535).unwrap_or(0) as i32;
            }
            if let Some(a) = pf.attr("host_network") {
                port.host_network = cx.string(a).unwrap_or_default();
            }
        });
        // Labels and static ports must be unique across all of a group's networks.
        let clash =
            cx.group_ports.iter().find(|(p, _)| p.label == port.label).map(|(_, at)| at.clone());
        if let Some(at) = clash {
            let (line, _) = cx.src.position(at.start);
            cx.error(
                &label_span,
                format!("port \"{}\" is already declared in this group (line {line})", port.label),
            );
        } else if port.value > 0 {
            let taken = cx
                .group_ports
                .iter()
                .find(|(p, _)| p.value == port.value)
                .map(|(p, at)| (p.label.clone(), at.clone()));
            if let Some((other, at)) = taken {
                let (line, _) = cx.src.position(at.start);
                cx.error_hint(
                    &label_span,
                    format!(
                        "static port {} is already reserved by port \"{other}\" (line {line})",
                        port.value
                    ),
                    "each static port can be reserved once per group",
                );
            }
        }
        cx.group_ports.push((port.clone(), label_span));
        if port.value > 0 {
            n.reserved_ports.push(port);
        } else {
            n.dynamic_ports.push(port);
        }
    }
    n
}

fn scaling(cx: &mut Cx, b: &Blk) -> Option<Scaling> {
    if !b.labels.is_empty() {
        cx.error_hint(
            &b.labels[0].1,
            "labelled (task-level) scaling blocks are not supported by orc",
            "scaling \"cpu\"/\"mem\" is dynamic application sizing, a Nomad Enterprise feature",
        );
        return None;
    }
    let f = cx.fields(b.body, "scaling", &["min", "max", "enabled"], &[]);
    let mut s = Scaling::default();
    if let Some(a) = f.attr("min") {
        s.min = cx.u32(a);
    }
    match f.attr("max") {
        Some(a) => s.max = cx.u32(a).unwrap_or(0),
        None => cx.error(&b.ident_span, "scaling block needs max"),
    }
    if let Some(a) = f.attr("enabled") {
        s.enabled = cx.bool(a).unwrap_or(false);
    }
    if let (Some(min), Some(a)) = (s.min, f.attr("max")) {
        if s.max < min {
            cx.error(
                &a.span(),
                format!("scaling max ({}) must not be less than min ({min})", s.max),
            );
        }
    }
    Some(s)
}

const TASK_ATTRS: &[&str] =
    &["driver", "user", "kill_timeout", "kill_signal", "leader", "shutdown_delay", "env", "meta"];
const TASK_BLOCKS: &[&str] = &[
    "config",
    "env",
    "meta",
    "resources",
    "service",
    "template",
    "artifact",
    "logs",
    "restart",
    "lifecycle",
    "constraint",
    "affinity",
];

fn task(
    cx: &mut Cx,
    b: &Blk,
    job: &Job,
    group_ports: &[String],
    group_restart: &Option<RestartPolicy>,
    refs: &mut GroupRefs,
) -> Option<Task> {
    let (name, name_span) = cx.label(b, "task \"name\" { ... }")?;
    let what = format!("task \"{name}\"");
    let f = cx.fields(b.body, &what, TASK_ATTRS, TASK_BLOCKS);
    let mut t = Task { name: name.clone(), ..Task::default() };
    if name.contains('/') {
        cx.error(&name_span, format!("task name \"{name}\" must not contain '/'"));
    }
    let mut driver_span = b.ident_span.clone();
    match f.attr("driver") {
        Some(a) => {
            driver_span = a.span();
            t.driver = cx.string(a).unwrap_or_default();
        }
        None => cx.error_hint(
            &name_span,
            format!("task \"{name}\" has no driver"),
            "add `driver = \"pot\"` (or \"raw_exec\")",
        ),
    }
    if let Some(a) = f.attr("user") {
        t.user = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("kill_timeout") {
        t.kill_timeout = cx.duration(a);
    }
    if let Some(a) = f.attr("kill_signal") {
        t.kill_signal = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("leader") {
        t.leader = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("shutdown_delay") {
        t.shutdown_delay = cx.duration(a);
    }
    t.env = cx.string_map(&f, "env");
    t.meta = cx.string_map(&f, "meta");
    t.constraints = constraints(cx, &f);
    t.affinities = affinities(cx, &f);
    if let Some(r) = cx.single(&f, "resources") {
        t.resources = Some(cx.within(r, |cx| resources(cx, r)));
    }
    if let Some(l) = cx.single(&f, "lifecycle") {
        t.lifecycle = cx.within(l, |cx| lifecycle(cx, l));
    }
    if let Some(r) = cx.single(&f, "restart") {
        let base =
            group_restart.clone().unwrap_or_else(|| model::default_restart_policy(job.job_type));
        t.restart_policy = Some(cx.within(r, |cx| restart(cx, r, base)));
    }
    match cx.single(&f, "logs") {
        Some(l) => {
            t.log_config = Some(cx.within(l, |cx| logs(cx, l)));
            refs.logs_at.push((name.clone(), l.ident_span.clone()));
        }
        None => refs.logs_at.push((name.clone(), name_span.clone())),
    }
    for s in f.blocks("service") {
        if let Some(svc) = cx.within(s, |cx| service(cx, s, refs, false)) {
            t.services.push(svc);
        }
    }
    for tb in f.blocks("template") {
        if let Some(tpl) = cx.within(tb, |cx| template(cx, tb)) {
            t.templates.push(tpl);
        }
    }
    for ab in f.blocks("artifact") {
        if let Some(art) = cx.within(ab, |cx| artifact(cx, ab)) {
            t.artifacts.push(art);
        }
    }
    let mut ports: Vec<String> = group_ports.to_vec();
    if let Some(r) = &t.resources {
        ports.extend(r.networks.iter().flat_map(port_labels));
    }
    let config_blocks: Vec<&Blk> = f.blocks("config").collect();
    let config_block = cx.single(&f, "config");
    let entries = match config_block {
        Some(c) => cx.within(c, |cx| config(cx, c)),
        None => Vec::new(),
    };
    if config_blocks.len() <= 1 && !t.driver.is_empty() {
        let mut driver_diags = Vec::new();
        drivers::validate(
            cx.src,
            &drivers::TaskInfo {
                driver: &t.driver,
                driver_span: &driver_span,
                task_name: &name,
                task_name_span: &name_span,
                config_span: config_block.map(|c| &c.ident_span),
                ports: &ports,
            },
            &entries,
            &mut driver_diags,
        );
        cx.diags.extend(driver_diags);
    }
    t.config =
        entries.into_iter().filter(|e| e.evaluated).map(|e| (e.key.to_string(), e.value)).collect();
    Some(t)
}

/// A driver `config` block as an opaque JSON map, keeping positions for the driver validators.
fn config<'a>(cx: &mut Cx, b: &Blk<'a>) -> Vec<ConfigEntry<'a>> {
    cx.no_labels(b);
    let mut out: Vec<ConfigEntry<'a>> = Vec::new();
    for s in b.body.iter() {
        match s {
            Structure::Attribute(a) => {
                let key = a.key.as_str();
                let key_span = a.key.span().unwrap_or_default();
                if let Some(prev) = out.iter().find(|e| e.key == key) {
                    let (line, _) = cx.src.position(prev.key_span.start);
                    cx.error(
                        &key_span,
                        format!("config key \"{key}\" is set twice (first on line {line})"),
                    );
                    continue;
                }
                let attr = Attr { name: key, key_span: key_span.clone(), expr: &a.value };
                let value = cx.value(&attr);
                let item_spans = match &a.value {
                    Expression::Array(items) => {
                        items.iter().map(|e| e.span().unwrap_or_default()).collect()
                    }
                    _ => Vec::new(),
                };
                out.push(ConfigEntry {
                    key,
                    key_span,
                    value_span: attr.span(),
                    evaluated: value.is_some(),
                    value: value.map_or(serde_json::Value::Null, |v| funcs::value_to_json(&v)),
                    item_spans,
                });
            }
            Structure::Block(inner) => {
                // Nested blocks (docker's `logging {}`, old `port_map {}`) become objects; repeated
                // ones become a list of objects, as Nomad's HCL decoding of driver specs does.
                let key = inner.ident.as_str();
                let value = serde_json::Value::Object(block_to_json(cx, &inner.body));
                let key_span = inner.ident.span().unwrap_or_default();
                match out.iter_mut().find(|e| e.key == key) {
                    Some(existing) => match &mut existing.value {
                        serde_json::Value::Array(list) => list.push(value),
                        other => {
                            let first = other.take();
                            *other = serde_json::Value::Array(vec![first, value]);
                        }
                    },
                    None => out.push(ConfigEntry {
                        key,
                        key_span: key_span.clone(),
                        value_span: key_span,
                        value,
                        evaluated: true,
                        item_spans: Vec::new(),
                    }),
                }
            }
        }
    }
    out
}

fn block_to_json(cx: &mut Cx, body: &Body) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let attr = Attr {
                    name: a.key.as_str(),
                    key_span: a.key.span().unwrap_or_default(),
                    expr: &a.value,
                };
                if let Some(v) = cx.value(&attr) {
                    out.insert(attr.name.to_string(), funcs::value_to_json(&v));
                }
            }
            Structure::Block(inner) => {
                let v = serde_json::Value::Object(block_to_json(cx, &inner.body));
                match out.get_mut(inner.ident.as_str()) {
                    Some(serde_json::Value::Array(list)) => list.push(v),
                    Some(other) => {
                        let first = other.take();
                        *other = serde_json::Value::Array(vec![first, v]);
                    }
                    None => {
                        out.insert(inner.ident.as_str().to_string(), v);
                    }
                }
            }
        }
    }
    out
}

const RESOURCES_ATTRS: &[&str] = &["cpu", "cores", "memory", "memory_max"];

fn resources(cx: &mut Cx, b: &Blk) -> Resources {
    cx.no_labels(b);
    let f = cx.fields(b.body, "resources", RESOURCES_ATTRS, &["network"]);
    let mut r = Resources::default();
    if let Some(a) = f.attr("cpu") {
        r.cpu = cx.int(a, 1, i64::from(u32::MAX)).unwrap_or(0) as u32;
    }
    if let Some(a) = f.attr("cores") {
        r.cores = cx.int(a, 1, i64::from(u32::MAX)).unwrap_or(0) as u32;
        if let Some(cpu) = f.attr("cpu") {
            cx.error_hint(
                &cpu.key_span,
                "cpu and cores cannot both be set",
                "cores reserves whole cores; cpu asks for MHz",
            );
        }
    }
    if let Some(a) = f.attr("memory") {
        r.memory_mb = cx.int(a, 10, i64::from(u32::MAX)).unwrap_or(0) as u32;
    }
    if let Some(a) = f.attr("memory_max") {
        r.memory_max_mb = cx.u32(a).unwrap_or(0);
        let memory = if r.memory_mb == 0 { model::DEFAULT_MEMORY_MB } else { r.memory_mb };
        if r.memory_max_mb != 0 && r.memory_max_mb < memory {
            cx.error(
                &a.span(),
                format!(
                    "memory_max ({} MB) must not be less than memory ({memory} MB)",
                    r.memory_max_mb
                ),
            );
        }
    }
    for n in f.blocks("network") {
        let net = cx.within(n, |cx| network(cx, n, false));
        r.networks.push(net);
    }
    r
}

fn lifecycle(cx: &mut Cx, b: &Blk) -> Option<Lifecycle> {
    cx.no_labels(b);
    let f = cx.fields(b.body, "lifecycle", &["hook", "sidecar"], &[]);
    let mut l = Lifecycle::default();
    match f.attr("hook") {
        Some(a) => l.hook = cx.choice(a, &["prestart", "poststart", "poststop"])?,
        None => {
            cx.error_hint(
                &b.ident_span,
                "lifecycle block needs a hook",
                "hook must be one of \"prestart\", \"poststart\", \"poststop\"",
            );
            return None;
        }
    }
    if let Some(a) = f.attr("sidecar") {
        l.sidecar = cx.bool(a).unwrap_or(false);
    }
    Some(l)
}

fn restart(cx: &mut Cx, b: &Blk, base: RestartPolicy) -> RestartPolicy {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "restart",
        &["attempts", "interval", "delay", "mode", "render_templates"],
        &[],
    );
    let mut r = base;
    if let Some(a) = f.attr("attempts") {
        r.attempts = cx.u32(a).unwrap_or(r.attempts);
    }
    if let Some(a) = f.attr("interval") {
        r.interval = cx.duration(a).unwrap_or(r.interval);
    }
    if let Some(a) = f.attr("delay") {
        r.delay = cx.duration(a).unwrap_or(r.delay);
    }
    if let Some(a) = f.attr("mode") {
        r.mode = cx.choice(a, &["fail", "delay"]).unwrap_or(r.mode);
    }
    if let Some(a) = f.attr("render_templates") {
        r.render_templates = cx.bool(a).unwrap_or(false);
    }
    if r.attempts > 0 && r.interval < r.delay * r.attempts {
        cx.error_hint(
            &b.ident_span,
            format!(
                "cannot restart {} times in an interval of {:?} with a delay of {:?}",
                r.attempts, r.interval, r.delay
            ),
            "raise interval, or lower attempts or delay",
        );
    }
    r
}

fn reschedule(cx: &mut Cx, b: &Blk, base: ReschedulePolicy) -> ReschedulePolicy {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "reschedule",
        &["attempts", "interval", "delay", "delay_function", "max_delay", "unlimited"],
        &[],
    );
    let mut r = base;
    if let Some(a) = f.attr("attempts") {
        r.attempts = cx.u32(a).unwrap_or(r.attempts);
    }
    if let Some(a) = f.attr("interval") {
        r.interval = cx.duration(a).unwrap_or(r.interval);
    }
    if let Some(a) = f.attr("delay") {
        r.delay = cx.duration(a).unwrap_or(r.delay);
        if r.delay < MIN_RESCHEDULE_DELAY {
            cx.error(
                &a.span(),
                format!("reschedule delay must be at least {MIN_RESCHEDULE_DELAY:?}"),
            );
        }
    }
    if let Some(a) = f.attr("delay_function") {
        r.delay_function =
            cx.choice(a, &["constant", "exponential", "fibonacci"]).unwrap_or(r.delay_function);
    }
    if let Some(a) = f.attr("max_delay") {
        r.max_delay = cx.duration(a).unwrap_or(r.max_delay);
    }
    if let Some(a) = f.attr("unlimited") {
        r.unlimited = cx.bool(a).unwrap_or(r.unlimited);
    }
    if r.delay_function != "constant" && (r.unlimited || r.attempts > 0) && r.max_delay < r.delay {
        let at = f.attr("max_delay").map_or(b.ident_span.clone(), Attr::span);
        cx.error(
            &at,
            format!("max_delay ({:?}) must not be less than delay ({:?})", r.max_delay, r.delay),
        );
    }
    r
}

fn update(cx: &mut Cx, b: &Blk, base: UpdateStrategy) -> UpdateStrategy {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "update",
        &[
            "stagger",
            "max_parallel",
            "health_check",
            "min_healthy_time",
            "healthy_deadline",
            "progress_deadline",
            "canary",
            "auto_revert",
            "auto_promote",
        ],
        &[],
    );
    let mut u = base;
    if let Some(a) = f.attr("stagger") {
        u.stagger = cx.duration(a).unwrap_or(u.stagger);
    }
    if let Some(a) = f.attr("max_parallel") {
        u.max_parallel = cx.u32(a).unwrap_or(u.max_parallel);
    }
    if let Some(a) = f.attr("health_check") {
        u.health_check =
            cx.choice(a, &["checks", "task_states", "manual"]).unwrap_or(u.health_check);
    }
    if let Some(a) = f.attr("min_healthy_time") {
        u.min_healthy_time = cx.duration(a).unwrap_or(u.min_healthy_time);
    }
    if let Some(a) = f.attr("healthy_deadline") {
        u.healthy_deadline = cx.duration(a).unwrap_or(u.healthy_deadline);
    }
    if let Some(a) = f.attr("progress_deadline") {
        u.progress_deadline = cx.duration(a).unwrap_or(u.progress_deadline);
    }
    if let Some(a) = f.attr("canary") {
        u.canary = cx.u32(a).unwrap_or(u.canary);
    }
    if let Some(a) = f.attr("auto_revert") {
        u.auto_revert = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("auto_promote") {
        u.auto_promote = cx.bool(a).unwrap_or(false);
    }
    if u.min_healthy_time >= u.healthy_deadline {
        let at = f
            .attr("min_healthy_time")
            .or(f.attr("healthy_deadline"))
            .map_or(b.ident_span.clone(), Attr::span);
        cx.error(
            &at,
            format!(
                "min_healthy_time ({:?}) must be less than healthy_deadline ({:?})",
                u.min_healthy_time, u.healthy_deadline
            ),
        );
    }
    if !u.progress_deadline.is_zero() && u.progress_deadline < u.healthy_deadline {
        let at = f
            .attr("progress_deadline")
            .or(f.attr("healthy_deadline"))
            .map_or(b.ident_span.clone(), Attr::span);
        cx.error(
            &at,
            format!(
                "healthy_deadline ({:?}) must not exceed progress_deadline ({:?})",
                u.healthy_deadline, u.progress_deadline
            ),
        );
    }
    if u.auto_promote && u.canary == 0 {
        if let Some(a) = f.attr("auto_promote") {
            cx.error_hint(&a.span(), "auto_promote needs canaries", "set canary = 1 or more");
        }
    }
    u
}

fn migrate(cx: &mut Cx, b: &Blk, base: MigrateStrategy) -> MigrateStrategy {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "migrate",
        &["max_parallel", "health_check", "min_healthy_time", "healthy_deadline"],
        &[],
    );
    let mut m = base;
    if let Some(a) = f.attr("max_parallel") {
        m.max_parallel = cx.u32(a).unwrap_or(m.max_parallel);
    }
    if let Some(a) = f.attr("health_check") {
        m.health_check = cx.choice(a, &["checks", "task_states"]).unwrap_or(m.health_check);
    }
    if let Some(a) = f.attr("min_healthy_time") {
        m.min_healthy_time = cx.duration(a).unwrap_or(m.min_healthy_time);
    }
    if let Some(a) = f.attr("healthy_deadline") {
        m.healthy_deadline = cx.duration(a).unwrap_or(m.healthy_deadline);
    }
    if m.min_healthy_time >= m.healthy_deadline {
        let at = f
            .attr("min_healthy_time")
            .or(f.attr("healthy_deadline"))
            .map_or(b.ident_span.clone(), Attr::span);
        cx.error(
            &at,
            format!(
                "min_healthy_time ({:?}) must be less than healthy_deadline ({:?})",
                m.min_healthy_time, m.healthy_deadline
            ),
        );
    }
    m
}

fn ephemeral_disk(cx: &mut Cx, b: &Blk) -> (EphemeralDisk, Span) {
    cx.no_labels(b);
    let f = cx.fields(b.body, "ephemeral_disk", &["size", "sticky", "migrate"], &[]);
    let mut d = model::default_ephemeral_disk();
    let mut span = b.ident_span.clone();
    if let Some(a) = f.attr("size") {
        d.size_mb = cx.int(a, 1, i64::from(u32::MAX)).unwrap_or(i64::from(d.size_mb)) as u32;
        span = a.span();
    }
    if let Some(a) = f.attr("sticky") {
        d.sticky = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("migrate") {
        d.migrate = cx.bool(a).unwrap_or(false);
    }
    (d, span)
}

fn logs(cx: &mut Cx, b: &Blk) -> LogConfig {
    cx.no_labels(b);
    let f = cx.fields(b.body, "logs", &["max_files", "max_file_size", "disabled", "enabled"], &[]);
    let mut l = model::default_log_config();
    if let Some(a) = f.attr("max_files") {
        l.max_files = cx.int(a, 1, i64::from(u32::MAX)).unwrap_or(10) as u32;
    }
    if let Some(a) = f.attr("max_file_size") {
        l.max_file_size_mb = cx.int(a, 1, i64::from(u32::MAX)).unwrap_or(10) as u32;
    }
    if let Some(a) = f.attr("disabled") {
        l.disabled = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("enabled") {
        l.disabled = !cx.bool(a).unwrap_or(true);
    }
    l
}

const TEMPLATE_ATTRS: &[&str] = &[
    "source",
    "destination",
    "data",
    "change_mode",
    "change_signal",
    "splay",
    "perms",
    "uid",
    "gid",
    "left_delimiter",
    "right_delimiter",
    "env",
    "error_on_missing_key",
    "once",
];

fn template(cx: &mut Cx, b: &Blk) -> Option<Template> {
    cx.no_labels(b);
    let f = cx.fields(b.body, "template", TEMPLATE_ATTRS, &["wait"]);
    let mut t = Template::default();
    match f.attr("destination") {
        Some(a) => t.dest_path = cx.string(a).unwrap_or_default(),
        None => cx.error_hint(
            &b.ident_span,
            "template block needs a destination",
            "add `destination = \"local/file.conf\"`",
        ),
    }
    if let Some(a) = f.attr("source") {
        t.source_path = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("data") {
        t.embedded_tmpl = cx.string(a).unwrap_or_default();
    }
    match (f.attr("source"), f.attr("data")) {
        (None, None) => cx.error_hint(
            &b.ident_span,
            "template block needs data or source",
            "inline the template with `data = <<EOT ... EOT`",
        ),
        (Some(_), Some(d)) => {
            cx.error(&d.key_span, "template block takes data or source, not both")
        }
        _ => {}
    }
    if let Some(a) = f.attr("change_mode") {
        if cx.string(a).as_deref() == Some("script") {
            cx.error_hint(
                &a.span(),
                "change_mode \"script\" is not supported by orc",
                "orc does not run template change scripts; use change_mode = \"restart\" or \"signal\"",
            );
        } else {
            t.change_mode = cx.choice(a, &["restart", "noop", "signal"]).unwrap_or_default();
        }
    }
    if let Some(a) = f.attr("change_signal") {
        t.change_signal = cx.string(a).unwrap_or_default();
    }
    if t.change_mode == "signal" && t.change_signal.is_empty() {
        let at = f.attr("change_mode").map_or(b.ident_span.clone(), Attr::span);
        cx.error_hint(
            &at,
            "change_mode \"signal\" needs a change_signal",
            "add `change_signal = \"SIGHUP\"`",
        );
    }
    if let Some(a) = f.attr("splay") {
        t.splay = cx.duration(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("perms") {
        if let Some(p) = cx.string(a) {
            if p.is_empty() || p.len() > 4 || !p.chars().all(|c| ('0'..='7').contains(&c)) {
                cx.error_hint(
                    &a.span(),
                    format!("invalid perms \"{p}\""),
                    "perms is an octal mode such as \"644\" or \"0600\"",
                );
            }
            t.perms = p;
        }
    }
    if let Some(a) = f.attr("uid") {
        t.uid = cx.int(a, -1, i64::from(i32::MAX)).map(|n| n as i32);
    }
    if let Some(a) = f.attr("gid") {
        t.gid = cx.int(a, -1, i64::from(i32::MAX)).map(|n| n as i32);
    }
    if let Some(a) = f.attr("left_delimiter") {
        t.left_delim = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("right_delimiter") {
        t.right_delim = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("env") {
        t.envvars = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("error_on_missing_key") {
        t.error_on_missing_key = cx.bool(a).unwrap_or(false);
    }
    if let Some(a) = f.attr("once") {
        t.once = cx.bool(a).unwrap_or(false);
    }
    if let Some(w) = cx.single(&f, "wait") {
        cx.no_labels(w);
        let wf = cx.within(w, |cx| cx.fields(w.body, "template wait", &["min", "max"], &[]));
        let mut wait = WaitConfig::default();
        cx.within(w, |cx| {
            if let Some(a) = wf.attr("min") {
                wait.min = cx.duration(a);
            }
            if let Some(a) = wf.attr("max") {
                wait.max = cx.duration(a);
            }
        });
        if let (Some(min), Some(max), Some(a)) = (wait.min, wait.max, wf.attr("max")) {
            if max < min {
                cx.error(&a.span(), "wait max must not be less than min");
            }
        }
        t.wait = Some(wait);
    }
    Some(t)
}

fn artifact(cx: &mut Cx, b: &Blk) -> Option<Artifact> {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "artifact",
        &["source", "destination", "mode", "options", "headers", "chown"],
        &["options", "headers"],
    );
    let mut art = Artifact::default();
    match f.attr("source") {
        Some(a) => art.getter_source = cx.string(a).unwrap_or_default(),
        None => {
            cx.error_hint(
                &b.ident_span,
                "artifact block needs a source",
                "add `source = \"https://...\"`",
            );
            return None;
        }
    }
    if let Some(a) = f.attr("destination") {
        art.relative_dest = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("mode") {
        art.getter_mode = cx.choice(a, &["any", "file", "dir"]).unwrap_or_default();
    }
    art.getter_options = cx.string_map(&f, "options");
    art.getter_headers = cx.string_map(&f, "headers");
    if let Some(a) = f.attr("chown") {
        art.chown = cx.bool(a).unwrap_or(false);
    }
    Some(art)
}

const SERVICE_ATTRS: &[&str] = &[
    "name",
    "tags",
    "canary_tags",
    "port",
    "provider",
    "address_mode",
    "address",
    "meta",
    "canary_meta",
    "on_update",
    "task",
    "enable_tag_override",
];
const SERVICE_BLOCKS: &[&str] = &["check", "check_restart", "meta", "canary_meta"];

fn service(cx: &mut Cx, b: &Blk, refs: &mut GroupRefs, group_level: bool) -> Option<Service> {
    cx.no_labels(b);
    let attrs: Vec<&str> =
        SERVICE_ATTRS.iter().copied().filter(|a| group_level || *a != "task").collect();
    let f = cx.fields(b.body, "service", &attrs, SERVICE_BLOCKS);
    let mut s = Service::default();
    if let Some(a) = f.attr("name") {
        s.name = cx.string(a).unwrap_or_default();
        check_service_name(cx, &s.name, &a.span());
    }
    if let Some(a) = f.attr("tags") {
        s.tags = cx.strings(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("canary_tags") {
        s.canary_tags = cx.strings(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("port") {
        if let Some(p) = cx.string(a) {
            refs.ports_used.push((p.clone(), a.span(), "service"));
            s.port_label = p;
        }
    }
    let mut provider_span = b.ident_span.clone();
    if let Some(a) = f.attr("provider") {
        provider_span = a.span();
        if let Some(p) = cx.choice(a, &["consul", "nomad", "orc"]) {
            // orc's built-in service catalogue is Nomad's; "orc" reads better in orc job files.
            s.provider = if p == "orc" { "nomad".into() } else { p };
        }
    }
    let provider = if s.provider.is_empty() { "consul".to_string() } else { s.provider.clone() };
    refs.providers.push((provider.clone(), provider_span));
    if let Some(a) = f.attr("address_mode") {
        s.address_mode =
            cx.choice(a, &["auto", "host", "alloc", "alloc_ipv6", "driver"]).unwrap_or_default();
    }
    if let Some(a) = f.attr("address") {
        s.address = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("on_update") {
        s.on_update =
            cx.choice(a, &["require_healthy", "ignore_warnings", "ignore"]).unwrap_or_default();
    }
    if let Some(a) = f.attr("task") {
        s.task_name = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("enable_tag_override") {
        s.enable_tag_override = cx.bool(a).unwrap_or(false);
    }
    s.meta = cx.string_map(&f, "meta");
    s.canary_meta = cx.string_map(&f, "canary_meta");
    if let Some(c) = cx.single(&f, "check_restart") {
        s.check_restart = Some(cx.within(c, |cx| check_restart(cx, c, None)));
    }
    for c in f.blocks("check") {
        if let Some(check) = cx.within(c, |cx| check(cx, c, &s, &provider, refs, group_level)) {
            s.checks.push(check);
        }
    }
    Some(s)
}

/// Nomad's rule for service names (RFC 1123 label, at most 63 characters), applied after the
/// `${JOB}`-style placeholders it substitutes; names with runtime interpolation are left alone.
fn check_service_name(cx: &mut Cx, name: &str, span: &Span) {
    let probe = name
        .replace("${JOB}", "j")
        .replace("${TASKGROUP}", "g")
        .replace("${TASK}", "t")
        .replace("${BASE}", "j-g-t");
    if probe.contains("${") {
        return;
    }
    let ok = !probe.is_empty()
        && probe.len() <= 63
        && probe.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !probe.starts_with('-')
        && !probe.ends_with('-');
    if !ok {
        cx.error_hint(span, format!("invalid service name \"{name}\""), "service names may contain only letters, digits and dashes, must not start or end with a dash, and must be at most 63 characters");
    }
}

const CHECK_ATTRS: &[&str] = &[
    "type",
    "name",
    "path",
    "method",
    "protocol",
    "port",
    "interval",
    "timeout",
    "command",
    "args",
    "initial_status",
    "address_mode",
    "tls_skip_verify",
    "tls_server_name",
    "body",
    "task",
    "success_before_passing",
    "failures_before_critical",
    "failures_before_warning",
    "on_update",
    "header",
];

fn check(
    cx: &mut Cx,
    b: &Blk,
    service: &Service,
    provider: &str,
    refs: &mut GroupRefs,
    group_level: bool,
) -> Option<ServiceCheck> {
    cx.no_labels(b);
    let f = cx.fields(b.body, "check", CHECK_ATTRS, &["header", "check_restart"]);
    let mut c = ServiceCheck::default();
    match f.attr("type") {
        Some(a) => {
            let t = cx.string(a)?;
            match t.as_str() {
                "tcp" | "http" | "script" => c.check_type = t,
                "grpc" => cx.error_hint(
                    &a.span(),
                    "grpc checks are not supported by orc",
                    "use an http or tcp check",
                ),
                other => cx.error_hint(
                    &a.span(),
                    format!("invalid check type \"{other}\""),
                    "type must be one of \"tcp\", \"http\" or \"script\"",
                ),
            }
            if provider == "nomad" && c.check_type == "script" {
                cx.error_hint(
                    &a.span(),
                    "the nomad service provider only runs http and tcp checks",
                    "use type = \"http\" or \"tcp\", or provider = \"consul\"",
                );
            }
        }
        None => cx.error_hint(
            &b.ident_span,
            "check block needs a type",
            "add `type = \"tcp\"` or \"http\"",
        ),
    }
    for (name, field) in [
        ("name", &mut c.name),
        ("path", &mut c.path),
        ("command", &mut c.command),
        ("tls_server_name", &mut c.tls_server_name),
        ("body", &mut c.body),
        ("task", &mut c.task_name),
    ] {
        if let Some(a) = f.attr(name) {
            *field = cx.string(a).unwrap_or_default();
        }
    }
    if let Some(a) = f.attr("method") {
        c.method = cx.string(a).unwrap_or_default().to_uppercase();
    }
    if let Some(a) = f.attr("protocol") {
        c.protocol = cx.choice(a, &["http", "https"]).unwrap_or_default();
    }
    if let Some(a) = f.attr("port") {
        if let Some(p) = cx.string(a) {
            refs.ports_used.push((p.clone(), a.span(), "check"));
            c.port_label = p;
        }
    }
    if let Some(a) = f.attr("args") {
        c.args = cx.strings(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("initial_status") {
        c.initial_status = cx.choice(a, &["passing", "warning", "critical"]).unwrap_or_default();
    }
    if let Some(a) = f.attr("address_mode") {
        c.address_mode =
            cx.choice(a, &["host", "driver", "alloc", "alloc_ipv6"]).unwrap_or_default();
    }
    if let Some(a) = f.attr("tls_skip_verify") {
        c.tls_skip_verify = cx.bool(a).unwrap_or(false);
    }
    for (name, field) in [
        ("success_before_passing", &mut c.success_before_passing),
        ("failures_before_critical", &mut c.failures_before_critical),
        ("failures_before_warning", &mut c.failures_before_warning),
    ] {
        if let Some(a) = f.attr(name) {
            *field = cx.u32(a).unwrap_or(0);
        }
    }
    if let Some(a) = f.attr("on_update") {
        c.on_update =
            cx.choice(a, &["require_healthy", "ignore_warnings", "ignore"]).unwrap_or_default();
    }
    for (field, name) in [(&mut c.interval, "interval"), (&mut c.timeout, "timeout")] {
        match f.attr(name) {
            Some(a) => {
                if let Some(d) = cx.duration(a) {
                    if d < MIN_CHECK_DURATION {
                        cx.error(&a.span(), format!("check {name} must be at least 1s, got {d:?}"));
                    }
                    *field = d;
                }
            }
            None => cx.error_hint(
                &b.ident_span,
                format!("check block needs an {name}"),
                format!("add `{name} = \"10s\"`"),
            ),
        }
    }
    if let Some(a) = f.attr("header") {
        c.header = header_map(cx, a);
    }
    for h in f.blocks("header") {
        cx.no_labels(h);
        cx.within(h, |cx| {
            for s in h.body.iter() {
                if let Structure::Attribute(attr) = s {
                    let a = Attr {
                        name: attr.key.as_str(),
                        key_span: attr.key.span().unwrap_or_default(),
                        expr: &attr.value,
                    };
                    if let Some(values) = cx.strings(&a) {
                        c.header.insert(a.name.to_string(), values);
                    }
                }
            }
        });
    }
    if c.check_type == "http" && c.path.is_empty() {
        cx.error_hint(&b.ident_span, "http checks need a path", "add `path = \"/health\"`");
    }
    if c.check_type == "script" && c.command.is_empty() {
        cx.error_hint(
            &b.ident_span,
            "script checks need a command",
            "add `command = \"/bin/check\"`",
        );
    }
    // A group service's script check must say which task's environment runs it.
    if group_level
        && c.check_type == "script"
        && c.task_name.is_empty()
        && service.task_name.is_empty()
    {
        cx.error_hint(
            &b.ident_span,
            "script checks in a group service need a task",
            "add `task = \"<task name>\"` to the check or the service",
        );
    }
    if c.check_type != "script"
        && service.port_label.is_empty()
        && c.port_label.is_empty()
        && !c.check_type.is_empty()
    {
        cx.error_hint(
            &b.ident_span,
            format!("{} check needs a port", c.check_type),
            "set `port` on the check or its service",
        );
    }
    let inherited = service.check_restart.clone();
    match cx.single(&f, "check_restart") {
        Some(r) => c.check_restart = Some(cx.within(r, |cx| check_restart(cx, r, inherited))),
        None => c.check_restart = inherited,
    }
    Some(c)
}

fn header_map(cx: &mut Cx, a: &Attr) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(v) = cx.value(a) else { return out };
    let Value::Object(m) = &v else {
        cx.type_error(a, "a map of lists of strings", &v);
        return out;
    };
    for (k, item) in m {
        let values: Option<Vec<String>> = match item {
            Value::Array(items) => items.iter().map(funcs::primitive_string).collect(),
            other => funcs::primitive_string(other).map(|s| vec![s]),
        };
        match values {
            Some(vals) => {
                out.insert(k.clone(), vals);
            }
            None => cx.error(&a.span(), format!("header {k} must be a list of strings")),
        }
    }
    out
}

/// A `check_restart` block, merged field by field over the service's (when in a check).
fn check_restart(cx: &mut Cx, b: &Blk, base: Option<CheckRestart>) -> CheckRestart {
    cx.no_labels(b);
    let f = cx.fields(b.body, "check_restart", &["limit", "grace", "ignore_warnings"], &[]);
    // Nomad's grace default is 1s.
    let mut r = base.unwrap_or(CheckRestart {
        limit: 0,
        grace: Duration::from_secs(1),
        ignore_warnings: false,
    });
    if let Some(a) = f.attr("limit") {
        r.limit = cx.u32(a).unwrap_or(0);
    }
    if let Some(a) = f.attr("grace") {
        r.grace = cx.duration(a).unwrap_or(r.grace);
    }
    if let Some(a) = f.attr("ignore_warnings") {
        r.ignore_warnings = cx.bool(a).unwrap_or(false);
    }
    r
}

const CONSTRAINT_ATTRS: &[&str] = &[
    "attribute",
    "operator",
    "value",
    "distinct_hosts",
    "distinct_property",
    "regexp",
    "version",
    "semver",
    "set_contains",
];

fn constraints(cx: &mut Cx, f: &Fields) -> Vec<model::Constraint> {
    let mut out = Vec::new();
    for b in f.blocks("constraint") {
        if let Some(c) = cx.within(b, |cx| constraint(cx, b)) {
            out.push(c);
        }
    }
    out
}

fn constraint(cx: &mut Cx, b: &Blk) -> Option<Constraint> {
    cx.no_labels(b);
    let f = cx.fields(b.body, "constraint", CONSTRAINT_ATTRS, &[]);
    let mut c = Constraint::default();
    let mut operand_span = b.ident_span.clone();
    if let Some(a) = f.attr("attribute") {
        c.ltarget = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("value") {
        c.rtarget = cx.string(a).unwrap_or_default();
    }
    if let Some(a) = f.attr("operator") {
        operand_span = a.span();
        c.operand = cx.string(a).unwrap_or_default();
    }
    // Sugar attributes set the operand (and a target) directly.
    for sugar in ["regexp", "version", "semver", "set_contains"] {
        if let Some(a) = f.attr(sugar) {
            c.operand = sugar.into();
            c.rtarget = cx.string(a).unwrap_or_default();
            operand_span = a.key_span.clone();
        }
    }
    if let Some(a) = f.attr("distinct_property") {
        c.operand = "distinct_property".into();
        c.ltarget = cx.string(a).unwrap_or_default();
        operand_span = a.key_span.clone();
    }
    if let Some(a) = f.attr("distinct_hosts") {
        if !cx.bool(a).unwrap_or(false) {
            return None;
        }
        c.operand = "distinct_hosts".into();
        operand_span = a.key_span.clone();
    }
    if c.operand.is_empty() {
        c.operand = "=".into();
    }
    if !CONSTRAINT_OPERATORS.contains(&c.operand.as_str()) {
        cx.error_hint(
            &operand_span,
            format!("unknown constraint operator \"{}\"", c.operand),
            format!("operator must be one of: {}", CONSTRAINT_OPERATORS.join(" ")),
        );
        return None;
    }
    check_targets(
        cx,
        b,
        &c.operand,
        &c.ltarget,
        &c.rtarget,
        f.attr("value").or(f.attr(&c.operand)),
    );
    Some(c)
}

/// Nomad's per-operator rules on left and right targets.
fn check_targets(
    cx: &mut Cx,
    b: &Blk,
    operand: &str,
    ltarget: &str,
    rtarget: &str,
    value: Option<&Attr>,
) {
    let value_span = value.map_or(b.ident_span.clone(), Attr::span);
    match operand {
        "distinct_hosts" => {}
        "distinct_property" => {
            if ltarget.is_empty() {
                cx.error(&b.ident_span, "distinct_property needs the property, e.g. distinct_property = \"${meta.rack}\"");
            }
            if !rtarget.is_empty()
                && !rtarget.contains("${")
                && rtarget.parse::<u64>().map_or(true, |n| n == 0)
            {
                cx.error(&value_span, format!("distinct_property limit must be a positive whole number, got \"{rtarget}\""));
            }
        }
        "is_set" | "is_not_set" => {
            if ltarget.is_empty() {
                cx.error_hint(
                    &b.ident_span,
                    format!("{operand} needs an attribute"),
                    "add `attribute = \"${meta.x}\"`",
                );
            }
        }
        _ => {
            if ltarget.is_empty() {
                cx.error_hint(
                    &b.ident_span,
                    format!("{} needs an attribute", b.name),
                    "add `attribute = \"${attr.kernel.name}\"` or similar",
                );
            }
            if rtarget.is_empty() {
                cx.error_hint(
                    &b.ident_span,
                    format!("{} with operator \"{operand}\" needs a value", b.name),
                    "add `value = \"...\"`",
                );
            } else if operand == "regexp" && !rtarget.contains("${") {
                if let Err(e) = regex::Regex::new(rtarget) {
                    // regex's messages are multi-line drawings; the last line is the reason.
                    let reason = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim_start_matches("error: ")
                        .to_string();
                    cx.error(
                        &value_span,
                        format!("invalid regular expression \"{rtarget}\": {reason}"),
                    );
                }
            } else if matches!(operand, "<" | "<=" | ">" | ">=") && ltarget == rtarget {
                cx.error(&value_span, "attribute and value are the same");
            }
        }
    }
}

fn affinities(cx: &mut Cx, f: &Fields) -> Vec<Affinity> {
    let mut out = Vec::new();
    for b in f.blocks("affinity") {
        if let Some(a) = cx.within(b, |cx| affinity(cx, b)) {
            out.push(a);
        }
    }
    out
}

fn affinity(cx: &mut Cx, b: &Blk) -> Option<Affinity> {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "affinity",
        &[
            "attribute",
            "operator",
            "value",
            "weight",
            "regexp",
            "version",
            "semver",
            "set_contains_any",
            "set_contains_all",
        ],
        &[],
    );
    let mut a = Affinity { weight: 50, ..Affinity::default() };
    let mut operand_span = b.ident_span.clone();
    if let Some(x) = f.attr("attribute") {
        a.ltarget = cx.string(x).unwrap_or_default();
    }
    if let Some(x) = f.attr("value") {
        a.rtarget = cx.string(x).unwrap_or_default();
    }
    if let Some(x) = f.attr("operator") {
        operand_span = x.span();
        a.operand = cx.string(x).unwrap_or_default();
    }
    for sugar in ["regexp", "version", "semver", "set_contains_any", "set_contains_all"] {
        if let Some(x) = f.attr(sugar) {
            a.operand = sugar.into();
            a.rtarget = cx.string(x).unwrap_or_default();
            operand_span = x.key_span.clone();
        }
    }
    if a.operand.is_empty() {
        a.operand = "=".into();
    }
    if let Some(x) = f.attr("weight") {
        let w = cx.int(x, -100, 100)?;
        if w == 0 {
            cx.error_hint(
                &x.span(),
                "affinity weight must not be 0",
                "use a weight between -100 and 100; negative weights repel",
            );
            return None;
        }
        a.weight = w as i8;
    }
    if !AFFINITY_OPERATORS.contains(&a.operand.as_str()) {
        cx.error_hint(
            &operand_span,
            format!("unknown affinity operator \"{}\"", a.operand),
            format!("operator must be one of: {}", AFFINITY_OPERATORS.join(" ")),
        );
        return None;
    }
    check_targets(cx, b, &a.operand.clone(), &a.ltarget, &a.rtarget, f.attr("value"));
    Some(a)
}

fn spreads(cx: &mut Cx, f: &Fields) -> Vec<Spread> {
    let mut out = Vec::new();
    for b in f.blocks("spread") {
        if let Some(s) = cx.within(b, |cx| spread(cx, b)) {
            out.push(s);
        }
    }
    out
}

fn spread(cx: &mut Cx, b: &Blk) -> Option<Spread> {
    cx.no_labels(b);
    let f = cx.fields(b.body, "spread", &["attribute", "weight"], &["target"]);
    let mut s = Spread { weight: 50, ..Spread::default() };
    match f.attr("attribute") {
        Some(a) => s.attribute = cx.string(a).unwrap_or_default(),
        None => cx.error_hint(
            &b.ident_span,
            "spread block needs an attribute",
            "add `attribute = \"${node.datacenter}\"`",
        ),
    }
    if let Some(a) = f.attr("weight") {
        s.weight = cx.int(a, 1, 100)? as i8;
    }
    let mut total: u32 = 0;
    for t in f.blocks("target") {
        let Some((value, span)) = cx.label(t, "target \"dc1\" { percent = 50 }") else { continue };
        if s.spread_target.iter().any(|x| x.value == value) {
            cx.error(&span, format!("spread target \"{value}\" is listed twice"));
            continue;
        }
        let tf = cx.within(t, |cx| cx.fields(t.body, "spread target", &["percent"], &[]));
        let percent = cx
            .within(t, |cx| tf.attr("percent").and_then(|a| cx.int(a, 0, 100)))
            .unwrap_or(0) as u8;
        total += u32::from(percent);
        s.spread_target.push(SpreadTarget { value, percent });
    }
    if total > 100 {
        cx.error(
            &b.ident_span,
            format!("spread target percentages add up to {total}, more than 100"),
        );
    }
    Some(s)
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
