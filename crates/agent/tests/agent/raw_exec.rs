//! raw_exec allocations end to end inside one process: task directories and environment, logs
//! and the logs API, restarts per policy, kill_timeout, lifecycle hooks, batch exit codes.

use crate::harness::*;
use model::{ClientStatus, JobType, Lifecycle};
use std::time::{Duration, Instant};

#[tokio::test]
async fn task_gets_nomad_layout_and_env_but_not_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let mut task = sh_task("web", "env | sort; echo oops >&2; pwd; sleep 30");
    task.env.insert("GREETING".into(), "hi ${NOMAD_ALLOC_ID}".into());
    let job = job("env", JobType::Service, vec![task]);
    let a = alloc(&job, &[("http", 23456)]);
    servers.place(a.clone(), job);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status == ClientStatus::Running)
        .await;
    assert_eq!(events(&r, "web"), ["Received", "Task Setup", "Started"]);
    let alloc_dir = dir.path().join("alloc").join(&a.id);
    for sub in ["alloc/logs", "alloc/data", "web/local", "web/secrets"] {
        assert!(alloc_dir.join(sub).is_dir(), "{sub}");
    }
    let stdout = alloc_dir.join("alloc/logs/web.stdout.0");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&stdout)
            .is_ok_and(|t| t.contains(&alloc_dir.join("web").display().to_string()))
    })
    .await;
    let text = std::fs::read_to_string(&stdout).unwrap();
    assert!(text.contains(&format!("NOMAD_ALLOC_ID={}", a.id)), "{text}");
    assert!(text.contains("NOMAD_PORT_http=23456"), "{text}");
    assert!(text.contains(&format!("GREETING=hi {}", a.id)), "{text}");
    assert!(text.contains("PATH=/usr/local/sbin"), "{text}");
    // Nothing of the agent's (this test process's) environment reaches the task.
    assert!(!text.contains("CARGO"), "{text}");
    assert!(!text.contains("HOME="), "{text}");
    let stderr = std::fs::read_to_string(alloc_dir.join("alloc/logs/web.stderr.0")).unwrap();
    assert_eq!(stderr, "oops\n");

    wait_until(Duration::from_secs(5), || !servers.nodes().is_empty()).await;
    let node = &servers.nodes()[0];
    assert_eq!(node.attributes["driver.raw_exec"], "1");
    assert_eq!(node.attributes["unique.network.ip-address"], "127.0.0.1");

    servers.stop(&a.id);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete);
    assert_eq!(events(&r, "web")[3..], ["Killing", "Terminated", "Killed"]);
    c.shutdown();
}

#[tokio::test]
async fn crashing_task_is_restarted_per_policy_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let mut task = sh_task("crash", "echo run; exit 3");
    task.restart_policy = Some(policy(2));
    let job = job("crash", JobType::Service, vec![task]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Failed);
    let state = &r.task_states["crash"];
    assert!(state.failed);
    assert_eq!(state.restarts, 2);
    assert_eq!(state.state, "dead");
    let ev = events(&r, "crash");
    assert_eq!(ev.iter().filter(|e| *e == "Restarting").count(), 2, "{ev:?}");
    assert_eq!(ev.last().unwrap(), "Not Restarting");
    let terminated: Vec<i32> =
        state.events.iter().filter(|e| e.event_type == "Terminated").map(|e| e.exit_code).collect();
    assert_eq!(terminated, [3, 3, 3]);
    let log = std::fs::read_to_string(
        dir.path().join("alloc").join(&a.id).join("alloc/logs/crash.stdout.0"),
    )
    .unwrap();
    assert_eq!(log, "run\nrun\nrun\n");
    c.shutdown();
}

#[tokio::test]
async fn batch_jobs_complete_with_their_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let ok = job("ok", JobType::Batch, vec![sh_task("t", "exit 0")]);
    let a_ok = alloc(&ok, &[]);
    servers.place(a_ok.clone(), ok);
    let bad = job("bad", JobType::Batch, vec![sh_task("t", "exit 7")]);
    let a_bad = alloc(&bad, &[]);
    servers.place(a_bad.clone(), bad);
    let r = servers
        .wait_report(&a_ok.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete);
    assert_eq!(events(&r, "t"), ["Received", "Task Setup", "Started", "Terminated"]);
    let r = servers
        .wait_report(&a_bad.id, Duration::from_secs(10), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Failed);
    let term = r.task_states["t"].events.iter().find(|e| e.event_type == "Terminated").unwrap();
    assert_eq!(term.exit_code, 7);
    c.shutdown();
}

#[tokio::test]
async fn kill_signal_then_sigkill_after_kill_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    // Notes SIGINT (the default kill_signal) and SIGTERM but carries on ticking, so only the
    // SIGKILL after kill_timeout ends it. It writes outside the allocation directory, which is
    // collected once the allocation stops.
    let log = dir.path().join("stubborn.out");
    let mut stubborn = sh_task(
        "stubborn",
        &format!(
            "exec >>{}; trap 'echo got-int' INT TERM; echo ready; while true; do echo tick; sleep 0.1; done",
            log.display()
        ),
    );
    stubborn.kill_timeout = Some(Duration::from_millis(800));
    // Exits on SIGINT, its kill_signal, at once.
    let mut polite = sh_task("polite", "trap 'exit 3' INT; while true; do sleep 0.1; done");
    polite.kill_signal = "SIGINT".into();
    polite.kill_timeout = Some(Duration::from_secs(60));
    let job = job("kill", JobType::Service, vec![stubborn, polite]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("ready"))
    })
    .await;
    servers.stop(&a.id);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(60), |r| r.client_status.is_terminal())
        .await;
    for t in ["stubborn", "polite"] {
        assert_eq!(r.task_states[t].state, "dead");
        assert_eq!(events(&r, t)[3..], ["Killing", "Terminated", "Killed"], "{t}");
    }
    let terminated = |t: &str| {
        r.task_states[t].events.iter().find(|e| e.event_type == "Terminated").unwrap().clone()
    };
    // The polite task ended on its kill_signal, by its own exit: no SIGKILL was needed.
    let polite = terminated("polite");
    assert_eq!((polite.exit_code, polite.signal), (3, 0), "{polite:?}");
    // The stubborn one got the kill_signal first, outlived it (it kept ticking), and was then
    // killed with SIGKILL.
    let stubborn = terminated("stubborn");
    assert_eq!(stubborn.signal, 9, "{stubborn:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let after_int = text.split_once("got-int").map(|(_, rest)| rest).unwrap_or_default();
    assert!(after_int.contains("tick"), "not still running after the kill_signal: {text}");
    c.shutdown();
}

#[tokio::test]
async fn prestart_runs_first_poststop_runs_last_and_a_leader_ends_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let mut pre = sh_task("pre", "echo pre >> $NOMAD_ALLOC_DIR/order");
    pre.lifecycle = Some(Lifecycle { hook: "prestart".into(), sidecar: false });
    let mut main = sh_task("main", "echo main >> $NOMAD_ALLOC_DIR/order; sleep 0.3");
    main.leader = true;
    let side = sh_task("side", "while true; do sleep 0.1; done");
    let mut post = sh_task("post", "echo post >> $NOMAD_ALLOC_DIR/order");
    post.lifecycle = Some(Lifecycle { hook: "poststop".into(), sidecar: false });
    let job = job("hooks", JobType::Batch, vec![post, side, main, pre]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    let r = servers
        .wait_report(&a.id, Duration::from_secs(15), |r| r.client_status.is_terminal())
        .await;
    assert_eq!(r.client_status, ClientStatus::Complete, "{r:#?}");
    let order =
        std::fs::read_to_string(dir.path().join("alloc").join(&a.id).join("alloc/order")).unwrap();
    assert_eq!(order, "pre\nmain\npost\n");
    // The leader's exit killed the sidecar-like main task.
    assert!(events(&r, "side").contains(&"Killed".to_string()), "{:?}", events(&r, "side"));
    c.shutdown();
}

/// Reads an HTTP response from the agent's client endpoints.
fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(format!("http://{addr}{path}"))
        .call()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().read_to_string().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_api_frames_plain_follow_and_path_safety() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(agent::http::serve(listener, c.clone()));
    // Prints a line whenever `tick` appears in its local dir.
    let task = sh_task(
        "talker",
        "echo first; echo second; while true; do if [ -f local/tick ]; then rm local/tick; echo tick; fi; sleep 0.02; done",
    );
    let job = job("logs", JobType::Service, vec![task]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    let alloc_dir = dir.path().join("alloc").join(&a.id);
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(alloc_dir.join("alloc/logs/talker.stdout.0"))
            .is_ok_and(|t| t.contains("second"))
    })
    .await;
    let id = a.id.clone();
    let addr2 = addr.clone();
    let (plain, framed, tail, bad) = tokio::task::spawn_blocking(move || {
        (
            get(&addr2, &format!("/v1/client/fs/logs/{id}?task=talker&type=stdout&plain=true")),
            get(&addr2, &format!("/v1/client/fs/logs/{id}?task=talker&type=stdout")),
            get(
                &addr2,
                &format!("/v1/client/fs/logs/{id}?task=talker&plain=true&origin=end&offset=7"),
            ),
            [
                get(&addr2, &format!("/v1/client/fs/logs/{id}?task=..%2F..%2F..&plain=true")),
                get(&addr2, &format!("/v1/client/fs/logs/{id}?task=talker&type=..%2Fsecrets")),
                get(&addr2, "/v1/client/fs/logs/..%2F..?task=talker"),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(plain, (200, "first\nsecond\n".to_string()));
    let frame: serde_json::Value = serde_json::from_str(&framed.1).unwrap();
    assert_eq!(frame["File"], "alloc/logs/talker.stdout.0");
    use base64::Engine;
    let data =
        base64::engine::general_purpose::STANDARD.decode(frame["Data"].as_str().unwrap()).unwrap();
    assert_eq!(data, b"first\nsecond\n");
    assert_eq!(tail, (200, "second\n".to_string()));
    assert_eq!(bad[0].0, 400);
    assert_eq!(bad[1].0, 400);
    assert_eq!(bad[2].0, 404);

    // Follow: a line written while the follow is open arrives on it (how fast is a benchmark:
    // `cargo bench -p orc --bench agent`).
    let id = a.id.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    std::thread::spawn(move || {
        use std::io::Read;
        let resp = ureq::get(format!(
            "http://{addr}/v1/client/fs/logs/{id}?task=talker&plain=true&follow=true&origin=end&offset=0"
        ))
        .call()
        .unwrap();
        let mut body = resp.into_body().into_reader();
        let mut buf = [0u8; 256];
        while let Ok(n) = body.read(&mut buf) {
            if n == 0
                || tx.send((Instant::now(), String::from_utf8_lossy(&buf[..n]).into())).is_err()
            {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(alloc_dir.join("talker/local/tick"), "").unwrap();
    let (_, text) =
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.unwrap().unwrap();
    assert_eq!(text, "tick\n");
    // Stop the task before the agent: an agent that shuts down leaves tasks running for
    // re-adoption, which would leak this endless loop past the test.
    servers.stop(&a.id);
    servers
        .wait_report(&a.id, Duration::from_secs(10), |r| {
            matches!(r.client_status, ClientStatus::Complete | ClientStatus::Failed)
        })
        .await;
    c.shutdown();
}

// Two worker threads, so a spinning watch cannot starve the test's own timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_blocks_on_its_allocation_watch() {
    // Regression: with no allocation ever written the table index is 0, and a watch from index 0
    // answers at once; an agent that kept asking from 0 spun a core at 100% while idle. With the
    // watch a stream, an idle agent opens it once and waits on it.
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let _c = client(servers.clone(), dir.path(), None).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while servers.watch_calls() == 0 {
        assert!(Instant::now() < deadline, "the agent never opened its allocation watch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = servers.watch_calls();
    assert!(calls <= 3, "an idle agent made {calls} allocation watches in 0.5 s");
}

#[tokio::test]
async fn a_broken_allocation_watch_is_reopened_from_the_last_index_without_restarting_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let job1 = job("watch1", JobType::Service, vec![sh_task("web", "sleep 60")]);
    let a = alloc(&job1, &[]);
    servers.place(a.clone(), job1);
    servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status == ClientStatus::Running)
        .await;
    let seen = servers.index();
    servers.break_watches();
    wait_until(Duration::from_secs(10), || servers.watch_calls() >= 2).await;
    // Reopened from where it was, not from 0: the agent asks only for what it has not seen.
    let opens = servers.watch_opens();
    assert_eq!(opens[0], 0, "{opens:?}");
    assert!(opens[1] > 0 && opens[1] <= servers.index(), "{opens:?} (index {seen})");
    // What changes after the reconnect arrives on the new stream.
    let job2 = job("watch2", JobType::Service, vec![sh_task("web", "sleep 60")]);
    let b = alloc(&job2, &[]);
    servers.place(b.clone(), job2);
    servers
        .wait_report(&b.id, Duration::from_secs(10), |r| r.client_status == ClientStatus::Running)
        .await;
    // The first allocation's task was neither restarted nor started twice.
    let r = servers.last(&a.id).unwrap();
    assert_eq!(r.client_status, ClientStatus::Running);
    assert_eq!(events(&r, "web"), ["Received", "Task Setup", "Started"]);
    for id in [&a.id, &b.id] {
        servers.stop(id);
        servers.wait_report(id, Duration::from_secs(10), |r| r.client_status.is_terminal()).await;
    }
    c.shutdown();
}

#[tokio::test]
async fn templates_render_into_the_task_dir_and_env_templates_reach_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let c = client(servers.clone(), dir.path(), None).await;
    let mut task = sh_task(
        "web",
        "echo \"key=$KEY alloc=$FROM_TEMPLATE\"; cat local/app.conf; stat -c %a secrets/file.env; sleep 60",
    );
    task.templates.push(model::Template {
        embedded_tmpl: "KEY=\"value one\"\nFROM_TEMPLATE={{ env \"NOMAD_ALLOC_ID\" }}\n".into(),
        dest_path: "secrets/file.env".into(),
        envvars: true,
        perms: "600".into(),
        ..model::Template::default()
    });
    task.templates.push(model::Template {
        embedded_tmpl: "task=[[ env \"NOMAD_TASK_NAME\" ]] {{ kept }}\n".into(),
        dest_path: "local/app.conf".into(),
        left_delim: "[[".into(),
        right_delim: "]]".into(),
        ..model::Template::default()
    });
    let job = job("tmpl", JobType::Service, vec![task]);
    let a = alloc(&job, &[]);
    servers.place(a.clone(), job);
    servers
        .wait_report(&a.id, Duration::from_secs(10), |r| r.client_status == ClientStatus::Running)
        .await;
    let stdout = dir.path().join("alloc").join(&a.id).join("alloc/logs/web.stdout.0");
    wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&stdout).is_ok_and(|t| t.lines().count() >= 3)
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        format!("key=value one alloc={}\ntask=web {{{{ kept }}}}\n600\n", a.id)
    );
    servers.stop(&a.id);
    servers.wait_report(&a.id, Duration::from_secs(10), |r| r.client_status.is_terminal()).await;
    c.shutdown();
}

#[tokio::test]
async fn a_template_that_cannot_render_fails_the_task_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let servers = FakeServers::new();
    let _c = client(servers.clone(), dir.path(), None).await;
    // (name, source, data, destination, reason)
    let cases = [
        ("dest", "", "x", "../../../../outside", "leaves the task directory"),
        ("source", "../../../../../etc/hostname", "", "local/out", "leaves the task directory"),
        ("missing", "local/nope.tpl", "", "local/out", "No such file"),
    ];
    let mut placed = Vec::new();
    for (name, source, data, dest, _) in cases {
        let mut task = sh_task("t", "echo ran; sleep 60");
        task.templates.push(model::Template {
            source_path: source.into(),
            embedded_tmpl: data.into(),
            dest_path: dest.into(),
            ..model::Template::default()
        });
        let job = job(&format!("tmpl-{name}"), JobType::Service, vec![task]);
        let a = alloc(&job, &[]);
        servers.place(a.clone(), job);
        placed.push(a);
    }
    for ((name, _, _, _, reason), a) in cases.iter().zip(&placed) {
        let r = servers
            .wait_report(&a.id, Duration::from_secs(10), |r| {
                r.client_status == ClientStatus::Failed
            })
            .await;
        let evs = &r.task_states["t"].events;
        let failed = evs.iter().find(|e| e.event_type == "Task hook failed");
        let failed = failed.unwrap_or_else(|| panic!("{name}: {:?}", events(&r, "t")));
        assert!(failed.display_message.contains(reason), "{name}: {}", failed.display_message);
        assert!(!events(&r, "t").contains(&"Started".to_string()), "{name} started anyway");
    }
    assert!(!dir.path().join("outside").exists());
}

/// Starts `script` as a grandchild of this test (the shell in between exits at once), so it is
/// nobody's child here, as a task is after the agent that started it died. It waits for the
/// file `go` in `dir` before it goes on. Returns its handle as the agent would have saved it.
fn orphan(dir: &std::path::Path, script: &str) -> agent::driver::Handle {
    let go = dir.join("go");
    let inner = format!("while [ ! -e '{}' ]; do sleep 0.02; done; {script}", go.display());
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("/bin/sh -c \"$0\" </dev/null >/dev/null 2>&1 & echo $!")
        .arg(&inner)
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let start_time = agent::driver::process::start_time(pid).expect("the orphan runs");
    agent::driver::Handle { driver: "raw_exec".into(), pid, start_time, ..Default::default() }
}

#[tokio::test]
async fn a_readopted_process_that_is_not_our_child_reports_its_exit_code_and_signal() {
    use agent::driver::{raw_exec::RawExec, Driver, ExitResult};
    let driver = RawExec::new(true);
    // Where the kernel offers the watcher it must work: on Linux that needs root, as CI runs.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    if let Err(why) = driver.exit_watch_available().await {
        panic!("the exit watcher must open here (run as root, in the initial namespaces): {why}");
    }
    let cases = [("exit 3", 3, 0), ("kill -TERM $$", -1, 15), ("exit 0", 0, 0)];
    let dirs: Vec<_> = cases.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let handles: Vec<_> =
        cases.iter().zip(&dirs).map(|((s, _, _), d)| orphan(d.path(), s)).collect();
    for h in &handles {
        assert!(driver.recover(h).await, "{h:?} is re-adopted");
    }
    let waits: Vec<_> = handles.iter().map(|h| driver.wait(h)).collect();
    for d in &dirs {
        std::fs::write(d.path().join("go"), "").unwrap();
    }
    let results = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(waits))
        .await
        .expect("every orphan exits once told to");
    for ((script, exit_code, signal), result) in cases.iter().zip(results) {
        let want = ExitResult { exit_code: *exit_code, signal: *signal, unknown: false };
        assert_eq!(result, want, "{script}");
    }

    // One that ended before the agent came back is not re-adopted: nobody can know its code.
    let dir = tempfile::tempdir().unwrap();
    let gone = orphan(dir.path(), "exit 5");
    std::fs::write(dir.path().join("go"), "").unwrap();
    wait_until(Duration::from_secs(30), || {
        !agent::driver::process::is_same_process(gone.pid, &gone.start_time)
    })
    .await;
    assert!(!driver.recover(&gone).await);
    assert_eq!(driver.wait(&gone).await, ExitResult { exit_code: -1, signal: 0, unknown: true });
}
