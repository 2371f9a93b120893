//! Per-driver validation of a task's `config` block (pot, raw_exec): required keys, value types,
//! port_map labels, path formats, and task names a driver cannot use. It only validates; the
//! config stays an opaque JSON map in the model, and running the driver is the agent's business.

use crate::diag::{Diagnostic, Source, Span};
use crate::eval::closest;
use serde_json::Value;

/// One `key = value` of a task's config block, with positions for diagnostics.
pub(crate) struct ConfigEntry<'a> {
    pub key: &'a str,
    pub key_span: Span,
    pub value_span: Span,
    pub value: Value,
    /// False when the value could not be evaluated; that error is already reported, so the
    /// validators treat the key as present but do not look at its value.
    pub evaluated: bool,
    /// Spans of the elements when the value was written as a list literal.
    pub item_spans: Vec<Span>,
}

/// What a driver validator needs to know about the task.
pub(crate) struct TaskInfo<'a> {
    pub driver: &'a str,
    pub driver_span: &'a Span,
    pub task_name: &'a str,
    pub task_name_span: &'a Span,
    pub config_span: Option<&'a Span>,
    /// Port labels the task can use: the group's network and the task's own legacy network.
    pub ports: &'a [String],
}

/// Drivers orc can run.
pub const DRIVERS: &[&str] = &["pot", "raw_exec"];

/// The keys of the pot driver's config, exactly as nomad-pot-driver's `taskConfigSpec`.
pub const POT_KEYS: &[&str] = &[
    "args",
    "attributes",
    "command",
    "copy",
    "extra_hosts",
    "image",
    "mount",
    "mount_read_only",
    "network_mode",
    "port_map",
    "pot",
    "tag",
];

/// The keys of the raw_exec driver's config.
pub const RAW_EXEC_KEYS: &[&str] = &["args", "command"];

/// Where a finding goes: a positioned diagnostic for job files, a plain message for jobs that
/// arrive as JSON.
type Report<'a> = &'a mut dyn FnMut(&Span, String, Option<String>);

struct Checker<'a, 'e> {
    report: Report<'a>,
    entries: &'a [ConfigEntry<'e>],
    driver: &'a str,
}

impl Checker<'_, '_> {
    fn error(&mut self, span: &Span, message: impl Into<String>, hint: Option<String>) {
        (self.report)(span, message.into(), hint);
    }

    /// An entry whose value is known.
    fn get(&self, key: &str) -> Option<&ConfigEntry<'_>> {
        self.entries.iter().find(|e| e.key == key && e.evaluated)
    }

    fn unknown_keys(&mut self, valid: &[&str]) {
        for e in self.entries {
            if !valid.contains(&e.key) {
                let mut hint = format!("valid keys are: {}", valid.join(", "));
                if let Some(near) = closest(e.key, valid) {
                    hint = format!("did you mean \"{near}\"? {hint}");
                }
                let msg = format!("unknown attribute \"{}\" in {} task config", e.key, self.driver);
                self.error(&e.key_span.clone(), msg, Some(hint));
            }
        }
    }

    fn require(&mut self, key: &str, at: &Span, example: &str) {
        if !self.entries.iter().any(|e| e.key == key) {
            let msg = format!("{} task config needs \"{key}\"", self.driver);
            self.error(at, msg, Some(format!("add `{key} = {example}`")));
        }
    }

    /// A string value (numbers and bools are converted by HCL, so they pass too).
    fn string(&mut self, key: &str) -> Option<String> {
        let e = self.get(key)?;
        let span = e.value_span.clone();
        match &e.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                let msg = format!("{key} must be a string, got {}", json_type(other));
                self.error(&span, msg, None);
                None
            }
        }
    }

    /// A list of strings, with the span of each element.
    fn strings(&mut self, key: &str) -> Option<Vec<(String, Span)>> {
        let e = self.get(key)?;
        let span = e.value_span.clone();
        let Value::Array(items) = &e.value else {
            let msg = format!("{key} must be a list of strings, got {}", json_type(&e.value));
            self.error(&span, msg, Some(format!("write `{key} = [\"...\"]`")));
            return None;
        };
        let spans = e.item_spans.clone();
        let mut out = Vec::new();
        for (i, item) in items.clone().iter().enumerate() {
            let at = spans.get(i).cloned().unwrap_or_else(|| span.clone());
            match item {
                Value::String(s) => out.push((s.clone(), at)),
                Value::Number(n) => out.push((n.to_string(), at)),
                other => {
                    let msg = format!(
                        "{key} must be a list of strings, but element {} is {}",
                        i + 1,
                        json_type(other)
                    );
                    self.error(&at, msg, None);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// `"src:dst"` lists (mount, mount_read_only, copy) with absolute paths on both sides.
    fn path_pairs(&mut self, key: &str, dst_may_contain_colon: bool) {
        let Some(items) = self.strings(key) else { return };
        for (item, at) in items {
            let pair = if dst_may_contain_colon {
                item.split_once(':')
            } else {
                let parts: Vec<&str> = item.split(':').collect();
                (parts.len() == 2).then(|| (parts[0], parts[1]))
            };
            let Some((src, dst)) = pair else {
                let msg = format!("{key} entry \"{item}\" must be \"<host path>:<jail path>\"");
                self.error(&at, msg, Some(format!("write `{key} = [\"/host/dir:/jail/dir\"]`")));
                continue;
            };
            for (what, path) in [("host", src), ("jail", dst)] {
                if !path.starts_with('/') && !path.starts_with("${") {
                    let msg = format!(
                        "{key} entry \"{item}\": the {what} path \"{path}\" must be absolute"
                    );
                    self.error(&at, msg, Some("paths must start with /".into()));
                }
            }
            // `pot mount-in -m` refuses "/" and paths with spaces (pot-contract 3.9).
            if key != "copy" && (dst == "/" || dst.contains(' ')) {
                let msg = format!("{key} entry \"{item}\": pot cannot mount onto \"{dst}\"");
                self.error(
                    &at,
                    msg,
                    Some("the jail path must not be / and must not contain spaces".into()),
                );
            }
        }
    }

    /// `"k:v"` lists (attributes, extra_hosts); returns the well-formed pairs with their spans.
    fn key_value_pairs(&mut self, key: &str, example: &str) -> Vec<(String, String, Span)> {
        let Some(items) = self.strings(key) else { return Vec::new() };
        let mut out = Vec::new();
        for (item, at) in items {
            match item.split_once(':') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                    out.push((k.to_string(), v.to_string(), at));
                }
                _ => {
                    let msg = format!("{key} entry \"{item}\" must be \"{example}\"");
                    self.error(&at, msg, None);
                }
            }
        }
        out
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Validates a task's config for its driver, pushing diagnostics. Unknown drivers are reported
/// at the driver value.
pub(crate) fn validate(
    src: &Source,
    task: &TaskInfo,
    entries: &[ConfigEntry],
    diags: &mut Vec<Diagnostic>,
) {
    let mut report = |span: &Span, message: String, hint: Option<String>| {
        let mut d = src.diag(span, message);
        d.hint = hint;
        diags.push(d);
    };
    check(task, entries, &mut report);
}

/// Checks the driver `config` of every task of `job`, a job that did not come from a job file
/// (the API's JSON): the same rules as for job files, without positions. Each finding names the
/// group and the task; the fields are named in the message.
pub fn validate_job(job: &model::Job) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for group in &job.task_groups {
        let group_ports: Vec<String> = group
            .networks
            .iter()
            .flat_map(|n| n.reserved_ports.iter().chain(&n.dynamic_ports))
            .map(|p| p.label.clone())
            .collect();
        // A task without a driver is the caller's finding ("missing driver"), as for job files.
        for t in group.tasks.iter().filter(|t| !t.driver.is_empty()) {
            let mut ports = group_ports.clone();
            if let Some(r) = &t.resources {
                let own =
                    r.networks.iter().flat_map(|n| n.reserved_ports.iter().chain(&n.dynamic_ports));
                ports.extend(own.map(|p| p.label.clone()));
            }
            let entries: Vec<ConfigEntry> = t
                .config
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: k,
                    key_span: 0..0,
                    value_span: 0..0,
                    value: v.clone(),
                    evaluated: true,
                    item_spans: Vec::new(),
                })
                .collect();
            let none = 0..0;
            let info = TaskInfo {
                driver: &t.driver,
                driver_span: &none,
                task_name: &t.name,
                task_name_span: &none,
                config_span: None,
                ports: &ports,
            };
            let mut report = |_: &Span, message: String, hint: Option<String>| {
                let hint = hint.map(|h| format!(" ({h})")).unwrap_or_default();
                errors.push(format!("group {:?}, task {:?}: {message}{hint}", group.name, t.name));
            };
            check(&info, &entries, &mut report);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check(task: &TaskInfo, entries: &[ConfigEntry], report: Report<'_>) {
    let mut c = Checker { report, entries, driver: task.driver };
    match task.driver {
        "pot" => pot(&mut c, task),
        "raw_exec" => raw_exec(&mut c, task),
        other => {
            let mut hint = format!("orc's drivers are: {}", DRIVERS.join(", "));
            if let Some(near) = closest(other, DRIVERS) {
                hint = format!("did you mean \"{near}\"? {hint}");
            }
            c.error(task.driver_span, format!("unknown driver \"{other}\""), Some(hint));
        }
    }
}

fn pot(c: &mut Checker<'_, '_>, task: &TaskInfo) {
    // pot names the jail `<task>_<alloc>` and turns every '.' into '_', while the driver keeps
    // the dots; the names then differ and every later pot command fails.
    if task.task_name.contains('.') {
        c.error(
            task.task_name_span,
            format!("task name \"{}\" cannot be used with the pot driver", task.task_name),
            Some(format!(
                "pot replaces '.' with '_' in jail names, so the jail would not be found; rename the task, e.g. \"{}\"",
                task.task_name.replace('.', "-")
            )),
        );
    }
    if let Some(bad) = task
        .task_name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '_' || *ch == '.'))
    {
        c.error(
            task.task_name_span,
            format!(
                "task name \"{}\" cannot be used with the pot driver: it contains {bad:?}",
                task.task_name
            ),
            Some("pot jail names may contain only letters, digits, '-' and '_'".into()),
        );
    }
    c.unknown_keys(POT_KEYS);
    let at = task.config_span.unwrap_or(task.driver_span).clone();
    c.require("image", &at, "\"https://potluck.honeyguide.net/nginx-nomad\"");
    c.require("pot", &at, "\"nginx-nomad-amd64-13_1\"");
    c.require("tag", &at, "\"1.1.13\"");
    for key in ["image", "pot", "tag"] {
        if let Some(v) = c.string(key) {
            if v.is_empty() {
                let span = c.get(key).map(|e| e.value_span.clone()).unwrap_or_default();
                c.error(&span, format!("{key} must not be empty"), None);
            }
        }
    }
    c.string("command");
    network_mode(c);
    if c.strings("args").is_some() && !c.entries.iter().any(|e| e.key == "command") {
        let span = c.get("args").map(|e| e.key_span.clone()).unwrap_or_default();
        c.error(
            &span,
            "args needs a command",
            Some("pot joins args onto command; add `command = \"...\"`".into()),
        );
    }
    c.path_pairs("mount", false);
    c.path_pairs("mount_read_only", false);
    c.path_pairs("copy", true);
    let attributes = c.key_value_pairs("attributes", "<attribute>:<value>");
    for (name, value, at) in attributes {
        if let Err((e, hint)) = check_pot_attribute(&name, &value) {
            c.error(&at, format!("attributes entry \"{name}:{value}\": {e}"), hint);
        }
    }
    // pot checks each address with `potnet ipcheck` when the task starts; check it now.
    for (host, ip, at) in c.key_value_pairs("extra_hosts", "<hostname>:<ip>") {
        if ip.parse::<std::net::IpAddr>().is_err() && !ip.contains("${") {
            c.error(
                &at,
                format!("extra_hosts entry \"{host}:{ip}\": \"{ip}\" is not an IP address"),
                None,
            );
        }
    }
    port_map(c, task);
}

/// Network types pot's `prepare -N` accepts from the driver. `private-bridge` and `alias` need
/// arguments the driver never passes (`-B`, `-i <ip>`), so pot refuses them (pot-contract 1.6).
const POT_NETWORK_MODES: &[&str] = &["public-bridge", "host", "inherit"];

fn network_mode(c: &mut Checker<'_, '_>) {
    let Some(mode) = c.string("network_mode") else { return };
    if POT_NETWORK_MODES.contains(&mode.as_str()) || mode.contains("${") {
        return;
    }
    let span = c.get("network_mode").map(|e| e.value_span.clone()).unwrap_or_default();
    let reason = match mode.as_str() {
        "private-bridge" => {
            "pot needs a bridge name (-B) for it, which the driver cannot pass".to_string()
        }
        "alias" => "pot needs a static IP (-i) for it, which the driver cannot pass".to_string(),
        other => format!("pot has no network type \"{other}\""),
    };
    c.error(
        &span,
        format!("network_mode \"{mode}\" cannot be used: {reason}"),
        Some(format!("use one of: {}", POT_NETWORK_MODES.join(", "))),
    );
}

/// The attributes `pot set-attribute` accepts and their value kinds (pot-contract 3.7).
/// On failure, the reason and (for unknown names) the valid ones.
fn check_pot_attribute(name: &str, value: &str) -> Result<(), (String, Option<String>)> {
    const BOOLS: &[&str] = &[
        "start-at-boot",
        "early-start-at-boot",
        "persistent",
        "no-rc-script",
        "prunable",
        "localhost-tunnel",
        "no-tmpfs",
        "no-etc-hosts",
        "mount",
        "fdescfs",
        "linprocfs",
        "nullfs",
        "procfs",
        "tmpfs",
        "zfs",
        "raw_sockets",
        "mlock",
    ];
    const UINTS: &[&str] = &["enforce_statfs", "children", "devfs_ruleset", "stop_timeout"];
    const SYSV: &[&str] = &["sysvshm", "sysvsem", "sysvmsg"];
    if value.contains("${") {
        return Ok(());
    }
    if BOOLS.contains(&name) {
        let v = value.to_ascii_lowercase();
        return if ["yes", "no", "on", "off", "true", "false", "1", "0"].contains(&v.as_str()) {
            Ok(())
        } else {
            Err((format!("\"{name}\" takes YES or NO, got \"{value}\""), None))
        };
    }
    if UINTS.contains(&name) {
        return value
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| (format!("\"{name}\" takes a whole number, got \"{value}\""), None));
    }
    if SYSV.contains(&name) {
        return if ["new", "inherit", "disable"].contains(&value) {
            Ok(())
        } else {
            Err((format!("\"{name}\" takes new, inherit or disable, got \"{value}\""), None))
        };
    }
    if name == "exec_stop" {
        return Ok(());
    }
    let mut all: Vec<&str> = BOOLS.iter().chain(UINTS).chain(SYSV).copied().collect();
    all.push("exec_stop");
    all.sort_unstable();
    Err((
        format!("pot has no attribute \"{name}\""),
        Some(format!("valid attributes are: {}", all.join(", "))),
    ))
}

/// `port_map = { label = "80" }` (or a list of such maps, as the driver's spec allows).
fn port_map(c: &mut Checker<'_, '_>, task: &TaskInfo) {
    let Some(e) = c.get("port_map") else { return };
    let span = e.value_span.clone();
    let maps: Vec<serde_json::Map<String, Value>> = match &e.value {
        Value::Object(m) => vec![m.clone()],
        Value::Array(items) if items.iter().all(Value::is_object) => {
            items.iter().filter_map(|v| v.as_object().cloned()).collect()
        }
        other => {
            let msg = format!(
                "port_map must be a map of port label to port number, got {}",
                json_type(other)
            );
            c.error(&span, msg, Some("write `port_map = { http = \"80\" }`".into()));
            return;
        }
    };
    for m in maps {
        for (label, port) in m {
            // orc maps UDP too: `dns = "udp:53"` (pot's own `-e udp:…` syntax); `tcp:` is the
            // default and may be written out.
            let number = match &port {
                Value::String(s) => {
                    let bare =
                        s.strip_prefix("udp:").or_else(|| s.strip_prefix("tcp:")).unwrap_or(s);
                    bare.parse::<u16>().ok().filter(|p| *p > 0)
                }
                Value::Number(n) => {
                    n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0)
                }
                _ => None,
            };
            if number.is_none() {
                c.error(
                    &span,
                    format!(
                        "port_map.{label} must be a port number between 1 and 65535, got {port}"
                    ),
                    Some(
                        "write the port inside the pot, e.g. \"80\", or \"udp:53\" for UDP".into(),
                    ),
                );
            }
            if !task.ports.contains(&label) {
                let hint = if task.ports.is_empty() {
                    format!("declare it in the group: `network {{ port \"{label}\" {{}} }}`")
                } else {
                    format!("declared ports are: {}", task.ports.join(", "))
                };
                c.error(
                    &span,
                    format!("port_map refers to port \"{label}\", which is not declared"),
                    Some(hint),
                );
            }
        }
    }
}

fn raw_exec(c: &mut Checker<'_, '_>, task: &TaskInfo) {
    c.unknown_keys(RAW_EXEC_KEYS);
    let at = task.config_span.unwrap_or(task.driver_span).clone();
    c.require("command", &at, "\"/usr/local/bin/app\"");
    if let Some(cmd) = c.string("command") {
        if cmd.trim().is_empty() {
            let span = c.get("command").map(|e| e.value_span.clone()).unwrap_or_default();
            c.error(&span, "command must not be empty", None);
        }
    }
    c.strings("args");
}
