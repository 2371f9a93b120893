//! A pot's runtime state: its paths, the `pot_status_<name>` state machine, the main-process PID file,
//! "is it running", and the locks. It owns these files in POT_TMP and the jail dir layout; it does not
//! start or stop processes.
//!
//! Real pot asks `jls -j NAME` whether a pot runs. The stand-in has no jail, so a pot runs when its
//! status is `starting`, or when its main process (from `pot_main_pid_<name>`) is still alive.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::config::Config;

/// The files of one pot.
#[derive(Debug, Clone)]
pub struct PotPaths {
    pub dir: PathBuf,
}

impl PotPaths {
    pub fn new(config: &Config, name: &str) -> PotPaths {
        PotPaths { dir: config.fs_root.join("jails").join(name) }
    }
    /// The jail root.
    pub fn root(&self) -> PathBuf {
        self.dir.join("m")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }
    pub fn pot_conf(&self) -> PathBuf {
        self.conf_dir().join("pot.conf")
    }
    pub fn fscomp(&self) -> PathBuf {
        self.conf_dir().join("fscomp.conf")
    }
    pub fn last_run_stats(&self) -> PathBuf {
        self.conf_dir().join(".last_run_stats")
    }
}

/// pot's `_is_pot`: the directory, `m/` and a readable `conf/pot.conf` exist. (There is no ZFS dataset
/// to check.)
pub fn is_pot(config: &Config, name: &str) -> bool {
    if name.is_empty() || name.contains('/') {
        return false;
    }
    let p = PotPaths::new(config, name);
    p.dir.is_dir() && p.root().is_dir() && File::open(p.pot_conf()).is_ok()
}

/// pot's name rule: `.` is the only forbidden character. The stand-in also refuses `/` and empty names,
/// which would escape `jails/` (real pot would fail later on ZFS instead).
pub fn is_valid_potname(name: &str) -> bool {
    !name.is_empty() && !name.contains('.') && !name.contains('/')
}

/// The names of all pots (directories under `jails/`), sorted as `ls -d` sorts them.
pub fn pot_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(config.fs_root.join("jails"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The states of pot's `set-status` machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Started,
    Doa,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Started => "started",
            Status::Doa => "doa",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
        }
    }
    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "starting" => Status::Starting,
            "started" => Status::Started,
            "doa" => Status::Doa,
            "stopping" => Status::Stopping,
            "stopped" => Status::Stopped,
            _ => return None,
        })
    }
}

/// The result of a status change, with pot's return codes in mind: `Same` is rc 2 ("someone else is
/// doing it"), `Illegal` is rc 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Done,
    Same,
    Illegal,
}

/// Whether pot's `set-status` allows `from → to` (P:share/pot/set-status.sh).
pub fn transition(from: Option<Status>, to: Status) -> Transition {
    use Status::*;
    if from == Some(to) {
        return Transition::Same;
    }
    let ok = match to {
        Starting => matches!(from, None | Some(Stopped)),
        Started | Doa => from == Some(Starting),
        Stopping => matches!(from, Some(Started | Doa | Stopped)),
        Stopped => from == Some(Stopping),
    };
    if ok {
        Transition::Done
    } else {
        Transition::Illegal
    }
}

fn status_path(config: &Config, name: &str) -> PathBuf {
    config.tmp.join(format!("pot_status_{name}"))
}

/// The path of the main-process PID file.
pub fn main_pid_path(config: &Config, name: &str) -> PathBuf {
    config.tmp.join(format!("pot_main_pid_{name}"))
}

/// The current status: the last `pot.status=` line, as pot reads it with `tail -n 1`.
pub fn read_status(config: &Config, name: &str) -> Option<Status> {
    let text = std::fs::read_to_string(status_path(config, name)).ok()?;
    let line = text.lines().rev().find_map(|l| l.strip_prefix("pot.status="))?;
    Status::parse(line.split(',').next().unwrap_or(""))
}

/// Changes the status under the per-pot lock `pot-lock-<name>`, appending `pot.status=<state>,` like
/// pot's `set-status`.
pub fn set_status(config: &Config, name: &str, to: Status) -> io::Result<Transition> {
    std::fs::create_dir_all(&config.tmp)?;
    let _lock = lock(config, &format!("pot-lock-{name}"))?;
    let t = transition(read_status(config, name), to);
    if t == Transition::Done {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(status_path(config, name))?;
        writeln!(f, "pot.status={},", to.as_str())?;
    }
    Ok(t)
}

/// Removes the status and PID files (destroy).
pub fn remove_runtime_files(config: &Config, name: &str) {
    let _ = std::fs::remove_file(status_path(config, name));
    let _ = std::fs::remove_file(main_pid_path(config, name));
    let _ = std::fs::remove_file(config.tmp.join(format!("pot-lock-{name}")));
    for pid in exec_pids(config, name) {
        let _ = std::fs::remove_file(exec_pid_path(config, name, pid as u32));
    }
}

/// Takes an exclusive `flock` on `$POT_TMP/<file>`, held until the returned file is dropped.
pub fn lock(config: &Config, file: &str) -> io::Result<File> {
    std::fs::create_dir_all(&config.tmp)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.tmp.join(file))?;
    // rustix's flock rather than `File::lock`, which needs Rust 1.89 (the workspace MSRV is 1.85).
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(f)
}

/// The global lock pot takes for `prepare`, `import`, `clone` and `copy-in` (`lockf -k /tmp/pot-lock-file`).
pub fn global_lock(config: &Config) -> io::Result<File> {
    lock(config, "pot-lock-file")
}

/// The record of one running `pot exec` command: `pot_exec_pid_<name>_<pid>` in POT_TMP (a stand-in
/// file; pot needs none because jail -r finds every process in the jail).
pub fn exec_pid_path(config: &Config, name: &str, pid: u32) -> PathBuf {
    config.tmp.join(format!("pot_exec_pid_{name}_{pid}"))
}

/// The PIDs of the `pot exec` commands still recorded for `name`.
pub fn exec_pids(config: &Config, name: &str) -> Vec<i32> {
    let prefix = format!("pot_exec_pid_{name}_");
    let Ok(dir) = std::fs::read_dir(&config.tmp) else { return Vec::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let file = e.file_name();
        let pid = file.to_str()?.strip_prefix(&prefix)?;
        // `name_<pid>` must not match another pot whose name extends this one's.
        pid.parse::<i32>().ok().filter(|p| *p > 0)
    })
    .collect()
}

/// The main process's PID, if the PID file holds one.
pub fn main_pid(config: &Config, name: &str) -> Option<i32> {
    std::fs::read_to_string(main_pid_path(config, name))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Whether a process with this PID exists (a zombie counts, as for `kill -0`).
pub fn process_exists(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => match rustix::process::test_kill_process(p) {
            Ok(()) => true,
            Err(e) => e == rustix::io::Errno::PERM,
        },
        None => false,
    }
}

/// Whether the pot counts as running (see the module comment).
pub fn is_running(config: &Config, name: &str) -> bool {
    match read_status(config, name) {
        Some(Status::Starting) => true,
        Some(Status::Started | Status::Doa | Status::Stopping) => {
            main_pid(config, name).is_some_and(process_exists)
        }
        Some(Status::Stopped) | None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn transitions_follow_set_status() {
        assert_eq!(transition(None, Starting), Transition::Done);
        assert_eq!(transition(Some(Stopped), Starting), Transition::Done);
        assert_eq!(transition(Some(Starting), Starting), Transition::Same);
        assert_eq!(transition(Some(Started), Starting), Transition::Illegal);
        assert_eq!(transition(Some(Starting), Started), Transition::Done);
        assert_eq!(transition(None, Stopping), Transition::Illegal);
        assert_eq!(transition(Some(Stopped), Stopping), Transition::Done);
        assert_eq!(transition(Some(Stopping), Stopping), Transition::Same);
        assert_eq!(transition(Some(Started), Stopped), Transition::Illegal);
        assert_eq!(transition(Some(Stopping), Stopped), Transition::Done);
    }

    #[test]
    fn status_file_appends_and_reads_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::under(dir.path());
        assert_eq!(read_status(&c, "p"), None);
        assert_eq!(set_status(&c, "p", Starting).unwrap(), Transition::Done);
        assert_eq!(set_status(&c, "p", Starting).unwrap(), Transition::Same);
        assert_eq!(set_status(&c, "p", Started).unwrap(), Transition::Done);
        assert_eq!(read_status(&c, "p"), Some(Started));
        let text = std::fs::read_to_string(c.tmp.join("pot_status_p")).unwrap();
        assert_eq!(text, "pot.status=starting,\npot.status=started,\n");
        // Started without a live main process is not running: the `pot start` that owned it is gone.
        assert!(!is_running(&c, "p"));
        std::fs::write(main_pid_path(&c, "p"), format!("{}\n", std::process::id())).unwrap();
        assert!(is_running(&c, "p"));
    }

    #[test]
    fn names() {
        assert!(is_valid_potname("www1_abc"));
        assert!(!is_valid_potname("a.b"));
        assert!(!is_valid_potname("a/b"));
        assert!(!is_valid_potname(""));
    }
}
