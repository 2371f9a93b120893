//! The `task` block and what only tasks have: driver `config` (kept as opaque JSON, with positions
//! for the driver validators), `resources`, `lifecycle`, `logs`, `template` and `artifact`.
//! Services, restart policies and placement rules come from the sibling modules.

use super::*;

pub(super) const TASK_ATTRS: &[&str] =
    &["driver", "user", "kill_timeout", "kill_signal", "leader", "shutdown_delay", "env", "meta"];
pub(super) const TASK_BLOCKS: &[&str] = &[
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

pub(super) fn task(
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
pub(super) fn config<'a>(cx: &mut Cx, b: &Blk<'a>) -> Vec<ConfigEntry<'a>> {
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

pub(super) fn block_to_json(
    cx: &mut Cx,
    body: &Body,
) -> serde_json::Map<String, serde_json::Value> {
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

pub(super) const RESOURCES_ATTRS: &[&str] = &["cpu", "cores", "memory", "memory_max"];

pub(super) fn resources(cx: &mut Cx, b: &Blk) -> Resources {
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

pub(super) fn lifecycle(cx: &mut Cx, b: &Blk) -> Option<Lifecycle> {
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

pub(super) fn logs(cx: &mut Cx, b: &Blk) -> LogConfig {
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

pub(super) const TEMPLATE_ATTRS: &[&str] = &[
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

pub(super) fn template(cx: &mut Cx, b: &Blk) -> Option<Template> {
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
    // orc's agent renders a subset of the template language; anything outside it is refused
    // here, pointing at the data, rather than rendered wrongly at run time. (`source` files are
    // read on the node, and checked there.)
    if let Some(a) = f.attr("data") {
        if let Err(e) = template::parse(&t.embedded_tmpl, &t.left_delim, &t.right_delim) {
            let (line, col) = e.line_col(&t.embedded_tmpl);
            cx.error_hint(
                &a.span(),
                format!("template data (its line {line}, column {col}): {}", e.message),
                "orc renders plain text, {{ env \"NAME\" }} and string literals; render other files before the job runs, or fetch them with an artifact block",
            );
        }
    }
    Some(t)
}

pub(super) fn artifact(cx: &mut Cx, b: &Blk) -> Option<Artifact> {
    cx.no_labels(b);
    let f = cx.fields(
        b.body,
        "artifact",
        &["source", "destination", "mode", "options", "headers", "chown"],
        &["options", "headers"],
    );
    let mut art = Artifact::default();
    match f.attr("source") {
        Some(a) => {
            art.getter_source = cx.string(a).unwrap_or_default();
            // orc's agent fetches http and https only; any other go-getter source (git::, s3::,
            // file paths, ...) is refused here rather than failing the task at run time. A
            // source that starts with a runtime interpolation is checked by the agent.
            let src = art.getter_source.trim().to_ascii_lowercase();
            let http = src.starts_with("http://") || src.starts_with("https://");
            if !http && !src.starts_with("${") {
                cx.error_hint(
                    &a.span(),
                    format!("artifact source {:?} is not an http or https URL", art.getter_source),
                    "orc fetches artifacts over http:// and https:// only; serve the file over HTTP",
                );
            }
        }
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
