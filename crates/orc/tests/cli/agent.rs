//! `orc agent -dev` as a user runs it: a real agent process on free ports, jobs submitted with
//! `orc run`, observed with `orc alloc logs`/`status` and the HTTP API, killed with SIGKILL and
//! restarted. Every test stops its jobs; the fixture also kills any task process groups the
//! agent recorded, so nothing outlives a failed test.

use super::{orc_in, repo, stderr, stdout};
use serde_json::Value;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port for a process this test starts (see `testkit::free_port`).
fn free_port() -> u16 {
    testkit::free_port()
}

struct DevAgent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: u16,
    rpc: u16,
    extra: Vec<String>,
}

impl DevAgent {
    fn start() -> DevAgent {
        let dir = tempfile::tempdir().unwrap();
        let mut a =
            DevAgent { child: None, dir, http: free_port(), rpc: free_port(), extra: Vec::new() };
        a.spawn();
        a
    }

    /// A dev agent with one more agent file (written into its directory first).
    fn with_config(config: impl FnOnce(&Path) -> String) -> DevAgent {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.hcl");
        std::fs::write(&file, config(dir.path())).unwrap();
        let extra = vec!["-config".to_string(), file.display().to_string()];
        let mut a = DevAgent { child: None, dir, http: free_port(), rpc: free_port(), extra };
        a.spawn();
        a
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orc"))
            .args(["agent", "-dev", "-data-dir"])
            .arg(self.data())
            .args(["-http-port", &self.http.to_string(), "-rpc-port", &self.rpc.to_string()])
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready once a client node is registered and ready.
        self.wait(Duration::from_secs(20), "a ready node", |a| {
            a.get("/v1/nodes").is_some_and(|n| n[0]["Status"] == "ready")
        });
    }

    fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn get(&self, path: &str) -> Option<Value> {
        let resp = ureq::get(format!("{}{path}", self.addr())).call().ok()?;
        serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()
    }

    fn orc(&self, args: &[&str]) -> std::process::Output {
        let addr = self.addr();
        let mut full = args.to_vec();
        full.extend(["-address", addr.as_str()]);
        orc_in(&repo(), &full, &[])
    }

    fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut(&DevAgent) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > limit {
                let log =
                    std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
                panic!("no {what} within {limit:?}; agent log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn allocs(&self, job: &str) -> Vec<Value> {
        self.get(&format!("/v1/job/{job}/allocations"))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn alloc(&self, id: &str) -> Value {
        self.get(&format!("/v1/allocation/{id}")).unwrap()
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The task pids the agent recorded.
    fn task_pids(&self) -> Vec<u32> {
        std::fs::read_dir(self.data().join("client/allocs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok())
            .flat_map(|v| {
                v["handles"]
                    .as_object()
                    .map(|h| h.values().filter_map(|x| x["pid"].as_u64()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .map(|p| p as u32)
            .collect()
    }
}

impl Drop for DevAgent {
    fn drop(&mut self) {
        let pids = self.task_pids();
        self.sigkill();
        for pid in pids {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
        // Pots of a failed pot test: destroyed through the same wrapper and environment.
        let wrapper = self.dir.path().join("pot-wrapper");
        let jails = self.dir.path().join("pot/jails");
        if let (true, Ok(entries)) = (wrapper.exists(), std::fs::read_dir(&jails)) {
            let d = |s: &str| self.dir.path().join(s);
            for e in entries.flatten() {
                let _ = Command::new(&wrapper)
                    .args(["destroy", "-p", &e.file_name().to_string_lossy(), "-F"])
                    .env_clear()
                    .env("PATH", "/usr/bin:/bin")
                    .env("POT_FS_ROOT", d("pot"))
                    .env("POT_CACHE", d("cache"))
                    .env("POT_TMP", d("tmp"))
                    .output();
            }
        }
    }
}

fn http_get(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
}

fn only_alloc(agent: &DevAgent, job: &str) -> String {
    agent.wait(Duration::from_secs(10), "allocation", |a| a.allocs(job).len() == 1);
    agent.allocs(job)[0]["ID"].as_str().unwrap().to_string()
}

fn status_of(agent: &DevAgent, id: &str) -> String {
    agent.alloc(id)["ClientStatus"].as_str().unwrap_or_default().to_string()
}

#[test]
fn dev_agent_runs_hello_answers_streams_logs_and_stops_on_the_kill_signal() {
    let agent = DevAgent::start();
    let out = agent.orc(&["run", "examples/hello.job"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let id = only_alloc(&agent, "hello");
    agent.wait(Duration::from_secs(10), "running hello", |a| status_of(a, &id) == "running");
    let alloc = agent.alloc(&id);
    let port = alloc["AllocatedResources"]["Shared"]["Ports"][0]["Value"].as_u64().unwrap() as u16;
    let mut body = String::new();
    agent.wait(Duration::from_secs(10), "an HTTP answer", |_| {
        body = http_get(port).unwrap_or_default();
        body.contains("200 OK")
    });
    assert!(body.contains(&format!("hello from {id}")), "{body}");

    // A second job prints a line whenever asked; `orc alloc logs -f` shows it while the follow
    // is open (how fast is a benchmark: `cargo bench -p orc --bench agent`).
    let job = agent.dir.path().join("ticker.job");
    std::fs::write(
        &job,
        r#"job "ticker" {
  datacenters = ["*"]
  group "t" {
    task "ticker" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo started; while true; do if [ -f local/tick ]; then rm local/tick; echo tick; fi; sleep 0.02; done"]
      }
      kill_timeout = "2s"
    }
  }
}
"#,
    )
    .unwrap();
    let out = agent.orc(&["run", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tid = only_alloc(&agent, "ticker");
    agent.wait(Duration::from_secs(10), "running ticker", |a| status_of(a, &tid) == "running");
    let addr = agent.addr();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_orc"))
        .args(["alloc", "logs", "-address", &addr, "-f", &tid[..8]])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            if tx.send((Instant::now(), line.unwrap_or_default())).is_err() {
                return;
            }
        }
    });
    let (_, first) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first, "started");
    std::thread::sleep(Duration::from_millis(300));
    let tick = agent.data().join("alloc").join(&tid).join("ticker/local/tick");
    std::fs::write(&tick, "").unwrap();
    let (_, line) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(line, "tick");
    assert!(follow.try_wait().unwrap().is_none(), "the follow ended");
    follow.kill().unwrap();
    let _ = follow.wait();
    // The same log through the server, which forwards to the agent; and a path that tries to
    // leave the allocation directory is refused there.
    let via_server = ureq::get(format!(
        "{}/v1/client/fs/logs/{tid}?task=ticker&type=stdout&plain=true",
        agent.addr()
    ))
    .call()
    .unwrap()
    .into_body()
    .read_to_string()
    .unwrap();
    assert_eq!(via_server, "started\ntick\n");
    let escape = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(format!("{}/v1/client/fs/logs/{tid}?task=..%2F..%2F..%2Fetc&plain=true", agent.addr()))
        .call()
        .unwrap();
    assert_eq!(escape.status().as_u16(), 400);

    // Stop: both die of their kill_signal (SIGINT, Nomad's default), so no SIGKILL after
    // kill_timeout is needed. (How long a stop takes is a benchmark.)
    for j in ["hello", "ticker"] {
        let out = agent.orc(&["stop", j]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    agent.wait(Duration::from_secs(60), "stopped allocations", |a| {
        status_of(a, &id) == "complete" && status_of(a, &tid) == "complete"
    });
    for (alloc, task) in [(&id, "server"), (&tid, "ticker")] {
        let events = agent.alloc(alloc)["TaskStates"][task]["Events"].clone();
        let types: Vec<&str> =
            events.as_array().unwrap().iter().filter_map(|e| e["Type"].as_str()).collect();
        assert!(types.ends_with(&["Killing", "Terminated", "Killed"]), "{types:?}");
        let terminated = events.as_array().unwrap().iter().find(|e| e["Type"] == "Terminated");
        assert_ne!(terminated.unwrap()["Signal"], 9, "{task} needed a SIGKILL: {events:#}");
    }
    assert!(http_get(port).is_none_or(|b| !b.contains("200 OK")));
}

#[test]
fn sigkilled_agent_readopts_running_tasks_without_restarting_them() {
    let mut agent = DevAgent::start();
    let out = agent.orc(&["run", "examples/hello.job"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = only_alloc(&agent, "hello");
    agent.wait(Duration::from_secs(10), "running hello", |a| status_of(a, &id) == "running");
    let pids = agent.task_pids();
    assert_eq!(pids.len(), 1);
    agent.sigkill();
    assert!(alive(pids[0]), "the task must outlive the agent");
    agent.spawn();
    agent.wait(Duration::from_secs(10), "re-adoption", |a| {
        a.alloc(&id)["TaskStates"]["server"]["Events"].as_array().is_some_and(|e| {
            e.iter().any(|e| e["DisplayMessage"].as_str().is_some_and(|m| m.contains("re-adopted")))
        })
    });
    let alloc = agent.alloc(&id);
    let events = alloc["TaskStates"]["server"]["Events"].as_array().unwrap();
    let started_by_client =
        events.iter().filter(|e| e["DisplayMessage"] == "Task started by client").count();
    assert_eq!(started_by_client, 1, "started twice: {events:#?}");
    assert_eq!(agent.task_pids(), pids);
    assert!(alive(pids[0]));
    assert_eq!(agent.allocs("hello").len(), 1);
    let out = agent.orc(&["stop", "hello"]);
    assert!(out.status.success());
    agent.wait(Duration::from_secs(8), "stopped hello", |a| status_of(a, &id) == "complete");
    agent.wait(Duration::from_secs(2), "the task gone", |_| !alive(pids[0]));
}

/// A batch job of two groups whose tasks wait for the file `go`, then exit 0 (`ok`) or 3
/// (`bad`). Neither may restart on exit 0; `bad` may not restart at all.
fn readopt_batch_job(go: &Path) -> String {
    let group = |name: &str, code: i32, attempts: u32| {
        format!(
            r#"  group "{name}" {{
    restart {{
      attempts = {attempts}
      delay    = "1s"
      interval = "1h"
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "while [ ! -e '{go}' ]; do sleep 0.05; done; exit {code}"]
      }}
    }}
  }}
"#,
            go = go.display()
        )
    };
    format!(
        "job \"readopt\" {{\n  datacenters = [\"*\"]\n  type        = \"batch\"\n{}{}}}\n",
        group("ok", 0, 2),
        group("bad", 3, 0)
    )
}

/// A dev agent running [`readopt_batch_job`]: the agent, the `go` file and the two tasks' pids.
fn readopt_batch_job_running() -> (DevAgent, PathBuf, Vec<u32>) {
    let agent = DevAgent::start();
    let go = agent.dir.path().join("go");
    let job = agent.dir.path().join("readopt.job");
    std::fs::write(&job, readopt_batch_job(&go)).unwrap();
    let out = agent.orc(&["run", "-detach", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    agent.wait(Duration::from_secs(10), "two running allocations", |a| {
        let allocs = a.allocs("readopt");
        allocs.len() == 2 && allocs.iter().all(|x| x["ClientStatus"] == "running")
    });
    let pids = agent.task_pids();
    assert_eq!(pids.len(), 2);
    (agent, go, pids)
}

#[test]
fn a_readopted_batch_task_ends_with_its_own_exit_code_and_is_not_started_again() {
    let (mut agent, go, pids) = readopt_batch_job_running();
    agent.sigkill();
    assert!(pids.iter().all(|p| alive(*p)), "the tasks must outlive the agent");
    agent.spawn();
    let events = |a: &DevAgent, id: &str| -> Vec<Value> {
        a.alloc(id)["TaskStates"]["t"]["Events"].as_array().cloned().unwrap_or_default()
    };
    let ids: Vec<(String, String)> = agent
        .allocs("readopt")
        .iter()
        .map(|x| (x["TaskGroup"].as_str().unwrap().to_string(), x["ID"].as_str().unwrap().into()))
        .collect();
    assert_eq!(ids.len(), 2);
    for (_, id) in &ids {
        agent.wait(Duration::from_secs(10), "re-adoption", |a| {
            events(a, id)
                .iter()
                .any(|e| e["DisplayMessage"].as_str().is_some_and(|m| m.contains("re-adopted")))
        });
    }
    // Only now may they finish: their exits happen while this agent watches them.
    std::fs::write(&go, "").unwrap();
    for (group, id) in &ids {
        let (status, code) = if group == "ok" { ("complete", 0) } else { ("failed", 3) };
        agent.wait(Duration::from_secs(20), "a finished allocation", |a| {
            let s = status_of(a, id);
            s == "complete" || s == "failed"
        });
        // The watcher needs root in the initial namespaces (as CI runs); say so, not just -1.
        let log = std::fs::read_to_string(agent.dir.path().join("agent.log")).unwrap();
        if let Some(why) = log.lines().find(|l| l.contains("re-adopted raw_exec tasks will be")) {
            panic!("the agent could not watch re-adopted tasks' exits: {why}");
        }
        let events = events(&agent, id);
        assert_eq!(status_of(&agent, id), status, "{group}: {events:#?}");
        let started: Vec<&str> = events
            .iter()
            .filter(|e| e["Type"] == "Started")
            .filter_map(|e| e["DisplayMessage"].as_str())
            .collect();
        assert_eq!(
            started,
            ["Task started by client", "Task re-adopted after an agent restart"],
            "{group}: started again: {events:#?}"
        );
        assert!(!events.iter().any(|e| e["Type"] == "Restarting"), "{group}: {events:#?}");
        let terminated: Vec<&Value> = events.iter().filter(|e| e["Type"] == "Terminated").collect();
        assert_eq!(terminated.len(), 1, "{group}: {events:#?}");
        assert_eq!(terminated[0]["ExitCode"], code, "{group}: {events:#?}");
        assert_eq!(
            terminated[0]["DisplayMessage"],
            format!("Exit Code: {code}"),
            "{group}: {events:#?}"
        );
    }
    assert_eq!(agent.allocs("readopt").len(), 2, "nothing was rescheduled");
}

/// Tasks that end while no agent runs are accounted for by the next one: a Terminated event
/// says so (a raw_exec task's exit code is then unknown: it went to init), and the restart
/// policy applies as to any failure, counted, instead of the task silently starting again.
#[test]
fn a_task_that_ended_while_the_agent_was_down_follows_its_restart_policy() {
    let (mut agent, go, pids) = readopt_batch_job_running();
    agent.sigkill();
    std::fs::write(&go, "").unwrap();
    let start = std::time::Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(start.elapsed() < Duration::from_secs(10), "the tasks did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.spawn();
    for x in agent.allocs("readopt") {
        let (group, id) = (x["TaskGroup"].as_str().unwrap(), x["ID"].as_str().unwrap());
        // `ok` may restart twice: it runs again and exits 0. `bad` may not restart: it fails.
        let status = if group == "ok" { "complete" } else { "failed" };
        agent
            .wait(Duration::from_secs(20), "a finished allocation", |a| status_of(a, id) == status);
        let alloc = agent.alloc(id);
        let state = &alloc["TaskStates"]["t"];
        let events = state["Events"].as_array().unwrap();
        let messages: Vec<&str> = events
            .iter()
            .filter(|e| e["Type"] != "Received" && e["Type"] != "Task Setup")
            .filter_map(|e| e["DisplayMessage"].as_str())
            .collect();
        let away = "Exited while the agent was down; the exit code is unknown";
        if group == "ok" {
            assert_eq!(state["Restarts"], 1, "{events:#?}");
            assert_eq!(messages[..2], ["Task started by client", away], "{events:#?}");
            assert!(messages[2].starts_with("Task restarting in"), "{events:#?}");
            assert_eq!(messages[3..], ["Task started by client", "Exit Code: 0"], "{events:#?}");
        } else {
            assert_eq!(state["Restarts"], 0, "{events:#?}");
            assert_eq!(messages[..2], ["Task started by client", away], "{events:#?}");
            assert_eq!(
                messages.iter().filter(|m| **m == "Task started by client").count(),
                1,
                "started again: {events:#?}"
            );
        }
    }
    assert_eq!(agent.allocs("readopt").len(), 2, "nothing was rescheduled");
}

/// A job whose service tags, kill_timeout and sleep length are the caller's.
fn inplace_job(tag: &str, kill_timeout: &str, sleep: &str) -> String {
    format!(
        r#"job "inplace" {{
  datacenters = ["*"]
  group "g" {{
    network {{
      port "http" {{}}
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["{sleep}"]
      }}
      kill_timeout = "{kill_timeout}"
      service {{
        name     = "inplace"
        port     = "http"
        provider = "nomad"
        tags     = ["{tag}"]
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn an_in_place_update_keeps_the_task_running_and_re_registers_its_service() {
    let agent = DevAgent::start();
    let file = agent.dir.path().join("inplace.job");
    std::fs::write(&file, inplace_job("v1", "3s", "600")).unwrap();
    let out = agent.orc(&["run", "-detach", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = only_alloc(&agent, "inplace");
    agent.wait(Duration::from_secs(10), "running inplace", |a| status_of(a, &id) == "running");
    let tags = |a: &DevAgent| -> Vec<Value> {
        a.get("/v1/service/inplace")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|r| r["Tags"].clone())
            .collect()
    };
    agent.wait(Duration::from_secs(10), "the v1 registration", |a| {
        tags(a) == [serde_json::json!(["v1"])]
    });
    let pids = agent.task_pids();
    assert_eq!(pids.len(), 1);

    // Tags and kill_timeout change: Nomad updates such an allocation in place.
    std::fs::write(&file, inplace_job("v2", "4s", "600")).unwrap();
    let out = agent.orc(&["run", "-detach", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    agent.wait(Duration::from_secs(15), "the v2 registration", |a| {
        tags(a) == [serde_json::json!(["v2"])]
    });
    let allocs = agent.allocs("inplace");
    assert_eq!(allocs.len(), 1, "an in-place update places nothing new: {allocs:#?}");
    let alloc = agent.alloc(&id);
    assert_eq!(alloc["JobVersion"], 1);
    assert_eq!(alloc["ClientStatus"], "running");
    assert_eq!(agent.task_pids(), pids, "the same process runs");
    assert!(alive(pids[0]));
    let events: Vec<String> = alloc["TaskStates"]["t"]["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(events, ["Received", "Task Setup", "Started"], "not restarted");
    // The agent persisted the new version, so a later restart starts from it.
    let state: Value = serde_json::from_slice(
        &std::fs::read(agent.data().join("client/allocs").join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["job"]["Version"], 1);
    assert_eq!(state["job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"], 4_000_000_000u64);

    // A config change is destructive: a new allocation, the old process gone. (The same
    // observations tell the two apart.)
    std::fs::write(&file, inplace_job("v2", "4s", "601")).unwrap();
    let out = agent.orc(&["run", "-detach", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    agent.wait(Duration::from_secs(20), "a replacement allocation", |a| {
        a.allocs("inplace").iter().any(|x| x["ID"] != id.as_str() && x["ClientStatus"] == "running")
    });
    agent.wait(Duration::from_secs(20), "the old process gone", |_| !alive(pids[0]));
    let out = agent.orc(&["stop", "inplace"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Serves `files` over HTTP/1.0 on a free port until the test ends; returns the base URL.
fn serve_files(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let reply = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => {
                    let mut r =
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            let _ = conn.write_all(&reply);
        }
    });
    base
}

#[test]
fn artifacts_are_fetched_into_the_task_and_other_getters_are_refused_at_validation() {
    let agent = DevAgent::start();
    // A .tar.gz made by the system's tar, as an operator would.
    let src = agent.dir.path().join("tools");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/hi"), "echo hi from the archive\n").unwrap();
    let tgz = agent.dir.path().join("tools.tar.gz");
    let made = Command::new("tar")
        .args(["-czf", tgz.to_str().unwrap(), "-C", src.to_str().unwrap(), "bin"])
        .status()
        .unwrap();
    assert!(made.success());
    let base = serve_files(vec![
        ("/greeting.txt", b"hello from an artifact\n".to_vec()),
        ("/tools.tar.gz", std::fs::read(&tgz).unwrap()),
    ]);
    let job = agent.dir.path().join("art.job");
    std::fs::write(
        &job,
        format!(
            r#"job "art" {{
  datacenters = ["*"]
  group "g" {{
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "cat local/greeting.txt; sh local/tools/bin/hi; sleep 600"]
      }}
      artifact {{
        source = "{base}/greeting.txt"
      }}
      artifact {{
        source      = "{base}/tools.tar.gz"
        destination = "local/tools"
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let out = agent.orc(&["run", "-detach", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = only_alloc(&agent, "art");
    agent.wait(Duration::from_secs(20), "running art", |a| status_of(a, &id) == "running");
    let mut logs = String::new();
    agent.wait(Duration::from_secs(10), "the task's output", |a| {
        logs = stdout(&a.orc(&["alloc", "logs", &id, "t"]));
        logs.contains("hi from the archive")
    });
    assert_eq!(logs, "hello from an artifact\nhi from the archive\n");
    let events = agent.alloc(&id)["TaskStates"]["t"]["Events"].clone();
    let types: Vec<&str> =
        events.as_array().unwrap().iter().filter_map(|e| e["Type"].as_str()).collect();
    assert_eq!(types, ["Received", "Task Setup", "Downloading Artifacts", "Started"]);

    // Another getter is refused when the job is submitted, pointing at the line.
    let bad = agent.dir.path().join("bad.job");
    std::fs::write(
        &bad,
        "job \"bad\" {\n  datacenters = [\"*\"]\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/true\"\n      }\n      artifact {\n        source = \"git::https://example.com/repo.git\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = agent.orc(&["run", "-detach", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.job:10:"), "{err}");
    assert!(err.contains("not an http or https URL"), "{err}");
    let out = agent.orc(&["stop", "art"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn templates_render_env_files_and_unsupported_functions_are_refused_at_validation() {
    let agent = DevAgent::start();
    // Shaped like the corpus's minio job: a static env file, plus the allocation's ID.
    let job = agent.dir.path().join("tmpl.job");
    std::fs::write(
        &job,
        r#"job "tmpl" {
  datacenters = ["*"]
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo \"access=$MINIO_ACCESS_KEY\"; cat local/id.txt; sleep 600"]
      }
      template {
        data = <<EOH
MINIO_ACCESS_KEY="superSecretMinioAccessKey"
MINIO_SECRET_KEY="superSecretMinioSecretKey"
EOH
        destination = "secrets/file.env"
        env         = true
      }
      template {
        data        = "alloc {{ env \"NOMAD_ALLOC_ID\" }}\n"
        destination = "local/id.txt"
        perms       = "600"
      }
    }
  }
}
"#,
    )
    .unwrap();
    let out = agent.orc(&["run", "-detach", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = only_alloc(&agent, "tmpl");
    agent.wait(Duration::from_secs(20), "running tmpl", |a| status_of(a, &id) == "running");
    let mut logs = String::new();
    agent.wait(Duration::from_secs(10), "the task's output", |a| {
        logs = stdout(&a.orc(&["alloc", "logs", &id, "t"]));
        logs.contains("alloc ")
    });
    assert_eq!(logs, format!("access=superSecretMinioAccessKey\nalloc {id}\n"));

    // A function orc does not render is refused when the job is submitted, at its line.
    let bad = agent.dir.path().join("bad.job");
    std::fs::write(
        &bad,
        "job \"bad\" {\n  datacenters = [\"*\"]\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/true\"\n      }\n      template {\n        data        = \"db={{ key \\\"db/host\\\" }}\"\n        destination = \"local/db.conf\"\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = agent.orc(&["run", "-detach", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.job:10:"), "{err}");
    assert!(err.contains("Consul KV"), "{err}");
    let out = agent.orc(&["stop", "tmpl"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn crash_restarts_per_policy_then_fails_and_is_rescheduled_and_batch_exit_codes() {
    let agent = DevAgent::start();
    let job = agent.dir.path().join("crash.job");
    std::fs::write(
        &job,
        r#"job "crash" {
  datacenters = ["*"]
  group "c" {
    restart {
      attempts = 1
      delay    = "200ms"
      interval = "1h"
      mode     = "fail"
    }
    reschedule {
      attempts       = 1
      interval       = "1h"
      delay          = "5s"
      delay_function = "constant"
      unlimited      = false
    }
    task "crash" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo crashing; exit 3"]
      }
    }
  }
}
"#,
    )
    .unwrap();
    let out = agent.orc(&["run", "-detach", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    agent.wait(Duration::from_secs(30), "a rescheduled allocation", |a| {
        let allocs = a.allocs("crash");
        allocs.len() >= 2 && allocs.iter().any(|x| x["ClientStatus"] == "failed")
    });
    let allocs = agent.allocs("crash");
    let failed = allocs.iter().find(|x| x["ClientStatus"] == "failed").unwrap();
    let first = agent.alloc(failed["ID"].as_str().unwrap());
    let state = &first["TaskStates"]["crash"];
    assert_eq!(state["Restarts"], 1);
    let types: Vec<&str> =
        state["Events"].as_array().unwrap().iter().filter_map(|e| e["Type"].as_str()).collect();
    assert!(types.ends_with(&["Terminated", "Not Restarting"]), "{types:?}");
    let replacement = allocs.iter().find(|x| x["ID"] != failed["ID"]).unwrap();
    assert_eq!(agent.alloc(replacement["ID"].as_str().unwrap())["PreviousAllocation"], first["ID"]);
    let out = agent.orc(&["stop", "-purge", "crash"]);
    assert!(out.status.success(), "{}", stderr(&out));

    for (name, code, status) in [("ok", 0, "complete"), ("bad", 7, "failed")] {
        let job = agent.dir.path().join(format!("{name}.job"));
        std::fs::write(
            &job,
            format!(
                r#"job "{name}" {{
  datacenters = ["*"]
  type        = "batch"
  group "b" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts  = 0
      unlimited = false
    }}
    task "b" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "exit {code}"]
      }}
    }}
  }}
}}
"#
            ),
        )
        .unwrap();
        let out = agent.orc(&["run", "-detach", job.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let id = only_alloc(&agent, name);
        agent.wait(Duration::from_secs(10), "a finished batch allocation", |a| {
            status_of(a, &id) == status
        });
        let alloc = agent.alloc(&id);
        let term = alloc["TaskStates"]["b"]["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Type"] == "Terminated")
            .cloned()
            .unwrap();
        assert_eq!(term["ExitCode"], code);
    }
}

/// The stand-in `pot` next to this test's `deps/` directory, built when missing (only
/// pot-standin's own tests get `CARGO_BIN_EXE_pot`).
fn standin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let pot = exe.parent().unwrap().parent().unwrap().join("pot");
    if !pot.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo).args(["build", "-p", "pot-standin", "--bin", "pot"]).status();
        assert!(ok.unwrap().success(), "building the pot stand-in failed");
    }
    pot
}

#[test]
fn pot_job_through_the_standin_scales_to_two_pots_survives_agent_sigkill_and_stop_destroys_both() {
    if !Path::new("/usr/bin/python3").exists() && !Path::new("/usr/local/bin/python3").exists() {
        eprintln!("skipped: the stand-in's test image needs python3");
        return;
    }
    let mut agent = DevAgent::with_config(|dir| {
        for d in ["pot/jails", "cache", "tmp", "registry", "work"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        pot_standin::image::build_nginx_test_image(&dir.join("work"), &dir.join("registry"))
            .unwrap();
        // The agent runs pot through this wrapper, which records every argv.
        let wrapper = dir.join("pot-wrapper");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                dir.join("commands.log").display(),
                standin().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = |s: &str| dir.join(s).display().to_string();
        format!(
            r#"plugin "pot" {{
  config {{
    pot_path = "{}"
    pot_env  = {{ POT_FS_ROOT = "{}", POT_CACHE = "{}", POT_TMP = "{}", POT_NETWORK = "127.{}.7.0/24" }}
  }}
}}
"#,
            wrapper.display(),
            d("pot"),
            d("cache"),
            d("tmp"),
            100 + std::process::id() % 50
        )
    });
    let node = agent.get("/v1/nodes").unwrap()[0]["ID"].as_str().unwrap().to_string();
    let node = agent.get(&format!("/v1/node/{node}")).unwrap();
    assert_eq!(node["Attributes"]["driver.pot.version"], "0.16.0");
    let registry = format!("file://{}", agent.dir.path().join("registry").display());
    let job = agent.dir.path().join("nginx.job");
    // The seed job's shape, with the stand-in image's fake nginx on port 8080.
    std::fs::write(
        &job,
        format!(
            r#"job "nginx" {{
  datacenters = ["*"]
  group "group1" {{
    count = 1
    network {{
      port "http" {{}}
    }}
    task "www1" {{
      driver = "pot"
      config {{
        image        = "{registry}"
        pot          = "nginx-nomad-amd64-13_1"
        tag          = "1.1.13"
        command      = "nginx"
        args         = ["-g", "'daemon off;'"]
        port_map     = {{ http = "8080" }}
      }}
      env {{
        NGINX_PORT = "8080"
      }}
      kill_timeout = "3s"
      resources {{
        cpu    = 200
        memory = 64
      }}
    }}
  }}
}}
"#
        ),
    )
    .unwrap();
    let out = agent.orc(&["run", job.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let running = |a: &DevAgent| {
        a.allocs("nginx").into_iter().filter(|x| x["ClientStatus"] == "running").collect::<Vec<_>>()
    };
    agent.wait(Duration::from_secs(30), "a running pot", |a| running(a).len() == 1);
    let out = agent.orc(&["job", "scale", "nginx", "group1", "2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    agent.wait(Duration::from_secs(30), "two running pots", |a| running(a).len() == 2);
    let mut ports = Vec::new();
    for a in running(&agent) {
        let full = agent.alloc(a["ID"].as_str().unwrap());
        let port =
            full["AllocatedResources"]["Shared"]["Ports"][0]["Value"].as_u64().unwrap() as u16;
        let mut body = String::new();
        agent.wait(Duration::from_secs(20), "the pot answering", |_| {
            body = http_get(port).unwrap_or_default();
            body.contains("200")
        });
        assert!(body.contains(&format!("_{}", a["ID"].as_str().unwrap())), "{body}");
        ports.push(port);
    }
    assert_ne!(ports[0], ports[1]);
    let commands_log = agent.dir.path().join("commands.log");
    let log = || std::fs::read_to_string(&commands_log).unwrap_or_default();
    let starts: Vec<String> =
        log().lines().filter_map(|l| l.strip_prefix("start ").map(str::to_string)).collect();
    assert_eq!(starts.len(), 2, "{}", log());
    for name in &starts {
        // prepare … -a <invocation>_<alloc> -n www1, then mounts, env, rss, start: in this order.
        let log = log();
        let for_pot: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(name.as_str())
                    || (l.starts_with("prepare ") && l.contains(&name["www1_".len()..]))
            })
            .map(|l| l.split_whitespace().next().unwrap())
            .filter(|c| *c != "info")
            .collect();
        assert_eq!(
            for_pot,
            ["prepare", "mount-in", "mount-in", "mount-in", "set-env", "set-rss", "start"],
            "{log}"
        );
    }
    // SIGKILL the agent and start it again: both pots are re-adopted by asking pot, not started
    // again, and still answer.
    agent.sigkill();
    agent.spawn();
    agent.wait(Duration::from_secs(20), "both pots re-adopted", |a| {
        running(a).iter().all(|x| {
            a.alloc(x["ID"].as_str().unwrap())["TaskStates"]["www1"]["Events"]
                .as_array()
                .is_some_and(|e| {
                    e.iter().any(|e| {
                        e["DisplayMessage"].as_str().is_some_and(|m| m.contains("re-adopted"))
                    })
                })
        }) && running(a).len() == 2
    });
    assert!(log().contains(&format!("info -r -p {}\n", starts[0])), "{}", log());
    let restarted: Vec<String> =
        log().lines().filter_map(|l| l.strip_prefix("start ").map(str::to_string)).collect();
    assert_eq!(restarted, starts, "a pot was started again after the agent restart");
    for port in &ports {
        assert!(http_get(*port).is_some_and(|b| b.contains("200")), "port {port} after restart");
    }

    let out = agent.orc(&["stop", "nginx"]);
    assert!(out.status.success());
    agent.wait(Duration::from_secs(30), "both pots stopped", |a| {
        a.allocs("nginx").iter().all(|x| x["ClientStatus"] == "complete")
    });
    for name in &starts {
        assert!(log().contains(&format!("signal -s SIGINT -p {name}\n")), "{}", log());
        assert_eq!(log().matches(&format!("destroy -p {name} -F\n")).count(), 1, "{}", log());
    }
    let jails: Vec<String> = std::fs::read_dir(agent.dir.path().join("pot/jails"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(jails, ["nginx-nomad-amd64-13_1_1_1_13"], "no orphaned pot may remain");
}

/// Real `orc agent` processes: servers and clients.
struct Cluster {
    dir: tempfile::TempDir,
    procs: Vec<(String, Option<Child>)>,
}

impl Cluster {
    fn spawn(&mut self, name: &str, args: &[String]) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orc"))
            .arg("agent")
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.to_string(), Some(child)));
    }

    fn kill(&mut self, name: &str) {
        for (n, c) in &mut self.procs {
            if n == name {
                if let Some(mut c) = c.take() {
                    c.kill().unwrap();
                    c.wait().unwrap();
                }
            }
        }
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|(n, _)| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                format!("--- {n}\n{text}")
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Tasks outlive their agents by design; end the ones the clients recorded.
        for client in ["client0", "client1"] {
            let allocs = self.dir.path().join(client).join("client/allocs");
            for e in std::fs::read_dir(allocs).into_iter().flatten().flatten() {
                let Ok(v) =
                    serde_json::from_slice::<Value>(&std::fs::read(e.path()).unwrap_or_default())
                else {
                    continue;
                };
                for h in v["handles"].as_object().into_iter().flat_map(|m| m.values()) {
                    if let Some(pid) = h["pid"].as_u64() {
                        let _ =
                            Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
                    }
                }
            }
        }
    }
}

#[test]
fn three_servers_two_clients_follow_a_new_leader_and_a_killed_client_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.hcl"),
        "server {\n  min_heartbeat_ttl = \"2s\"\n  heartbeat_grace   = \"2s\"\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.hcl"),
        "plugin \"raw_exec\" {\n  config {\n    enabled = true\n  }\n}\n",
    )
    .unwrap();
    let mut cluster = Cluster { dir, procs: Vec::new() };
    let rpc: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let base = cluster.dir.path().to_path_buf();
    let d = |s: &str| base.join(s).display().to_string();
    let mut server_args = Vec::new();
    for i in 0..3 {
        let mut args: Vec<String> =
            ["-server", "-bootstrap-expect", "3", "-bind", "127.0.0.1", "-retry-interval", "200ms"]
                .map(String::from)
                .to_vec();
        args.extend([
            "-config".into(),
            d("server.hcl"),
            "-data-dir".into(),
            d(&format!("server{i}")),
        ]);
        args.extend([
            "-http-port".into(),
            http[i].to_string(),
            "-rpc-port".into(),
            rpc[i].to_string(),
        ]);
        for r in &rpc {
            args.extend(["-retry-join".into(), format!("127.0.0.1:{r}")]);
        }
        server_args.push(args);
    }
    for (i, args) in server_args.iter().enumerate() {
        cluster.spawn(&format!("server{i}"), args);
    }
    for i in 0..2 {
        let mut args: Vec<String> = ["-client", "-bind", "127.0.0.1"].map(String::from).to_vec();
        args.extend([
            "-config".into(),
            d("client.hcl"),
            "-data-dir".into(),
            d(&format!("client{i}")),
        ]);
        for r in &rpc {
            args.extend(["-servers".into(), format!("127.0.0.1:{r}")]);
        }
        cluster.spawn(&format!("client{i}"), &args);
    }
    // Talk to a server that is not the leader, which is killed further down.
    let leader_rpc = {
        let start = Instant::now();
        loop {
            let leader = ureq::get(format!("http://127.0.0.1:{}/v1/status/leader", http[0]))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<String>(&t).ok())
                .unwrap_or_default();
            if !leader.is_empty() {
                break leader;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no leader\n{}", cluster.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let leader = rpc.iter().position(|p| leader_rpc.ends_with(&format!(":{p}"))).unwrap();
    let addr = format!("http://127.0.0.1:{}", http[(leader + 1) % 3]);
    let get = |path: &str| -> Option<Value> {
        let resp = ureq::get(format!("{addr}{path}")).call().ok()?;
        serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()
    };
    fn wait(c: &Cluster, limit: Duration, what: &str, f: &mut dyn FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < limit, "no {what} within {limit:?}\n{}", c.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        start.elapsed()
    }
    wait(&cluster, Duration::from_secs(30), "two ready nodes", &mut || {
        get("/v1/nodes")
            .and_then(|n| n.as_array().cloned())
            .is_some_and(|n| n.len() == 2 && n.iter().all(|x| x["Status"] == "ready"))
    });
    let job = cluster.dir.path().join("sleep.job");
    std::fs::write(
        &job,
        "job \"sleep\" {\n  datacenters = [\"*\"]\n  group \"g\" {\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args    = [\"600\"]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let out = orc_in(&repo(), &["run", "-detach", "-address", &addr, job.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let allocs =
        || get("/v1/job/sleep/allocations").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    wait(&cluster, Duration::from_secs(20), "a running allocation", &mut || {
        allocs().iter().any(|a| a["ClientStatus"] == "running")
    });
    // The leader dies: both agents' allocation watches move to the new leader, so a job
    // submitted afterwards runs on both nodes.
    cluster.kill(&format!("server{leader}"));
    let job2 = cluster.dir.path().join("spread.job");
    std::fs::write(
        &job2,
        "job \"spread\" {\n  datacenters = [\"*\"]\n  group \"g\" {\n    count = 2\n    constraint {\n      operator = \"distinct_hosts\"\n      value    = \"true\"\n    }\n    task \"t\" {\n      driver = \"raw_exec\"\n      config {\n        command = \"/bin/sleep\"\n        args    = [\"600\"]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let run =
        || orc_in(&repo(), &["run", "-detach", "-address", &addr, job2.to_str().unwrap()], &[]);
    wait(
        &cluster,
        Duration::from_secs(30),
        "the spread job accepted by the new leader",
        &mut || run().status.success(),
    );
    wait(&cluster, Duration::from_secs(60), "spread running on both nodes", &mut || {
        let a = get("/v1/job/spread/allocations").and_then(|v| v.as_array().cloned());
        a.unwrap_or_default().iter().filter(|a| a["ClientStatus"] == "running").count() == 2
    });
    let first = allocs().into_iter().find(|a| a["ClientStatus"] == "running").unwrap();
    let node_id = first["NodeID"].as_str().unwrap().to_string();
    let nodes = get("/v1/nodes").unwrap();
    let victim = nodes.as_array().unwrap().iter().find(|n| n["ID"] == node_id.as_str()).unwrap();
    // Which client process owns the node: the one whose data dir holds that node ID.
    let victim_name = (0..2)
        .map(|i| format!("client{i}"))
        .find(|c| {
            std::fs::read_to_string(cluster.dir.path().join(c).join("client/node-id"))
                .is_ok_and(|t| t.trim() == victim["ID"].as_str().unwrap())
        })
        .unwrap();
    cluster.kill(&victim_name);
    // Replaced once the node misses its TTL (2 s plus a stagger) and grace (2 s); how long
    // that takes is not this test's business, only that it happens.
    wait(&cluster, Duration::from_secs(60), "a replacement on the other node", &mut || {
        allocs().iter().any(|a| a["ClientStatus"] == "running" && a["NodeID"] != node_id.as_str())
    });
    let down = get(&format!("/v1/node/{node_id}")).unwrap();
    assert_eq!(down["Status"], "down", "the killed client's node");
}
