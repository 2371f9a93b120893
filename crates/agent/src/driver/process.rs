//! Host processes: signal names, signalling a process group, and telling whether a pid still
//! belongs to the process the agent started (by its start time, so a reused pid is never taken
//! for ours). Linux reads `/proc`; FreeBSD asks `ps`, behind `cfg(target_os)`. No `unsafe`.

use rustix::process::{Pid, Signal};

/// Parses `SIGTERM`, `TERM` or `15` into a signal.
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(n) = bare.parse::<i32>() {
        return Signal::from_named_raw(n);
    }
    Some(match bare {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "ABRT" | "IOT" => Signal::ABORT,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "PIPE" => Signal::PIPE,
        "ALRM" => Signal::ALARM,
        "TERM" => Signal::TERM,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "TSTP" => Signal::TSTP,
        "WINCH" => Signal::WINCH,
        _ => return None,
    })
}

/// Sends `signal` to the process group led by `pid` (tasks run in their own group).
pub fn signal_group(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = Pid::from_raw(pid as i32).ok_or_else(|| std::io::Error::other("pid 0"))?;
    rustix::process::kill_process_group(pid, signal).map_err(std::io::Error::from)
}

/// The start time of process `pid` as an opaque token, or `None` if there is no such process
/// (or it is a zombie, which for our purposes has exited).
#[cfg(target_os = "linux")]
pub fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    // Field 22 of stat is starttime; `rest` starts at field 3.
    fields.get(19).map(|s| (*s).to_string())
}

/// The start time of process `pid` as an opaque token (FreeBSD and others: `ps -o lstart`).
#[cfg(not(target_os = "linux"))]
pub fn start_time(pid: u32) -> Option<String> {
    let out = std::process::Command::new("/bin/ps")
        .args(["-o", "state=,lstart=", "-p", &pid.to_string()])
        .env_clear()
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() || text.starts_with('Z') {
        return None;
    }
    Some(text.split_once(' ').map_or(text.clone(), |(_, t)| t.trim().to_string()))
}

/// True if `pid` runs and is the process that had `start` as its start time.
pub fn is_same_process(pid: u32, start: &str) -> bool {
    start_time(pid).is_some_and(|s| s == start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::TERM));
        assert_eq!(parse_signal("int"), Some(Signal::INT));
        assert_eq!(parse_signal("9"), Some(Signal::KILL));
        assert_eq!(parse_signal("SIGNOPE"), None);
    }

    #[test]
    fn own_process_is_recognised_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let start = start_time(me).expect("own start time");
        assert!(is_same_process(me, &start));
        assert!(!is_same_process(me, "0"));
    }
}
