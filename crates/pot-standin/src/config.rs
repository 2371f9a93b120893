//! Where the stand-in keeps its state (POT_FS_ROOT, POT_CACHE, POT_TMP, POT_NETWORK); it owns reading
//! them and does not create or validate any directory.
//!
//! Real pot sources `etc/pot/pot.default.conf` and then `etc/pot/pot.conf` (both beside its `bin/`). The
//! stand-in reads, in order of precedence: the environment variables of the same names (so parallel tests
//! can each point at their own temporary directories), `<dir of the binary>/../etc/pot/pot.conf`,
//! `/usr/local/etc/pot/pot.conf`, and finally pot's defaults. `POT_NETWORK` defaults to a loopback range
//! instead of pot's `10.192.0.0/10`, because every pot gets its own loopback IP here (see `net`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The stand-in's configuration, resolved once per invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub fs_root: PathBuf,
    pub cache: PathBuf,
    pub tmp: PathBuf,
    /// The network pots get their IPs from, as (network address, prefix length).
    pub network: (Ipv4Addr, u8),
}

/// The default pot network of the stand-in: inside 127.0.0.0/8, which Linux routes to loopback in full.
pub const DEFAULT_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(127, 192, 0, 0), 16);

impl Config {
    /// Resolves the configuration from the process environment and the config files.
    pub fn from_env() -> Config {
        let mut files = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            if let Some(bin_dir) = exe.parent() {
                files.push(bin_dir.join("../etc/pot/pot.conf"));
            }
        }
        files.push(PathBuf::from("/usr/local/etc/pot/pot.conf"));
        let env: BTreeMap<String, String> = ["POT_FS_ROOT", "POT_CACHE", "POT_TMP", "POT_NETWORK"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Config::resolve(&env, &files)
    }

    /// Resolves from explicit variables (highest precedence) and config files (first readable one wins
    /// per key). Split out so tests can check precedence without touching the process environment.
    pub fn resolve(env: &BTreeMap<String, String>, files: &[PathBuf]) -> Config {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for file in files.iter().rev() {
            vars.extend(read_shell_vars(file));
        }
        for (k, v) in env {
            if !v.is_empty() {
                vars.insert(k.clone(), v.clone());
            }
        }
        let get =
            |k: &str, default: &str| vars.get(k).cloned().unwrap_or_else(|| default.to_string());
        Config {
            fs_root: PathBuf::from(get("POT_FS_ROOT", "/opt/pot")),
            cache: PathBuf::from(get("POT_CACHE", "/var/cache/pot")),
            tmp: PathBuf::from(get("POT_TMP", "/tmp")),
            network: vars.get("POT_NETWORK").and_then(|n| parse_cidr(n)).unwrap_or(DEFAULT_NETWORK),
        }
    }

    /// A configuration rooted in one directory, the layout tests use: `<dir>/pot`, `<dir>/cache`, `<dir>/tmp`.
    pub fn under(dir: &Path) -> Config {
        Config {
            fs_root: dir.join("pot"),
            cache: dir.join("cache"),
            tmp: dir.join("tmp"),
            network: DEFAULT_NETWORK,
        }
    }
}

/// Parses `a.b.c.d/n`.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = s.trim().split_once('/')?;
    let len: u8 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    Some((addr.parse().ok()?, len))
}

/// Reads `KEY=value` lines the way `.`-sourcing a simple pot.conf would: comments and blank lines are
/// skipped, one level of surrounding quotes is removed. Unreadable files give nothing.
fn read_shell_vars(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_beats_file_and_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pot.conf");
        std::fs::write(&file, "# comment\nPOT_FS_ROOT=/from/file\nPOT_CACHE=\"/cache/file\"\n")
            .unwrap();
        let env = BTreeMap::from([("POT_FS_ROOT".to_string(), "/from/env".to_string())]);
        let c = Config::resolve(&env, &[file, dir.path().join("missing")]);
        assert_eq!(c.fs_root, PathBuf::from("/from/env"));
        assert_eq!(c.cache, PathBuf::from("/cache/file"));
        assert_eq!(c.tmp, PathBuf::from("/tmp"));
        assert_eq!(c.network, DEFAULT_NETWORK);
    }

    #[test]
    fn cidr() {
        assert_eq!(parse_cidr("127.10.0.0/24"), Some((Ipv4Addr::new(127, 10, 0, 0), 24)));
        assert_eq!(parse_cidr("127.10.0.0"), None);
        assert_eq!(parse_cidr("127.10.0.0/31"), None);
    }
}
