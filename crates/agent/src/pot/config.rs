//! The pot driver's task `config` block, decoded from the job's opaque config map.
//!
//! jobspec has already validated the block with file positions; this decoder runs again on the
//! agent because allocations arrive as JSON over the network and are untrusted there. It knows the
//! keys of nomad-pot-driver's `taskConfigSpec` and nothing about running pot.

use serde_json::Value;
use std::collections::BTreeMap;

/// Protocol of a mapped port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `port_map` entry: the port label and where it goes inside the pot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub label: String,
    pub proto: Proto,
    pub pot_port: u16,
}

/// A `"src:dst"` pair from `mount`, `mount_read_only` or `copy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPair {
    pub host: String,
    pub jail: String,
}

/// The decoded `config` of a pot task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PotConfig {
    pub image: String,
    pub pot: String,
    pub tag: String,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub port_map: Vec<PortMapping>,
    pub network_mode: Option<String>,
    pub mount: Vec<PathPair>,
    pub mount_read_only: Vec<PathPair>,
    pub copy: Vec<PathPair>,
    pub extra_hosts: Vec<(String, String)>,
    pub attributes: Vec<(String, String)>,
}

/// Why a config map is not a usable pot config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pot task config: {0}")]
pub struct ConfigError(pub String);

const KEYS: &[&str] = &[
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

impl PotConfig {
    /// Decodes and checks a task's `config` map.
    pub fn decode(config: &BTreeMap<String, Value>) -> Result<PotConfig, ConfigError> {
        if let Some(unknown) = config.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ConfigError(format!(
                "unknown key {unknown:?}; valid keys are: {}",
                KEYS.join(", ")
            )));
        }
        let required = |key: &str| -> Result<String, ConfigError> {
            match string(config, key)? {
                Some(s) if !s.is_empty() => Ok(s),
                _ => Err(ConfigError(format!("{key:?} is required"))),
            }
        };
        let cfg = PotConfig {
            image: required("image")?,
            pot: required("pot")?,
            tag: required("tag")?,
            command: string(config, "command")?,
            args: strings(config, "args")?,
            port_map: port_map(config)?,
            network_mode: string(config, "network_mode")?.filter(|m| !m.is_empty()),
            mount: pairs(config, "mount", true)?.into_iter().map(path_pair).collect(),
            mount_read_only: pairs(config, "mount_read_only", true)?
                .into_iter()
                .map(path_pair)
                .collect(),
            copy: pairs(config, "copy", true)?.into_iter().map(path_pair).collect(),
            extra_hosts: pairs(config, "extra_hosts", false)?,
            attributes: pairs(config, "attributes", false)?,
        };
        if !cfg.args.is_empty() && cfg.command.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError("\"args\" needs \"command\"".into()));
        }
        Ok(cfg)
    }

    /// The jail's command line: `command` and `args` joined by spaces, unescaped, because the
    /// jail's `sh` evaluates it and existing jobs rely on that (`args = ["-g", "'daemon off;'"]`).
    pub fn command_line(&self) -> Option<String> {
        let command = self.command.as_deref().filter(|c| !c.is_empty())?;
        let mut line = command.to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(arg);
        }
        Some(line)
    }
}

fn path_pair((host, jail): (String, String)) -> PathPair {
    PathPair { host, jail }
}

fn string(config: &BTreeMap<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ConfigError(format!("{key:?} must be a string, not {other}"))),
    }
}

fn strings(config: &BTreeMap<String, Value>, key: &str) -> Result<Vec<String>, ConfigError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(ConfigError(format!("{key:?} must hold strings, not {other}"))),
            })
            .collect(),
        Some(other) => Err(ConfigError(format!("{key:?} must be a list of strings, not {other}"))),
    }
}

/// `"a:b"` entries. Paths must be absolute; the first `:` splits, so a jail path may contain `:`
/// (nomad-pot-driver splits `copy` the same way; orc uses it for every list so `mount` cannot
/// silently drop the part after a second colon).
fn pairs(
    config: &BTreeMap<String, Value>,
    key: &str,
    absolute_paths: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    strings(config, key)?
        .into_iter()
        .map(|entry| {
            let Some((a, b)) = entry.split_once(':') else {
                return Err(ConfigError(format!(
                    "{key:?} entry {entry:?} must have the form \"a:b\""
                )));
            };
            if a.is_empty() || b.is_empty() {
                return Err(ConfigError(format!("{key:?} entry {entry:?} has an empty side")));
            }
            if absolute_paths && !(a.starts_with('/') && b.starts_with('/')) {
                return Err(ConfigError(format!(
                    "{key:?} entry {entry:?} must use absolute paths on both sides"
                )));
            }
            Ok((a.to_string(), b.to_string()))
        })
        .collect()
}

fn port_map(config: &BTreeMap<String, Value>) -> Result<Vec<PortMapping>, ConfigError> {
    let entries: Vec<(String, Value)> = match config.get("port_map") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        // The HCL spec types port_map as list(map(string)): `port_map = [{ http = "80" }]`.
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for item in items {
                let Value::Object(map) = item else {
                    return Err(ConfigError("\"port_map\" must be a map of label = port".into()));
                };
                out.extend(map.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out
        }
        Some(other) => {
            return Err(ConfigError(format!(
                "\"port_map\" must be a map of label = port, not {other}"
            )))
        }
    };
    // Sorted by label so the `-e` flags, and everything derived from them, are deterministic.
    let mut entries = entries;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
        .into_iter()
        .map(|(label, value)| {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(ConfigError(format!(
                        "port_map {label:?} must be a port, not {other}"
                    )))
                }
            };
            let (proto, port) = match text.split_once(':') {
                Some(("tcp", p)) => (Proto::Tcp, p),
                Some(("udp", p)) => (Proto::Udp, p),
                Some(_) => {
                    return Err(ConfigError(format!(
                        "port_map {label:?} = {text:?}: the protocol prefix must be tcp: or udp:"
                    )))
                }
                None => (Proto::Tcp, text.as_str()),
            };
            let pot_port = port.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                ConfigError(format!("port_map {label:?} = {text:?} is not a port number (1-65535)"))
            })?;
            Ok(PortMapping { label, proto, pot_port })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value) -> Result<PotConfig, ConfigError> {
        let map: BTreeMap<String, Value> = serde_json::from_value(v).unwrap();
        PotConfig::decode(&map)
    }

    #[test]
    fn decodes_the_seed_config() {
        let cfg = decode(json!({
            "image": "https://potluck.honeyguide.net/nginx-nomad",
            "pot": "nginx-nomad-amd64-13_1",
            "tag": "1.1.13",
            "command": "nginx",
            "args": ["-g", "'daemon off;'"],
            "port_map": [{"http": "80"}],
        }))
        .unwrap();
        assert_eq!(cfg.command_line().as_deref(), Some("nginx -g 'daemon off;'"));
        assert_eq!(
            cfg.port_map,
            [PortMapping { label: "http".into(), proto: Proto::Tcp, pot_port: 80 }]
        );
    }

    #[test]
    fn refuses_what_pot_would_refuse() {
        let base = json!({"image": "file:///i", "pot": "p", "tag": "1"});
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            m[k] = v;
            decode(m).unwrap_err().to_string()
        };
        assert_eq!(
            decode(json!({"pot": "p", "tag": "1"})).unwrap_err().to_string(),
            "pot task config: \"image\" is required"
        );
        assert_eq!(with("args", json!(["-x"])), "pot task config: \"args\" needs \"command\"");
        assert_eq!(
            with("mount", json!(["rel:/x"])),
            "pot task config: \"mount\" entry \"rel:/x\" must use absolute paths on both sides"
        );
        assert_eq!(
            with("attributes", json!(["novalue"])),
            "pot task config: \"attributes\" entry \"novalue\" must have the form \"a:b\""
        );
        assert_eq!(with("port_map", json!({"http": "80:"})), "pot task config: port_map \"http\" = \"80:\": the protocol prefix must be tcp: or udp:");
        assert_eq!(
            with("port_map", json!({"dns": "udp:0"})),
            "pot task config: port_map \"dns\" = \"udp:0\" is not a port number (1-65535)"
        );
        assert!(with("imagee", json!("x"))
            .starts_with("pot task config: unknown key \"imagee\"; valid keys are: args,"));
    }

    #[test]
    fn udp_ports_and_copy_destinations_with_colons() {
        let cfg = decode(json!({
            "image": "file:///i", "pot": "p", "tag": "1",
            "port_map": {"dns": "udp:53"},
            "copy": ["/etc/a.conf:/usr/local/etc/a:b.conf"],
        }))
        .unwrap();
        assert_eq!(cfg.port_map[0].proto, Proto::Udp);
        assert_eq!(cfg.copy[0].jail, "/usr/local/etc/a:b.conf");
    }
}
