//! The `service`, `check` and `check_restart` blocks and their rules (names, check types per
//! provider, minimum intervals). Port references are recorded for the group to resolve.

use super::*;

/// Check durations below this are refused, as Nomad does.
pub(super) const MIN_CHECK_DURATION: Duration = Duration::from_secs(1);

pub(super) const SERVICE_ATTRS: &[&str] = &[
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
pub(super) const SERVICE_BLOCKS: &[&str] = &["check", "check_restart", "meta", "canary_meta"];

pub(super) fn service(
    cx: &mut Cx,
    b: &Blk,
    refs: &mut GroupRefs,
    group_level: bool,
) -> Option<Service> {
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
pub(super) fn check_service_name(cx: &mut Cx, name: &str, span: &Span) {
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

pub(super) const CHECK_ATTRS: &[&str] = &[
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

pub(super) fn check(
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

pub(super) fn header_map(cx: &mut Cx, a: &Attr) -> BTreeMap<String, Vec<String>> {
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
pub(super) fn check_restart(cx: &mut Cx, b: &Blk, base: Option<CheckRestart>) -> CheckRestart {
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
