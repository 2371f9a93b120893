//! The `job`, `group`, `network`, `scaling` and `ephemeral_disk` blocks, and the checks that need a
//! whole group (port references, one service provider, log storage against the disk). Tasks,
//! services, policies and placement rules are decoded by the sibling modules.

use super::*;

pub(super) const JOB_ATTRS: &[&str] = &[
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
pub(super) const JOB_BLOCKS: &[&str] = &[
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
    // A missing label was reported by `label`; an empty one is reported here.
    if job.id.is_empty() && b.labels.len() == 1 {
        cx.error_hint(
            &b.labels[0].1,
            "the job ID must not be empty",
            "write `job \"name\" { ... }`",
        );
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
pub(super) fn allowed_for_type(cx: &mut Cx, b: &Blk, job_type: JobType) -> bool {
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
pub(super) fn lone_task_group(cx: &mut Cx, b: &Blk, job: &Job) -> Option<(TaskGroup, Span)> {
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

pub(super) const GROUP_ATTRS: &[&str] = &["count", "shutdown_delay", "meta"];
pub(super) const GROUP_BLOCKS: &[&str] = &[
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

pub(super) fn group(cx: &mut Cx, b: &Blk, job: &Job) -> Option<(TaskGroup, Span)> {
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
pub(super) fn finish_group(
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

pub(super) fn port_labels(n: &NetworkResource) -> Vec<String> {
    n.reserved_ports.iter().chain(&n.dynamic_ports).map(|p| p.label.clone()).collect()
}

pub(super) const NETWORK_ATTRS: &[&str] = &["mode", "hostname", "mbits"];
pub(super) const NETWORK_BLOCKS: &[&str] = &["port"];
pub(super) const PORT_ATTRS: &[&str] = &["static", "to", "host_network"];

pub(super) fn network(cx: &mut Cx, b: &Blk, group_level: bool) -> NetworkResource {
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

pub(super) fn scaling(cx: &mut Cx, b: &Blk) -> Option<Scaling> {
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

pub(super) fn ephemeral_disk(cx: &mut Cx, b: &Blk) -> (EphemeralDisk, Span) {
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
