//! The seed's walkthrough through the real `orc` binary against an in-process server (HTTP API
//! and scheduling pipeline on loopback) with fake `pot` nodes: run, status, allocs, alloc
//! status by prefix, scale, plan, stop, nodes and servers. Human output is snapshot-tested with
//! IDs, times and ages masked.

use super::{orc_in, repo, stderr, stdout};
use expect_test::{expect, Expect};
use model::{ClientStatus, DesiredStatus, DriverInfo, Node, NodeStatus};
use server::http::{self, HttpConfig};
use server::state::{AllocClientUpdate, Command};
use server::transport::TcpConnector;
use server::{Config, Seams, Server};
use std::process::Output;
use std::sync::Arc;

/// A server running on its own runtime thread for the duration of a test.
pub struct Cluster {
    addr: String,
    handle: server::ServerHandle,
    runtime: tokio::runtime::Runtime,
}

fn fake_node(i: usize) -> Node {
    let mut n = Node {
        id: format!("{i:x}{i:x}{i:x}{i:x}0000-0000-4000-8000-00000000000{i}"),
        name: format!("jail-host-{i}"),
        datacenter: "minipot".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 2000;
    n.node_resources.memory.memory_mb = 4096;
    n.node_resources.disk.disk_mb = 50_000;
    n.node_resources.min_dynamic_port = 20000;
    n.node_resources.max_dynamic_port = 32000;
    n.attributes.insert("kernel.name".into(), "freebsd".into());
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n
}

/// Starts a dev server with `nodes` fake nodes, its HTTP API and its scheduling pipeline.
pub fn start(nodes: usize) -> Cluster {
    start_servers(1, nodes)
}

/// Starts `servers` in-memory servers that find each other and bootstrap together, each with its
/// HTTP API and scheduling pipeline, and registers `nodes` fake nodes. With several servers,
/// [`Cluster::addr`] is a follower's API, so every write is forwarded to the leader.
pub fn start_servers(servers: usize, nodes: usize) -> Cluster {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (addr, handle) = runtime.block_on(async {
        let mut listeners = Vec::new();
        for _ in 0..servers {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let rpc_addrs: Vec<String> =
            listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        let mut apis = Vec::new();
        for (i, rpc) in listeners.into_iter().enumerate() {
            let name = if servers == 1 { "orc-dev".to_owned() } else { format!("orc-{i}") };
            let mut config = Config { name, ..Config::default() };
            config.server.enabled = true;
            config.server.bootstrap_expect = servers as u32;
            config.server.server_join.retry_join = rpc_addrs.clone();
            config.server.server_join.retry_interval = std::time::Duration::from_millis(100);
            config.raft.heartbeat_interval_ms = 50;
            config.raft.election_timeout_min_ms = 300;
            config.raft.election_timeout_max_ms = 600;
            let seams = Seams {
                rpc_listener: Box::new(rpc),
                rpc_advertise: rpc_addrs[i].clone(),
                connector: Arc::new(TcpConnector),
                store: None,
            };
            let handle = Server::start(config.clone(), seams).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(http::serve(
                listener,
                handle.clone(),
                HttpConfig::from_server(&config),
                std::future::pending(),
            ));
            tokio::spawn(server::pipeline::run(handle.clone()));
            apis.push((handle, addr));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let leader = loop {
            let seen: Vec<Option<u64>> =
                apis.iter().map(|(h, _)| h.leader().map(|m| m.id)).collect();
            if let Some(Some(id)) = seen.first() {
                if seen.iter().all(|l| *l == Some(*id)) {
                    break *id;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no agreed leader: {seen:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let (handle, addr) =
            apis.iter().find(|(h, _)| servers == 1 || h.id() != leader).unwrap().clone();
        for i in 1..=nodes {
            handle.write(Command::NodeRegister { node: Box::new(fake_node(i)) }).await.unwrap();
        }
        (addr, handle)
    });
    Cluster { addr, handle, runtime }
}

impl Cluster {
    /// Makes the fake nodes behave like agents from now on: pending allocations start running,
    /// stopped ones complete.
    pub fn fake_agents(&self) {
        let handle = self.handle.clone();
        self.runtime.spawn(async move {
            loop {
                let updates = handle
                    .read(server::Consistency::Stale, |s| {
                        s.allocs()
                            .filter_map(|a| {
                                let status = match (a.desired_status, a.client_status) {
                                    (DesiredStatus::Run, ClientStatus::Pending) => {
                                        ClientStatus::Running
                                    }
                                    (DesiredStatus::Stop, ClientStatus::Pending)
                                    | (DesiredStatus::Stop, ClientStatus::Running) => {
                                        ClientStatus::Complete
                                    }
                                    _ => return None,
                                };
                                Some(AllocClientUpdate {
                                    alloc_id: a.id.clone(),
                                    client_status: status,
                                    ..Default::default()
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_default();
                if !updates.is_empty() {
                    let _ =
                        handle.write(Command::AllocClientUpdate { updates, evals: vec![] }).await;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
    }

    /// The HTTP API's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn orc(&self, args: &[&str]) -> Output {
        orc_in(&repo(), args, &[("ORC_ADDR", &self.addr), ("NOMAD_ADDR", "http://127.0.0.1:9")])
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.orc(args);
        assert!(out.status.success(), "orc {args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    }
}

/// Masks what changes from run to run: UUIDs and their 8-character short forms, timestamps,
/// ages, five-digit ports and which of the identical nodes was picked. Masks keep their width so tables stay aligned.
fn mask(text: &str) -> String {
    let uuid =
        regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let short = regex::Regex::new(r"\b[0-9a-f]{8}\b").unwrap();
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").unwrap();
    let age = regex::Regex::new(r"\b\d+s ago").unwrap();
    let port = regex::Regex::new(r"\b\d{5}\b").unwrap();
    // Two identical nodes: which one the seeded shuffle picks depends on the random eval ID.
    let host = regex::Regex::new(r"jail-host-\d").unwrap();
    let text = uuid.replace_all(text, "<uuid>");
    let text = short.replace_all(&text, "<id---->");
    let text = time.replace_all(&text, "<time-------------->");
    let text = age.replace_all(&text, "Ns ago");
    let text = host.replace_all(&text, "jail-host-N");
    port.replace_all(&text, "<prt>").into_owned()
}

fn check(actual: &str, expect: Expect) {
    expect.assert_eq(&mask(actual));
}

#[test]
fn nginx_walkthrough_like_the_seed() {
    let c = start(2);

    // Planning a new job: everything is added, one allocation would be placed.
    let plan = c.orc(&["plan", "examples/nginx.job"]);
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    check(
        stdout(&plan).split("\nJob Modify Index").next().unwrap(),
        expect![[r#"
            + Job: "nginx-minipot"
            + Task Group: "group1" (1 create)
              + Task: "www1" (forces create)

            Scheduler dry-run:
            - All tasks successfully allocated.
        "#]],
    );

    // `orc run` parses locally, submits, and follows the evaluation to its placements.
    check(
        &c.ok(&["run", "examples/nginx.job"]),
        expect![[r#"
            ==> <time-------------->: Monitoring evaluation "<id---->"
                <time-------------->: Evaluation triggered by job "nginx-minipot"
                <time-------------->: Allocation "<id---->" created: node "<id---->", group "group1"
                <time-------------->: Evaluation status changed: "pending" -> "complete"
            ==> <time-------------->: Evaluation "<id---->" finished with status "complete"
        "#]],
    );

    check(
        &c.ok(&["job", "status"]),
        expect![[r#"
            ID             Type     Priority  Status   Submit Date
            nginx-minipot  service  50        running  <time-------------->
        "#]],
    );
    check(
        &c.ok(&["job", "status", "nginx"]),
        expect![[r#"
            ID            = nginx-minipot
            Name          = nginx-minipot
            Submit Date   = <time-------------->
            Type          = service
            Priority      = 50
            Datacenters   = minipot
            Namespace     = default
            Node Pool     = default
            Status        = running
            Periodic      = false
            Parameterized = false

            Summary
            Task Group  Queued  Starting  Running  Failed  Complete  Lost  Unknown
            group1      0       1         0        0       0         0     0

            Allocations
            ID        Node ID   Task Group  Version  Desired  Status   Created  Modified
            <id---->  <id---->  group1      0        run      pending  Ns ago   Ns ago
        "#]],
    );
    check(
        &c.ok(&["job", "allocs", "nginx-minipot"]),
        expect![[r#"
            ID        Node ID   Task Group  Version  Desired  Status   Created  Modified
            <id---->  <id---->  group1      0        run      pending  Ns ago   Ns ago
        "#]],
    );

    // A short prefix of the allocation ID is enough, as in Nomad.
    let allocs: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "allocs", "-json", "nginx-minipot"])).unwrap();
    let alloc_id = allocs[0]["ID"].as_str().unwrap().to_owned();
    check(
        &c.ok(&["alloc", "status", &alloc_id[..5]]),
        expect![[r#"
            ID                  = <id---->
            Eval ID             = <id---->
            Name                = nginx-minipot.group1[0]
            Node ID             = <id---->
            Node Name           = jail-host-N
            Job ID              = nginx-minipot
            Job Version         = 0
            Client Status       = pending
            Client Description  = <none>
            Desired Status      = run
            Desired Description = <none>
            Created             = Ns ago
            Modified            = Ns ago

            Allocation Addresses:
            http: <prt>

            Task "www1" is "pending"
            Task Resources:
            CPU      Memory
            200 MHz  64 MiB

            Recent Events:
            Time  Type  Description
        "#]],
    );
    let verbose = c.ok(&["alloc", "status", "-verbose", &alloc_id[..5]]);
    assert!(verbose.contains(&alloc_id), "-verbose shows full IDs: {verbose}");

    // Scale up, then plan the original file: the diff and what would stop.
    check(
        &c.ok(&["job", "scale", "nginx-minipot", "group1", "3"]),
        expect![[r#"
            ==> <time-------------->: Monitoring evaluation "<id---->"
                <time-------------->: Evaluation triggered by job "nginx-minipot"
                <time-------------->: Allocation "<id---->" modified: node "<id---->", group "group1"
                <time-------------->: Allocation "<id---->" created: node "<id---->", group "group1"
                <time-------------->: Allocation "<id---->" created: node "<id---->", group "group1"
                <time-------------->: Evaluation status changed: "pending" -> "complete"
            ==> <time-------------->: Evaluation "<id---->" finished with status "complete"
        "#]],
    );
    let plan = c.orc(&["plan", "examples/nginx.job"]);
    assert_eq!(plan.status.code(), Some(1), "plan exits 1 when allocations change");
    check(
        &stdout(&plan),
        expect![[r#"
            +/- Job: "nginx-minipot"
            +/- Task Group: "group1" (2 destroy, 1 in-place update)
              +/- Count: "3" => "1" (forces destroy)
              Task: "www1"

            Scheduler dry-run:
            - All tasks successfully allocated.

            Job Modify Index: 6
            To submit the job with version verification run:

            orc job run -check-index 6 examples/nginx.job

            When running the job with the check-index flag, the job will only be run if the
            job modify index given matches the server-side version. If the index has
            changed, another user has modified the job and the plan's results are
            potentially invalid.
        "#]],
    );
    check(
        &c.ok(&["job", "history", "nginx-minipot"]),
        expect![[r#"
            Version     = 1
            Stable      = false
            Submit Date = <time-------------->

            Version     = 0
            Stable      = false
            Submit Date = <time-------------->
        "#]],
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "inspect", "nginx-minipot"])).unwrap();
    assert_eq!(inspect["Job"]["TaskGroups"][0]["Count"], 3);

    // A stale check-index is refused.
    let stale = c.orc(&["run", "-check-index", "1", "examples/nginx.job"]);
    assert_eq!(stale.status.code(), Some(1));
    assert!(stderr(&stale).contains("Unexpected response code: 409"), "{}", stderr(&stale));

    // Evaluations by prefix.
    let evals = c.ok(&["eval", "status", "-json", &allocs[0]["EvalID"].as_str().unwrap()[..6]]);
    assert!(evals.contains("\"TriggeredBy\": \"job-register\""), "{evals}");

    // Nodes and servers.
    check(
        &c.ok(&["node", "status"]),
        expect![[r#"
            ID        Node Pool  DC       Name         Class   Drain  Eligibility  Status
            <id---->  default    minipot  jail-host-N  <none>  false  eligible     ready
            <id---->  default    minipot  jail-host-N  <none>  false  eligible     ready
        "#]],
    );
    let node = fake_node(2).id;
    assert_eq!(
        c.ok(&["node", "eligibility", "-disable", &node[..4]]),
        format!("Node \"{node}\" scheduling eligibility set: ineligible for scheduling\n")
    );
    assert_eq!(
        c.ok(&["node", "drain", "-enable", "-force", "-yes", "-detach", &node[..4]]),
        format!("Node \"{node}\" drain strategy set\n")
    );
    // Forced: the drain ends as soon as the drainer has marked everything.
    assert!(c.ok(&["node", "status", &node[..4]]).contains("Eligibility = ineligible"));
    assert_eq!(
        c.ok(&["node", "drain", "-disable", &node[..4]]),
        format!("Node \"{node}\" drain strategy unset\n")
    );
    check(
        &c.ok(&["server", "members"]),
        expect![[r#"
            Name            Address    Port   Status  Leader  Raft Version  Build  Datacenter  Region
            orc-dev.global  127.0.0.1  <prt>  alive   true    3             0.1.0  dc1         global
        "#]],
    );
    let peers = c.ok(&["operator", "raft", "list-peers"]);
    assert!(peers.starts_with("Node ") && peers.contains("leader  true   3"), "{peers}");

    // Stop keeps the job as dead; -purge removes it.
    let stop = c.ok(&["stop", "nginx-minipot"]);
    assert!(stop.contains("finished with status \"complete\""), "{stop}");
    let status = c.ok(&["job", "status", "nginx-minipot"]);
    assert!(status.contains("Status        = dead (stopped)"), "{status}");
    c.ok(&["stop", "-purge", "-detach", "nginx-minipot"]);
    assert_eq!(c.ok(&["job", "status"]), "No running jobs\n");
}

#[test]
fn placement_failures_show_the_schedulers_reasons_and_exit_2() {
    let c = start(1);
    let dir = tempfile::tempdir().unwrap();
    let job = std::fs::read_to_string(repo().join("examples/nginx.job"))
        .unwrap()
        .replace("memory = 64", "memory = 100000");
    std::fs::write(dir.path().join("big.job"), job).unwrap();
    let path = dir.path().join("big.job");
    let out = c.orc(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    check(
        &stdout(&out),
        expect![[r#"
            ==> <time-------------->: Monitoring evaluation "<id---->"
                <time-------------->: Evaluation triggered by job "nginx-minipot"
                <time-------------->: Evaluation status changed: "pending" -> "complete"
            ==> <time-------------->: Evaluation "<id---->" finished with status "complete" but failed to place all allocations:
                Task Group "group1" (failed to place 1 allocation):
                  * Resources exhausted on 1 nodes
                  * Dimension "memory" exhausted on 1 nodes
                <time-------------->: Evaluation "<id---->" waiting for additional capacity to place remainder
        "#]],
    );
    let evals: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "status", "-json", "nginx-minipot"])).unwrap();
    let eval_id = evals["Allocations"].as_array().map_or(0, |a| a.len());
    assert_eq!(eval_id, 0, "nothing was placed");
    let list = c.ok(&["job", "status", "nginx-minipot"]);
    assert!(list.ends_with("Allocations\nNo allocations placed\n"), "{list}");
    let out = c.orc(&["plan", path.to_str().unwrap()]);
    check(
        stdout(&out).split("\nJob Modify Index").next().unwrap(),
        expect![[r#"
            Job: "nginx-minipot"
            Task Group: "group1" (1 create)
              Task: "www1"

            Scheduler dry-run:
            - WARNING: Failed to place all allocations.
              Task Group "group1" (failed to place 1 allocation):
                * Resources exhausted on 1 nodes
                * Dimension "memory" exhausted on 1 nodes
        "#]],
    );
    let detached = c.ok(&["run", "-detach", path.to_str().unwrap()]);
    assert!(detached.starts_with("Job registration successful\nEvaluation ID: "), "{detached}");
    let eval_id = detached.trim_end().rsplit(' ').next().unwrap().to_owned();
    // `-detach` returns before the leader has processed the evaluation; the snapshot is of the
    // finished evaluation, so wait for it to leave "pending" first.
    let mut status = String::new();
    for _ in 0..200 {
        status = c.ok(&["eval", "status", &eval_id[..6]]);
        if !status.contains("Status             = pending") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check(
        &status,
        expect![[r#"
            ID                 = <id---->
            Create Time        = Ns ago
            Modify Time        = Ns ago
            Status             = complete
            Status Description = <none>
            Type               = service
            TriggeredBy        = job-register
            Job ID             = nginx-minipot
            Namespace          = default
            Priority           = 50
            Placement Failures = true

            ==> Failed Placements
            Task Group "group1" (failed to place 1 allocation):
              * Resources exhausted on 1 nodes
              * Dimension "memory" exhausted on 1 nodes

            Evaluation "<id---->" waiting for additional capacity to place remainder

            Related Evaluations
            ID        Priority  Triggered By   Node ID  Status    Description
            <id---->  50        job-register            complete
            <id---->  50        queued-allocs           canceled  superseded by evaluation <uuid>
            <id---->  50        queued-allocs           blocked
        "#]],
    );
}

#[test]
fn no_server_says_which_address_was_tried() {
    let out =
        orc_in(&repo(), &["job", "status"], &[("ORC_ADDR", ""), ("NOMAD_ADDR", "127.0.0.1:9")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("Error: Error querying jobs: no server answered at http://127.0.0.1:9: "),
        "{}",
        stderr(&out)
    );
    let out = orc_in(&repo(), &["node", "status", "-address", "127.0.0.1:9"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("http://127.0.0.1:9"), "{}", stderr(&out));
    let out = orc_in(&repo(), &["completion", "bash"], &[]);
    assert!(out.status.success() && stdout(&out).contains("_orc()"), "{}", stderr(&out));
}

/// A real `orc agent -dev` process serves the API: the CLI submits to it and reads back, and it
/// stops on SIGTERM.
#[test]
fn orc_agent_dev_serves_the_api_in_a_real_process() {
    let (http, rpc) = (testkit::free_port(), testkit::free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.hcl");
    std::fs::write(
        &config,
        format!("name = \"dev1\"\nports {{\n  http = {http}\n  rpc  = {rpc}\n}}\n"),
    )
    .unwrap();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_orc"))
        .args(["agent", "-dev", "-config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = format!("http://127.0.0.1:{http}");
    let env = [("ORC_ADDR", addr.as_str())];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let out = orc_in(&repo(), &["operator", "raft", "list-peers"], &env);
        if out.status.success() && stdout(&out).contains("leader") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no leader: {}", stderr(&out));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = orc_in(&repo(), &["run", "-detach", "examples/nginx.job"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Job registration successful\n"), "{}", stdout(&out));
    let out = orc_in(&repo(), &["job", "status"], &env);
    assert!(stdout(&out).contains("nginx-minipot  service  50  "), "{}", stdout(&out));
    // Whether the dev agent also runs a client (and so lists a node) is the agent's business.
    let out = orc_in(&repo(), &["node", "status"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let members = orc_in(&repo(), &["server", "members"], &env);
    assert!(stdout(&members).contains("dev1.global"), "{}", stdout(&members));

    let kill = std::process::Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    assert!(kill.unwrap().success());
    let status = agent.wait().unwrap();
    assert!(status.success(), "the agent exits cleanly on SIGTERM: {status:?}");
}

#[test]
fn node_drain_monitors_the_migration_until_it_completes() {
    let c = start(2);
    c.ok(&["run", "-detach", "examples/nginx.job"]);
    c.fake_agents();
    let alloc = loop {
        let allocs: serde_json::Value =
            serde_json::from_str(&c.ok(&["job", "allocs", "-json", "nginx-minipot"])).unwrap();
        if allocs[0]["ClientStatus"] == "running" {
            break allocs[0].clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let node = alloc["NodeID"].as_str().unwrap().to_owned();
    let out = c.ok(&["node", "drain", "-enable", "-deadline", "1h", &node[..6]]);
    let out = out.replace(&node, "<node>");
    // Whether the allocation completes before the monitor sees that nothing is left to mark
    // depends on timing, as in Nomad, so that line is checked apart.
    let all_marked = "Node \"<node>\" has marked all allocations for migration";
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.ends_with(all_marked)).expect(&out);
    let done = lines.iter().position(|l| l.ends_with("drain complete")).expect(&out);
    assert!(at < done, "{out}");
    let rest: Vec<&str> = lines.iter().copied().filter(|l| !l.ends_with(all_marked)).collect();
    check(
        &format!("{}\n", rest.join("\n")),
        expect![[r#"
            <time-------------->: Ctrl-C to stop monitoring: will not cancel the node drain
            <time-------------->: Node "<node>" drain strategy set
            <time-------------->: Alloc "<id---->" marked for migration
            <time-------------->: Alloc "<id---->" draining
            <time-------------->: Alloc "<id---->" status running -> complete
            <time-------------->: Node "<node>" drain complete
            <time-------------->: All allocations on node "<node>" have stopped
        "#]],
    );
    let status = c.ok(&["node", "status", &node[..6]]);
    assert!(status.contains("Drain       = false"), "{status}");
    assert!(status.contains("Eligibility = ineligible"), "{status}");
    let allocs: serde_json::Value =
        serde_json::from_str(&c.ok(&["job", "allocs", "-json", "nginx-minipot"])).unwrap();
    let moved = allocs.as_array().unwrap().iter().find(|a| a["DesiredStatus"] == "run").unwrap();
    assert_ne!(moved["NodeID"], node.as_str(), "the allocation moved to the other node");
    assert_eq!(moved["PreviousAllocation"], alloc["ID"]);
}

#[test]
fn plan_prints_nested_changes_like_nomad() {
    let c = start(2);
    c.ok(&["run", "-detach", "examples/nginx.job"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.job");
    let edited = std::fs::read_to_string(repo().join("examples/nginx.job"))
        .unwrap()
        .replace("tag = \"1.1.13\"", "tag = \"1.2.0\"")
        .replace("tags = [\"nginx\", \"www\"]", "tags = [\"nginx\", \"web\"]")
        .replace("memory = 64", "memory = 128")
        .replace("  type = \"service\"", "  type = \"service\"\n  meta {\n    team = \"web\"\n  }");
    std::fs::write(&path, edited).unwrap();
    let plan = c.orc(&["plan", path.to_str().unwrap()]);
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    check(
        stdout(&plan).split("\nJob Modify Index").next().unwrap(),
        expect![[r#"
            +/- Job: "nginx-minipot"
            + Meta[team]: "web"
            +/- Task Group: "group1" (1 create/destroy update)
              +/- Task: "www1" (forces create/destroy update)
                +/- Config {
                  +/- tag: "1.1.13" => "1.2.0"
                }
                +/- Resources {
                  +/- MemoryMB: "64" => "128"
                }
                +/- Service {
                  +/- Tags {
                    - Tags: "www"
                    + Tags: "web"
                  }
                }

            Scheduler dry-run:
            - All tasks successfully allocated.
        "#]],
    );
}
