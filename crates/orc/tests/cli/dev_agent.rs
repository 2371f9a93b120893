//! One `orc agent -dev` process for the CLI tests that need a whole agent: its own data dir,
//! free ports, an optional `consul` block, its log kept for the failure message, and killed when
//! dropped. Tests add their own inspection helpers in their modules.

use super::orc_in;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port for a process this test starts (see `testkit::free_port`).
pub(super) fn free_port() -> u16 {
    testkit::free_port()
}

pub(super) struct Agent {
    child: Child,
    pub(super) http: u16,
    pub(super) dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed test shows what the agent said, however it failed.
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!("agent log (last {} lines):\n{}", tail.len(), tail.join("\n"));
        }
    }
}

impl Agent {
    pub(super) fn start(consul_url: Option<&str>) -> Agent {
        Agent::start_with(consul_url, |_| String::new())
    }

    /// An agent whose file also holds what `extra` writes (given the agent's directory).
    pub(super) fn start_with(
        consul_url: Option<&str>,
        extra: impl FnOnce(&Path) -> String,
    ) -> Agent {
        Agent::start_full(consul_url, extra, &[])
    }

    /// An agent with extra command-line flags.
    pub(super) fn start_full(
        consul_url: Option<&str>,
        extra: impl FnOnce(&Path) -> String,
        flags: &[&str],
    ) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.hcl");
        let mut text = match consul_url {
            Some(url) => format!("consul {{\n  address = \"{url}\"\n}}\n"),
            None => String::new(),
        };
        text.push_str(&extra(dir.path()));
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let http = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_orc"))
            .args(["agent", "-dev", "-config"])
            .arg(&config)
            .arg("-data-dir")
            .arg(dir.path().join("data"))
            .args(["-http-port", &http.to_string(), "-rpc-port", &free_port().to_string()])
            .args(flags)
            .env_remove("CONSUL_HTTP_ADDR")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, http, dir };
        agent.wait(Duration::from_secs(30), "a ready node", |a| {
            a.get("/v1/nodes").is_some_and(|n| n[0]["Status"] == "ready")
        });
        agent
    }

    pub(super) fn get(&self, path: &str) -> Option<Value> {
        let resp = ureq::get(format!("http://127.0.0.1:{}{path}", self.http)).call().ok()?;
        serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()
    }

    pub(super) fn orc(&self, args: &[&str], dir: &Path) -> std::process::Output {
        let addr = format!("http://127.0.0.1:{}", self.http);
        let mut full = vec![args[0], "-address", addr.as_str()];
        full.extend(&args[1..]);
        orc_in(dir, &full, &[])
    }

    pub(super) fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut(&Agent) -> bool) {
        let start = Instant::now();
        while !f(self) {
            if start.elapsed() > limit {
                let log =
                    std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default();
                panic!("no {what} within {limit:?}; agent log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `job` under the agent's directory and submits it with `orc run -detach`.
    pub(super) fn run(&self, name: &str, job: &str) {
        let work = self.dir.path().join("jobs");
        std::fs::create_dir_all(&work).unwrap();
        let file = work.join(format!("{name}.job"));
        std::fs::write(&file, job).unwrap();
        let out = self.orc(&["run", "-detach", file.to_str().unwrap()], &work);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A fresh fake Consul agent on a free port, served by the returned runtime.
pub(super) fn fake_consul() -> (tokio::runtime::Runtime, consul_fake::FakeConsul) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        consul_fake::FakeConsul::start(l, None).unwrap()
    });
    (rt, fake)
}
