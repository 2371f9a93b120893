//! Three real server processes on loopback, driven through the HTTP API: writes through a
//! follower, SIGKILL of the leader, no acknowledged write lost, the killed server restarted from
//! its data directory catches up, a dead peer is removed, and a minority refuses writes with a
//! clear error rather than hanging.
//!
//! The processes are this test binary re-executed with `ORC_SERVER_CHILD` set; each child runs
//! `server::server::run_until` (what `orc agent` runs) until it is killed.

use super::http::nginx_job;
use serde_json::Value;
use server::Config;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "ORC_SERVER_CHILD";
const TEST_NAME: &str = "processes::three_server_processes_survive_sigkill_of_the_leader";

/// What a child needs: `data_dir|rpc_port|http_port|join1,join2,...`.
fn child_spec(data_dir: &std::path::Path, rpc: u16, http: u16, join: &[String]) -> String {
    format!("{}|{rpc}|{http}|{}", data_dir.display(), join.join(","))
}

async fn run_child(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let mut config = Config {
        data_dir: Some(parts[0].into()),
        bind_addr: "127.0.0.1".into(),
        raft: super::harness::fast_raft(),
        request_timeout: Duration::from_secs(4),
        ..Config::default()
    };
    config.ports.rpc = parts[1].parse().unwrap();
    config.ports.http = parts[2].parse().unwrap();
    config.server.enabled = true;
    config.server.bootstrap_expect = 3;
    config.server.server_join.retry_join = parts[3].split(',').map(str::to_owned).collect();
    config.server.server_join.retry_interval = Duration::from_millis(100);
    server::server::run_until(config, std::future::pending()).await.unwrap();
}

/// Children are killed when the test ends, however it ends.
struct Procs(Vec<Option<Child>>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One HTTP request; `None` while the server is not listening (starting, or killed).
async fn call(method: &str, url: String, body: Option<Vec<u8>>) -> Option<(u16, String)> {
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let result = match (method.as_str(), body) {
            ("PUT", Some(b)) => agent.put(&url).send(&b[..]),
            ("DELETE", _) => agent.delete(&url).call(),
            _ => agent.get(&url).call(),
        };
        let mut resp = result.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.body_mut().read_to_string().ok()?))
    })
    .await
    .unwrap()
}

/// A free loopback port for a process this test starts (see `testkit::free_port`).
fn free_port() -> u16 {
    testkit::free_port()
}

async fn get(http: u16, path: &str) -> Option<Value> {
    let (status, body) = call("GET", format!("http://127.0.0.1:{http}{path}"), None).await?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

async fn register(http: u16, id: &str) -> (u16, String) {
    let mut body = nginx_job();
    body["Job"]["ID"] = Value::from(id);
    body["Job"]["Name"] = Value::from(id);
    let url = format!("http://127.0.0.1:{http}/v1/jobs");
    call("PUT", url, Some(body.to_string().into_bytes()))
        .await
        .unwrap_or((0, "connection refused".into()))
}

async fn job_ids(http: u16) -> Option<Vec<String>> {
    let jobs = get(http, "/v1/jobs?stale").await?;
    let mut ids: Vec<String> =
        jobs.as_array()?.iter().filter_map(|j| j["ID"].as_str().map(str::to_owned)).collect();
    ids.sort();
    Some(ids)
}

/// The RPC address every listed server agrees is the leader.
async fn agreed_leader(https: &[u16]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen = Vec::new();
        for h in https {
            seen.push(
                get(*h, "/v1/status/leader").await.and_then(|v| v.as_str().map(str::to_owned)),
            );
        }
        if let Some(Some(first)) = seen.first() {
            if !first.is_empty() && seen.iter().all(|s| s.as_deref() == Some(first)) {
                return first.clone();
            }
        }
        assert!(Instant::now() < deadline, "servers do not agree on a leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_server_processes_survive_sigkill_of_the_leader() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return run_child(&spec).await;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let rpc: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let join: Vec<String> = rpc.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let specs: Vec<String> = (0..3)
        .map(|i| child_spec(&dir.path().join(format!("s{i}")), rpc[i], http[i], &join))
        .collect();
    let mut procs = Procs(specs.iter().map(|s| Some(spawn(s))).collect());

    let leader_addr = agreed_leader(&http).await;
    let leader = join.iter().position(|a| *a == leader_addr).expect("leader is one of ours");
    let follower = (leader + 1) % 3;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        let (status, body) = register(http[follower], &id).await;
        assert_eq!(status, 200, "write through a follower: {body}");
        acknowledged.push(id);
    }

    // SIGKILL the leader mid-life; the survivors elect a new one that accepts writes.
    let mut killed = procs.0[leader].take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in 0..10 {
        let id = format!("after-{i}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = register(http[survivors[0]], &id).await;
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "no new leader accepted {id}: {status} {body}");
        }
        acknowledged.push(id);
    }
    acknowledged.sort();
    for s in &survivors {
        let deadline = Instant::now() + Duration::from_secs(10);
        while job_ids(http[*s]).await.as_ref() != Some(&acknowledged) {
            assert!(Instant::now() < deadline, "server {s} lacks acknowledged writes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The killed server restarts from its own data directory and catches up.
    procs.0[leader] = Some(spawn(&specs[leader]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_ids(http[leader]).await.as_ref() != Some(&acknowledged) {
        assert!(Instant::now() < deadline, "restarted server did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kill a server that does not lead, and remove it from the configuration.
    let current = agreed_leader(&http).await;
    let dead = (0..3).find(|i| join[*i] != current).unwrap();
    let mut victim = procs.0[dead].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    let live: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let url =
        format!("http://127.0.0.1:{}/v1/operator/raft/peer?address={}", http[live[0]], join[dead]);
    let (status, body) = call("DELETE", url, None).await.expect("server answers");
    assert_eq!(status, 200, "remove-peer: {body}");
    let config = get(http[live[1]], "/v1/operator/raft/configuration?stale").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut servers = config["Servers"].as_array().unwrap().len();
    while servers != 2 {
        assert!(Instant::now() < deadline, "peer not removed: {config}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        servers = get(http[live[1]], "/v1/operator/raft/configuration?stale").await.unwrap()
            ["Servers"]
            .as_array()
            .unwrap()
            .len();
    }

    // Of the two remaining, kill one: the last is a minority and must refuse, not hang.
    let mut second = procs.0[live[0]].take().unwrap();
    second.kill().unwrap();
    second.wait().unwrap();
    let started = Instant::now();
    let (status, body) = register(http[live[1]], "in-minority").await;
    let waited = started.elapsed();
    assert_ne!(status, 200, "a minority must not acknowledge a write");
    assert!(
        body.contains("no quorum") || body.contains("no cluster leader"),
        "unclear error: {status} {body}"
    );
    assert!(waited < Duration::from_secs(10), "refusal took {waited:?}");
}
