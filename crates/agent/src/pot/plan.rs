//! The exact `pot` command lines for one task invocation, as data.
//!
//! This follows the contract nomad-pot-driver established (prepare, set-attribute, copy-in,
//! mount-in, set-env, set-hosts, set-rss, then a blocking start) so images and operators' habits
//! keep working, and fixes its known failures: the agent's host environment never reaches
//! `set-env`; CPU is forwarded with `set-rss -C`; UDP ports are mapped; pot names follow pot's own
//! rule; and every argument is a separate argv element, because pot is run by execve, never through
//! a host shell. Running the commands is the driver's business, not this module's.

use super::config::{PotConfig, Proto};
use crate::taskenv::TaskDirs;
use std::collections::BTreeMap;

/// One invocation of pot: the arguments after the pot binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PotCommand {
    pub args: Vec<String>,
}

impl PotCommand {
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(args: I) -> Self {
        PotCommand { args: args.into_iter().map(Into::into).collect() }
    }
}

impl std::fmt::Display for PotCommand {
    /// Renders as a shell would need it quoted, for logs and task events only; it is never run
    /// through a shell.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pot")?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Everything one invocation of a pot task depends on.
#[derive(Debug, Clone)]
pub struct PotInvocation<'a> {
    pub task_name: &'a str,
    pub alloc_id: &'a str,
    /// Eight hex characters, new on every (re)start, so a restart never reuses a pot name.
    pub invocation_id: &'a str,
    /// The decoded config, after runtime interpolation.
    pub config: &'a PotConfig,
    /// The task environment: Nomad's variables and the task's `env`, nothing from the host.
    pub env: &'a BTreeMap<String, String>,
    pub dirs: &'a TaskDirs,
    /// Host port granted for each port label.
    pub host_ports: &'a BTreeMap<String, u16>,
    pub memory_mb: u64,
    /// CPU ask in MHz, and exclusive cores if the job asked for them.
    pub cpu_mhz: u64,
    pub cores: u32,
    /// Compute of one core on this node, in MHz, to turn an MHz ask into a CPU count.
    pub mhz_per_core: u64,
}

/// Why the commands could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("port_map label {0:?} has no port allocated; declare it with `port \"{0}\" {{}}` in the group's network block")]
    UnknownPortLabel(String),
}

/// pot's rule for the pot name `prepare` creates: `<name>_<alloc tag>` with every `.` as `_`.
/// The driver must compute exactly what pot computes, or every later command names a pot that
/// does not exist (nomad-pot-driver's bug with dotted task names).
pub fn pot_name(task_name: &str, invocation_id: &str, alloc_id: &str) -> String {
    format!("{task_name}_{invocation_id}_{alloc_id}").replace('.', "_")
}

impl PotInvocation<'_> {
    /// The name of this invocation's pot.
    pub fn pot_name(&self) -> String {
        pot_name(self.task_name, self.invocation_id, self.alloc_id)
    }

    /// The commands that create and configure the pot, in order; `start` follows them.
    pub fn setup_commands(&self) -> Result<Vec<PotCommand>, PlanError> {
        let cfg = self.config;
        let name = self.pot_name();
        let mut commands = Vec::new();

        let mut prepare = vec![
            "prepare".to_string(),
            "-U".into(),
            cfg.image.clone(),
            "-p".into(),
            cfg.pot.clone(),
            "-t".into(),
            cfg.tag.clone(),
        ];
        if let Some(line) = cfg.command_line() {
            // pot's set-cmd strips one leading and one trailing `"`; quoting as the old driver did
            // keeps a command that itself ends in a quote intact.
            prepare.extend(["-c".into(), format!("\"{line}\"")]);
        }
        match &cfg.network_mode {
            Some(mode) => prepare.extend(["-N".into(), mode.clone()]),
            None if !cfg.port_map.is_empty() => {
                prepare.extend(["-N".into(), "public-bridge".into(), "-i".into(), "auto".into()])
            }
            None => {}
        }
        if cfg.network_mode.as_deref() != Some("host") {
            for mapping in &cfg.port_map {
                let host_port = self
                    .host_ports
                    .get(&mapping.label)
                    .ok_or_else(|| PlanError::UnknownPortLabel(mapping.label.clone()))?;
                let proto = match mapping.proto {
                    Proto::Tcp => "",
                    Proto::Udp => "udp:",
                };
                // pot reads `-e` as <pot port>:<host port>.
                prepare.extend(["-e".into(), format!("{proto}{}:{host_port}", mapping.pot_port)]);
            }
        }
        prepare.extend([
            "-a".into(),
            format!("{}_{}", self.invocation_id, self.alloc_id),
            "-n".into(),
            self.task_name.to_string(),
            "-v".into(),
        ]);
        commands.push(PotCommand { args: prepare });

        for (attr, value) in &cfg.attributes {
            commands.push(PotCommand::new(["set-attribute", "-p", &name, "-A", attr, "-V", value]));
        }
        for pair in &cfg.copy {
            commands.push(PotCommand::new([
                "copy-in", "-p", &name, "-s", &pair.host, "-d", &pair.jail,
            ]));
        }
        commands.push(PotCommand::new([
            "mount-in",
            "-p",
            &name,
            "-d",
            &self.dirs.alloc_dir,
            "-m",
            "/alloc",
        ]));
        commands.push(PotCommand::new([
            "mount-in",
            "-p",
            &name,
            "-d",
            &self.dirs.local_dir,
            "-m",
            "/local",
        ]));
        commands.push(PotCommand::new([
            "mount-in",
            "-p",
            &name,
            "-d",
            &self.dirs.secrets_dir,
            "-m",
            "/secrets",
        ]));
        for pair in &cfg.mount {
            commands.push(PotCommand::new([
                "mount-in", "-p", &name, "-d", &pair.host, "-m", &pair.jail,
            ]));
        }
        for pair in &cfg.mount_read_only {
            commands.push(PotCommand::new([
                "mount-in", "-p", &name, "-d", &pair.host, "-m", &pair.jail, "-r",
            ]));
        }
        if !self.env.is_empty() {
            let mut set_env = vec!["set-env".to_string(), "-p".into(), name.clone()];
            for (key, value) in self.env {
                set_env.extend(["-E".into(), format!("{key}={value}")]);
            }
            commands.push(PotCommand { args: set_env });
        }
        if !cfg.extra_hosts.is_empty() {
            let mut set_hosts = vec!["set-hosts".to_string(), "-p".into(), name.clone()];
            for (host, ip) in &cfg.extra_hosts {
                set_hosts.extend(["-H".into(), format!("{host}:{ip}")]);
            }
            commands.push(PotCommand { args: set_hosts });
        }
        let mut set_rss = vec![
            "set-rss".to_string(),
            "-p".into(),
            name.clone(),
            "-M".into(),
            format!("{}M", self.memory_mb),
        ];
        set_rss.extend(["-C".into(), self.cpu_count().to_string()]);
        commands.push(PotCommand { args: set_rss });
        Ok(commands)
    }

    /// CPUs for `set-rss -C`: the exclusive cores if asked for, otherwise the MHz ask rounded up
    /// to whole cores of this node, at least one.
    pub fn cpu_count(&self) -> u64 {
        if self.cores > 0 {
            return u64::from(self.cores);
        }
        if self.mhz_per_core == 0 {
            return 1;
        }
        self.cpu_mhz.div_ceil(self.mhz_per_core).max(1)
    }

    /// The blocking command whose lifetime is the task's.
    pub fn start_command(&self) -> PotCommand {
        PotCommand::new(["start".to_string(), self.pot_name()])
    }
}

/// `pot signal -s <SIGNAME> -p <name>`: delivers the task's kill_signal (or an operator's signal).
pub fn signal_command(name: &str, signal: &str) -> PotCommand {
    let signal =
        if signal.starts_with("SIG") { signal.to_string() } else { format!("SIG{signal}") };
    PotCommand::new(["signal".to_string(), "-s".into(), signal, "-p".into(), name.to_string()])
}

/// `pot destroy -p <name> -F`: stops the pot if needed and removes it.
pub fn destroy_command(name: &str) -> PotCommand {
    PotCommand::new(["destroy", "-p", name, "-F"])
}

/// `pot info -r -p <name>`: exits 0 when the pot runs; how re-adoption asks pot itself.
pub fn is_running_command(name: &str) -> PotCommand {
    PotCommand::new(["info", "-r", "-p", name])
}

/// `pot last-run-stats -p <name>`: the exit code of the pot's last run.
pub fn last_run_stats_command(name: &str) -> PotCommand {
    PotCommand::new(["last-run-stats", "-p", name])
}

/// `pot version -q`: the driver's fingerprint.
pub fn version_command() -> PotCommand {
    PotCommand::new(["version", "-q"])
}

/// `pot ls -q`: every pot on the host, for the orphan sweep.
pub fn list_command() -> PotCommand {
    PotCommand::new(["ls", "-q"])
}

/// `pot exec -e K=V… -p <name> <cmd> <args…>`: script checks. pot runs the command through
/// `jexec -l`, a login environment without the task's, so the task's environment (NOMAD_*, the
/// job's `env`) is handed over with `-e`, as Nomad's script checks see it.
pub fn exec_command(name: &str, env: &BTreeMap<String, String>, command: &[String]) -> PotCommand {
    let mut args = vec!["exec".to_string()];
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(["-p".to_string(), name.to_string()]);
    args.extend(command.iter().cloned());
    PotCommand { args }
}

/// How `pot start` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The jail's command exited 0 (or the pot was stopped by someone else).
    Exited(i32),
    /// pot could not start the jail at all.
    StartFailed,
    /// The command exited non-zero; the code must be read with `last-run-stats`.
    ReadLastRunStats,
}

/// Interprets `pot start`'s exit status (pot 0.15+): 0 success, 125 the command failed (its code
/// is in `last-run-stats`), anything else a failure to start.
pub fn start_outcome(status: i32) -> StartOutcome {
    match status {
        0 => StartOutcome::Exited(0),
        125 => StartOutcome::ReadLastRunStats,
        _ => StartOutcome::StartFailed,
    }
}

/// Reads `{ "ExitCode": N }` from `last-run-stats`; `None` for `{}` or anything unreadable.
pub fn parse_last_run_stats(stdout: &str) -> Option<i32> {
    let value: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    i32::try_from(value.get("ExitCode")?.as_i64()?).ok()
}

/// The pot version from `pot version -q` (`0.16.0`), or from the long form (`pot version: 0.16.0`).
pub fn parse_version(stdout: &str) -> Option<String> {
    let text = stdout.trim();
    let version = text.strip_prefix("pot version:").map_or(text, str::trim);
    let valid = !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.');
    valid.then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pot::config::PotConfig;
    use serde_json::json;

    fn seed_config() -> PotConfig {
        let map = serde_json::from_value(json!({
            "image": "https://potluck.honeyguide.net/nginx-nomad",
            "pot": "nginx-nomad-amd64-13_1",
            "tag": "1.1.13",
            "command": "nginx",
            "args": ["-g", "'daemon off;'"],
            "port_map": {"http": "80", "dns": "udp:53"},
            "copy": ["/etc/nginx.conf:/usr/local/etc/nginx/nginx.conf"],
            "mount": ["/mnt/www:/usr/local/www"],
            "mount_read_only": ["/mnt/certs:/certs"],
            "extra_hosts": ["db.local:10.0.0.5"],
            "attributes": ["devfs_ruleset:4"],
        }))
        .unwrap();
        PotConfig::decode(&map).unwrap()
    }

    #[test]
    fn exec_hands_the_task_environment_over_before_the_pot_name() {
        let env = BTreeMap::from([
            ("NOMAD_TASK_NAME".to_string(), "www1".to_string()),
            ("GREETING".to_string(), "hello world".to_string()),
        ]);
        let cmd = exec_command("www1_a1", &env, &["/bin/sh".into(), "-c".into(), "exit 2".into()]);
        assert_eq!(
            cmd.args,
            [
                "exec",
                "-e",
                "GREETING=hello world",
                "-e",
                "NOMAD_TASK_NAME=www1",
                "-p",
                "www1_a1",
                "/bin/sh",
                "-c",
                "exit 2"
            ]
        );
        let bare = exec_command("p", &BTreeMap::new(), &["true".into()]);
        assert_eq!(bare.args, ["exec", "-p", "p", "true"]);
    }

    #[test]
    fn seed_job_command_sequence() {
        let cfg = seed_config();
        let env = BTreeMap::from([
            ("NOMAD_PORT_http".to_string(), "23456".to_string()),
            ("GREETING".to_string(), "hello world".to_string()),
        ]);
        let dirs = TaskDirs {
            alloc_dir: "/var/orc/alloc/cb34/alloc".into(),
            local_dir: "/var/orc/alloc/cb34/www1/local".into(),
            secrets_dir: "/var/orc/alloc/cb34/www1/secrets".into(),
        };
        let ports = BTreeMap::from([("http".to_string(), 23456), ("dns".to_string(), 23457)]);
        let inv = PotInvocation {
            task_name: "www1",
            alloc_id: "cb34cd8f-388d-7a38-e3fe-e01b62c93aa2",
            invocation_id: "81ded15e",
            config: &cfg,
            env: &env,
            dirs: &dirs,
            host_ports: &ports,
            memory_mb: 64,
            cpu_mhz: 200,
            cores: 0,
            mhz_per_core: 2400,
        };
        let mut text: String =
            inv.setup_commands().unwrap().iter().map(|c| format!("{c}\n")).collect();
        text.push_str(&format!("{}\n", inv.start_command()));
        expect_test::expect![[r#"
            pot prepare -U https://potluck.honeyguide.net/nginx-nomad -p nginx-nomad-amd64-13_1 -t 1.1.13 -c '"nginx -g '\''daemon off;'\''"' -N public-bridge -i auto -e udp:53:23457 -e 80:23456 -a 81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -n www1 -v
            pot set-attribute -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -A devfs_ruleset -V 4
            pot copy-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -s /etc/nginx.conf -d /usr/local/etc/nginx/nginx.conf
            pot mount-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -d /var/orc/alloc/cb34/alloc -m /alloc
            pot mount-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -d /var/orc/alloc/cb34/www1/local -m /local
            pot mount-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -d /var/orc/alloc/cb34/www1/secrets -m /secrets
            pot mount-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -d /mnt/www -m /usr/local/www
            pot mount-in -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -d /mnt/certs -m /certs -r
            pot set-env -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -E 'GREETING=hello world' -E NOMAD_PORT_http=23456
            pot set-hosts -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -H db.local:10.0.0.5
            pot set-rss -p www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2 -M 64M -C 1
            pot start www1_81ded15e_cb34cd8f-388d-7a38-e3fe-e01b62c93aa2
        "#]]
        .assert_eq(&text);
        // The -c value is one argv element with pot's own quotes, not shell-escaped.
        let prepare = &inv.setup_commands().unwrap()[0];
        assert!(prepare.args.contains(&"\"nginx -g 'daemon off;'\"".to_string()));
    }

    #[test]
    fn host_network_maps_no_ports_and_missing_labels_are_errors() {
        let mut cfg = seed_config();
        cfg.network_mode = Some("host".into());
        let env = BTreeMap::new();
        let dirs =
            TaskDirs { alloc_dir: "/a".into(), local_dir: "/l".into(), secrets_dir: "/s".into() };
        let ports = BTreeMap::new();
        let mut inv = PotInvocation {
            task_name: "t.v2",
            alloc_id: "a1",
            invocation_id: "0badf00d",
            config: &cfg,
            env: &env,
            dirs: &dirs,
            host_ports: &ports,
            memory_mb: 128,
            cpu_mhz: 5000,
            cores: 0,
            mhz_per_core: 2400,
        };
        let prepare = &inv.setup_commands().unwrap()[0];
        assert!(!prepare.args.contains(&"-e".to_string()));
        assert!(prepare.args.windows(2).any(|w| w == ["-N", "host"]));
        assert_eq!(inv.pot_name(), "t_v2_0badf00d_a1");
        assert_eq!(inv.cpu_count(), 3);
        inv.cores = 2;
        assert_eq!(inv.cpu_count(), 2);

        let mut bridged = cfg.clone();
        bridged.network_mode = None;
        let inv = PotInvocation { config: &bridged, ..inv };
        assert_eq!(inv.setup_commands().unwrap_err(), PlanError::UnknownPortLabel("dns".into()));
    }

    #[test]
    fn exit_codes_and_fingerprint() {
        assert_eq!(start_outcome(0), StartOutcome::Exited(0));
        assert_eq!(start_outcome(125), StartOutcome::ReadLastRunStats);
        assert_eq!(start_outcome(1), StartOutcome::StartFailed);
        assert_eq!(parse_last_run_stats("{ \"ExitCode\": 3 }\n"), Some(3));
        assert_eq!(parse_last_run_stats("{}"), None);
        assert_eq!(parse_version("0.16.0\n"), Some("0.16.0".into()));
        assert_eq!(parse_version("pot version: 0.15.4"), Some("0.15.4".into()));
        assert_eq!(parse_version("usage: pot ..."), None);
        assert_eq!(signal_command("n", "INT").to_string(), "pot signal -s SIGINT -p n");
        assert_eq!(destroy_command("n").to_string(), "pot destroy -p n -F");
    }
}
