//! The `restart`, `reschedule`, `update` and `migrate` blocks, each merged field by field over the
//! policy it refines (type default, job or group), with Nomad's consistency checks. The defaults
//! themselves live in `model`.

use super::*;

/// Reschedule delays below this are refused, as Nomad does.
pub(super) const MIN_RESCHEDULE_DELAY: Duration = Duration::from_secs(5);

pub(super) fn restart(cx: &mut Cx, b: &Blk, base: RestartPolicy) -> RestartPolicy {
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

pub(super) fn reschedule(cx: &mut Cx, b: &Blk, base: ReschedulePolicy) -> ReschedulePolicy {
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

pub(super) fn update(cx: &mut Cx, b: &Blk, base: UpdateStrategy) -> UpdateStrategy {
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

pub(super) fn migrate(cx: &mut Cx, b: &Blk, base: MigrateStrategy) -> MigrateStrategy {
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
