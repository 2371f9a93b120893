//! Real `orc agent` server processes on loopback, driven through the `orc` CLI: elections,
//! SIGKILL of the leader, catch-up after a restart, `operator raft remove-peer`, and a minority
//! that refuses writes with a clear error. Every child is killed when a test ends, even by a
//! panic, by [`Servers`]'s `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port for a process this test starts (see `testkit::free_port`).
fn free_port() -> u16 {
    testkit::free_port()
}

/// How a server is configured: an agent file, or the same settings as flags.
#[derive(Clone, Copy, PartialEq)]
enum Style {
    File,
    Flags,
}

struct Server {
    http: u16,
    rpc: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// The cluster's processes; dropping it kills every one still running.
struct Servers {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut c) = s.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn orc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orc")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `GET` returning the body, or `None` if the server does not answer 200.
fn get(http: u16, path: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&format!("http://127.0.0.1:{http}{path}")).call().ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.body_mut().read_to_string().ok()
}

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Servers {
    fn start(n: usize, style: Style) -> Servers {
        let dir = tempfile::TempDir::new().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let joins: Vec<String> = ports.iter().map(|(_, rpc)| format!("127.0.0.1:{rpc}")).collect();
        let mut servers = Vec::new();
        for (i, (http, rpc)) in ports.iter().enumerate() {
            let data = dir.path().join(format!("s{i}"));
            let args = match style {
                Style::File => {
                    let file = dir.path().join(format!("s{i}.hcl"));
                    let list =
                        joins.iter().map(|j| format!("{j:?}")).collect::<Vec<_>>().join(", ");
                    std::fs::write(
                        &file,
                        format!(
                            r#"name      = "s{i}"
data_dir  = "{data}"
bind_addr = "127.0.0.1"
ports {{
  http = {http}
  rpc  = {rpc}
  serf = {serf}
}}
server {{
  enabled          = true
  bootstrap_expect = {n}
  server_join {{
    retry_join     = [{list}]
    retry_interval = "200ms"
  }}
}}
"#,
                            data = data.display(),
                            serf = free_port(),
                        ),
                    )
                    .unwrap();
                    vec!["agent".into(), "-config".into(), file.display().to_string()]
                }
                Style::Flags => {
                    let mut a: Vec<String> = [
                        "agent",
                        "-server",
                        "-node",
                        &format!("s{i}"),
                        "-data-dir",
                        &data.display().to_string(),
                        "-bind",
                        "127.0.0.1",
                        "-http-port",
                        &http.to_string(),
                        "-rpc-port",
                        &rpc.to_string(),
                        "-bootstrap-expect",
                        &n.to_string(),
                        "-retry-interval",
                        "200ms",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                    for j in &joins {
                        a.extend(["-retry-join".to_string(), j.clone()]);
                    }
                    a
                }
            };
            let log = dir.path().join(format!("s{i}.log"));
            servers.push(Server { http: *http, rpc: *rpc, args, log, child: None });
        }
        let mut s = Servers { servers, _dir: dir };
        for i in 0..n {
            s.spawn(i);
        }
        s
    }

    fn spawn(&mut self, i: usize) {
        let s = &mut self.servers[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&s.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orc"))
            .args(&s.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        s.child = Some(child);
    }

    /// SIGKILL.
    fn kill(&mut self, i: usize) {
        let mut c = self.servers[i].child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    fn addr(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.servers[i].http)
    }

    fn running(&self) -> Vec<usize> {
        (0..self.servers.len()).filter(|i| self.servers[*i].child.is_some()).collect()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for s in &self.servers {
            let log = std::fs::read_to_string(&s.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out += &format!(
                "--- {}\n{}\n",
                s.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        out
    }

    /// Waits until every running server names the same leader (through `GET
    /// /v1/status/leader`); returns the position of the leader.
    fn leader(&self) -> usize {
        wait_until("an agreed leader", Duration::from_secs(30), || {
            let answers: Vec<Option<String>> = self
                .running()
                .iter()
                .map(|i| get(self.servers[*i].http, "/v1/status/leader"))
                .collect();
            let first = answers.first()?.clone()?;
            if first.trim_matches('"').is_empty()
                || answers.iter().any(|a| a.as_ref() != Some(&first))
            {
                return None;
            }
            let rpc = first.trim_matches('"').rsplit(':').next()?.parse::<u16>().ok()?;
            // Survivors keep naming a killed leader until they notice it is gone.
            self.servers.iter().position(|s| s.rpc == rpc && s.child.is_some())
        })
    }

    /// The position of a running server other than `not`.
    fn follower(&self, not: usize) -> usize {
        self.running().into_iter().find(|i| *i != not).expect("another server runs")
    }

    /// Job IDs a server has applied, read locally (`stale`) so it shows that server's own copy.
    fn stale_jobs(&self, i: usize) -> Option<Vec<String>> {
        let body = get(self.servers[i].http, "/v1/jobs?stale=true")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(v.as_array()?.iter().filter_map(|j| j["ID"].as_str().map(String::from)).collect())
    }

    fn run_job(&self, i: usize, dir: &Path, id: &str) -> Output {
        let file = dir.join(format!("{id}.hcl"));
        std::fs::write(
            &file,
            format!(
                r#"job "{id}" {{
  datacenters = ["dc1"]
  group "g" {{
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sleep"
        args    = ["60"]
      }}
    }}
  }}
}}
"#
            ),
        )
        .unwrap();
        orc(&["job", "run", "-detach", "-address", &self.addr(i), file.to_str().unwrap()])
    }

    fn peers(&self, i: usize) -> String {
        let out = orc(&["operator", "raft", "list-peers", "-address", &self.addr(i)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }
}

fn acked(s: &Servers, i: usize, dir: &Path, id: &str, acked: &mut Vec<String>) {
    let out = s.run_job(i, dir, id);
    assert!(out.status.success(), "job run {id} via s{i}: {}\n{}", text(&out.stderr), s.logs());
    acked.push(id.to_owned());
}

fn has_all(s: &Servers, i: usize, acked: &[String]) -> bool {
    s.stale_jobs(i).is_some_and(|jobs| acked.iter().all(|a| jobs.contains(a)))
}

#[test]
fn three_servers_from_agent_files_survive_sigkill_and_remove_a_dead_peer() {
    let jobs = tempfile::TempDir::new().unwrap();
    let mut s = Servers::start(3, Style::File);
    let leader = s.leader();
    let peers = s.peers(leader);
    assert_eq!(peers.lines().count(), 4, "{peers}");
    assert_eq!(peers.matches("leader").count(), 1, "{peers}");
    let members = orc(&["server", "members", "-address", &s.addr(leader)]);
    assert!(members.status.success(), "{}", text(&members.stderr));
    assert_eq!(text(&members.stdout).lines().count(), 4, "{}", text(&members.stdout));

    // Writes through a follower are forwarded to the leader.
    let mut written = Vec::new();
    let follower = s.follower(leader);
    for id in ["a1", "a2", "a3"] {
        acked(&s, follower, jobs.path(), id, &mut written);
    }

    // SIGKILL the leader: a new one is elected and accepts writes; nothing acknowledged is lost.
    s.kill(leader);
    let second = s.leader();
    assert_ne!(second, leader);
    acked(&s, s.follower(second), jobs.path(), "b1", &mut written);
    acked(&s, second, jobs.path(), "b2", &mut written);
    for i in s.running() {
        wait_until("every acknowledged job on the survivors", Duration::from_secs(10), || {
            has_all(&s, i, &written).then_some(())
        });
    }

    // The killed server comes back from its data directory and catches up.
    s.spawn(leader);
    wait_until("the restarted server to catch up", Duration::from_secs(30), || {
        has_all(&s, leader, &written).then_some(())
    });

    // A minority refuses writes with an error that says why, in bounded time.
    let survivor = s.leader();
    let stopped: Vec<usize> = s.running().into_iter().filter(|i| *i != survivor).collect();
    for i in &stopped {
        s.kill(*i);
    }
    let started = Instant::now();
    let out = s.run_job(survivor, jobs.path(), "minority");
    assert!(!out.status.success(), "a minority accepted a write");
    let err = text(&out.stderr);
    assert!(err.contains("quorum") || err.contains("leader"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(40), "took {:?}", started.elapsed());
    for i in &stopped {
        s.spawn(*i);
    }
    let leader = s.leader();
    acked(&s, leader, jobs.path(), "c1", &mut written);

    // A dead follower is removed from the configuration; the two left still commit.
    let dead = s.follower(leader);
    s.kill(dead);
    let addr = format!("127.0.0.1:{}", s.servers[dead].rpc);
    let out = orc(&[
        "operator",
        "raft",
        "remove-peer",
        "-address",
        &s.addr(leader),
        "-peer-address",
        &addr,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&addr), "{}", text(&out.stdout));
    let peers = s.peers(leader);
    assert_eq!(peers.lines().count(), 3, "{peers}");
    assert!(!peers.contains(&addr), "{peers}");
    acked(&s, s.follower(leader), jobs.path(), "d1", &mut written);
    assert!(has_all(&s, leader, &written));
}

#[test]
fn five_servers_from_flags_keep_committing_with_two_down() {
    let jobs = tempfile::TempDir::new().unwrap();
    let mut s = Servers::start(5, Style::Flags);
    let leader = s.leader();
    assert_eq!(s.peers(leader).lines().count(), 6);
    let mut written = Vec::new();
    acked(&s, s.follower(leader), jobs.path(), "a1", &mut written);

    // Losing the leader and one follower leaves three of five: still a quorum.
    let other = s.follower(leader);
    s.kill(leader);
    s.kill(other);
    let second = s.leader();
    acked(&s, s.follower(second), jobs.path(), "b1", &mut written);
    for i in s.running() {
        wait_until("acknowledged jobs on the survivors", Duration::from_secs(10), || {
            has_all(&s, i, &written).then_some(())
        });
    }
    s.spawn(leader);
    s.spawn(other);
    for i in [leader, other] {
        wait_until("restarted servers to catch up", Duration::from_secs(30), || {
            has_all(&s, i, &written).then_some(())
        });
    }
}
