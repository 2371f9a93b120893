//! Services through the real `orc` binary: `orc agent -dev` with a `consul` block pointing at the
//! in-repo fake Consul agent, a job whose task registers `hello-web` with a TCP check, scaled
//! from 1 to 2 and stopped. The seed walkthrough with raw_exec standing in for the pot.

use super::{orc_in, stdout};
use consul_fake::FakeConsul;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Agent {
    child: Child,
    http: u16,
    dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(consul_url: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.hcl");
        std::fs::write(&config, format!("consul {{\n  address = \"{consul_url}\"\n}}\n")).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let http = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_orc"))
            .args(["agent", "-dev", "-config"])
            .arg(&config)
            .arg("-data-dir")
            .arg(dir.path().join("data"))
            .args(["-http-port", &http.to_string(), "-rpc-port", &free_port().to_string()])
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

    fn get(&self, path: &str) -> Option<Value> {
        let resp = ureq::get(format!("http://127.0.0.1:{}{path}", self.http)).call().ok()?;
        serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()
    }

    fn orc(&self, args: &[&str], dir: &Path) -> std::process::Output {
        let addr = format!("http://127.0.0.1:{}", self.http);
        let mut full = vec![args[0], "-address", addr.as_str()];
        full.extend(&args[1..]);
        orc_in(dir, &full, &[])
    }

    fn wait(&self, limit: Duration, what: &str, mut f: impl FnMut(&Agent) -> bool) {
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

    /// Host ports of the job's running allocations.
    fn running_ports(&self, job: &str) -> Vec<u16> {
        let allocs = self.get(&format!("/v1/job/{job}/allocations")).unwrap_or_default();
        let mut ports: Vec<u16> = allocs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["ClientStatus"] == "running")
            .filter_map(|a| a["ID"].as_str())
            .filter_map(|id| self.get(&format!("/v1/allocation/{id}")))
            .filter_map(|a| a["AllocatedResources"]["Shared"]["Ports"][0]["Value"].as_u64())
            .map(|p| p as u16)
            .collect();
        ports.sort();
        ports
    }
}

/// The seed job with raw_exec: a python3 web server on the allocation's port.
fn job(count: u32) -> String {
    format!(
        r#"job "nginx-minipot" {{
  datacenters = ["*"]
  group "group1" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    task "www1" {{
      driver = "raw_exec"
      config {{
        command = "python3"
        args    = ["-m", "http.server", "--bind", "127.0.0.1", "${{NOMAD_PORT_http}}"]
      }}
      service {{
        tags = ["nginx", "www"]
        name = "hello-web"
        port = "http"
        check {{
          type     = "tcp"
          name     = "tcp"
          interval = "5s"
          timeout  = "2s"
        }}
      }}
    }}
  }}
}}
"#
    )
}

#[test]
fn seed_walkthrough_registers_in_consul_scales_and_deregisters() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeConsul::start(l, None).unwrap()
    });
    let agent = Agent::start(&fake.url());
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("nginx.job");
    let file_arg = file.to_str().unwrap();

    // Instances in Consul: (address, port, tags, check status, interval, timeout) by port.
    let consul_view = |fake: &FakeConsul| {
        let checks = fake.checks();
        let mut out: Vec<(String, u16, Vec<String>, String, Value)> = fake
            .services()
            .values()
            .filter(|s| s.service == "hello-web")
            .map(|s| {
                let c = checks.values().find(|c| c.service_id == s.id);
                (
                    s.address.clone(),
                    s.port,
                    s.tags.clone(),
                    c.map(|c| c.status.clone()).unwrap_or_default(),
                    c.map(|c| c.definition.clone()).unwrap_or_default(),
                )
            })
            .collect();
        out.sort_by_key(|i| i.1);
        out
    };

    for count in [1, 2] {
        std::fs::write(&file, job(count)).unwrap();
        let out = agent.orc(&["run", "-detach", file_arg], work.path());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        agent.wait(Duration::from_secs(30), "running allocations", |a| {
            a.running_ports("nginx-minipot").len() == count as usize
        });
        let ports = agent.running_ports("nginx-minipot");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = rt.block_on(async { consul_view(&fake) });
            let ok = view.len() == ports.len()
                && view.iter().zip(&ports).all(|(i, p)| {
                    i.0 == "127.0.0.1"
                        && i.1 == *p
                        && i.2 == ["nginx", "www"]
                        && i.3 == "passing"
                        && i.4["TCP"] == format!("127.0.0.1:{p}")
                        && i.4["Interval"] == "5s"
                        && i.4["Timeout"] == "2s"
                });
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "consul has {view:?}, allocations {ports:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let ids: Vec<String> = fake.services().keys().cloned().collect();
    assert!(ids
        .iter()
        .all(|id| id.starts_with("_nomad-task-") && id.ends_with("-www1-hello-web-http")));

    let out = agent.orc(&["stop", "-detach", "nginx-minipot"], work.path());
    assert!(out.status.success(), "{}", stdout(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake.services().is_empty() {
        assert!(Instant::now() < deadline, "still registered: {:?}", fake.services().keys());
        std::thread::sleep(Duration::from_millis(100));
    }
    let deregistrations = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/v1/agent/service/deregister/"))
        .count();
    assert_eq!(deregistrations, 2);
}
