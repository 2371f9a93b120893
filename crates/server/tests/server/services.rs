//! orc's own service catalogue through the HTTP API: `/v1/services`, `/v1/service/:name` (the
//! exact requests Traefik's Nomad provider sends, health, `choose`, blocking), deletion, and the
//! event stream's Service events and heartbeats. Registrations are written straight into the
//! state, as an agent's would be.

use super::http::{start_api, Api};
use model::{ServiceCheckResult, ServiceHealth, ServiceRegistration};
use serde_json::{json, Value};
use server::http::{self, HttpConfig};
use server::state::Command;
use server::Config;
use std::io::BufRead;
use std::time::{Duration, Instant};

fn instance(alloc: &str, port: u16, tags: &[&str], health: ServiceHealth) -> ServiceRegistration {
    ServiceRegistration {
        id: format!("_nomad-task-{alloc}-www1-hello-web-http"),
        service_name: "hello-web".into(),
        namespace: "default".into(),
        node_id: "node-1".into(),
        datacenter: "minipot".into(),
        job_id: "nginx-minipot".into(),
        alloc_id: alloc.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: "10.0.0.1".into(),
        port,
        health,
        checks: vec![ServiceCheckResult {
            name: "tcp".into(),
            status: health,
            output: "TCP connect 10.0.0.1: Success".into(),
            timestamp: 1,
        }],
        ..ServiceRegistration::default()
    }
}

async fn register(api: &Api, services: Vec<ServiceRegistration>) -> u64 {
    api.handle.write(Command::ServiceRegister { services }).await.unwrap().index
}

/// A second HTTP listener on the same server whose event stream beats every `heartbeat`.
async fn serve_with_heartbeat(
    api: &Api,
    heartbeat: Duration,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config =
        HttpConfig { event_heartbeat: heartbeat, ..HttpConfig::from_server(&Config::default()) };
    let handle = api.handle.clone();
    let task = tokio::spawn(async move {
        http::serve(listener, handle, config, std::future::pending()).await.unwrap();
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_reads_as_nomad_and_traefik_expect() {
    let api = start_api(0, "minipot").await;
    let traefik = ["nginx", "www", "traefik.enable=true"];
    register(
        &api,
        vec![
            instance("a1", 23001, &traefik, ServiceHealth::Passing),
            instance("a2", 23002, &traefik, ServiceHealth::Critical),
            instance("a3", 23003, &["nginx"], ServiceHealth::Passing),
            ServiceRegistration {
                namespace: "prod".into(),
                service_name: "api".into(),
                ..instance("p1", 24000, &["v2"], ServiceHealth::Passing)
            },
        ],
    )
    .await;

    let r = api.get("/v1/services?namespace=default&region=global&stale=&wait=5000ms").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!([{"Namespace": "default", "Services": [
            {"ServiceName": "hello-web", "Tags": ["nginx", "traefik.enable=true", "www"]}
        ]}])
    );
    let all = api.get("/v1/services?namespace=*").await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[1]["Services"][0]["ServiceName"], "api");

    // Exactly what Traefik's Nomad provider sends with exposedByDefault=false (Go's
    // url.Values encoding: sorted keys, spaces as '+').
    let path = "/v1/service/hello-web?filter=Tags+contains+%22traefik.enable%3Dtrue%22\
                &namespace=default&region=global&stale=&wait=5000ms";
    let r = api.get(path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index() > 0);
    let v = r.json();
    let ports: Vec<&Value> = v.as_array().unwrap().iter().map(|i| &i["Port"]).collect();
    assert_eq!(ports, [&json!(23001), &json!(23002)]);
    for field in
        ["ID", "ServiceName", "Namespace", "NodeID", "Datacenter", "Address", "Port", "Tags"]
    {
        assert!(v[0].get(field).is_some(), "Traefik reads {field}");
    }
    assert_eq!(v[0]["ID"], "_nomad-task-a1-www1-hello-web-http");
    assert_eq!(v[1]["Health"], "critical");
    assert_eq!(v[1]["Checks"][0]["Status"], "critical");

    // Only healthy instances, by parameter or by filter.
    let healthy = api.get("/v1/service/hello-web?passing").await.json();
    assert_eq!(healthy.as_array().unwrap().len(), 2);
    assert!(healthy.as_array().unwrap().iter().all(|i| i["Health"] == "passing"));
    let f = api.get("/v1/service/hello-web?filter=Health+%3D%3D+%22critical%22").await.json();
    assert_eq!(f[0]["AllocID"], "a2");

    // choose: a stable subset; paging; errors.
    let one = api.get("/v1/service/hello-web?choose=1%7Cclient-7").await.json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v1/service/hello-web?choose=1%7Cclient-7").await.json(), one);
    let page = api.get("/v1/service/hello-web?per_page=2").await;
    assert_eq!(page.json().as_array().unwrap().len(), 2);
    assert_eq!(page.header("X-Nomad-NextToken"), Some("_nomad-task-a3-www1-hello-web-http"));
    assert_eq!(api.get("/v1/service/hello-web?choose=x").await.status, 400);
    assert_eq!(api.get("/v1/service/hello-web?filter=Tags+contains").await.status, 400);
    assert_eq!(api.get("/v1/service/nope").await.json(), json!([]));

    // Deletion, with the name and namespace checked.
    let id = "_nomad-task-a2-www1-hello-web-http";
    assert_eq!(api.delete(&format!("/v1/service/other/{id}")).await.status, 404);
    assert_eq!(api.delete(&format!("/v1/service/hello-web/{id}?namespace=prod")).await.status, 404);
    let r = api.delete(&format!("/v1/service/hello-web/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.get("/v1/service/hello-web").await.json().as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_service_query_wakes_on_registration() {
    let api = start_api(0, "dc1").await;
    let index = register(&api, vec![instance("a1", 23001, &[], ServiceHealth::Passing)]).await;
    let url = format!("{}/v1/service/hello-web?index={index}&wait=10s", api.base);
    let started = Instant::now();
    let waiter = tokio::spawn(super::http::call("GET", url, None));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "no change yet, so the query blocks");
    register(&api, vec![instance("a2", 23002, &[], ServiceHealth::Passing)]).await;
    let r = waiter.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.index() > index);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
}

/// Reads ndjson lines from a streaming GET on a blocking thread, until `stop` lines are seen
/// or `timeout` passes.
fn read_lines(url: String, want: usize, timeout: Duration) -> Vec<Value> {
    read_lines_until(url, timeout, |lines| lines.len() >= want)
}

/// Reads until `want` lines carry events; heartbeat lines (`{}`) in between are kept but not
/// counted, since one may fall between any two events.
fn read_event_lines(url: String, want: usize, timeout: Duration) -> Vec<Value> {
    read_lines_until(url, timeout, |lines| {
        lines.iter().filter(|l| l.get("Events").is_some()).count() >= want
    })
}

/// Opens a stream and hands over its lines as they arrive, until it ends or `timeout` passes.
fn stream_lines(url: String, timeout: Duration) -> std::sync::mpsc::Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        read_lines_until(url, timeout, |lines| {
            let last = lines.last().cloned().unwrap_or_default();
            tx.send(last).is_err()
        });
    });
    rx
}

fn read_lines_until(url: String, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut resp = agent.get(&url).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = std::io::BufReader::new(resp.body_mut().as_reader());
    let mut out = Vec::new();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        out.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        if done(&out) {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_sends_service_events_and_heartbeats() {
    let api = start_api(0, "dc1").await;
    let (base, _server) = serve_with_heartbeat(&api, Duration::from_millis(300)).await;
    register(&api, vec![instance("a0", 23000, &[], ServiceHealth::Passing)]).await;

    // What Traefik's watch mode opens. Its first line, a heartbeat, says the stream has
    // started: what happens from then on is reported.
    let url = format!("{base}/v1/event/stream?index=0&topic=Service:*&namespace=default");
    let stream = stream_lines(url, Duration::from_secs(20));
    let first = tokio::task::block_in_place(|| stream.recv_timeout(Duration::from_secs(10)));
    assert_eq!(first, Ok(json!({})));
    register(&api, vec![instance("a1", 23001, &[], ServiceHealth::Passing)]).await;
    // A job registration is not a Service event and must not appear.
    api.put("/v1/jobs", &super::http::nginx_job()).await;
    api.handle
        .write(Command::ServiceDeregister {
            ids: vec!["_nomad-task-a1-www1-hello-web-http".into()],
        })
        .await
        .unwrap();
    let mut lines = Vec::new();
    while lines.iter().filter(|l: &&Value| l.get("Events").is_some()).count() < 2 {
        let next = tokio::task::block_in_place(|| stream.recv_timeout(Duration::from_secs(10)));
        lines.push(next.unwrap_or_else(|e| panic!("{e}; so far: {lines:?}")));
    }
    let events: Vec<(String, String)> = lines
        .iter()
        .flat_map(|l| l["Events"].as_array().cloned().unwrap_or_default())
        .map(|e| (e["Type"].as_str().unwrap().to_owned(), e["Key"].as_str().unwrap().to_owned()))
        .collect();
    let key = "_nomad-task-a1-www1-hello-web-http".to_string();
    assert_eq!(
        events,
        [("ServiceRegistration".to_string(), key.clone()), ("ServiceDeregistration".into(), key)]
    );
    let first = lines.iter().find(|l| l.get("Events").is_some()).unwrap();
    let e = &first["Events"][0];
    assert_eq!(e["Topic"], "Service");
    assert_eq!(e["FilterKeys"], json!(["nginx-minipot", "hello-web"]));
    assert_eq!(e["Payload"]["Service"]["Port"], 23001);
    assert!(first["Index"].as_u64().unwrap() >= e["Index"].as_u64().unwrap());

    // Nothing happens: heartbeats.
    let url = format!("{base}/v1/event/stream?topic=Service:hello-web");
    let lines = tokio::task::spawn_blocking(move || read_lines(url, 2, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(lines, [json!({}), json!({})]);

    // A filter key that matches nothing, and a bad topic.
    let r = api.get("/v1/event/stream?topic=Service:").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_replays_buffered_events_after_an_index() {
    let api = start_api(0, "dc1").await;
    let (base, _server) = serve_with_heartbeat(&api, Duration::from_millis(300)).await;
    // The buffer holds what happened since the server's feeder started, and the feeder starts
    // in the background; a stream without an index answers only once the feeder has caught
    // up, so one heartbeat from it means the writes below are all buffered.
    let url = format!("{base}/v1/event/stream?topic=Service:*");
    let ready = tokio::task::spawn_blocking(move || read_lines(url, 1, Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(ready, [json!({})]);
    let after = register(&api, vec![instance("a0", 23000, &[], ServiceHealth::Passing)]).await;
    register(&api, vec![instance("a1", 23001, &[], ServiceHealth::Passing)]).await;
    api.handle
        .write(Command::ServiceDeregister {
            ids: vec!["_nomad-task-a0-www1-hello-web-http".into()],
        })
        .await
        .unwrap();
    let last = register(&api, vec![instance("a2", 23002, &[], ServiceHealth::Passing)]).await;

    // A client that saw index `after` resumes from it: the history since, deregistration
    // included (the state no longer has a0, only the buffer remembers it).
    let url = format!("{base}/v1/event/stream?index={after}&topic=Service:*");
    let lines =
        tokio::task::spawn_blocking(move || read_event_lines(url, 3, Duration::from_secs(10)))
            .await
            .unwrap();
    let mut events: Vec<(String, String, u64)> = lines
        .iter()
        .flat_map(|l| l["Events"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let alloc = e["Payload"]["Service"]["AllocID"].as_str().unwrap().to_owned();
            (e["Type"].as_str().unwrap().to_owned(), alloc, e["Index"].as_u64().unwrap())
        })
        .collect();
    assert!(events.iter().all(|(_, _, i)| *i > after && *i <= last), "{events:?}");
    let mut kinds: Vec<(String, String)> = events.drain(..).map(|(t, a, _)| (t, a)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("ServiceDeregistration".to_string(), "a0".to_string()),
            ("ServiceRegistration".into(), "a1".into()),
            ("ServiceRegistration".into(), "a2".into()),
        ]
    );
    // From the last index on, nothing is replayed: heartbeats only.
    let url = format!("{base}/v1/event/stream?index={last}&topic=Service:*");
    let lines = tokio::task::spawn_blocking(move || read_lines(url, 2, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(lines, [json!({}), json!({})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_nodes_registrations_leave_the_catalogue() {
    let api = start_api(0, "dc1").await;
    for id in ["node-1", "node-2"] {
        let node = model::Node { id: id.into(), ..model::Node::default() };
        api.handle.write(Command::NodeRegister { node: Box::new(node) }).await.unwrap();
    }
    let elsewhere = ServiceRegistration {
        node_id: "node-2".into(),
        ..instance("b0", 23001, &[], ServiceHealth::Passing)
    };
    register(&api, vec![instance("a0", 23000, &[], ServiceHealth::Passing), elsewhere]).await;
    let ports = |r: &super::http::Resp| -> Vec<u64> {
        r.json().as_array().unwrap().iter().map(|i| i["Port"].as_u64().unwrap()).collect()
    };
    assert_eq!(ports(&api.get("/v1/service/hello-web").await), [23000, 23001]);

    // What the leader writes when node-1 misses its heartbeat: its allocations are lost, and
    // no agent is left to deregister their services.
    let w = api
        .handle
        .write(Command::NodeStatus {
            node_id: "node-1".into(),
            status: model::NodeStatus::Down,
            status_description: "node heartbeat missed".into(),
            evals: Vec::new(),
        })
        .await
        .unwrap();
    let r = api.get("/v1/service/hello-web").await;
    assert_eq!(ports(&r), [23001]);
    let index = r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-nomad-index")).unwrap();
    assert_eq!(index.1, w.index.to_string(), "the catalogue's index moved with the removal");
}
