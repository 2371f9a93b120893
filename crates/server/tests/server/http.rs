//! The HTTP API through real requests: a dev server with the scheduling pipeline, fake nodes
//! written straight into the state (there is no agent here), and HTTP on a loopback port.

use super::harness::{fast_raft, Cluster};
use model::{DriverInfo, Node, NodeStatus};
use serde_json::{json, Value};
use server::http::{self, HttpConfig};
use server::state::Command;
use server::transport::TcpConnector;
use server::{Config, Seams, Server, ServerHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Api {
    pub handle: ServerHandle,
    pub base: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A node with the `pot` driver in datacenter `dc`.
pub fn fake_node(id: &str, dc: &str) -> Node {
    let mut n = Node {
        id: id.into(),
        name: format!("host-{}", &id[..8.min(id.len())]),
        datacenter: dc.into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        ..Node::default()
    };
    n.node_resources.cpu.cpu_shares = 4000;
    n.node_resources.memory.memory_mb = 8192;
    n.node_resources.disk.disk_mb = 100_000;
    n.node_resources.min_dynamic_port = 20000;
    n.node_resources.max_dynamic_port = 32000;
    n.attributes.insert("kernel.name".into(), "freebsd".into());
    n.attributes.insert("os.name".into(), "freebsd".into());
    n.attributes.insert("unique.network.ip-address".into(), "10.0.0.1".into());
    n.drivers
        .insert("pot".into(), DriverInfo { detected: true, healthy: true, ..Default::default() });
    n
}

/// Starts a dev server, its pipeline and its HTTP API, with `nodes` fake nodes in `dc`.
pub async fn start_api(nodes: usize, dc: &str) -> Api {
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc.local_addr().unwrap().to_string();
    let mut config = Config { raft: fast_raft(), name: "orc-test".into(), ..Config::default() };
    config.server.enabled = true;
    let seams = Seams {
        rpc_listener: Box::new(rpc),
        rpc_advertise: addr,
        connector: Arc::new(TcpConnector),
        store: None,
    };
    let handle = Server::start(config.clone(), seams).await.unwrap();
    for i in 0..nodes {
        let id = format!("{i:08x}-0000-4000-8000-{i:012x}");
        handle.write(Command::NodeRegister { node: Box::new(fake_node(&id, dc)) }).await.unwrap();
    }
    serve_api(handle, &config).await
}

/// Serves the HTTP API of `handle` on a fresh loopback port and runs its scheduling pipeline
/// (which only acts while the server leads).
pub async fn serve_api(handle: ServerHandle, config: &Config) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(http::serve(
        listener,
        handle.clone(),
        HttpConfig { max_body_bytes: 1 << 20, ..HttpConfig::from_server(config) },
        std::future::pending(),
    ));
    let serve = tokio::spawn(async move {
        serve.await.unwrap().unwrap();
    });
    let pipeline = tokio::spawn(server::pipeline::run(handle.clone()));
    Api { handle, base, tasks: vec![serve, pipeline] }
}

/// A reply as the tests look at it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn index(&self) -> u64 {
        self.header("X-Nomad-Index").expect("X-Nomad-Index on every reply").parse().unwrap()
    }
}

/// Sends a request from a blocking thread (ureq is blocking).
pub async fn call(method: &str, url: String, body: Option<Vec<u8>>) -> Resp {
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let result = match (method.as_str(), body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("PUT", Some(b)) => agent.put(&url).send(&b[..]),
            ("POST", Some(b)) => agent.post(&url).send(&b[..]),
            ("POST", None) => agent.post(&url).send_empty(),
            (m, _) => panic!("unsupported {m}"),
        };
        let mut resp = result.unwrap();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let status = resp.status().as_u16();
        let body = resp.body_mut().with_config().limit(1 << 30).read_to_string().unwrap();
        Resp { status, headers, body }
    })
    .await
    .unwrap()
}

impl Api {
    pub async fn get(&self, path: &str) -> Resp {
        call("GET", format!("{}{path}", self.base), None).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        call("PUT", format!("{}{path}", self.base), Some(body.to_string().into_bytes())).await
    }
    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        call("POST", format!("{}{path}", self.base), Some(body.to_vec())).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        call("DELETE", format!("{}{path}", self.base), None).await
    }

    /// Waits until `pred` holds for `GET path`, or fails after 10 s.
    pub async fn until(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(path).await;
            if r.status == 200 && pred(&r.json()) {
                return r.json();
            }
            assert!(Instant::now() < deadline, "timed out waiting on {path}: {}", r.body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The seed example as the API's JSON (what `orc job run -output` prints).
pub fn nginx_job() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/nginx.job");
    let job = jobspec::parse_file(std::path::Path::new(path), &Default::default()).unwrap();
    json!({ "Job": job })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_lifecycle_through_the_api() {
    let api = start_api(2, "minipot").await;

    // Register: the evaluation is returned and the pipeline places the allocation.
    let r = api.put("/v1/jobs", &nginx_job()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reg = r.json();
    let eval_id = reg["EvalID"].as_str().unwrap().to_owned();
    assert_eq!(reg["Warnings"], "");
    assert!(reg["JobModifyIndex"].as_u64().unwrap() > 0);
    assert_eq!(r.index(), reg["Index"].as_u64().unwrap());
    assert_eq!(r.header("X-Nomad-KnownLeader"), Some("true"));
    assert!(r.header("X-Nomad-LastContact").is_some());

    let eval = api
        .until(&format!("/v1/evaluation/{eval_id}?related=true"), |e| e["Status"] == "complete")
        .await;
    assert_eq!(eval["TriggeredBy"], "job-register");
    assert_eq!(eval["RelatedEvals"], json!([]));
    let allocs = api.get(&format!("/v1/evaluation/{eval_id}/allocations")).await.json();
    assert_eq!(allocs.as_array().unwrap().len(), 1);
    assert_eq!(allocs[0]["Name"], "nginx-minipot.group1[0]");
    assert_eq!(allocs[0]["JobType"], "service");
    assert_eq!(allocs[0]["ClientStatus"], "pending");

    // Lists with prefix and filter; reads.
    let jobs = api.get("/v1/jobs?prefix=nginx").await.json();
    assert_eq!(jobs[0]["ID"], "nginx-minipot");
    assert_eq!(jobs[0]["JobSummary"]["Summary"]["group1"]["Starting"], 1);
    assert_eq!(api.get("/v1/jobs?prefix=zzz").await.json(), json!([]));
    let filtered = api.get("/v1/jobs?filter=Type%20%3D%3D%20%22batch%22").await.json();
    assert_eq!(filtered, json!([]));
    let job = api.get("/v1/job/nginx-minipot").await.json();
    assert_eq!(job["TaskGroups"][0]["Count"], 1);
    assert_eq!(job["TaskGroups"][0]["Tasks"][0]["KillTimeout"], 5_000_000_000u64);
    let alloc_id = allocs[0]["ID"].as_str().unwrap();
    let alloc = api.get(&format!("/v1/allocation/{alloc_id}")).await.json();
    assert_eq!(alloc["Job"]["ID"], "nginx-minipot");
    let prefix = &alloc_id[..4];
    let listed = api.get(&format!("/v1/allocations?prefix={prefix}")).await.json();
    assert_eq!(listed[0]["ID"], alloc_id);
    let node_allocs =
        api.get(&format!("/v1/node/{}/allocations", alloc["NodeID"].as_str().unwrap())).await;
    assert_eq!(node_allocs.json()[0]["ID"], alloc_id);

    // Check-and-set: JobModifyIndex 0 means "only if new".
    let mut again = nginx_job();
    again["EnforceIndex"] = json!(true);
    again["JobModifyIndex"] = json!(0);
    let r = api.put("/v1/jobs", &again).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body, "Enforcing job modify index 0: job already exists");

    // Scale up: a new version, a job-scaling evaluation, a second allocation.
    let r = api
        .put("/v1/job/nginx-minipot/scale", &json!({"Count": 3, "Target": {"Group": "group1"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.until("/v1/job/nginx-minipot/allocations", |a| a.as_array().unwrap().len() == 3).await;
    let scale = api.get("/v1/job/nginx-minipot/scale").await.json();
    assert_eq!(scale["TaskGroups"]["group1"]["Desired"], 3);
    assert_eq!(scale["TaskGroups"]["group1"]["Placed"], 3);
    let versions = api.get("/v1/job/nginx-minipot/versions").await.json();
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 2);
    let evals = api.get("/v1/job/nginx-minipot/evaluations").await.json();
    assert_eq!(evals.as_array().unwrap().len(), 2);
    // Paging: two per page, then the rest from the token.
    let first = api.get("/v1/allocations?per_page=2").await;
    assert_eq!(first.json().as_array().unwrap().len(), 2);
    let token = first.header("X-Nomad-NextToken").expect("a next page").to_owned();
    let rest = api.get(&format!("/v1/allocations?per_page=2&next_token={token}")).await;
    assert_eq!(rest.json().as_array().unwrap().len(), 1);
    assert_eq!(rest.json()[0]["ID"], token.as_str());
    assert!(rest.header("X-Nomad-NextToken").is_none());
    let summary = api.get("/v1/job/nginx-minipot/summary").await.json();
    assert_eq!(summary["Summary"]["group1"]["Starting"], 3);

    // Stopping one allocation replaces it.
    let r = api.post_raw(&format!("/v1/allocation/{alloc_id}/stop"), b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.until(&format!("/v1/allocation/{alloc_id}"), |a| a["DesiredStatus"] == "stop").await;
    api.until("/v1/job/nginx-minipot/allocations", |a| {
        a.as_array().unwrap().iter().filter(|a| a["DesiredStatus"] == "run").count() == 3
    })
    .await;

    // Stop, then purge.
    let r = api.delete("/v1/job/nginx-minipot").await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.until("/v1/job/nginx-minipot/allocations", |a| {
        a.as_array().unwrap().iter().all(|a| a["DesiredStatus"] == "stop")
    })
    .await;
    assert_eq!(api.get("/v1/job/nginx-minipot").await.json()["Stop"], true);
    let r = api.delete("/v1/job/nginx-minipot?purge=true").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.get("/v1/job/nginx-minipot").await;
    assert_eq!((r.status, r.body.as_str()), (404, "job not found"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert!(r.index() > 0, "errors carry X-Nomad-Index too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_bodies_and_bad_requests() {
    let api = start_api(1, "dc1").await;

    let r = api.post_raw("/v1/jobs", b"{\n  \"Job\": {\n    \"ID\": \"x\",\n  ]\n}").await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.starts_with("invalid JSON: ") && r.body.contains("line 4 column 3"),
        "{}",
        r.body
    );

    let r = api.post_raw("/v1/jobs", b"").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Request body is empty"));

    let r = api.post_raw("/v1/jobs", br#"{"Job": {"ID": 7}}"#).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("expected a string") && r.body.contains("line 1"), "{}", r.body);

    let big = vec![b' '; (1 << 20) + 10];
    let r = api.post_raw("/v1/jobs", &big).await;
    assert_eq!(r.status, 413, "{}", r.body);

    let r = api.post_raw("/v1/jobs", br#"{"Job": {"ID": "bad job", "TaskGroups": []}}"#).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "2 error(s) occurred:\n\n* Job ID contains a space or control character\n* Missing job task groups"
    );

    // Go-style lenient keys: lower case, nulls, unknown fields reported, Count defaulting to 1.
    let body = json!({"job": {"id": "lenient", "type": "batch", "Colour": "blue", "Constraints": null,
        "TaskGroups": [{"Name": "g", "Tasks": [{"Name": "t", "Driver": "raw_exec",
        "Config": {"command": "/bin/true"}}]}]}});
    let r = api.put("/v1/jobs", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["Warnings"], "ignored unknown fields: Job.Colour");
    let job = api.get("/v1/job/lenient?pretty").await;
    assert!(job.body.contains("\n  \"Region\": \"global\""), "pretty output: {}", job.body);
    assert_eq!(job.json()["TaskGroups"][0]["Count"], 1);
    assert_eq!(job.json()["Type"], "batch");

    let r = api.get("/v1/jobs?index=abc").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "invalid value for \"index\": \"abc\" is not an unsigned integer");
    let r = api.get("/v1/jobs?filter=Name%20%3D%3D").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api.delete("/v1/jobs").await;
    assert_eq!((r.status, r.body.as_str()), (405, "Invalid method"));
    let r = api.get("/v1/nope").await;
    assert_eq!((r.status, r.body.as_str()), (404, "Invalid URL path"));
    let r = api.get("/v1/allocation/none").await;
    assert_eq!((r.status, r.body.as_str()), (404, "alloc not found"));
    let r = api.post_raw("/v1/job/other", &serde_json::to_vec(&nginx_job()).unwrap()).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job ID does not match name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_query_returns_on_change_and_not_before_the_wait() {
    let api = start_api(1, "minipot").await;
    let r = api.put("/v1/jobs", &nginx_job()).await;
    assert_eq!(r.status, 200);
    api.until("/v1/job/nginx-minipot/allocations", |a| a.as_array().unwrap().len() == 1).await;
    let index = api.get("/v1/job/nginx-minipot/allocations").await.index();

    // Nothing changes: the query waits for `wait` (plus at most 1/16 jitter).
    let start = Instant::now();
    let r = api.get(&format!("/v1/job/nginx-minipot/allocations?index={index}&wait=300ms")).await;
    let waited = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(waited >= Duration::from_millis(300), "returned early after {waited:?}");
    assert!(waited < Duration::from_millis(300 + 300 / 16 + 200), "took {waited:?}");
    assert_eq!(r.index(), index);

    // A change wakes the watcher within 100 ms.
    let alloc_id = r.json()[0]["ID"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/job/nginx-minipot/allocations?index={index}&wait=10s", api.base);
    let watcher = tokio::spawn(async move {
        let r = call("GET", url, None).await;
        (r, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!watcher.is_finished(), "the watcher returned before anything changed");
    let update = server::state::AllocClientUpdate {
        alloc_id,
        client_status: model::ClientStatus::Running,
        ..Default::default()
    };
    api.handle
        .write(Command::AllocClientUpdate { updates: vec![update], evals: vec![] })
        .await
        .unwrap();
    let changed = Instant::now();
    let (r, returned) = watcher.await.unwrap();
    let latency = returned.saturating_duration_since(changed);
    assert!(latency < Duration::from_millis(100), "watcher woke {latency:?} after the change");
    assert!(r.index() > index);
    assert_eq!(r.json()[0]["ClientStatus"], "running");
}

/// What Traefik's Nomad provider (through the official Go client) sends and reads:
/// `/v1/jobs` then `/v1/job/:id`, with `namespace`, `index`/`wait` in `<ms>ms`, `stale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_provider_contract() {
    let api = start_api(1, "minipot").await;
    let mut job = nginx_job();
    job["Job"]["TaskGroups"][0]["Scaling"] = json!({"Min": 0, "Max": 3, "Enabled": true});
    assert_eq!(api.put("/v1/jobs", &job).await.status, 200);

    let r = api.get("/v1/jobs?namespace=default&region=global&stale=&wait=5000ms").await;
    assert_eq!(r.status, 200);
    assert!(r.index() > 0);
    let jobs = r.json();
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["ID"], "nginx-minipot");

    let r = api
        .get(&format!(
            "/v1/job/nginx-minipot?namespace=default&index={}&wait=50ms",
            r.index() + 1000
        ))
        .await;
    assert_eq!(r.status, 200, "a blocking read that times out is still a 200");
    let j = r.json();
    assert_eq!(j["Namespace"], "default");
    assert_eq!(j["Name"], "nginx-minipot");
    let tg = &j["TaskGroups"][0];
    assert_eq!(tg["Name"], "group1");
    assert_eq!(tg["Count"], 1);
    assert_eq!(tg["Scaling"]["Enabled"], true);
    assert!(tg["Services"].is_array());
    let svc = &tg["Tasks"][0]["Services"][0];
    assert_eq!(svc["Name"], "hello-web");
    assert_eq!(svc["Tags"], json!(["nginx", "www"]));
    assert!(svc.get("TaskName").is_some());
    assert!(r.header("X-Nomad-Index").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_migrates_and_eligibility_and_agent_endpoints() {
    let api = start_api(2, "minipot").await;
    assert_eq!(api.put("/v1/jobs", &nginx_job()).await.status, 200);
    let allocs =
        api.until("/v1/job/nginx-minipot/allocations", |a| a.as_array().unwrap().len() == 1).await;
    let node = allocs[0]["NodeID"].as_str().unwrap().to_owned();
    // Only a running allocation is healthy enough for the drainer to move it before the
    // deadline (count 1, max_parallel 1).
    let running = server::state::AllocClientUpdate {
        alloc_id: allocs[0]["ID"].as_str().unwrap().to_owned(),
        client_status: model::ClientStatus::Running,
        ..Default::default()
    };
    api.handle
        .write(Command::AllocClientUpdate { updates: vec![running], evals: vec![] })
        .await
        .unwrap();

    let r = api
        .put(
            &format!("/v1/node/{node}/drain"),
            &json!({"DrainSpec": {"Deadline": 60_000_000_000u64}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["EvalIDs"], json!([]), "the drainer, not the request, evaluates");
    let n = api.get(&format!("/v1/node/{node}")).await.json();
    assert_eq!(
        (n["Drain"].clone(), n["SchedulingEligibility"].clone()),
        (json!(true), json!("ineligible"))
    );
    let moved = api
        .until("/v1/job/nginx-minipot/allocations", |a| {
            a.as_array()
                .unwrap()
                .iter()
                .any(|a| a["DesiredStatus"] == "run" && a["NodeID"] != node.as_str())
        })
        .await;
    assert_eq!(moved.as_array().unwrap().len(), 2, "the drained allocation was migrated");

    let r =
        api.put(&format!("/v1/node/{node}/eligibility"), &json!({"Eligibility": "eligible"})).await;
    assert_eq!(r.status, 400, "a draining node cannot become eligible: {}", r.body);
    let r = api
        .put(&format!("/v1/node/{node}/drain"), &json!({"DrainSpec": null, "MarkEligible": true}))
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .put(&format!("/v1/node/{node}/eligibility"), &json!({"Eligibility": "ineligible"}))
        .await;
    assert_eq!(r.status, 200);
    let r =
        api.put(&format!("/v1/node/{node}/eligibility"), &json!({"Eligibility": "maybe"})).await;
    assert_eq!(r.status, 400);
    let nodes = api.get("/v1/nodes?os=true").await.json();
    assert_eq!(nodes.as_array().unwrap().len(), 2);
    assert_eq!(nodes[0]["Attributes"]["os.name"], "freebsd");
    assert_eq!(nodes[0]["Address"], "10.0.0.1");

    assert_eq!(api.get("/v1/regions").await.json(), json!(["global"]));
    assert_eq!(api.get("/v1/agent/servers").await.json(), json!([api.handle.addr()]));
    assert_eq!(api.get("/v1/job/nginx-minipot/deployments").await.json(), json!([]));
    assert_eq!(api.get("/v1/job/nginx-minipot/deployment").await.json(), json!(null));
    assert_eq!(api.get("/v1/job/nope/deployments").await.status, 404);
    let leader = api.get("/v1/status/leader").await.json();
    assert_eq!(leader, json!(api.handle.addr()));
    assert_eq!(api.get("/v1/status/peers").await.json(), json!([api.handle.addr()]));
    let members = api.get("/v1/agent/members").await.json();
    assert_eq!(members["Members"][0]["Status"], "alive");
    assert_eq!(members["Members"][0]["Name"], "orc-test.global");
    let me = api.get("/v1/agent/self").await.json();
    assert_eq!(me["member"]["Name"], "orc-test.global");
    let raft = api.get("/v1/operator/raft/configuration").await.json();
    assert_eq!(raft["Servers"][0]["Leader"], true);
    let r = api.delete("/v1/operator/raft/peer?address=10.9.9.9:4647").await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_diff_and_placements() {
    let api = start_api(1, "minipot").await;
    let mut body = nginx_job();
    body["Diff"] = json!(true);
    let r = api.put("/v1/job/nginx-minipot/plan", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = r.json();
    assert_eq!(p["Diff"]["Type"], "Added");
    assert_eq!(p["Annotations"]["DesiredTGUpdates"]["group1"]["Place"], 1);
    assert_eq!(p["JobModifyIndex"], 0);
    assert_eq!(api.get("/v1/jobs").await.json(), json!([]), "a plan writes nothing");

    assert_eq!(api.put("/v1/jobs", &nginx_job()).await.status, 200);
    api.until("/v1/job/nginx-minipot/allocations", |a| a.as_array().unwrap().len() == 1).await;
    body["Job"]["TaskGroups"][0]["Count"] = json!(5);
    let p = api.put("/v1/job/nginx-minipot/plan", &body).await.json();
    assert_eq!(p["Diff"]["Type"], "Edited");
    let tg = &p["Diff"]["TaskGroups"][0];
    assert_eq!(
        tg["Fields"][0],
        json!({"Type": "Edited", "Name": "Count", "Old": "1", "New": "5",
               "Annotations": ["forces create"]})
    );
    // As in Nomad, the existing allocation moves to the new version in place.
    assert_eq!(tg["Updates"], json!({"create": 4, "in-place update": 1}));
    assert!(p["JobModifyIndex"].as_u64().unwrap() > 0);

    // Too big to place anywhere: the failure is data with the scheduler's reasons.
    body["Job"]["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"] = json!(1_000_000);
    let p = api.put("/v1/job/nginx-minipot/plan", &body).await.json();
    // Nested like Nomad's: the task's Resources is an object diff with its own fields.
    assert_eq!(
        p["Diff"]["TaskGroups"][0]["Tasks"][0]["Objects"],
        json!([{"Type": "Edited", "Name": "Resources", "Objects": [], "Fields": [
            {"Type": "Edited", "Name": "MemoryMB", "Old": "64", "New": "1000000",
             "Annotations": null}]}])
    );
    let failed = &p["FailedTGAllocs"]["group1"];
    assert_eq!(failed["NodesEvaluated"], 1);
    assert_eq!(failed["DimensionExhausted"]["memory"], 1, "{p}");
}

/// Any server answers; writes sent to a follower are forwarded to the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_any_one_answers_and_forwards_writes() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let other = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    let mut apis = Vec::new();
    for i in [leader, follower, other] {
        let node = cluster.nodes[i].as_ref().unwrap();
        apis.push(serve_api(node.handle.clone(), &node.config).await);
    }
    let (via_follower, via_other) = (&apis[1], &apis[2]);
    via_follower
        .handle
        .write(Command::NodeRegister {
            node: Box::new(fake_node("aaaaaaaa-0000-4000-8000-000000000001", "minipot")),
        })
        .await
        .unwrap();

    let r = via_follower.put("/v1/jobs", &nginx_job()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    via_follower
        .until("/v1/job/nginx-minipot/allocations", |a| a.as_array().unwrap().len() == 1)
        .await;
    let stale = via_other.until("/v1/jobs?stale", |j| j.as_array().unwrap().len() == 1).await;
    assert_eq!(stale[0]["ID"], "nginx-minipot");

    let peers = via_other.get("/v1/status/peers").await.json();
    assert_eq!(peers.as_array().unwrap().len(), 3);
    let leader_addr = via_other.get("/v1/status/leader").await.json();
    assert_eq!(leader_addr, json!(apis[0].handle.addr()));
    let members = via_follower.get("/v1/agent/members").await.json();
    let alive = members["Members"].as_array().unwrap().iter().filter(|m| m["Status"] == "alive");
    assert_eq!(alive.count(), 3);
    let raft = via_follower.get("/v1/operator/raft/configuration").await.json();
    let leaders = raft["Servers"].as_array().unwrap().iter().filter(|s| s["Leader"] == true);
    assert_eq!(leaders.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_contact_is_zero_on_the_leader_and_grows_on_a_follower_cut_off_from_it() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let config = Config::default();
    let on_leader = serve_api(cluster.node(leader).clone(), &config).await;
    let on_follower = serve_api(cluster.node(follower).clone(), &config).await;
    let contact = |r: &Resp| -> u64 {
        r.header("X-Nomad-LastContact").expect("on every reply").parse().expect("milliseconds")
    };
    assert_eq!(contact(&on_leader.get("/v1/status/leader").await), 0);
    // A follower hears the leader's heartbeats: every reply reports how long ago the last was.
    contact(&on_follower.get("/v1/status/leader").await);

    // With the leader and the third server gone no leader can exist, so the follower's last
    // contact only ages, by at least the time that passes between two replies. The third goes
    // first: with the leader gone first, the follower and the third could elect the follower
    // before the third went, and a leader's last contact is 0.
    let third = (0..3).find(|i| *i != leader && *i != follower).unwrap();
    drop(on_leader);
    cluster.kill(third).await;
    cluster.kill(leader).await;
    let first = contact(&on_follower.get("/v1/status/leader?stale").await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = contact(&on_follower.get("/v1/status/leader?stale").await);
    assert!(second >= first + 300, "last contact {first} ms, then {second} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_jobs_get_the_driver_config_checks_of_job_files() {
    let api = start_api(1, "minipot").await;
    let mut job = nginx_job();
    job["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["port_map"] = json!({"https": "443"});
    job["Job"]["TaskGroups"][0]["Tasks"][0]["Config"].as_object_mut().unwrap().remove("image");
    for path in ["/v1/jobs", "/v1/job/nginx-minipot", "/v1/job/nginx-minipot/plan"] {
        let r = api.put(path, &job).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(
            r.body,
            "2 error(s) occurred:\n\n\
             * group \"group1\", task \"www1\": pot task config needs \"image\" (add `image = \
             \"https://potluck.honeyguide.net/nginx-nomad\"`)\n\
             * group \"group1\", task \"www1\": port_map refers to port \"https\", which is not \
             declared (declared ports are: http)",
            "{path}"
        );
    }
    assert_eq!(api.get("/v1/job/nginx-minipot").await.status, 404, "nothing was registered");
}
