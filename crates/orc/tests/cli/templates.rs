//! Templates that read services, through the real `orc` binary: `orc agent -dev`, a job
//! registering `hello-web` in orc's own catalogue, and a job whose templates list its instances
//! with `{{ range nomadService "hello-web" }}`. Scaling `hello-web` from 1 to 2 re-renders the
//! files; the task with the default `change_mode` restarts, the one with `signal` gets SIGHUP.
//! A `{{ service }}` (Consul) template on this Consul-less agent fails the task's setup; with
//! Consul (the in-repo fake) it lists the passing instances and follows a scale-up too.

use super::dev_agent::{fake_consul, Agent};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Agent {
    /// The job's allocation that is running (the first one).
    fn alloc(&self, job: &str) -> Option<Value> {
        let allocs = self.get(&format!("/v1/job/{job}/allocations"))?;
        let id = allocs.as_array()?.iter().find(|a| a["ClientStatus"] == "running")?["ID"]
            .as_str()?
            .to_string();
        self.get(&format!("/v1/allocation/{id}"))
    }

    /// A file in a task's directory of allocation `alloc`, found under the agent's data dir.
    fn task_file(&self, alloc: &str, task: &str, rel: &str) -> Option<String> {
        fn find(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
            for e in std::fs::read_dir(dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if p.file_name().is_some_and(|n| n == name) {
                        return Some(p);
                    }
                    if depth > 0 {
                        if let Some(found) = find(&p, name, depth - 1) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        let dir = find(&self.dir.path().join("data"), alloc, 3)?;
        std::fs::read_to_string(dir.join(task).join(rel)).ok()
    }
}

fn web(count: u32) -> String {
    web_in(count, "nomad")
}

fn web_in(count: u32, provider: &str) -> String {
    format!(
        r#"job "web" {{
  datacenters = ["*"]
  group "g" {{
    count = {count}
    network {{
      port "http" {{}}
    }}
    task "server" {{
      driver = "raw_exec"
      kill_timeout = "1s"
      config {{
        command = "python3"
        args    = ["-m", "http.server", "--bind", "127.0.0.1", "${{NOMAD_PORT_http}}"]
      }}
      service {{
        name     = "hello-web"
        port     = "http"
        provider = "{provider}"
        tags     = ["v1"]
      }}
    }}
  }}
}}
"#
    )
}

const PROXY: &str = r#"job "proxy" {
  datacenters = ["*"]
  group "g" {
    task "restarts" {
      driver = "raw_exec"
      kill_timeout = "1s"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat local/upstreams.conf >> local/starts; echo --- >> local/starts; while true; do sleep 0.2; done"]
      }
      template {
        data        = <<EOT
{{- range nomadService "hello-web" }}
server {{ .Address }}:{{ .Port }}{{ if eq .Name "hello-web" }} ok{{ end }} {{ .Tags }}
{{- end }}
EOT
        destination = "local/upstreams.conf"
      }
    }
    task "signalled" {
      driver = "raw_exec"
      kill_timeout = "1s"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo hup >> local/hups' HUP; while true; do sleep 0.2; done"]
      }
      template {
        data          = "{{ range nomadService \"hello-web\" }}{{ .Port }}\n{{ else }}none\n{{ end }}"
        destination   = "local/ports"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }
    }
  }
}
"#;

const NEEDS_CONSUL: &str = r#"job "needs-consul" {
  datacenters = ["*"]
  group "g" {
    task "t" {
      driver = "raw_exec"
      config {
        command = "/bin/sleep"
        args    = ["60"]
      }
      template {
        data        = "{{ range service \"db\" }}{{ .Address }}{{ end }}"
        destination = "local/db"
      }
    }
  }
}
"#;

fn events(alloc: &Value, task: &str) -> Vec<(String, String)> {
    alloc["TaskStates"][task]["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["Type"].as_str().unwrap_or("").to_string(),
                e["DisplayMessage"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn templates_list_native_services_and_re_render_when_they_scale() {
    let agent = Agent::start(None);
    agent.run("web", &web(1));
    let count = |a: &Agent| {
        a.get("/v1/service/hello-web").and_then(|v| v.as_array().map(Vec::len)).unwrap_or(0)
    };
    agent.wait(Duration::from_secs(30), "one hello-web instance", |a| count(a) == 1);
    agent.run("proxy", PROXY);
    let mut alloc = String::new();
    agent.wait(Duration::from_secs(30), "the proxy running with its templates", |a| {
        let Some(v) = a.alloc("proxy") else { return false };
        alloc = v["ID"].as_str().unwrap_or("").to_string();
        v["TaskStates"]["restarts"]["State"] == "running"
            && v["TaskStates"]["signalled"]["State"] == "running"
    });
    let ports = |a: &Agent| -> Vec<u64> {
        let mut p: Vec<u64> = a
            .get("/v1/service/hello-web")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["Port"].as_u64())
            .collect();
        p.sort();
        p
    };
    let first = ports(&agent);
    let upstreams = agent.task_file(&alloc, "restarts", "local/upstreams.conf").unwrap();
    assert_eq!(upstreams, format!("\nserver 127.0.0.1:{} ok [v1]\n", first[0]));
    assert_eq!(
        agent.task_file(&alloc, "signalled", "local/ports").unwrap(),
        format!("{}\n", first[0])
    );

    agent.run("web", &web(2));
    agent.wait(Duration::from_secs(30), "two hello-web instances", |a| count(a) == 2);
    let two = ports(&agent);
    let expected: String =
        two.iter().map(|p| format!("\nserver 127.0.0.1:{p} ok [v1]")).collect::<String>() + "\n";
    // The instances are listed in the order of their IDs, not of their ports.
    let sorted = |s: &str| {
        let mut l: Vec<String> = s.lines().filter(|l| !l.is_empty()).map(String::from).collect();
        l.sort();
        l
    };
    agent.wait(Duration::from_secs(30), "the re-rendered files, a restart and a signal", |a| {
        let Some(v) = a.get(&format!("/v1/allocation/{alloc}")) else { return false };
        let hups = a.task_file(&alloc, "signalled", "local/hups").unwrap_or_default();
        let starts = a.task_file(&alloc, "restarts", "local/starts").unwrap_or_default();
        v["TaskStates"]["restarts"]["Restarts"].as_u64() == Some(1)
            && v["TaskStates"]["restarts"]["State"] == "running"
            && starts.matches("---").count() == 2
            && hups == "hup\n"
    });
    let upstreams = agent.task_file(&alloc, "restarts", "local/upstreams.conf").unwrap();
    assert_eq!(sorted(&upstreams), sorted(&expected));
    let mut listed: Vec<String> = agent
        .task_file(&alloc, "signalled", "local/ports")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(listed, two.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    // The restarted task started with the new file.
    let starts = agent.task_file(&alloc, "restarts", "local/starts").unwrap();
    let second_start = starts.split("---").nth(1).unwrap();
    assert_eq!(sorted(second_start), sorted(&expected));

    // The agent reports task events to the servers in batches, so the files can be on disk
    // before the events are in the API: wait for both events.
    let restart_event =
        ("Restart Signaled".to_string(), "Template with change_mode restart re-rendered".into());
    let signal_event = ("Signaling".to_string(), "Template re-rendered".to_string());
    agent.wait(Duration::from_secs(30), "the template events", |a| {
        a.get(&format!("/v1/allocation/{alloc}")).is_some_and(|v| {
            events(&v, "restarts").contains(&restart_event)
                && events(&v, "signalled").contains(&signal_event)
        })
    });
    let v = agent.get(&format!("/v1/allocation/{alloc}")).unwrap();
    assert_eq!(v["TaskStates"]["signalled"]["Restarts"].as_u64(), Some(0));

    // `service` reads Consul, which this agent does not have: the setup fails, loudly.
    agent.run("needs-consul", NEEDS_CONSUL);
    agent.wait(Duration::from_secs(30), "the Consul-less setup failure", |a| {
        let Some(allocs) = a.get("/v1/job/needs-consul/allocations") else { return false };
        let Some(id) = allocs[0]["ID"].as_str() else { return false };
        let Some(v) = a.get(&format!("/v1/allocation/{id}")) else { return false };
        events(&v, "t").iter().any(|(kind, message)| {
            kind == "Task hook failed" && message.contains("this agent has no Consul configured")
        })
    });
}

const CONSUL_PROXY: &str = r#"job "proxy" {
  datacenters = ["*"]
  group "g" {
    task "t" {
      driver = "raw_exec"
      kill_timeout = "1s"
      config {
        command = "/bin/sh"
        args    = ["-c", "while true; do sleep 0.2; done"]
      }
      template {
        data        = "{{ range service \"v1.hello-web\" }}{{ .Address }}:{{ .Port }}\n{{ end }}"
        destination = "local/upstreams"
        change_mode = "noop"
      }
    }
  }
}
"#;

#[test]
fn service_templates_read_consuls_passing_instances() {
    let (_rt, fake) = fake_consul();
    let agent = Agent::start(Some(&fake.url()));
    let fake = &fake;
    let in_consul = |n: usize| {
        move |_: &Agent| fake.services().values().filter(|s| s.service == "hello-web").count() == n
    };
    agent.run("web", &web_in(1, "consul"));
    agent.wait(Duration::from_secs(30), "one instance in Consul", in_consul(1));
    agent.run("proxy", CONSUL_PROXY);
    let mut alloc = String::new();
    agent.wait(Duration::from_secs(30), "the proxy running", |a| {
        let Some(v) = a.alloc("proxy") else { return false };
        alloc = v["ID"].as_str().unwrap_or("").to_string();
        v["TaskStates"]["t"]["State"] == "running"
    });
    let ports = || {
        let mut p: Vec<String> = fake
            .services()
            .values()
            .filter(|s| s.service == "hello-web")
            .map(|s| format!("{}:{}", s.address, s.port))
            .collect();
        p.sort();
        p
    };
    let listed = |a: &Agent| {
        let text = a.task_file(&alloc, "t", "local/upstreams").unwrap_or_default();
        let mut l: Vec<String> = text.lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(listed(&agent), ports());
    agent.run("web", &web_in(2, "consul"));
    agent.wait(Duration::from_secs(30), "two instances in Consul", in_consul(2));
    agent.wait(Duration::from_secs(30), "both listed", |a| listed(a) == ports());
    let v = agent.alloc("proxy").unwrap();
    assert_eq!(v["ID"].as_str(), Some(alloc.as_str()));
    // change_mode noop: the file changed, the task was left alone.
    assert_eq!(v["TaskStates"]["t"]["Restarts"].as_u64(), Some(0));
    assert!(!events(&v, "t").iter().any(|(k, _)| k == "Restart Signaled" || k == "Signaling"));
}
