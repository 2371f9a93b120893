//! Running pots: `start` blocking and its exit codes, `.last_run_stats`, the status file, the pot's
//! environment and cwd, `stop`, `destroy -F`, `signal`, `exec`, `get-rss`, and SIGTERM to `pot start`.

use std::time::Duration;

use crate::harness::{read, wait_until, Env};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn start_exit_codes_follow_the_command() {
    let mut env = Env::new();
    let ok = env.prepared("ok", "a1", "exit-with 0", &[]);
    let r = env.pot(&["start", &ok]);
    r.code(0).line(&format!("===>  Starting the pot {ok}")).line("exiting with 0");
    // pot's own lines come before the application's.
    let starting = r.stdout.find("===>  Starting the pot").unwrap();
    assert!(starting < r.stdout.find("exiting with 0").unwrap(), "{}", r.stdout);
    assert_eq!(read(&env.jail(&ok).join("conf/.last_run_stats")), "{ \"ExitCode\": 0 }\n");
    env.pot(&["last-run-stats", "-p", &ok]).code(0).line("{ \"ExitCode\": 0 }");
    assert_eq!(
        read(&env.tmp().join(format!("pot_status_{ok}"))),
        "pot.status=starting,\npot.status=started,\npot.status=stopping,\npot.status=stopped,\n"
    );
    assert!(!env.tmp().join(format!("pot_main_pid_{ok}")).exists());

    let bad = env.prepared("bad", "a1", "exit-with 3", &[]);
    env.pot(&["start", "-p", &bad]).code(125).line("###>  bad_a1 reported application error");
    env.pot(&["last-run-stats", "-p", &bad]).code(0).line("{ \"ExitCode\": 3 }");
    // A stopped pot starts again.
    env.pot(&["start", &bad]).code(125);

    let missing = env.prepared("missing", "a1", "no-such-program", &[]);
    env.pot(&["start", &missing]).code(125);
    env.pot(&["last-run-stats", "-p", &missing]).code(0).line("{ \"ExitCode\": 127 }");
    let _ = &mut env;
}

#[test]
fn the_pot_sees_only_its_own_environment_and_runs_in_its_root() {
    let env = Env::new();
    let name = env.prepared("envy", "a1", "show-env", &[]);
    env.pot(&[
        "set-env",
        "-p",
        &name,
        "-E",
        "GREETING=hello world",
        "-E",
        "COPY=$GREETING!",
        "-E",
        "Q=a\"b",
    ])
    .code(0);
    let r = env.command(&["start", &name]).env("LEAKED_FROM_CALLER", "1").output().unwrap();
    assert_eq!(r.status.code(), Some(0));
    let out = String::from_utf8_lossy(&r.stdout);
    let lines: Vec<&str> = out.lines().collect();
    let (net, _) = env.network.split_once(".0/").unwrap();
    for expected in [
        "GREETING=hello world",
        // pot.env values are double-quoted in tinirc, so `$` expands in the jail's sh.
        "COPY=hello world!",
        "Q=a\"b",
        &format!("_POT_NAME={name}"),
        &format!("_POT_IP={net}.3"),
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in\n{out}");
    }
    assert!(!out.contains("LEAKED_FROM_CALLER") && !out.contains("POT_FS_ROOT"), "{out}");
    let root = env.jail(&name).join("m");
    let path = lines.iter().find(|l| l.starts_with("PATH=")).unwrap();
    assert!(
        path.starts_with(&format!(
            "PATH={}/usr/local/sbin:{}/usr/local/bin",
            root.display(),
            root.display()
        )),
        "{path}"
    );
    assert!(lines.contains(&root.to_str().unwrap()), "cwd is the jail root:\n{out}");
}

#[test]
fn mounts_appear_at_start_and_go_at_stop() {
    let env = Env::new();
    let name = env.prepared("mnt", "a1", "cat /local/in.txt", &[]);
    // `cat /local/...` would read the host's /local: use a relative path as the jail root is the cwd.
    env.pot(&["set-cmd", "-p", &name, "-c", "cat local/in.txt"]).code(0);
    let local = env.dir.path().join("task/local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("in.txt"), "from the host\n").unwrap();
    env.pot(&["mount-in", "-p", &name, "-d", local.to_str().unwrap(), "-m", "/local"]).code(0);
    env.pot(&["start", &name]).code(0).line("from the host");
    let m = env.jail(&name).join("m/local");
    assert!(m.is_dir() && !std::fs::symlink_metadata(&m).unwrap().file_type().is_symlink());
    assert!(local.join("in.txt").exists(), "the host dir is untouched");
}

#[test]
fn destroy_force_stops_a_running_pot_and_start_returns_0() {
    let mut env = Env::new();
    let name = env.prepared("long", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    env.pot(&["info", "-p", &name, "-r"]).code(0);
    env.pot(&["ps", "-q"]).code(0).line(&name);
    env.pot(&["ls"]).line("\tactive : true");
    // Starting it again while it runs is a no-op.
    env.pot(&["start", &name]).code(0);
    env.pot(&["destroy", "-p", &name]).code(1).line(&format!("###>  pot {name} is running"));
    let pid: i32 = read(&env.tmp().join(format!("pot_main_pid_{name}"))).trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    env.pot(&["destroy", "-p", &name, "-F"]).code(0);
    let r = env.wait_start(idx, LONG);
    r.code(0).line("sleeping");
    assert!(!env.jail(&name).exists(), "jail dir removed");
    assert!(!env.tmp().join(format!("pot_status_{name}")).exists());
    assert!(!env.tmp().join(format!("pot_main_pid_{name}")).exists());
    wait_until(LONG, || !std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn stop_ends_the_pot_and_leaves_stats() {
    let mut env = Env::new();
    let name = env.prepared("st", "a1", "sleeper", &[]);
    env.pot(&["set-attr", "-p", &name, "-A", "stop_timeout", "-V", "2"]).code(0);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    env.pot(&["stop", &name]).code(0);
    let r = env.wait_start(idx, LONG);
    r.code(0);
    // sleep died of SIGTERM: sh's wait reports 128+15.
    env.pot(&["last-run-stats", "-p", &name]).line("{ \"ExitCode\": 143 }");
    env.wait_status(&name, "stopped");
    env.pot(&["info", "-p", &name, "-r"]).code(1);
    // pot allows stopped→stopping, so stopping a stopped pot succeeds again.
    env.pot(&["stop", &name]).code(0);
}

#[test]
fn signal_reaches_the_main_process_and_start_reports_125() {
    let mut env = Env::new();
    let name = env.prepared("sig", "a1", "trap-usr1", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    // The script creates `trapped` in its cwd (the jail root) once its trap is installed.
    let trapped = env.root().join("jails").join(&name).join("m").join("trapped");
    wait_until(Duration::from_secs(20), || trapped.exists());
    env.pot(&["signal", "-s", "SIGUSR1", "-p", &name])
        .code(0)
        .line(&format!("===>  Sending SIGUSR1 to main process of pot {name}"));
    let r = env.wait_start(idx, LONG);
    r.code(125).line("ready").line("got-usr1");
    env.pot(&["last-run-stats", "-p", &name]).line("{ \"ExitCode\": 7 }");
}

#[test]
fn persistent_pots_have_no_main_process() {
    let mut env = Env::new();
    let name = env.prepared("per", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    env.pot(&["set-attr", "-p", &name, "-A", "persistent", "-V", "YES"]).code(0);
    env.pot(&["signal", "-s", "HUP", "-p", &name])
        .code(1)
        .line("###>  Persistent pots have no main process");
    env.pot(&["signal", "-s", "HUP", "-p", &name, "-f"]).code(0);
    env.pot(&["destroy", "-F", "-p", &name]).code(0);
    env.wait_start(idx, LONG).code(0);
}

/// Reads the PID a command in the pot wrote to `m/<file>`.
fn pid_in(env: &Env, name: &str, file: &str) -> i32 {
    let path = env.jail(name).join("m").join(file);
    let mut pid = None;
    wait_until(LONG, || {
        pid = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

#[test]
fn exec_commands_die_with_the_callers_group_and_with_the_pot() {
    use pot_standin::state::process_exists;
    use std::os::unix::process::CommandExt;
    let mut env = Env::new();
    let name = env.prepared("exk", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    let sh = ["sh", "-c", "echo $$ > $0; exec sleep 600"];
    // A caller that gives up (a timed-out script check) kills pot exec's process group: the
    // command, which is in that group as jexec's would be, goes with it.
    let mut exec = env.command(&["exec", "-p", &name, sh[0], sh[1], sh[2], "one.pid"]);
    let mut exec = exec.process_group(0).spawn().unwrap();
    let pid = pid_in(&env, &name, "one.pid");
    let group = rustix::process::Pid::from_raw(exec.id() as i32).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    exec.wait().unwrap();
    wait_until(LONG, || !process_exists(pid));
    // `pot stop` ends what `pot exec` runs, as jail -r does; pot exec reports the kill.
    let mut exec =
        env.command(&["exec", "-p", &name, sh[0], sh[1], sh[2], "two.pid"]).spawn().unwrap();
    let pid = pid_in(&env, &name, "two.pid");
    assert!(process_exists(pid));
    env.pot(&["stop", "-p", &name]).code(0);
    assert_eq!(exec.wait().unwrap().code(), Some(128 + 9));
    assert!(!process_exists(pid));
    let records: Vec<_> = std::fs::read_dir(env.tmp())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pot_exec_pid_"))
        .collect();
    assert!(records.is_empty(), "{records:?}");
    env.wait_start(idx, LONG);
}

#[test]
fn exec_runs_in_the_pot_with_its_exit_status() {
    let mut env = Env::new();
    let name = env.prepared("ex", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    let r = env.pot(&["exec", "-p", &name, "-e", "X=42", "sh", "-c", "echo $X; pwd; exit 4"]);
    r.code(4).line("42").line(env.jail(&name).join("m").to_str().unwrap());
    env.pot(&["exec", "-p", &name, "exit-with", "0"]).code(0).line("exiting with 0");
    // jexec -l: the command starts in the home directory when the jail has one.
    std::fs::create_dir(env.jail(&name).join("m/root")).unwrap();
    env.pot(&["exec", "-p", &name, "sh", "-c", "pwd; echo HOME=$HOME"])
        .code(0)
        .line(env.jail(&name).join("m/root").to_str().unwrap())
        .line("HOME=/root");
    env.pot(&["exec", "-p", &name, "-e", "BAD", "true"])
        .code(1)
        .line("###>  BAD not in a valid form");
    env.pot(&["exec", "-p", &name, "-u", "a", "-U", "b", "true"])
        .code(1)
        .line("###>  Parameters -u and -U are mutually exclusive");
    let rss = env.pot(&["get-rss", "-p", &name, "-J"]);
    rss.code(0);
    assert!(
        rss.stdout.starts_with("{ \"ResourceUsage\": { \"MemoryStats\": { \"RSS\" : "),
        "{}",
        rss.stdout
    );
    assert!(
        rss.stdout.contains("\"Swap\" : 0 }, \"CpuStats\": { \"TotalTicks\": "),
        "{}",
        rss.stdout
    );
    // It is JSON (with pot's trailing space), in the shape nomad-pot-driver reads.
    let v: serde_json::Value = serde_json::from_str(rss.stdout.trim_end()).unwrap();
    assert!(rss.stdout.ends_with("} } } \n"), "{:?}", rss.stdout);
    assert!(v["ResourceUsage"]["MemoryStats"]["RSS"].as_u64().unwrap() > 0);
    assert_eq!(v["ResourceUsage"]["MemoryStats"]["Swap"].as_u64(), Some(0));
    assert!(v["ResourceUsage"]["CpuStats"]["TotalTicks"].as_f64().is_some());
    assert!(v["ResourceUsage"]["CpuStats"]["Percent"].as_u64().is_some());
    env.pot(&["destroy", "-F", "-p", &name]).code(0);
    env.wait_start(idx, LONG).code(0);
}

#[test]
fn sigterm_to_pot_start_stops_the_pot() {
    let mut env = Env::new();
    let name = env.prepared("term", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    let pid: i32 = read(&env.tmp().join(format!("pot_main_pid_{name}"))).trim().parse().unwrap();
    let start_pid = env.start_pid(idx);
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &start_pid.to_string()])
        .status()
        .unwrap()
        .success());
    env.wait_start(idx, LONG).code(125);
    env.pot(&["last-run-stats", "-p", &name]).line("{ \"ExitCode\": 143 }");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    env.wait_status(&name, "stopped");
}

#[test]
fn the_status_machine_refuses_a_second_start_while_starting() {
    let env = Env::new();
    let name = env.prepared("sm", "a1", "sleeper", &[]);
    std::fs::write(env.tmp().join(format!("pot_status_{name}")), "pot.status=starting,\n").unwrap();
    // "starting" counts as running (the jail exists in pot from `jail -c` on), so start is a no-op…
    env.pot(&["start", &name]).code(0);
    // …and stop refuses the illegal starting→stopping transition.
    env.pot(&["stop", &name])
        .code(1)
        .line(&format!("###>  pot {name} is not in a state where it can be stopped"));
    // destroy -F stops first, and stop's failure ends destroy too (pot's stop uses `exit`).
    env.pot(&["destroy", "-F", "-p", &name]).code(1);
    assert!(env.jail(&name).is_dir());
    std::fs::write(env.tmp().join(format!("pot_status_{name}")), "pot.status=stopping,\n").unwrap();
    env.pot(&["start", &name])
        .code(1)
        .line(&format!("###>  pot {name} is not in a state where it can start"));
    env.pot(&["stop", &name]).code(1).line(&format!("###>  pot {name} is already stopping!"));
}

#[test]
fn signal_by_pattern_and_by_pid() {
    let mut env = Env::new();
    let name = env.prepared("pat", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    let main = read(&env.tmp().join(format!("pot_main_pid_{name}"))).trim().to_string();
    // A PID outside the pot is refused, as `pkill -j` would find nothing.
    let me = std::process::id().to_string();
    env.pot(&["signal", "-s", "SIGUSR1", "-P", &me, "-p", &name])
        .code(1)
        .line("###>  Sending signal failed");
    env.pot(&["signal", "-s", "SIGUSR1", "-P", &me, "-p", &name, "-f"])
        .code(0)
        .line("===>  Sending signal failed");
    // Dry run (-C) names the target without signalling it.
    env.pot(&["signal", "-C", "-s", "KILL", "-P", &main, "-p", &name]).code(0).line(&main);
    env.pot(&["info", "-p", &name, "-r"]).code(0);
    // copy-in on a running pot needs -F.
    let f = env.dir.path().join("f");
    std::fs::write(&f, "x").unwrap();
    env.pot(&["copy-in", "-p", &name, "-s", f.to_str().unwrap(), "-d", "/tmp/f"])
        .code(1)
        .line("###>  Copying files on a running pot is discouraged, it can partially expose the host file system to the jail");
    env.pot(&["copy-in", "-F", "-p", &name, "-s", f.to_str().unwrap(), "-d", "/tmp/f"]).code(0);
    // By pattern, like `pkill -j NAME sleep`.
    env.pot(&["signal", "-s", "TERM", "-m", "sleep", "-p", &name])
        .code(0)
        .line(&format!("===>  Sending TERM by pattern to pot {name}"));
    env.wait_start(idx, LONG).code(125);
    env.pot(&["last-run-stats", "-p", &name]).line("{ \"ExitCode\": 143 }");
}

#[test]
fn a_pot_whose_pot_start_was_killed_can_still_be_destroyed() {
    let mut env = Env::new();
    let name = env.prepared("orphan", "a1", "sleeper", &[]);
    let idx = env.start_bg(&name);
    env.wait_status(&name, "started");
    let pid: i32 = read(&env.tmp().join(format!("pot_main_pid_{name}"))).trim().parse().unwrap();
    let start_pid = env.start_pid(idx).to_string();
    assert!(std::process::Command::new("kill")
        .args(["-KILL", &start_pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(env.wait_exit(idx, LONG), -1);
    // The main process lives on in its own process group, so the pot still runs.
    env.pot(&["info", "-p", &name, "-r"]).code(0);
    env.pot(&["destroy", "-F", "-p", &name]).code(0);
    assert!(!env.jail(&name).exists());
    wait_until(LONG, || !std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn concurrent_prepares_are_serialized_by_the_global_lock() {
    let env = Env::new();
    env.image("app", "1.0", crate::harness::APP_FILES);
    let url = env.registry_url();
    let children: Vec<_> = (0..4)
        .map(|i| {
            let alloc = format!("c{i}");
            env.command(&[
                "prepare", "-U", &url, "-p", "app", "-t", "1.0", "-a", &alloc, "-n", "par",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let mut ips: Vec<String> = (0..4)
        .map(|i| {
            env.pot_conf(&format!("par_c{i}"))
                .lines()
                .find(|l| l.starts_with("ip="))
                .unwrap()
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 4, "every pot got its own IP: {ips:?}");
}

#[test]
fn a_start_that_cannot_mount_fails_with_1_and_leaves_the_pot_stopped() {
    let env = Env::new();
    let name = env.prepared("nomount", "a1", "sleeper", &[]);
    let host = env.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    env.pot(&["mount-in", "-p", &name, "-d", host.to_str().unwrap(), "-m", "/data"]).code(0);
    // A non-empty directory at the mount point cannot be replaced by the stand-in's symlink.
    std::fs::write(env.jail(&name).join("m/data/occupied"), "x").unwrap();
    let r = env.pot(&["start", &name]);
    r.code(1).line(&format!("###>  {name} failed to start"));
    assert!(r.stdout.contains("###>  Mount failed"), "{}", r.stdout);
    env.wait_status(&name, "stopped");
    env.pot(&["info", "-p", &name, "-r"]).code(1);
    assert_eq!(read(&env.jail(&name).join("conf/.last_run_stats")), "");
}
