//! The pot driver against the stand-in `pot`: the seed's nginx job shape, the exact command
//! sequence, two allocations on distinct host ports, stop destroying each pot exactly once, and
//! the sweep of orphaned pots.
//!
//! The stand-in binary is `target/<profile>/pot`, next to this test's `deps/` directory; it is
//! built with `cargo build -p pot-standin` when missing (only pot-standin's own tests get
//! `CARGO_BIN_EXE_pot`). The agent runs it through a two-line sh wrapper that records each argv,
//! which is how the command sequence is asserted.

use crate::harness::*;
use agent::pot::PotDriverConfig;
use model::{ClientStatus, JobType, Resources, Task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn standin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let pot = profile_dir.join("pot");
    if !pot.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "pot-standin", "--bin", "pot"])
            .status()
            .unwrap();
        assert!(status.success(), "building the pot stand-in failed");
    }
    assert!(pot.exists(), "no stand-in at {}", pot.display());
    pot
}

/// An isolated pot installation with the seed image in a `file://` registry.
struct PotEnv {
    dir: tempfile::TempDir,
    config: PotDriverConfig,
}

static NET: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl PotEnv {
    fn new() -> PotEnv {
        let dir = tempfile::tempdir().unwrap();
        for d in ["pot/jails", "cache", "tmp", "registry", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        pot_standin::image::build_nginx_test_image(
            &dir.path().join("work"),
            &dir.path().join("registry"),
        )
        .unwrap();
        let log = dir.path().join("commands.log");
        let wrapper = dir.path().join("pot-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                standin().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let n = NET.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = |s: &str| dir.path().join(s).display().to_string();
        let config = PotDriverConfig {
            pot_path: wrapper,
            pot_env: BTreeMap::from([
                ("POT_FS_ROOT".to_string(), p("pot")),
                ("POT_CACHE".to_string(), p("cache")),
                ("POT_TMP".to_string(), p("tmp")),
                (
                    "POT_NETWORK".to_string(),
                    format!("127.{}.{}.0/24", 150 + std::process::id() % 40, n % 256),
                ),
            ]),
            state_dir: PathBuf::new(),
        };
        PotEnv { dir, config }
    }

    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("commands.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn pots(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("pot/jails"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn registry_url(&self) -> String {
        format!("file://{}", self.dir.path().join("registry").display())
    }
}

impl Drop for PotEnv {
    /// A failed test must not leave pots (and their processes) running: destroy every pot
    /// still in this installation.
    fn drop(&mut self) {
        for name in self.pots() {
            let _ = std::process::Command::new(standin())
                .args(["destroy", "-p", &name, "-F"])
                .env_clear()
                .envs(&self.config.pot_env)
                .env("PATH", "/usr/bin:/bin")
                .output();
        }
    }
}

/// The seed's nginx task: the same config keys, with the fake nginx on port 8080.
fn nginx_task(env: &PotEnv) -> Task {
    let config = serde_json::json!({
        "image": env.registry_url(),
        "pot": pot_standin::image::NGINX_IMAGE.0,
        "tag": pot_standin::image::NGINX_IMAGE.1,
        "command": "nginx",
        "args": ["-g", "'daemon off;'"],
        "port_map": { "http": "8080" },
    });
    Task {
        name: "www1".into(),
        driver: "pot".into(),
        config: serde_json::from_value(config).unwrap(),
        env: BTreeMap::from([("NGINX_PORT".to_string(), "8080".to_string())]),
        resources: Some(Resources { cpu: 200, memory_mb: 64, ..Resources::default() }),
        kill_timeout: Some(Duration::from_secs(3)),
        ..Task::default()
    }
}

fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.contains("200").then_some(out)
}

async fn answers(port: u16) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(body) = tokio::task::spawn_blocking(move || http_get(port)).await.unwrap() {
            return body;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "port {port} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pot_name_of(commands: &[String], alloc_id: &str) -> String {
    commands
        .iter()
        .find_map(|c| {
            let rest = c.strip_prefix("start ")?;
            rest.ends_with(alloc_id).then(|| rest.to_string())
        })
        .unwrap_or_else(|| panic!("no start for {alloc_id} in {commands:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_nginx_job_through_the_standin() {
    if python_missing() {
        return;
    }
    let env = PotEnv::new();
    let data = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), data.path(), Some(env.config.clone())).await;
    wait_until(Duration::from_secs(5), || !servers.nodes().is_empty()).await;
    let node = &servers.nodes()[0];
    assert_eq!(node.attributes["driver.pot.version"], "0.16.0");

    let job = job("nginx", JobType::Service, vec![nginx_task(&env)]);
    let port1 = free_port();
    let a1 = alloc(&job, &[("http", port1)]);
    servers.place(a1.clone(), job.clone());
    servers
        .wait_report(&a1.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    let body = answers(port1).await;
    let name1 = pot_name_of(&env.commands(), &a1.id);
    assert!(body.contains(&format!("hello from {name1}")), "{body}");
    assert!(name1.starts_with("www1_") && name1.len() == "www1_".len() + 9 + a1.id.len());

    // The exact sequence for one allocation (the invocation ID is the only varying part).
    let alloc_dir = data.path().join("alloc").join(&a1.id);
    let invocation = &name1["www1_".len().."www1_".len() + 8];
    let expected = [
        "version -q".to_string(),
        format!(
            "prepare -U {} -p nginx-nomad-amd64-13_1 -t 1.1.13 -c \"nginx -g 'daemon off;'\" -N public-bridge -i auto -e 8080:{port1} -a {invocation}_{} -n www1 -v",
            env.registry_url(),
            a1.id
        ),
        format!("mount-in -p {name1} -d {} -m /alloc", alloc_dir.join("alloc").display()),
        format!("mount-in -p {name1} -d {} -m /local", alloc_dir.join("www1/local").display()),
        format!("mount-in -p {name1} -d {} -m /secrets", alloc_dir.join("www1/secrets").display()),
    ];
    let commands: Vec<String> = env
        .commands()
        .into_iter()
        .filter(|c| !c.starts_with("ls -q") && !c.starts_with("info -r"))
        .collect();
    assert_eq!(commands[..5], expected, "{commands:#?}");
    let set_env = &commands[5];
    assert!(set_env.starts_with(&format!("set-env -p {name1} -E NGINX_PORT=8080 ")), "{set_env}");
    assert!(set_env.contains(" -E NOMAD_ALLOC_DIR=/alloc -E NOMAD_ALLOC_ID="), "{set_env}");
    assert!(set_env.contains(&format!("-E NOMAD_HOST_PORT_http={port1}")), "{set_env}");
    assert!(!set_env.contains("HOME=") && !set_env.contains("CARGO"), "host env leaked: {set_env}");
    assert_eq!(commands[6], format!("set-rss -p {name1} -M 64M -C 1"));
    assert_eq!(commands[7], format!("start {name1}"));

    // Count 1 → 2: a second pot on another host port.
    let port2 = free_port();
    let a2 = alloc(&job, &[("http", port2)]);
    servers.place(a2.clone(), job.clone());
    servers
        .wait_report(&a2.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    let name2 = pot_name_of(&env.commands(), &a2.id);
    assert!(answers(port2).await.contains(&format!("hello from {name2}")));
    assert_eq!(env.pots(), {
        let mut v = vec![name1.clone(), name2.clone(), "nginx-nomad-amd64-13_1_1_1_13".to_string()];
        v.sort();
        v
    });

    // Stop: `pot signal` with the kill signal, then exactly one destroy per pot.
    servers.stop(&a1.id);
    servers.stop(&a2.id);
    for a in [&a1, &a2] {
        let r = servers
            .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status.is_terminal())
            .await;
        assert_eq!(r.task_states["www1"].state, "dead");
    }
    let commands = env.commands();
    for name in [&name1, &name2] {
        assert!(commands.contains(&format!("signal -s SIGINT -p {name}")), "{commands:#?}");
        let destroys = commands.iter().filter(|c| **c == format!("destroy -p {name} -F")).count();
        assert_eq!(destroys, 1, "{commands:#?}");
    }
    assert_eq!(env.pots(), ["nginx-nomad-amd64-13_1_1_1_13"]);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_setup_reports_pots_output_and_orphans_are_swept() {
    if python_missing() {
        return;
    }
    let env = PotEnv::new();
    let data = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), data.path(), Some(env.config.clone())).await;

    // A tag the registry does not have: prepare fails, and pot's words reach the task event.
    let mut task = nginx_task(&env);
    task.config.insert("tag".into(), serde_json::json!("9.9.9"));
    let job = job("missing", JobType::Batch, vec![task]);
    let a = alloc(&job, &[("http", free_port())]);
    servers.place(a.clone(), job);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Failed);
    let failure = r.task_states["www1"]
        .events
        .iter()
        .find(|e| e.event_type == "Driver Failure")
        .expect("a Driver Failure event");
    assert!(
        failure.message.contains("pot prepare") && failure.message.contains("exited 1"),
        "{}",
        failure.message
    );
    assert!(failure.message.len() > "`pot prepare` exited 1: ".len() + 40, "{}", failure.message);

    // A pot this agent created whose task is gone (as after a crash between prepare and
    // destroy) is swept; a pot the agent did not create is left alone.
    let run = |args: &[&str]| {
        let status = std::process::Command::new(&env.config.pot_path)
            .args(args)
            .env_clear()
            .envs(&env.config.pot_env)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(status.status.success(), "{args:?}: {}", String::from_utf8_lossy(&status.stdout));
    };
    let url = env.registry_url();
    for (task, alloc_tag) in [("orphan", "0badf00d_x"), ("foreign", "0badf00d_y")] {
        run(&[
            "prepare",
            "-U",
            &url,
            "-p",
            "nginx-nomad-amd64-13_1",
            "-t",
            "1.1.13",
            "-a",
            alloc_tag,
            "-n",
            task,
        ]);
    }
    let created = data.path().join("client/pots-created");
    let mut text = std::fs::read_to_string(&created).unwrap_or_default();
    text.push_str("orphan_0badf00d_x\n");
    std::fs::write(&created, text).unwrap();
    wait_until(Duration::from_secs(10), || !env.pots().contains(&"orphan_0badf00d_x".to_string()))
        .await;
    assert!(env.pots().contains(&"foreign_0badf00d_y".to_string()));
    assert!(env.commands().contains(&"destroy -p orphan_0badf00d_x -F".to_string()));
    c.shutdown();
}

fn python_missing() -> bool {
    // The stand-in's test image runs a python3 HTTP server as its nginx.
    let missing = !["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .iter()
        .any(|p| Path::new(p).exists());
    if missing {
        eprintln!("skipped: python3 is needed by the stand-in's test image");
    }
    missing
}

/// Script checks in a pot: `Driver::exec` runs `pot exec -p <pot> <command> <args…>` (the exact
/// argv, as nomad-pot-driver does), returns the command's status and output, bounds the output,
/// kills the command when the caller gives up (a check's timeout drops the future), and reports
/// pot's own words when pot refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_checks_run_in_the_pot_through_pot_exec() {
    use agent::driver::{Driver, Handle, TaskSpec};
    if python_missing() {
        return;
    }
    let env = PotEnv::new();
    let data = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), data.path(), Some(env.config.clone())).await;
    let job = job("nginx", JobType::Service, vec![nginx_task(&env)]);
    let a = alloc(&job, &[("http", free_port())]);
    servers.place(a.clone(), job);
    servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    let name = pot_name_of(&env.commands(), &a.id);

    // The driver as the runner uses it; exec needs only the handle's pot name.
    let mut config = env.config.clone();
    config.state_dir = data.path().join("exec-driver");
    let driver = Arc::new(agent::pot::PotDriver::new(config));
    let handle = Handle { driver: "pot".into(), pot_name: name.clone(), ..Handle::default() };
    let spec = TaskSpec {
        alloc_id: a.id.clone(),
        task_name: "www1".into(),
        invocation_id: "00000000".into(),
        env: BTreeMap::new(),
        config: BTreeMap::new(),
        dirs: agent::taskenv::TaskDirs {
            alloc_dir: String::new(),
            local_dir: String::new(),
            secrets_dir: String::new(),
        },
        task_dir: PathBuf::new(),
        stdout_path: PathBuf::new(),
        stderr_path: PathBuf::new(),
        host_ports: BTreeMap::new(),
        memory_mb: 0,
        cpu_mhz: 0,
        cores: 0,
        mhz_per_core: 0,
    };
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Status and output of the command, run in the jail (the stand-in's cwd is the jail root).
    let out = driver
        .exec(&handle, &spec, "/bin/sh", &args(&["-c", "echo in the jail; pwd; exit 3"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(3));
    let root = env.dir.path().join("pot/jails").join(&name).join("m");
    assert_eq!(out.output, format!("in the jail\n{}\n", root.display()));
    assert!(
        env.commands()
            .contains(&format!("exec -p {name} /bin/sh -c echo in the jail; pwd; exit 3")),
        "{:#?}",
        env.commands()
    );
    let out = driver.exec(&handle, &spec, "true", &[]).await.unwrap();
    assert_eq!((out.exit_code, out.output.as_str()), (Some(0), ""));

    // Output is cut at 4 KiB (as Consul keeps it), however much the command writes.
    let out = driver
        .exec(&handle, &spec, "/bin/sh", &args(&["-c", "yes | head -c 100000"]))
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.output.len()), (Some(0), agent::driver::MAX_EXEC_OUTPUT));

    // A caller that gives up drops the future: the command in the jail is killed.
    let pid_file = root.join("check.pid");
    let run = {
        let (driver, handle, spec) = (driver.clone(), handle.clone(), spec.clone());
        let a = args(&["-c", "echo $$ > check.pid; exec sleep 600"]);
        tokio::spawn(async move { driver.exec(&handle, &spec, "/bin/sh", &a).await })
    };
    let mut pid = None;
    wait_until(Duration::from_secs(20), || {
        pid = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
        pid.is_some()
    })
    .await;
    let pid = pid.unwrap();
    assert!(pot_standin::state::process_exists(pid));
    run.abort();
    let alive = move || pot_standin::state::process_exists(pid);
    wait_until(Duration::from_secs(20), move || !alive()).await;

    // pot refusing (no such running pot) is an error with pot's words, not a check result.
    let ghost = Handle { pot_name: "ghost_0badf00d_x".into(), ..handle.clone() };
    let err = driver.exec(&ghost, &spec, "true", &[]).await.unwrap_err();
    assert!(
        err.0.contains("`pot exec -p ghost_0badf00d_x true` exited 1")
            && err.0.contains("###>  The pot is not running"),
        "{}",
        err.0
    );
    c.shutdown();
}

/// UDP ports are mapped (nomad-pot-driver maps TCP only): `port_map = { dns = "udp:15353" }`
/// becomes `prepare … -e udp:15353:<host port>`, and a datagram sent to the host port reaches a
/// UDP server in the pot and its reply comes back (through the stand-in's forwarder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_port_map_reaches_a_udp_server_in_the_pot() {
    if python_missing() {
        return;
    }
    let env = PotEnv::new();
    let data = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), data.path(), Some(env.config.clone())).await;
    // A UDP server that answers each datagram reversed, bound to the pot's IP (the jail's sh
    // expands $_POT_IP, as pot's tinirc does with the pot's command line).
    let server = "'import sys,socket;s=socket.socket(2,2);s.bind((sys.argv[1],15353));\
                  [s.sendto(d[::-1],a) for d,a in iter(lambda:s.recvfrom(512),0)]'";
    let mut task = nginx_task(&env);
    task.config.insert("command".into(), serde_json::json!("python3"));
    task.config.insert("args".into(), serde_json::json!(["-c", server, "$_POT_IP"]));
    task.config.insert("port_map".into(), serde_json::json!({"dns": "udp:15353"}));
    let job = job("dns", JobType::Service, vec![task]);
    let port = free_port();
    let a = alloc(&job, &[("dns", port)]);
    servers.place(a.clone(), job);
    servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    let prepare = env.commands().into_iter().find(|c| c.starts_with("prepare ")).unwrap();
    assert!(
        prepare.contains(&format!(" -N public-bridge -i auto -e udp:15353:{port} ")),
        "{prepare}"
    );

    let reply = tokio::task::spawn_blocking(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 512];
        // The server may not be listening yet: ask again until it answers.
        loop {
            s.send_to(b"ping-udp", ("127.0.0.1", port)).unwrap();
            if let Ok(n) = s.recv(&mut buf) {
                return String::from_utf8_lossy(&buf[..n]).into_owned();
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no UDP reply on port {port}");
        }
    })
    .await
    .unwrap();
    assert_eq!(reply, "pdu-gnip");
    servers.stop(&a.id);
    servers.wait_report(&a.id, Duration::from_secs(30), |r| r.client_status.is_terminal()).await;
    c.shutdown();
}

/// kill_signal and kill_timeout are honoured (nomad-pot-driver ignores both): stopping a pot
/// whose command catches its kill_signal sends that signal with `pot signal`, the command gets it
/// and carries on, and after kill_timeout the pot is destroyed (`destroy -F`), exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_signal_then_destroy_after_kill_timeout() {
    if python_missing() {
        return;
    }
    let env = PotEnv::new();
    let data = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), data.path(), Some(env.config.clone())).await;
    let mut task = nginx_task(&env);
    task.config.insert("command".into(), serde_json::json!("/bin/sh"));
    task.config.insert(
        "args".into(),
        serde_json::json!([
            "-c",
            "'h() { echo got-usr1; }; trap h USR1; echo ready; while :; do sleep 0.1; done'"
        ]),
    );
    task.kill_signal = "SIGUSR1".into();
    task.kill_timeout = Some(Duration::from_secs(5));
    let job = job("stubborn", JobType::Service, vec![task]);
    let a = alloc(&job, &[("http", free_port())]);
    servers.place(a.clone(), job);
    servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status == ClientStatus::Running)
        .await;
    let name = pot_name_of(&env.commands(), &a.id);
    let stdout = data.path().join("alloc").join(&a.id).join("alloc/logs/www1.stdout.0");
    wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&stdout).is_ok_and(|t| t.contains("ready"))
    })
    .await;

    servers.stop(&a.id);
    // The command catches the kill signal and keeps running (its log says so, before the
    // allocation's directory is collected); only destroy ends it.
    wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&stdout).is_ok_and(|t| t.contains("got-usr1"))
    })
    .await;
    let r = servers
        .wait_report(&a.id, Duration::from_secs(30), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.task_states["www1"].state, "dead");
    let killing = r.task_states["www1"].events.iter().find(|e| e.event_type == "Killing");
    assert!(
        killing.is_some_and(|e| e.message.contains("Waiting 5s before force killing")),
        "{:#?}",
        r.task_states["www1"].events
    );
    let commands = env.commands();
    let at = |c: &str| commands.iter().position(|x| x == c);
    let signal = at(&format!("signal -s SIGUSR1 -p {name}")).expect("pot signal");
    let destroy = at(&format!("destroy -p {name} -F")).expect("pot destroy");
    assert!(signal < destroy, "{commands:#?}");
    let destroys = commands.iter().filter(|c| **c == format!("destroy -p {name} -F")).count();
    assert_eq!(destroys, 1, "{commands:#?}");
    assert_eq!(env.pots(), ["nginx-nomad-amd64-13_1_1_1_13"]);
    c.shutdown();
}
