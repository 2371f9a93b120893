//! What stands in for the jail: the pot's process environment, the `tinirc`-style entry script, the
//! fscomp "mounts", signal names and process-group signalling. It owns how a pot's command becomes an
//! ordinary process; it does not track status (see `state`) or parse arguments.
//!
//! Real pot writes `m/tmp/tinirc` (one `export "K=V"` line per `pot.env`, then `export _POT_NAME=…`
//! and `export _POT_IP=…`, then `exec <pot.cmd>`) and runs it with `jexec`. The stand-in generates the
//! same lines (without the jail-only ones such as the ip6addrctl table and `ifconfig lo0`) and runs them
//! with the host's `/bin/sh` from an empty environment, so `$`-expansion and quoting of `pot.env` and
//! `pot.cmd` behave as in pot. There is no chroot: cwd is `m/`, PATH lists the jail's bin dirs first.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::potconf::{FsEntry, PotConf};

/// The PATH a pot's process gets: the jail's bin dirs, then the host's basic ones (for `/bin/sh`
/// builtins' friends and interpreters such as python3 that test images use).
pub fn jail_path(root: &Path) -> String {
    let jail = ["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"];
    let mut parts: Vec<String> = jail.iter().map(|d| root.join(d).display().to_string()).collect();
    parts.extend(
        ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .map(String::from),
    );
    parts.join(":")
}

/// pot's `_info_pot_env` lines (`pot info -E`).
pub fn info_env_lines(name: &str, conf: &PotConf) -> Vec<String> {
    vec![format!("export _POT_NAME={name}"), format!("export _POT_IP={}", pot_ip(conf))]
}

/// The pot's IP as `_get_ip_var` gives it (empty for `inherit`).
pub fn pot_ip(conf: &PotConf) -> String {
    if conf.get("network_type").as_deref() == Some("inherit") {
        return String::new();
    }
    conf.get("ip").unwrap_or_default()
}

/// The entry script: env exports, `pot info -E` exports, `exec <pot.cmd>` (pot's `_js_env` + `_js_norc`).
/// `pot.cmd` defaults to `sh /etc/rc` as in pot.
pub fn entry_script(name: &str, conf: &PotConf) -> String {
    let mut s = String::from("# created automatically by pot, changes will be overwritten\n");
    for env in conf.all("pot.env") {
        s.push_str(&format!("export {env}\n"));
    }
    for line in info_env_lines(name, conf) {
        s.push_str(&line);
        s.push('\n');
    }
    let cmd = conf.raw("pot.cmd").filter(|c| !c.is_empty()).unwrap_or("sh /etc/rc");
    s.push_str(&format!("exec {cmd}\n"));
    s
}

/// A command that runs `script` with `/bin/sh` the way a pot's main process runs: cwd = jail root,
/// nothing from the caller's environment, its own process group (so signals reach its children too).
pub fn pot_command(root: &Path, script: &Path) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg(script).current_dir(root).env_clear().env("PATH", jail_path(root)).process_group(0);
    c
}

/// Makes each fscomp entry visible in the jail root: `m/<mountpoint>` becomes a symlink to the host dir.
/// pot nullfs-mounts instead; without root a symlink is the nearest thing. `ro` is not enforced.
pub fn mount_fscomp(root: &Path, entries: &[FsEntry]) -> io::Result<()> {
    for e in entries {
        let at = jail_join(root, &e.mountpoint);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() || m.is_file() => std::fs::remove_file(&at)?,
            // mount-in created the mount point; only an empty one can be replaced, like a mount hides it.
            Ok(m) if m.is_dir() => std::fs::remove_dir(&at)?,
            _ => {}
        }
        std::os::unix::fs::symlink(&e.source, &at)?;
    }
    Ok(())
}

/// Undoes `mount_fscomp`: the symlinks go back to empty mount-point directories, as after `umount`.
pub fn umount_fscomp(root: &Path, entries: &[FsEntry]) {
    for e in entries {
        let at = jail_join(root, &e.mountpoint);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&at);
            let _ = std::fs::create_dir_all(&at);
        }
    }
}

/// `root` joined with an absolute jail path.
pub fn jail_join(root: &Path, jail_path: &str) -> PathBuf {
    root.join(jail_path.trim_start_matches('/'))
}

/// FreeBSD's signal names (`killall -l`), which is what `pot signal -s` accepts.
pub const FREEBSD_SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "EMT", "FPE", "KILL", "BUS", "SEGV", "SYS",
    "PIPE", "ALRM", "TERM", "URG", "STOP", "TSTP", "CONT", "CHLD", "TTIN", "TTOU", "IO", "XCPU",
    "XFSZ", "VTALRM", "PROF", "WINCH", "INFO", "USR1", "USR2",
];

/// Validates a signal name as pot does (`NAME` or `SIGNAME`, from FreeBSD's list) and returns its bare name.
pub fn valid_signal_name(name: &str) -> Option<&'static str> {
    let bare = name.strip_prefix("SIG").unwrap_or(name);
    FREEBSD_SIGNALS.iter().copied().find(|s| *s == bare)
}

/// The host's signal for a FreeBSD name. `None` for FreeBSD-only signals (EMT, INFO on Linux).
pub fn host_signal(bare: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal as S;
    Some(match bare {
        "HUP" => S::HUP,
        "INT" => S::INT,
        "QUIT" => S::QUIT,
        "ILL" => S::ILL,
        "TRAP" => S::TRAP,
        "ABRT" => S::ABORT,
        "FPE" => S::FPE,
        "KILL" => S::KILL,
        "BUS" => S::BUS,
        "SEGV" => S::SEGV,
        "SYS" => S::SYS,
        "PIPE" => S::PIPE,
        "ALRM" => S::ALARM,
        "TERM" => S::TERM,
        "URG" => S::URG,
        "STOP" => S::STOP,
        "TSTP" => S::TSTP,
        "CONT" => S::CONT,
        "CHLD" => S::CHILD,
        "TTIN" => S::TTIN,
        "TTOU" => S::TTOU,
        "IO" => S::IO,
        "XCPU" => S::XCPU,
        "XFSZ" => S::XFSZ,
        "VTALRM" => S::VTALARM,
        "PROF" => S::PROF,
        "WINCH" => S::WINCH,
        "USR1" => S::USR1,
        "USR2" => S::USR2,
        #[cfg(any(target_os = "freebsd", target_os = "macos"))]
        "INFO" => S::INFO,
        #[cfg(any(target_os = "freebsd", target_os = "macos"))]
        "EMT" => S::EMT,
        _ => return None,
    })
}

/// Sends `sig` to the process group led by `pid` (the main process is started as a group leader).
pub fn signal_group(pid: i32, sig: rustix::process::Signal) -> io::Result<()> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process_group(p, sig).map_err(io::Error::from)
}

/// Sends `sig` to one process.
pub fn signal_process(pid: i32, sig: rustix::process::Signal) -> io::Result<()> {
    let p = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(p, sig).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_script_matches_tinirc_order() {
        let mut c = PotConf::default();
        c.push("network_type", "public-bridge");
        c.push("ip", "127.192.0.7");
        c.push("pot.env", "\"GREETING=hello \\\"you\\\"\"");
        c.push("pot.cmd", "nginx -g 'daemon off;'");
        let s = entry_script("web_1", &c);
        let expected = "# created automatically by pot, changes will be overwritten\n\
            export \"GREETING=hello \\\"you\\\"\"\n\
            export _POT_NAME=web_1\n\
            export _POT_IP=127.192.0.7\n\
            exec nginx -g 'daemon off;'\n";
        assert_eq!(s, expected);
        c.set("network_type", "inherit");
        c.remove("pot.cmd");
        let s = entry_script("web_1", &c);
        assert!(s.contains("export _POT_IP=\n") && s.ends_with("exec sh /etc/rc\n"), "{s}");
    }

    #[test]
    fn signal_names_with_and_without_sig() {
        assert_eq!(valid_signal_name("SIGHUP"), Some("HUP"));
        assert_eq!(valid_signal_name("TERM"), Some("TERM"));
        assert_eq!(valid_signal_name("SIGINFO"), Some("INFO"));
        assert_eq!(valid_signal_name("SIGFOO"), None);
        assert_eq!(valid_signal_name("hup"), None);
        assert_eq!(valid_signal_name("15"), None);
        assert!(host_signal("USR1").is_some());
    }

    #[test]
    fn fscomp_symlinks_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        let host = dir.path().join("hostdir");
        std::fs::create_dir_all(root.join("local")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("f"), "x").unwrap();
        let e = FsEntry {
            source: host.display().to_string(),
            mountpoint: "/local".into(),
            option: Some("ro".into()),
        };
        mount_fscomp(&root, std::slice::from_ref(&e)).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("local/f")).unwrap(), "x");
        umount_fscomp(&root, &[e]);
        assert!(root.join("local").is_dir() && !root.join("local/f").exists());
    }
}
