//! Agent benchmark: idle RSS of `orc agent -dev`, added RSS per running raw_exec task, time from
//! `orc run` to the task running, and `orc alloc logs -f` latency. Prints its figures; timing
//! never decides a test.
//!
//! cargo bench -p orc --bench agent

use serde_json::Value;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORC: &str = env!("CARGO_BIN_EXE_orc");

/// A free loopback port for a process this test starts (see `testkit::free_port`).
fn free_port() -> u16 {
    testkit::free_port()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn get(addr: &str, path: &str) -> Option<Value> {
    let resp = ureq::get(format!("{addr}{path}")).call().ok()?;
    serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn job(name: &str, count: u32, script: &str) -> String {
    format!(
        r#"job "{name}" {{
  datacenters = ["*"]
  group "g" {{
    count = {count}
    # 50 tasks at Nomad's default 300 MB each would need 15 GB free on the bench machine.
    ephemeral_disk {{
      size = 30
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      kill_timeout = "1s"
      logs {{
        max_files     = 2
        max_file_size = 10
      }}
    }}
  }}
}}
"#
    )
}

fn run(addr: &str, dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(format!("{name}.job"));
    std::fs::write(&path, text).unwrap();
    let out =
        Command::new(ORC).args(["run", "-detach", "-address", addr]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn running(addr: &str, job: &str) -> usize {
    get(addr, &format!("/v1/job/{job}/allocations"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|a| a["ClientStatus"] == "running")
        .count()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (http, rpc) = (free_port(), free_port());
    let addr = format!("http://127.0.0.1:{http}");
    let mut agent = Command::new(ORC)
        .args(["agent", "-dev", "-http-port", &http.to_string(), "-rpc-port", &rpc.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    wait(Duration::from_secs(20), || {
        get(&addr, "/v1/nodes").is_some_and(|n| n[0]["Status"] == "ready")
    });
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss_kb(pid);
    println!(
        "agent idle RSS (dev mode: server + client in one process): {:.1} MB",
        idle as f64 / 1024.0
    );

    // Time from `orc run` (process start) to the task running, one job at a time.
    let mut starts = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}");
        let text = job(&name, 1, "sleep 600");
        let t0 = Instant::now();
        run(&addr, dir.path(), &name, &text);
        wait(Duration::from_secs(10), || running(&addr, &name) == 1);
        starts.push(t0.elapsed());
    }
    println!(
        "orc run → task running (20 jobs, dev mode): p50 {:?}, p90 {:?}, max {:?}",
        percentile(&mut starts, 0.5),
        percentile(&mut starts, 0.9),
        percentile(&mut starts, 1.0)
    );
    for i in 0..20 {
        let _ = Command::new(ORC)
            .args(["stop", "-purge", "-detach", "-address", &addr, &format!("lat{i}")])
            .output();
    }
    wait(Duration::from_secs(20), || (0..20).all(|i| running(&addr, &format!("lat{i}")) == 0));
    std::thread::sleep(Duration::from_secs(2));

    // Added RSS per running task: 50 tasks.
    let before = rss_kb(pid);
    run(&addr, dir.path(), "many", &job("many", 50, "sleep 600"));
    wait(Duration::from_secs(60), || running(&addr, "many") == 50);
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kb(pid);
    println!(
        "agent RSS with 50 running tasks: {:.1} MB, {:.1} KB added per task (no per-task helper process)",
        after as f64 / 1024.0,
        (after.saturating_sub(before)) as f64 / 50.0
    );
    let _ =
        Command::new(ORC).args(["stop", "-purge", "-detach", "-address", &addr, "many"]).output();

    // Log follow latency: a task prints a line when a file appears; `orc alloc logs -f` shows it.
    run(&addr, dir.path(), "ticker", &job("ticker", 1, "echo started; while true; do if [ -f local/tick ]; then rm local/tick; echo tick; fi; sleep 0.01; done"));
    wait(Duration::from_secs(10), || running(&addr, "ticker") == 1);
    let alloc =
        get(&addr, "/v1/job/ticker/allocations").unwrap()[0]["ID"].as_str().unwrap().to_string();
    let data_dir = std::env::temp_dir().join(format!("orc-dev-{pid}"));
    let mut follow = Command::new(ORC)
        .args(["alloc", "logs", "-address", &addr, "-f", &alloc])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    let tick = data_dir.join("alloc").join(&alloc).join("t/local/tick");
    let mut lat = Vec::new();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(150));
        let t0 = Instant::now();
        std::fs::write(&tick, "").unwrap();
        assert_eq!(lines.next().unwrap().unwrap(), "tick");
        lat.push(t0.elapsed());
    }
    println!(
        "log follow latency (write → line printed by orc alloc logs -f, 20 lines; includes the task's 10 ms poll): p50 {:?}, p90 {:?}, max {:?}",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.9),
        percentile(&mut lat, 1.0)
    );
    let _ = follow.kill();
    let _ = follow.wait();
    let _ =
        Command::new(ORC).args(["stop", "-purge", "-detach", "-address", &addr, "ticker"]).output();

    // orc stop → allocation complete: a task that exits on its kill_signal, and one that ignores
    // it and is killed with SIGKILL after its kill_timeout (1 s).
    let complete = |job: &str| {
        get(&addr, &format!("/v1/job/{job}/allocations"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .all(|a| a["ClientStatus"] == "complete")
    };
    for (kind, script) in
        [("polite", "sleep 600"), ("stubborn", "trap '' INT TERM; while true; do sleep 0.1; done")]
    {
        let mut stops = Vec::new();
        for i in 0..5 {
            let name = format!("{kind}{i}");
            run(&addr, dir.path(), &name, &job(&name, 1, script));
            wait(Duration::from_secs(10), || running(&addr, &name) == 1);
            std::thread::sleep(Duration::from_millis(200));
            let t0 = Instant::now();
            let out = Command::new(ORC)
                .args(["stop", "-detach", "-address", &addr, &name])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            wait(Duration::from_secs(20), || complete(&name));
            stops.push(t0.elapsed());
        }
        println!(
            "orc stop → allocation complete ({kind}: {}, 5 jobs): p50 {:?}, max {:?}",
            if kind == "polite" {
                "exits on its kill_signal"
            } else {
                "ignores it, SIGKILL after kill_timeout = 1s"
            },
            percentile(&mut stops, 0.5),
            percentile(&mut stops, 1.0)
        );
    }
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = agent.wait();
    println!("command: cargo bench -p orc --bench agent");
}
