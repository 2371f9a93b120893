//! Node drain through the HTTP API, with fake nodes whose allocation reports the test writes
//! (there is no agent): migrations paced by `migrate.max_parallel`, the deadline stopping the
//! rest at once, and the drain completing with Nomad's node event.

use super::http::{fake_node, nginx_job, start_api, Api};
use model::ClientStatus;
use serde_json::{json, Value};
use server::state::{AllocClientUpdate, Command};
use std::time::Duration;

const JOB: &str = "/v1/job/nginx-minipot/allocations";

/// What the fake node's agent would report.
async fn report(api: &Api, ids: &[String], status: ClientStatus) {
    let updates = ids
        .iter()
        .map(|id| AllocClientUpdate {
            alloc_id: id.clone(),
            client_status: status,
            ..Default::default()
        })
        .collect();
    api.handle.write(Command::AllocClientUpdate { updates, evals: vec![] }).await.unwrap();
}

fn ids(allocs: &[&Value]) -> Vec<String> {
    allocs.iter().map(|a| a["ID"].as_str().unwrap().to_owned()).collect()
}

fn marked(allocs: &Value) -> Vec<&Value> {
    allocs
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["DesiredTransition"]["Migrate"] == true)
        .collect()
}

/// Places `count` running allocations of the seed job on one node, then adds a second node.
async fn three_on_one_node(count: u32) -> (Api, String, String) {
    let api = start_api(1, "minipot").await;
    let mut job = nginx_job();
    job["Job"]["TaskGroups"][0]["Count"] = json!(count);
    assert_eq!(job["Job"]["TaskGroups"][0]["Migrate"]["MaxParallel"], 1, "Nomad's default");
    assert_eq!(api.put("/v1/jobs", &job).await.status, 200);
    let allocs = api.until(JOB, |a| a.as_array().unwrap().len() == count as usize).await;
    let all: Vec<&Value> = allocs.as_array().unwrap().iter().collect();
    report(&api, &ids(&all), ClientStatus::Running).await;
    let a = all[0]["NodeID"].as_str().unwrap().to_owned();
    let b = "00000001-0000-4000-8000-000000000001".to_owned();
    api.handle
        .write(Command::NodeRegister { node: Box::new(fake_node(&b, "minipot")) })
        .await
        .unwrap();
    (api, a, b)
}

/// Waits until exactly `n` allocations are marked and each marked one has a replacement
/// placed on `to`; returns (marked IDs, replacement IDs).
async fn until_marked(api: &Api, n: usize, to: &str) -> (Vec<String>, Vec<String>) {
    let allocs = api
        .until(JOB, |a| {
            let m = marked(a);
            m.len() == n
                && m.iter().all(|old| {
                    a.as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["PreviousAllocation"] == old["ID"] && r["NodeID"] == to)
                })
        })
        .await;
    let m = marked(&allocs);
    let replacements: Vec<&Value> = allocs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| m.iter().any(|old| r["PreviousAllocation"] == old["ID"]))
        .collect();
    for old in &m {
        assert_eq!(old["DesiredStatus"], "stop", "a marked allocation is stopped: {old}");
        assert_eq!(old["DesiredDescription"], "alloc is being migrated");
    }
    (ids(&m), ids(&replacements))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_migrates_one_allocation_at_a_time_and_completes() {
    let (api, a, b) = three_on_one_node(3).await;
    let r = api
        .put(
            &format!("/v1/node/{a}/drain"),
            &json!({"DrainSpec": {"Deadline": 3_600_000_000_000u64}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["EvalIDs"], json!([]), "setting a drain evaluates nothing itself");
    let node = api.get(&format!("/v1/node/{a}")).await.json();
    assert_eq!(node["DrainStrategy"]["Deadline"], 3_600_000_000_000u64);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["LastDrain"]["Status"], "draining");
    assert_eq!(node["Events"][0]["Message"], "Node drain strategy set");
    assert_eq!(node["Events"][0]["Subsystem"], "Drain");

    // max_parallel = 1: one allocation moves; the next waits for its replacement to run.
    let (first, repl1) = until_marked(&api, 1, &b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(marked(&api.get(JOB).await.json()).len(), 1, "a second migration did not wait");
    report(&api, &first, ClientStatus::Complete).await;
    report(&api, &repl1, ClientStatus::Running).await;

    let (second, repl2) = until_marked(&api, 2, &b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(marked(&api.get(JOB).await.json()).len(), 2, "the third did not move early");
    report(&api, &second, ClientStatus::Complete).await;
    report(&api, &repl2, ClientStatus::Running).await;

    let (all, repls) = until_marked(&api, 3, &b).await;
    let node = api.get(&format!("/v1/node/{a}")).await.json();
    assert_eq!(node["Drain"], true, "not complete while an allocation still runs there");
    report(&api, &all, ClientStatus::Complete).await;
    report(&api, &repls, ClientStatus::Running).await;

    let node = api.until(&format!("/v1/node/{a}"), |n| n["DrainStrategy"].is_null()).await;
    assert_eq!(node["Drain"], false);
    assert_eq!(node["SchedulingEligibility"], "ineligible", "a drained node stays ineligible");
    assert_eq!(node["LastDrain"]["Status"], "complete");
    let last = node["Events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Message"], "Node drain complete");
    assert_eq!(last["Details"], json!({}));
    let running = api.get(JOB).await.json();
    let on_b = running
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["DesiredStatus"] == "run" && x["NodeID"] == b.as_str())
        .count();
    assert_eq!(on_b, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_every_remaining_allocation_at_once() {
    let (api, a, b) = three_on_one_node(3).await;
    let drain = |deadline_ns: i64| json!({"DrainSpec": {"Deadline": deadline_ns}});
    let r = api.put(&format!("/v1/node/{a}/drain"), &drain(3_600_000_000_000)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (first, _) = until_marked(&api, 1, &b).await;
    // The replacement never reports running, so pacing alone would wait forever; a short
    // deadline ends the wait.
    let r = api.put(&format!("/v1/node/{a}/drain"), &drain(200_000_000)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let node = api.get(&format!("/v1/node/{a}")).await.json();
    assert_eq!(node["Events"][1]["Message"], "Node drain strategy updated");

    let (all, _) = until_marked(&api, 3, &b).await;
    assert!(all.contains(&first[0]));
    let node = api.until(&format!("/v1/node/{a}"), |n| n["DrainStrategy"].is_null()).await;
    let last = node["Events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Message"], "Node drain complete");
    assert_eq!(last["Details"]["deadline_reached"], "true");
    assert_eq!(node["LastDrain"]["Status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_drain_moves_everything_and_disabling_one_cancels_it() {
    let (api, a, b) = three_on_one_node(2).await;
    let r = api.put(&format!("/v1/node/{a}/drain"), &json!({"DrainSpec": {"Deadline": -1}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    until_marked(&api, 2, &b).await;
    api.until(&format!("/v1/node/{a}"), |n| n["LastDrain"]["Status"] == "complete").await;

    // A drain with no deadline on the other node, then cancelled: nothing moved, and the node
    // is eligible again when asked.
    let r = api.put(&format!("/v1/node/{b}/drain"), &json!({"DrainSpec": {"Deadline": 0}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let node = api.get(&format!("/v1/node/{b}")).await.json();
    // Go's zero time: no deadline. Times are RFC 3339, as Nomad's time.Time.
    assert_eq!(node["DrainStrategy"]["ForceDeadline"], "0001-01-01T00:00:00Z");
    assert!(node["DrainStrategy"]["StartedAt"].as_str().unwrap().ends_with('Z'));
    let r = api
        .put(&format!("/v1/node/{b}/drain"), &json!({"DrainSpec": null, "MarkEligible": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let node = api.get(&format!("/v1/node/{b}")).await.json();
    assert_eq!(node["SchedulingEligibility"], "eligible");
    assert_eq!(node["LastDrain"]["Status"], "canceled");
    assert_eq!(
        node["Events"].as_array().unwrap().last().unwrap()["Message"],
        "Node drain disabled"
    );
    let r = api.post_raw(&format!("/v1/node/{b}/drain"), b"").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Request body is empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_carries_on_with_the_drain() {
    // Three servers, each with its pipeline (the drainer runs on whichever leads); the API is
    // served by a follower, so every write is forwarded.
    let mut cluster = super::harness::Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.other_than(leader);
    let mut pipelines = Vec::new();
    for (i, h) in cluster.running() {
        if i != follower {
            pipelines.push(tokio::spawn(server::pipeline::run(h.clone())));
        }
    }
    let api =
        super::http::serve_api(cluster.node(follower).clone(), &server::Config::default()).await;
    let a = "00000000-0000-4000-8000-000000000000";
    let b = "00000001-0000-4000-8000-000000000001";
    let register = |id: &str| Command::NodeRegister { node: Box::new(fake_node(id, "minipot")) };
    api.handle.write(register(a)).await.unwrap();
    let mut job = nginx_job();
    job["Job"]["TaskGroups"][0]["Count"] = json!(2);
    assert_eq!(api.put("/v1/jobs", &job).await.status, 200);
    let allocs = api.until(JOB, |a| a.as_array().unwrap().len() == 2).await;
    report(
        &api,
        &ids(&allocs.as_array().unwrap().iter().collect::<Vec<_>>()),
        ClientStatus::Running,
    )
    .await;
    api.handle.write(register(b)).await.unwrap();
    let r = api
        .put(
            &format!("/v1/node/{a}/drain"),
            &json!({"DrainSpec": {"Deadline": 3_600_000_000_000u64}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (first, repl) = until_marked(&api, 1, b).await;

    // The leader goes; the next one rebuilds the drain from the replicated state alone.
    let _gone = cluster.kill(leader).await;
    report(&api, &first, ClientStatus::Complete).await;
    report(&api, &repl, ClientStatus::Running).await;
    let (all, repls) = until_marked(&api, 2, b).await;
    report(&api, &all, ClientStatus::Complete).await;
    report(&api, &repls, ClientStatus::Running).await;
    let node = api.until(&format!("/v1/node/{a}"), |n| n["DrainStrategy"].is_null()).await;
    assert_eq!(node["LastDrain"]["Status"], "complete");
    assert_ne!(cluster.leader().await, leader);
    for p in pipelines {
        p.abort();
    }
}
