//! The commands that run, stop and remove pots: `start`, `stop`, `destroy`, `signal`, `exec`. It owns the
//! main process's life (spawn, wait, exit code, `.last_run_stats`), port forwarding for its duration and
//! stopping; it does not write configuration (see `settings`).
//!
//! `pot start` blocks until the pot's command exits, like pot's for non-persistent pots, and exits 0 if
//! the command exited 0, 125 if it exited non-zero (or died of a signal: 128+N, as `wait` reports it),
//! 1 if the pot could not start, and 0 if a concurrent `stop`/`destroy -F` is already stopping the pot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::settings::{check_pot, load_conf};
use super::{every, has, last, parse, print_help, Parsed};
use crate::potconf::{self, PotConf};
use crate::state::{self, PotPaths, Status, Transition};
use crate::{jail, net, Ctx};

/// The pot name from `-p` or, failing that, the first operand (`eval echo \$$OPTIND`).
fn name_arg(opts: &[crate::getopts::Opt], rest: &[String]) -> String {
    last(opts, 'p').or_else(|| rest.first().cloned()).unwrap_or_default()
}

/// The pot's `stop_timeout` attribute (jail's `stop.timeout`, default 10 s).
fn stop_timeout(conf: &PotConf) -> Duration {
    Duration::from_secs(
        conf.get("pot.attr.stop_timeout").and_then(|v| v.parse().ok()).unwrap_or(10),
    )
}

/// Exit status as sh's `wait` reports it: the code, or 128 + the signal number.
fn wait_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs a pot hook (`conf/<hook>.sh`) on the host, as pot does, if it exists.
fn run_hook(ctx: &mut Ctx, name: &str, hook: &str, what: &str) {
    let script = PotPaths::new(&ctx.config, name).conf_dir().join(format!("{hook}.sh"));
    if script.is_file() {
        ctx.info(format!("Executing the {what} script for the pot {name}"));
        ctx.flush();
        let _ = Command::new("/bin/sh")
            .arg(&script)
            .env("POT_NAME", name)
            .stdin(Stdio::null())
            .status();
    }
}

/// Writes the pot's `/etc/hosts` from the jail's original one plus the `pot.hosts` lines, as
/// `_js_etc_hosts` does (only when there is an `etc/` in the jail root).
fn write_etc_hosts(root: &Path, conf: &PotConf) {
    let hosts = conf.all("pot.hosts");
    let etc = root.join("etc");
    if hosts.is_empty() || !etc.is_dir() {
        return;
    }
    let orig = etc.join("hosts.pot-orig");
    if !orig.exists() {
        let _ = std::fs::copy(etc.join("hosts"), &orig);
    }
    let mut text = std::fs::read_to_string(&orig).unwrap_or_default();
    for h in hosts {
        text.push_str(h);
        text.push('\n');
    }
    let _ = std::fs::write(etc.join("hosts"), text);
}

/// Waits until the process group `pgid` has no member left, up to `limit`.
fn wait_group_gone(pgid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let alive = rustix::process::Pid::from_raw(pgid)
            .is_some_and(|p| rustix::process::test_kill_process_group(p).is_ok());
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// jail(8)'s removal, for what is left of a pot's processes: SIGTERM to the group, `stop.timeout` to go,
/// then SIGKILL.
fn terminate_group(pgid: i32, timeout: Duration) {
    use rustix::process::Signal;
    if jail::signal_group(pgid, Signal::TERM).is_err() {
        return;
    }
    if !wait_group_gone(pgid, timeout) {
        let _ = jail::signal_group(pgid, Signal::KILL);
        wait_group_gone(pgid, Duration::from_secs(5));
    }
}

/// `pot start [-hvsS] [-p] potname`.
pub fn start(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, rest) = match parse(ctx, "start", "hvsSp:", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    let name = name_arg(&opts, &rest);
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "start");
        return 1;
    }
    if !check_pot(ctx, &name) {
        return 1;
    }
    if state::is_running(&ctx.config, &name) {
        ctx.debug(format!("pot {name} is already running"));
        return 0;
    }
    let Some(conf) = load_conf(ctx, &name) else { return 1 };
    if std::fs::create_dir_all(&ctx.config.tmp).is_err() {
        ctx.error("failed to create the POT_TMP directory");
        return 1;
    }
    match state::set_status(&ctx.config, &name, Status::Starting) {
        Ok(Transition::Done) => {}
        Ok(Transition::Same) => {
            ctx.error(format!("pot {name} is already starting"));
            return 1;
        }
        Ok(Transition::Illegal) | Err(_) => {
            ctx.error(format!("pot {name} is not in a state where it can start"));
            return 1;
        }
    }
    let code = run_main(ctx, &name, &conf);
    match code {
        125 => ctx.error(format!("{name} reported application error")),
        0 => {}
        _ => ctx.error(format!("{name} failed to start")),
    }
    code
}

/// `_js_start` from the mounts to the end; the status is `starting` on entry.
fn run_main(ctx: &mut Ctx, name: &str, conf: &PotConf) -> i32 {
    let paths = PotPaths::new(&ctx.config, name);
    let root = paths.root();
    let fscomp = potconf::load_fscomp(&paths.fscomp()).unwrap_or_default();
    if let Err(e) = jail::mount_fscomp(&root, &fscomp) {
        ctx.error(format!("Mount failed {e}"));
        start_cleanup(ctx, name, conf, None);
        return 1;
    }
    write_etc_hosts(&root, conf);
    let script = root.join("tmp/tinirc");
    let written = std::fs::create_dir_all(root.join("tmp"))
        .and_then(|_| std::fs::write(&script, jail::entry_script(name, conf)));
    if let Err(e) = written {
        ctx.error(format!("cannot write {}: {e}", script.display()));
        start_cleanup(ctx, name, conf, None);
        return 1;
    }
    run_hook(ctx, name, "prestart", "pre-start");
    ctx.info(format!("Starting the pot {name}"));
    let _forwarders = start_forwarding(ctx, conf);
    if conf.get("pot.rss.memory").is_some_and(|m| !m.is_empty()) {
        ctx.info("memory constraint cannot be applies because rctl is not enabled - ignoring");
    }
    // Our own lines must reach the caller's stdout before the pot's output does.
    ctx.flush();
    // Registered before the spawn, so a SIGTERM that arrives right after it is not lost (and cannot kill
    // `pot start` while the pot lives on); exec resets the handlers in the child.
    let signals = termination_signals();
    let mut child = match jail::pot_command(&root, &script).stdin(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => {
            ctx.error(format!("cannot run the pot's command: {e}"));
            start_cleanup(ctx, name, conf, None);
            return 1;
        }
    };
    let pid = child.id() as i32;
    let pid_file = state::main_pid_path(&ctx.config, name);
    if let Err(e) = std::fs::write(&pid_file, format!("{pid}\n")) {
        ctx.error(format!("cannot write {}: {e}", pid_file.display()));
    }
    run_hook(ctx, name, "poststart", "post-start");
    match state::set_status(&ctx.config, name, Status::Started) {
        Ok(Transition::Same) => ctx.info(format!("pot {name} is already started (???)")),
        Ok(Transition::Illegal) | Err(_) => {
            ctx.error(format!("pot {name} is not in a state where it can be started"))
        }
        Ok(Transition::Done) => {}
    }
    ctx.flush();
    let relay = signals.map(|s| relay_termination(s, pid, stop_timeout(conf)));
    let status = child.wait();
    if let Some(handle) = relay {
        handle.close();
    }
    let exit_code = match status {
        Ok(s) => wait_code(s),
        Err(_) => 1,
    };
    let stats = format!("{{ \"ExitCode\": {exit_code} }}\n");
    if let Err(e) = std::fs::write(paths.last_run_stats(), stats) {
        ctx.error(format!("cannot write .last_run_stats: {e}"));
    }
    // Unlike pot, the PID file goes only after the status change, so a concurrent `stop` that waits
    // for it knows this start has already seen its `stopping`.
    let t = state::set_status(&ctx.config, name, Status::Stopping);
    let _ = std::fs::remove_file(&pid_file);
    match t {
        Ok(Transition::Same) => {
            ctx.debug(format!("pot {name} is already stopping (maybe by a pot stop)"));
            return 0;
        }
        Ok(Transition::Illegal) | Err(_) => {
            ctx.error(format!("pot {name} is not in a state where it can be stopped"));
            return 1;
        }
        Ok(Transition::Done) => {}
    }
    start_cleanup(ctx, name, conf, Some(pid));
    if exit_code != 0 {
        125
    } else {
        0
    }
}

/// `start-cleanup` → `pot stop -s`: what is left of the pot's processes goes, the mounts go, and the
/// status ends at `stopped`.
fn start_cleanup(ctx: &mut Ctx, name: &str, conf: &PotConf, pgid: Option<i32>) {
    if let Some(pgid) = pgid {
        terminate_group(pgid, stop_timeout(conf));
    }
    let paths = PotPaths::new(&ctx.config, name);
    jail::umount_fscomp(&paths.root(), &potconf::load_fscomp(&paths.fscomp()).unwrap_or_default());
    // A start that failed before its command ran is still `starting`; `doa` is the way out of that.
    if state::read_status(&ctx.config, name) == Some(Status::Starting) {
        let _ = state::set_status(&ctx.config, name, Status::Doa);
    }
    if state::read_status(&ctx.config, name) != Some(Status::Stopping) {
        let _ = state::set_status(&ctx.config, name, Status::Stopping);
    }
    let _ = state::set_status(&ctx.config, name, Status::Stopped);
}

/// Starts the user-space stand-in for pot's pf `rdr` rules (bridge network types only).
fn start_forwarding(ctx: &mut Ctx, conf: &PotConf) -> Option<net::Forwarders> {
    let nt = conf.get("network_type").unwrap_or_default();
    let specs: Vec<net::PortExport> = conf
        .raw("pot.export.ports")
        .unwrap_or("")
        .split_whitespace()
        .filter_map(net::parse_export)
        .collect();
    if specs.is_empty() || (nt != "public-bridge" && nt != "private-bridge") {
        return None;
    }
    let ip: std::net::IpAddr = match jail::pot_ip(conf).parse() {
        Ok(ip) => ip,
        Err(_) => {
            ctx.error("pfctl failed to apply redirection rules - ignoring but no redirection is performed");
            return None;
        }
    };
    let (fw, failed) = net::forward(&specs, ip);
    for (proto, host, pot) in &fw.bound {
        let p = if *proto == net::Proto::Udp { "udp" } else { "tcp" };
        ctx.debug(format!("Redirect: from 0.0.0.0 : {p}:{host} to {ip} : {p}:{pot}"));
    }
    for (spec, e) in failed {
        ctx.debug(format!("cannot bind host port {:?}: {e}", spec.host_port));
        ctx.error(
            "pfctl failed to apply redirection rules - ignoring but no redirection is performed",
        );
    }
    Some(fw)
}

/// The signals that make `pot start` stop its pot: SIGTERM, SIGINT, SIGHUP.
fn termination_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).ok()
}

/// While `pot start` waits, those signals stop the pot's command the way `pot stop` would (TERM to the
/// group, KILL after the stop timeout), so killing `pot start` never orphans the pot.
fn relay_termination(
    mut signals: signal_hook::iterator::Signals,
    pgid: i32,
    timeout: Duration,
) -> signal_hook::iterator::Handle {
    let handle = signals.handle();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            terminate_group(pgid, timeout);
        }
    });
    handle
}

/// `pot stop [-hv] [-i ifs] [-s] -p potname | potname`.
pub fn stop(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, rest) = match parse(ctx, "stop", "hvp:i:s", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    let name = name_arg(&opts, &rest);
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "stop");
        return 1;
    }
    if !state::is_pot(&ctx.config, &name) {
        ctx.error(format!("The pot {name} is not a valid pot"));
        return 0;
    }
    match state::set_status(&ctx.config, &name, Status::Stopping) {
        Ok(Transition::Done) => {}
        Ok(Transition::Same) => {
            if has(&opts, 's') {
                ctx.debug(format!(
                    "pot {name} is already stopping, but we are cleaning up from start-cleanup"
                ));
            } else {
                ctx.error(format!("pot {name} is already stopping!"));
                return 1;
            }
        }
        Ok(Transition::Illegal) | Err(_) => {
            ctx.error(format!("pot {name} is not in a state where it can be stopped"));
            return 1;
        }
    }
    let Some(conf) = load_conf(ctx, &name) else { return 1 };
    run_hook(ctx, &name, "prestop", "pre-stop");
    if !stop_main(ctx, &name, &conf) {
        ctx.error(format!("Stop the pot {name} failed"));
        return 1;
    }
    run_hook(ctx, &name, "poststop", "post-stop");
    let paths = PotPaths::new(&ctx.config, &name);
    jail::umount_fscomp(&paths.root(), &potconf::load_fscomp(&paths.fscomp()).unwrap_or_default());
    match state::set_status(&ctx.config, &name, Status::Stopped) {
        Ok(Transition::Done) => 0,
        Ok(Transition::Same) => {
            ctx.error(format!("pot {name} is already stopped!"));
            1
        }
        Ok(Transition::Illegal) | Err(_) => {
            ctx.error(format!("pot {name} is not in a state where it can marked as stopped"));
            1
        }
    }
}

/// `jail -r`: run `exec_stop` if set, TERM the main process group, KILL it after `stop_timeout`, then
/// wait for the `pot start` that owns it to record the exit (it removes the PID file).
fn stop_main(ctx: &mut Ctx, name: &str, conf: &PotConf) -> bool {
    let Some(pid) = state::main_pid(&ctx.config, name) else { return true };
    let pid_file = state::main_pid_path(&ctx.config, name);
    let root = PotPaths::new(&ctx.config, name).root();
    if let Some(cmd) = conf.raw("pot.attr.exec_stop").filter(|c| !c.is_empty()) {
        let _ = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(&root)
            .env_clear()
            .env("PATH", jail::jail_path(&root))
            .stdin(Stdio::null())
            .status();
    }
    if state::process_exists(pid) {
        terminate_group(pid, stop_timeout(conf));
    }
    // What `pot exec` started runs in the jail too: jail -r ends it.
    for exec_pid in state::exec_pids(&ctx.config, name) {
        if state::process_exists(exec_pid) {
            let _ = jail::signal_process(exec_pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(state::exec_pid_path(&ctx.config, name, exec_pid as u32));
    }
    // With its `pot start` alive, the PID file goes right after the exit is recorded. If that `pot start`
    // is gone (killed), nobody will remove it, and the orphaned main process has been reaped by init:
    // then a short grace period is enough.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut gone_since: Option<Instant> = None;
    while pid_file.exists() && Instant::now() < deadline {
        if !state::process_exists(pid) {
            let since = *gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&pid_file);
    !state::process_exists(pid)
}

/// `pot destroy [-hvFrq] [-p potname|-b base|-f fscomp|-B bridge]`.
pub fn destroy(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match parse(ctx, "destroy", "hvrf:p:b:FB:q", args) {
        Parsed::Args(o, _) => o,
        Parsed::Exit(c) => return c,
    };
    let given: Vec<char> = ['b', 'p', 'f', 'B']
        .into_iter()
        .filter(|c| last(&opts, *c).is_some_and(|v| !v.is_empty()))
        .collect();
    if given.is_empty() {
        ctx.error("-b or -p or -f or -B are missing");
        print_help(ctx, "destroy");
        return 1;
    }
    if given.len() > 1 {
        ctx.error("-b, -p, -f and -B cannot be used at the same time");
        print_help(ctx, "destroy");
        return 1;
    }
    if has(&opts, 'q') {
        ctx.verbosity = 0;
    }
    let force = has(&opts, 'F');
    let value = last(&opts, given[0]).unwrap_or_default();
    match given[0] {
        'B' => {
            ctx.error(format!("{value} is not a valid bridge name"));
            return 1;
        }
        'f' => {
            ctx.error(format!("{value} is not a fscomp"));
            return 1;
        }
        'b' => {
            ctx.error(format!("{value} is not a base"));
            return 1;
        }
        _ => {}
    }
    let name = value;
    let paths = PotPaths::new(&ctx.config, &name);
    if !state::is_pot(&ctx.config, &name) {
        if force && state::is_valid_potname(&name) && paths.dir.is_dir() {
            if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
                ctx.error(format!("Failed to destroy pot {name}: {e}"));
                return 1;
            }
            state::remove_runtime_files(&ctx.config, &name);
            ctx.info(format!("Forcibly destroyed pot {name}"));
            return 0;
        }
        ctx.error(format!("pot {name} not found or corrupted. Try to use the -F flag"));
        return 1;
    }
    if state::is_running(&ctx.config, &name) {
        if !force {
            ctx.error(format!("pot {name} is running"));
            return 1;
        }
        let mut args = vec![name.clone()];
        if ctx.verbosity >= 2 {
            args.insert(0, "-v".to_string());
        }
        let saved = ctx.verbosity;
        ctx.verbosity = 1;
        let code = stop(ctx, &args);
        ctx.verbosity = saved;
        // pot's stop fails with `exit`, which ends the destroy that called it.
        if code != 0 {
            return code;
        }
    }
    ctx.info(format!("Destroying pot {name}"));
    if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
        ctx.error(format!("{name} destruction failed: {e}"));
        return 1;
    }
    state::remove_runtime_files(&ctx.config, &name);
    0
}

/// `pot signal [-hvflC] [-s signal] [-P pid|-m pattern] -p pot`. Like pot (`pkill -F pot_main_pid`), the
/// main process alone gets the signal, not its children.
pub fn signal(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opts = match getopts_with_list(ctx, args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let name = last(&opts, 'p').unwrap_or_default();
    let force = has(&opts, 'f');
    let dry_run = has(&opts, 'C');
    let sig = last(&opts, 's').unwrap_or_else(|| "SIGINFO".to_string());
    let pid_arg = last(&opts, 'P').unwrap_or_default();
    let pattern = last(&opts, 'm').unwrap_or_default();
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "signal");
        return 1;
    }
    let Some(bare) = jail::valid_signal_name(&sig) else {
        ctx.error(format!("Invalid signal, valid signals: {}", jail::FREEBSD_SIGNALS.join(" ")));
        return 1;
    };
    if !pid_arg.is_empty() && !pattern.is_empty() {
        ctx.error("Process ID and pattern match are mutually exclusive");
        return 1;
    }
    if !pid_arg.is_empty() && !pid_arg.bytes().all(|b| b.is_ascii_digit()) {
        ctx.error("Invalid pid");
        return 1;
    }
    if !state::is_running(&ctx.config, &name) {
        if force {
            ctx.info("The pot is not running");
            return 0;
        }
        ctx.error("The pot is not running");
        return 1;
    }
    let Some(main) = state::main_pid(&ctx.config, &name) else {
        return signal_failed(ctx, force);
    };
    let ok = if !pattern.is_empty() {
        ctx.info(format!("Sending {sig} by pattern to pot {name}"));
        let mut c = Command::new(if dry_run { "pgrep" } else { "pkill" });
        if !dry_run {
            c.arg(format!("-{bare}"));
        }
        c.arg("-g").arg(main.to_string()).arg(&pattern).status().is_ok_and(|s| s.success())
    } else {
        let target = if !pid_arg.is_empty() {
            ctx.info(format!("Sending {sig} to pid {pid_arg} in pot {name}"));
            // `pkill -j NAME -F file`: the PID must belong to the pot (here: to its process group).
            let pid: i32 = pid_arg.parse().unwrap_or(0);
            let in_pot = rustix::process::Pid::from_raw(pid)
                .and_then(|p| rustix::process::getpgid(Some(p)).ok())
                .is_some_and(|g| g.as_raw_nonzero().get() == main);
            in_pot.then_some(pid)
        } else {
            ctx.info(format!("Sending {sig} to main process of pot {name}"));
            let conf = load_conf(ctx, &name).unwrap_or_default();
            if conf.get("pot.attr.persistent").as_deref() != Some("NO") {
                if force {
                    ctx.info("Persistent pots have no main process");
                    return 0;
                }
                ctx.error("Persistent pots have no main process");
                return 1;
            }
            Some(main)
        };
        match target {
            Some(pid) if dry_run => {
                ctx.print(pid.to_string());
                true
            }
            Some(pid) => match jail::host_signal(bare) {
                Some(s) => jail::signal_process(pid, s).is_ok(),
                None => {
                    ctx.debug(format!("SIG{bare} does not exist on this host"));
                    false
                }
            },
            None => false,
        }
    };
    if ok {
        0
    } else {
        signal_failed(ctx, force)
    }
}

fn signal_failed(ctx: &mut Ctx, force: bool) -> i32 {
    if force {
        ctx.info("Sending signal failed");
        0
    } else {
        ctx.error("Sending signal failed");
        1
    }
}

/// signal's option loop, where `-l` prints the signal names and exits 0 as soon as it is seen.
fn getopts_with_list(ctx: &mut Ctx, args: &[String]) -> Result<Vec<crate::getopts::Opt>, i32> {
    let spec = "hvflCs:P:m:p:";
    if let Ok((opts, _)) = crate::getopts::parse(spec, args) {
        let l = opts.iter().position(|o| o.letter == 'l');
        let h = opts.iter().position(|o| o.letter == 'h');
        if let Some(l) = l {
            if h.is_none_or(|h| l < h) {
                ctx.print(jail::FREEBSD_SIGNALS.join(" "));
                return Err(0);
            }
        }
    }
    match parse(ctx, "signal", spec, args) {
        Parsed::Args(o, _) => Ok(o),
        Parsed::Exit(c) => Err(c),
    }
}

/// `pot exec [-hvdt] [-e var=value] [-u user|-U user] -p pot COMMAND…`. Like `jexec -l`, the command gets a
/// clean login environment (PATH, HOME, SHELL, USER, TERM) plus the `-e` variables, not `pot.env`, and
/// runs in `/root` (the jail root if there is none).
/// `-u`/`-U` are accepted, but the command runs as the caller's user; `-t` allocates no pty. The command
/// stays in the caller's process group, as jexec's does, and while it runs its PID is recorded in
/// POT_TMP so that `stop` ends it as jail -r would.
pub fn exec(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (opts, rest) = match parse(ctx, "exec", "hvdtp:e:u:U:", args) {
        Parsed::Args(o, r) => (o, r),
        Parsed::Exit(c) => return c,
    };
    let mut env = Vec::new();
    for e in every(&opts, 'e') {
        match e.split_once('=') {
            Some((k, v)) => env.push((k.to_string(), v.to_string())),
            None => {
                ctx.error(format!("{e} not in a valid form"));
                ctx.error("VARIABLE=value is accetped");
                print_help(ctx, "exec");
                return 1;
            }
        }
    }
    if rest.is_empty() {
        ctx.error("A command is mandatory");
        return 1;
    }
    let name = last(&opts, 'p').unwrap_or_default();
    if name.is_empty() {
        ctx.error("A pot name is mandatory");
        print_help(ctx, "exec");
        return 1;
    }
    if last(&opts, 'u').is_some() && last(&opts, 'U').is_some() {
        ctx.error("Parameters -u and -U are mutually exclusive");
        return 1;
    }
    if !state::is_running(&ctx.config, &name) {
        ctx.error("The pot is not running");
        return 1;
    }
    let root = PotPaths::new(&ctx.config, &name).root();
    // jexec -l starts the command in the user's home directory (root's: /root); a jail without
    // one gets its root directory.
    let home = jail::jail_join(&root, "/root");
    let cwd = if home.is_dir() { home } else { root.clone() };
    let mut c = Command::new(resolve_program(&root, &rest[0]));
    c.args(&rest[1..])
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", jail::jail_path(&root))
        .env("HOME", "/root")
        .env("SHELL", "/bin/sh")
        .env("USER", "root")
        .env("TERM", std::env::var("TERM").unwrap_or_else(|_| "xterm".to_string()))
        .envs(env);
    // As in pot, the command (jexec's) stays in the caller's process group, so a caller that kills
    // that group (a timed-out script check) ends it too. `stop` ends it with the pot, as jail -r
    // does, through the record `exec_record` leaves in POT_TMP.
    ctx.flush();
    if has(&opts, 'd') {
        return match c.stdin(Stdio::null()).spawn() {
            Ok(_) => 0,
            Err(e) => {
                ctx.error(format!("{}: {e}", rest[0]));
                1
            }
        };
    }
    let mut child = match c.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = writeln!(ctx.err, "env: {}: {e}", rest[0]);
            return 127;
        }
    };
    let record = state::exec_pid_path(&ctx.config, &name, child.id());
    let _ = std::fs::write(&record, format!("{}\n", child.id()));
    let code = match child.wait() {
        Ok(s) => wait_code(s),
        Err(_) => 1,
    };
    let _ = std::fs::remove_file(&record);
    code
}

/// The program `env COMMAND` would run inside the jail: a bare name is looked up in the jail's PATH
/// (jail dirs first), an absolute path inside the jail root if it exists there, else on the host (there
/// is no chroot, so `/bin/sh` is the host's).
fn resolve_program(root: &Path, program: &str) -> std::path::PathBuf {
    if program.starts_with('/') {
        let inside = jail::jail_join(root, program);
        return if inside.is_file() { inside } else { program.into() };
    }
    if program.contains('/') {
        return root.join(program);
    }
    jail::jail_path(root)
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| program.into())
}
