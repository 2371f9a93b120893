//! Every constraint operator and target kind, through the public surface: a system job with one
//! constraint over a three-node fixture, and the nodes it lands on. Also the class cache.

use super::support::*;
use expect_test::expect;
use scheduler::feasible::GroupChecker;
use scheduler::ClusterState;

const NODES: &str = "
    node n1 class=web meta.rack=r1 attr.version=1.2.3 attr.cpu.numcores=4 attr.tags=a,b,c attr.load=0.5
    node n2 class=db meta.rack=r2 attr.version=2.0.0-beta attr.cpu.numcores=16 attr.tags=b attr.load=1.25 pool=gpu
    node n3 class=web dc=dc2 attr.version=0.9 attr.cpu.numcores=8 attr.load=abc
";

fn landing(state: &ClusterState, l: &str, op: &str, r: &str) -> String {
    let mut job = system("sys");
    job.node_pool = "all".into();
    job.constraints.push(constraint(l, op, r));
    let text = run(state, &job);
    let nodes: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("place"))
        .map(|l| l.split(" on ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    format!("{l} {op} {r:?} -> {nodes:?}\n")
}

#[test]
fn every_operator_and_target() {
    let state = cluster(NODES);
    let cases = [
        ("${meta.rack}", "=", "r1"),
        ("${meta.rack}", "==", "r2"),
        ("${meta.rack}", "is", "r1"),
        ("${meta.rack}", "!=", "r1"),
        ("${meta.rack}", "not", "r2"),
        ("${attr.cpu.numcores}", "<", "8"),
        ("${attr.cpu.numcores}", "<=", "8"),
        ("${attr.cpu.numcores}", ">", "4"),
        ("${attr.cpu.numcores}", ">=", "16"),
        ("${attr.load}", ">", "1.0"),
        ("${attr.load}", "<", "b"),
        ("${node.unique.name}", "regexp", "^n[12]$"),
        ("${attr.version}", "regexp", "[("),
        ("${attr.version}", "version", ">= 1.0, < 3"),
        ("${attr.version}", "version", "~> 0.9"),
        ("${attr.version}", "semver", ">= 1.0.0"),
        ("${attr.version}", "semver", "~> 1.0"),
        ("${attr.tags}", "set_contains", "a,c"),
        ("${attr.tags}", "set_contains_all", "b"),
        ("${attr.tags}", "set_contains_any", "c,x"),
        ("${meta.rack}", "is_set", ""),
        ("${meta.rack}", "is_not_set", ""),
        ("${node.unique.id}", "=", "n3"),
        ("${node.datacenter}", "=", "dc2"),
        ("${node.class}", "=", "web"),
        ("${node.pool}", "=", "gpu"),
        ("${node.region}", "=", "global"),
        ("${attr.missing}", "=", "x"),
        ("linux", "=", "linux"),
        ("${meta.rack}", "bogus", "r1"),
    ];
    let out: String = cases.iter().map(|(l, op, r)| landing(&state, l, op, r)).collect();
    expect![[r#"
        ${meta.rack} = "r1" -> ["n1"]
        ${meta.rack} == "r2" -> ["n2"]
        ${meta.rack} is "r1" -> ["n1"]
        ${meta.rack} != "r1" -> ["n2", "n3"]
        ${meta.rack} not "r2" -> ["n1", "n3"]
        ${attr.cpu.numcores} < "8" -> ["n1"]
        ${attr.cpu.numcores} <= "8" -> ["n1", "n3"]
        ${attr.cpu.numcores} > "4" -> ["n2", "n3"]
        ${attr.cpu.numcores} >= "16" -> ["n2"]
        ${attr.load} > "1.0" -> ["n2", "n3"]
        ${attr.load} < "b" -> ["n1", "n2", "n3"]
        ${node.unique.name} regexp "^n[12]$" -> ["n1", "n2"]
        ${attr.version} regexp "[(" -> []
        ${attr.version} version ">= 1.0, < 3" -> ["n1"]
        ${attr.version} version "~> 0.9" -> ["n3"]
        ${attr.version} semver ">= 1.0.0" -> ["n1", "n2"]
        ${attr.version} semver "~> 1.0" -> []
        ${attr.tags} set_contains "a,c" -> ["n1"]
        ${attr.tags} set_contains_all "b" -> ["n1", "n2"]
        ${attr.tags} set_contains_any "c,x" -> ["n1"]
        ${meta.rack} is_set "" -> ["n1", "n2"]
        ${meta.rack} is_not_set "" -> ["n3"]
        ${node.unique.id} = "n3" -> ["n3"]
        ${node.datacenter} = "dc2" -> ["n3"]
        ${node.class} = "web" -> ["n1", "n3"]
        ${node.pool} = "gpu" -> ["n2"]
        ${node.region} = "global" -> ["n1", "n2", "n3"]
        ${attr.missing} = "x" -> []
        linux = "linux" -> ["n1", "n2", "n3"]
        ${meta.rack} bogus "r1" -> []
    "#]]
    .assert_eq(&out);
}

#[test]
fn datacenter_globs_and_pools() {
    let state = cluster(NODES);
    let mut job = system("sys");
    job.datacenters = vec!["dc*".into()];
    let default_pool = run(&state, &job);
    job.datacenters = vec!["dc2".into()];
    job.node_pool = "all".into();
    let dc2 = run(&state, &job);
    expect![[r#"
        place  sys.sys[0] on n1 v0
        place  sys.sys[0] on n3 v0
        group sys: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        place  sys.sys[0] on n3 v0
        group sys: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&format!("{default_pool}--\n{dc2}"));
}

#[test]
fn drivers_must_be_detected_and_healthy_or_fingerprinted_as_attributes() {
    let state = cluster(
        "
        node n1
        node n2 driver.pot=unhealthy
        node n3 driver.pot=undetected
        node n4 attr.driver.jail=1
        node n5 attr.driver.jail=0
        ",
    );
    let mut job = system("sys");
    let pot = run(&state, &job);
    job.task_groups[0].tasks[0].driver = "jail".into();
    let jail = run(&state, &job);
    expect![[r#"
        place  sys.sys[0] on n1 v0
        place  sys.sys[0] on n4 v0
        place  sys.sys[0] on n5 v0
        group sys: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        place  sys.sys[0] on n4 v0
        group sys: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&format!("{pot}--\n{jail}"));
}

#[test]
fn feasibility_is_cached_per_computed_class() {
    let mut text = String::new();
    for i in 0..1000 {
        let class = if i % 2 == 0 { "web" } else { "db" };
        text.push_str(&format!("node n{i} class={class}\n"));
    }
    let state = cluster(&text);
    let mut job = service("web", 1);
    job.constraints.push(constraint("${node.class}", "=", "web"));
    job.constraints.push(constraint("${attr.kernel.name}", "regexp", "bsd$"));
    let tg = &job.task_groups[0];
    let mut checker = GroupChecker::new(&job, tg, state.class_count());
    let feasible = (0..1000u32)
        .filter(|i| checker.check(state.node(*i), state.node_class(*i)).is_ok())
        .count();
    assert_eq!(feasible, 500);
    // Unique attributes (unique.hostname differs per node) do not split the class.
    assert_eq!(checker.class_checks(), 2);
    // A constraint on a unique target is checked per node, outside the cache.
    job.constraints.push(constraint("${node.unique.name}", "!=", "n0"));
    let mut checker = GroupChecker::new(&job, &job.task_groups[0], state.class_count());
    let feasible = (0..1000u32)
        .filter(|i| checker.check(state.node(*i), state.node_class(*i)).is_ok())
        .count();
    assert_eq!((feasible, checker.class_checks()), (499, 2));
}
