//! Placement rules: `constraint` (with Nomad's sugar attributes), `affinity` and `spread`, and the
//! per-operator checks on their targets.

use super::*;

/// Constraint operators Nomad's feasibility checker knows.
pub(super) const CONSTRAINT_OPERATORS: &[&str] = &[
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
pub(super) const AFFINITY_OPERATORS: &[&str] = &[
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

pub(super) const CONSTRAINT_ATTRS: &[&str] = &[
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

pub(super) fn constraints(cx: &mut Cx, f: &Fields) -> Vec<model::Constraint> {
    let mut out = Vec::new();
    for b in f.blocks("constraint") {
        if let Some(c) = cx.within(b, |cx| constraint(cx, b)) {
            out.push(c);
        }
    }
    out
}

pub(super) fn constraint(cx: &mut Cx, b: &Blk) -> Option<Constraint> {
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
pub(super) fn check_targets(
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

pub(super) fn affinities(cx: &mut Cx, f: &Fields) -> Vec<Affinity> {
    let mut out = Vec::new();
    for b in f.blocks("affinity") {
        if let Some(a) = cx.within(b, |cx| affinity(cx, b)) {
            out.push(a);
        }
    }
    out
}

pub(super) fn affinity(cx: &mut Cx, b: &Blk) -> Option<Affinity> {
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

pub(super) fn spreads(cx: &mut Cx, f: &Fields) -> Vec<Spread> {
    let mut out = Vec::new();
    for b in f.blocks("spread") {
        if let Some(s) = cx.within(b, |cx| spread(cx, b)) {
            out.push(s);
        }
    }
    out
}

pub(super) fn spread(cx: &mut Cx, b: &Blk) -> Option<Spread> {
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
