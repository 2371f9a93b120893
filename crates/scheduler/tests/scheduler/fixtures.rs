//! Fixture tests of the reconciler and the placement pipeline: cluster text + job in, rendered
//! plan out. Every case the issue names has one test here; constraint operators are in
//! `operators`.

use super::support::*;
use expect_test::expect;
use model::{JobType, TriggeredBy, UpdateStrategy};
use scheduler::{verify_plan, Algorithm, ClusterState};
use std::time::Duration;

const TWO_NODES: &str = "
    node n1
    node n2
";

#[test]
fn fresh_job_places_every_index() {
    let state = cluster(TWO_NODES);
    expect![[r#"
        place  web.web[0] on n1 v0
        place  web.web[2] on n1 v0
        place  web.web[1] on n2 v0
        group web: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 3)));
}

#[test]
fn count_up_fills_the_lowest_free_indexes() {
    let state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1
        alloc web.web[2] on n2
        ",
    );
    expect![[r#"
        place  web.web[1] on n1 v0
        place  web.web[3] on n2 v0
        group web: DesiredUpdates { ignore: 2, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 4)));
}

#[test]
fn count_down_stops_the_highest_indexes() {
    let state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1
        alloc web.web[1] on n2
        alloc web.web[2] on n1
        alloc web.web[3] on n2
        ",
    );
    expect![[r#"
        stop   web.web[2] on n1 (Stop: alloc not needed due to job update)
        stop   web.web[3] on n2 (Stop: alloc not needed due to job update)
        group web: DesiredUpdates { ignore: 2, place: 0, migrate: 0, stop: 2, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 2)));
}

#[test]
fn duplicate_names_are_surplus() {
    let state = cluster(
        "
        node n1
        alloc web.web[0] on n1
        alloc web.web[0] on n1
        ",
    );
    expect![[r#"
        stop   web.web[0] on n1 (Stop: alloc not needed due to job update)
        group web: DesiredUpdates { ignore: 1, place: 0, migrate: 0, stop: 1, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 1)));
}

fn versioned(state: &mut ClusterState, old: &model::Job) {
    state.insert_job_version(old.clone());
}

#[test]
fn in_place_update_when_only_policies_change() {
    let mut state = cluster(
        "
        node n1
        alloc web.web[0] on n1 v=0
        alloc web.web[1] on n1 v=0
        ",
    );
    let old = service("web", 2);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].tasks[0].kill_timeout = Some(Duration::from_secs(30));
    expect![[r#"
        update web.web[0] on n1 v1
        update web.web[1] on n1 v1
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 2, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn destructive_update_is_paced_by_max_parallel() {
    let mut state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1 v=0 healthy
        alloc web.web[1] on n2 v=0 healthy
        alloc web.web[2] on n1 v=0 healthy
        ",
    );
    let old = service("web", 3);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].tasks[0].env.insert("MODE".into(), "fast".into());
    new.task_groups[0].update =
        Some(UpdateStrategy { max_parallel: 2, ..new.task_groups[0].update.clone().unwrap() });
    expect![[r#"
        place  web.web[0] on n1 v1 replaces web.web[0]
        place  web.web[1] on n2 v1 replaces web.web[1]
        stop   web.web[0] on n1 (Stop: alloc is being updated due to job update)
        stop   web.web[1] on n2 (Stop: alloc is being updated due to job update)
        group web: DesiredUpdates { ignore: 1, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 2, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn destructive_update_waits_for_unhealthy_new_allocations() {
    let mut state = cluster(
        "
        node n1
        alloc web.web[0] on n1 v=1
        alloc web.web[1] on n1 v=0 healthy
        ",
    );
    let old = service("web", 2);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].tasks[0].resources.as_mut().unwrap().memory_mb = 512;
    expect![[r#"
        group web: DesiredUpdates { ignore: 2, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn batch_without_update_block_replaces_all_at_once() {
    let mut state = cluster(
        "
        node n1
        alloc b.b[0] on n1 v=0
        alloc b.b[1] on n1 v=0
        ",
    );
    let old = batch("b", 2);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].tasks[0].driver = "pot".into();
    new.task_groups[0].tasks[0].user = "www".into();
    expect![[r#"
        place  b.b[0] on n1 v1 replaces b.b[0]
        place  b.b[1] on n1 v1 replaces b.b[1]
        stop   b.b[0] on n1 (Stop: alloc is being updated due to job update)
        stop   b.b[1] on n1 (Stop: alloc is being updated due to job update)
        group b: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 2, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn in_place_becomes_destructive_when_the_node_no_longer_fits() {
    // The node shrank below what its allocations use; an in-place bump must not keep them there.
    let mut state = cluster(
        "
        node n1 cpu=150
        node n2
        alloc web.web[0] on n1 v=0 cpu=100
        alloc web.web[1] on n1 v=0 cpu=100
        ",
    );
    let old = service("web", 2);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].tasks[0].kill_timeout = Some(Duration::from_secs(9));
    new.task_groups[0].update = None;
    expect![[r#"
        place  web.web[1] on n1 v1 replaces web.web[1]
        place  web.web[0] on n2 v1 replaces web.web[0]
        stop   web.web[0] on n1 (Stop: alloc is being updated due to job update)
        stop   web.web[1] on n1 (Stop: alloc is being updated due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 2, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn in_place_becomes_destructive_when_a_new_constraint_excludes_the_node() {
    let mut state = cluster(
        "
        node n1 class=old
        node n2 class=new
        alloc web.web[0] on n1 v=0
        ",
    );
    let old = service("web", 1);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.constraints.push(constraint("${node.class}", "=", "new"));
    expect![[r#"
        place  web.web[0] on n2 v1 replaces web.web[0]
        stop   web.web[0] on n1 (Stop: alloc is being updated due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 1, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn unknown_old_version_is_destructive() {
    let state = cluster(
        "
        node n1
        alloc web.web[0] on n1 v=0
        ",
    );
    let mut new = service("web", 1);
    new.version = 3;
    expect![[r#"
        place  web.web[0] on n1 v3 replaces web.web[0]
        stop   web.web[0] on n1 (Stop: alloc is being updated due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 1, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn lost_allocations_are_replaced_at_once() {
    let state = cluster(
        "
        node n1 status=down
        node n2 status=disconnected
        node n3
        alloc web.web[0] on n1
        alloc web.web[1] on n2
        alloc web.web[2] on gone-node
        ",
    );
    let mut job = service("web", 3);
    // Lost replacements ignore the reschedule policy entirely.
    job.task_groups[0].reschedule_policy = None;
    expect![[r#"
        place  web.web[0] on n3 v0 replaces web.web[0]
        place  web.web[1] on n3 v0 replaces web.web[1]
        place  web.web[2] on n3 v0 replaces web.web[2]
        stop   web.web[2] on gone-node (Stop: alloc is lost since its node is down) client=Lost
        stop   web.web[0] on n1 (Stop: alloc is lost since its node is down) client=Lost
        stop   web.web[1] on n2 (Stop: alloc is lost since its node is down) client=Lost
        group web: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 3, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 3 }
    "#]].assert_eq(&run(&state, &job));
}

#[test]
fn failed_allocation_due_now_is_rescheduled_away_from_its_node() {
    let state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1 status=failed modify=9000
        alloc web.web[1] on n2
        ",
    );
    let (plan, text) = run_with(&state, Some(&service("web", 2)), &ctx("web"));
    let placed = plan.node_allocation.values().flatten().next().unwrap();
    let event = &placed.reschedule_tracker.as_ref().unwrap().events[0];
    assert_eq!((event.prev_alloc_id.as_str(), event.prev_node_id.as_str()), ("a0", "n1"));
    // Default service policy: exponential from 30 s.
    assert_eq!(event.delay, Duration::from_secs(30));
    expect![[r#"
        place  web.web[0] on n2 v0 replaces web.web[0] reschedules=1
        group web: DesiredUpdates { ignore: 1, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 1, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&text);
}

#[test]
fn failed_allocation_not_due_gets_a_followup_eval() {
    // Failed 10 s ago; the 3rd reschedule's exponential delay is 30 s * 2 * 2 = 120 s.
    let state = cluster(
        "
        node n1
        alloc web.web[0] on n1 status=failed modify=9990 resched=30@5000,60@9000
        alloc web.web[1] on n1 status=failed modify=9991 resched=30@5000,60@9000
        alloc web.web[2] on n1 status=failed modify=9999 resched=30@5000,60@9000
        ",
    );
    let (plan, text) = run_with(&state, Some(&service("web", 3)), &ctx("web"));
    assert_eq!(plan.followup_evals.len(), 2, "9990+120 and 9991+120 batch; 9999+120 does not");
    expect![[r#"
        update web.web[0] on n1 v0 reschedules=2 followup
        update web.web[1] on n1 v0 reschedules=2 followup
        update web.web[2] on n1 v0 reschedules=2 followup
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 3, lost: 0 }
        followup eval wait_until=10110000000000 (AllocFailure)
        followup eval wait_until=10119000000000 (AllocFailure)
    "#]].assert_eq(&text);
}

#[test]
fn the_followup_eval_reschedules_its_allocations() {
    let state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1 status=failed modify=9990 resched=30@5000,60@9000 followup=eval-1
        ",
    );
    expect![[r#"
        place  web.web[0] on n2 v0 replaces web.web[0] reschedules=3
        group web: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 1, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 1)));
}

#[test]
fn reschedule_attempts_are_limited_within_the_interval() {
    let state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1 status=failed modify=9000 resched=5@8000,5@9500
        alloc web.web[1] on n1 status=failed modify=9000 resched=5@1000
        ",
    );
    let mut job = service("web", 2);
    let p = job.task_groups[0].reschedule_policy.as_mut().unwrap();
    (p.attempts, p.unlimited, p.interval) = (2, false, Duration::from_secs(3600));
    (p.delay_function, p.delay) = ("constant".into(), Duration::from_secs(5));
    expect![[r#"
        place  web.web[1] on n2 v0 replaces web.web[1] reschedules=1
        group web: DesiredUpdates { ignore: 1, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 1, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &job));
}

#[test]
fn draining_nodes_migrate_only_the_allocations_the_drainer_marked() {
    let state = cluster(
        "
        node n1 drain
        node n2
        alloc web.web[0] on n1 migrate
        alloc web.web[1] on n2
        alloc web.web[2] on n1
        ",
    );
    expect![[r#"
        place  web.web[0] on n2 v0 replaces web.web[0]
        stop   web.web[0] on n1 (Stop: alloc is being migrated)
        group web: DesiredUpdates { ignore: 2, place: 0, migrate: 1, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 3)));
}

#[test]
fn completed_batch_allocations_are_not_replaced_but_service_ones_are() {
    let fixture = "
        node n1
        alloc b.b[0] on n1 status=complete
        alloc b.b[1] on n1 status=failed modify=1
        alloc svc.svc[0] on n1 status=complete
    ";
    let state = cluster(fixture);
    let mut b = batch("b", 2);
    b.task_groups[0].reschedule_policy.as_mut().unwrap().attempts = 0;
    expect![[r#"
        group b: DesiredUpdates { ignore: 2, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        place  svc.svc[0] on n1 v0
        group svc: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&format!("{}--\n{}", run(&state, &b), run(&state, &service("svc", 1))));
}

#[test]
fn stopped_and_purged_jobs_stop_everything() {
    let state = cluster(
        "
        node n1
        alloc web.web[0] on n1
        alloc web.web[1] on n1
        alloc web.web[2] on n1 status=complete
        alloc web.old[0] on n1 desired=stop
        ",
    );
    let mut stopped = service("web", 2);
    stopped.stop = true;
    let (_, purged) = run_with(&state, None, &ctx("web"));
    expect![[r#"
        stop   web.web[0] on n1 (Stop: alloc not needed due to job update)
        stop   web.web[1] on n1 (Stop: alloc not needed due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 2, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        stop   web.web[0] on n1 (Stop: alloc not needed due to job update)
        stop   web.web[1] on n1 (Stop: alloc not needed due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 2, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&format!("{}--\n{purged}", run(&state, &stopped)));
}

#[test]
fn removed_groups_are_stopped() {
    let state = cluster(
        "
        node n1
        alloc web.web[0] on n1
        alloc web.api[0] on n1
        ",
    );
    expect![[r#"
        stop   web.api[0] on n1 (Stop: alloc not needed due to job update)
        group api: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 1, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        group web: DesiredUpdates { ignore: 1, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &service("web", 1)));
}

#[test]
fn system_job_places_on_every_feasible_node() {
    let state = cluster(
        "
        node n1
        node n2 attr.kernel.name=linux
        node n3 status=down
        node n4 ineligible
        node n5 driver.pot=unhealthy
        node n6
        alloc sys.sys[0] on n3
        alloc sys.sys[0] on n2
        ",
    );
    let mut job = system("sys");
    job.constraints.push(constraint("${attr.kernel.name}", "=", "freebsd"));
    expect![[r#"
        place  sys.sys[0] on n1 v0
        place  sys.sys[0] on n6 v0
        stop   sys.sys[0] on n2 (Stop: alloc not needed as node is tainted)
        stop   sys.sys[0] on n3 (Stop: alloc is lost since its node is down) client=Lost
        group sys: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 2, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 1 }
    "#]].assert_eq(&run(&state, &job));
}

#[test]
fn a_joining_node_is_the_only_node_evaluated_for_system_jobs() {
    let state = cluster(
        "
        node n1
        node n2
        node n3
        alloc sys.sys[0] on n1
        ",
    );
    let mut c = ctx("sys");
    c.eval.triggered_by = TriggeredBy::NodeUpdate;
    c.eval.node_id = "n3".into();
    let (_, text) = run_with(&state, Some(&system("sys")), &c);
    expect![[r#"
        place  sys.sys[0] on n3 v0
        group sys: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&text);
}

#[test]
fn system_job_reports_exhausted_nodes() {
    let state = cluster(
        "
        node n1 cpu=50
        node n2 mem=100
        node n3
        ",
    );
    expect![[r#"
        place  sys.sys[0] on n3 v0
        group sys: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed sys: evaluated=2 filtered=0 exhausted=2 coalesced=1
          exhausted 1 on cpu
          exhausted 1 on memory
    "#]].assert_eq(&run(&state, &system("sys")));
}

#[test]
fn unplaceable_groups_report_metrics_and_a_blocked_eval() {
    let state = cluster(
        "
        node n1 cpu=250 class=small
        node n2 mem=300 class=small
        node n3 attr.kernel.name=linux
        node n4 driver.pot=undetected
        node n5 reserved_ports=80
        node n6 dc=dc2
        ",
    );
    let mut job = with_port(service("web", 4), "http", 80);
    job.datacenters = vec!["dc1".into()];
    job.constraints.push(constraint("${attr.kernel.name}", "=", "freebsd"));
    let (plan, text) = run_with(&state, Some(&job), &ctx("web"));
    let blocked = plan.blocked_eval.as_ref().expect("blocked eval");
    // One allocation per node because of the static port: n1 and n2 take one each.
    assert_eq!(blocked.queued_allocations["web"], 2);
    expect![[r#"
        place  web.web[1] on n1 v0 ports[http=80]
        place  web.web[0] on n2 v0 ports[http=80]
        group web: DesiredUpdates { ignore: 0, place: 4, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed web: evaluated=5 filtered=2 exhausted=3 coalesced=1
          filtered 1 by ${attr.kernel.name} = freebsd
          filtered 1 by missing drivers
          exhausted 1 on memory
          exhausted 2 on network: reserved port collision http=80
        blocked eval queued={"web": 2}
    "#]].assert_eq(&text);
}

#[test]
fn dynamic_ports_avoid_reserved_and_used_ports() {
    let state = cluster(
        "
        node n1 dyn=20000-20004 reserved_ports=20000,20002-20003
        alloc other.other[0] on n1 port=http:20001
        ",
    );
    expect![[r#"
        place  web.web[0] on n1 v0 ports[http=20004]
        group web: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed web: evaluated=1 filtered=0 exhausted=1 coalesced=0
          exhausted 1 on network: dynamic port selection failed
        blocked eval queued={"web": 1}
    "#]].assert_eq(&run(&state, &with_port(service("web", 2), "http", 0)));
}

#[test]
fn static_ports_are_not_double_booked() {
    let state = cluster(
        "
        node n1
        node n2
        node n3
        alloc other.other[0] on n1 port=http:8080
        ",
    );
    expect![[r#"
        place  web.web[0] on n2 v0 ports[http=8080]
        place  web.web[1] on n3 v0 ports[http=8080]
        group web: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed web: evaluated=3 filtered=0 exhausted=3 coalesced=0
          exhausted 3 on network: reserved port collision http=8080
        blocked eval queued={"web": 1}
    "#]].assert_eq(&run(&state, &with_port(service("web", 3), "http", 8080)));
}

#[test]
fn reservations_reduce_capacity() {
    let state = cluster(
        "
        node n1 cpu=1000 reserved_cpu=700
        node n2 cpu=1000 mem=1024 reserved_mem=900
        ",
    );
    expect![[r#"
        place  web.web[0] on n1 v0
        place  web.web[1] on n1 v0
        place  web.web[2] on n1 v0
        group web: DesiredUpdates { ignore: 0, place: 4, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed web: evaluated=2 filtered=0 exhausted=2 coalesced=0
          exhausted 1 on cpu
          exhausted 1 on memory
        blocked eval queued={"web": 1}
    "#]].assert_eq(&run(&state, &service("web", 4)));
}

#[test]
fn binpack_fills_used_nodes_and_spread_prefers_empty_ones() {
    let state = cluster(
        "
        node n1
        node n2
        node n3
        alloc other.other[0] on n2 cpu=2000 mem=4096
        ",
    );
    let job = service("web", 2);
    let mut spread = ctx("web");
    spread.algorithm = Algorithm::Spread;
    let (_, s) = run_with(&state, Some(&job), &spread);
    expect![[r#"
        place  web.web[0] on n2 v0
        place  web.web[1] on n3 v0
        group web: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        place  web.web[0] on n1 v0
        place  web.web[1] on n3 v0
        group web: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&format!("{}--\n{s}", run(&state, &job)));
}

#[test]
fn spread_block_targets_and_even_spread() {
    let state = cluster(
        "
        node a1 dc=a
        node a2 dc=a
        node b1 dc=b
        node b2 dc=b
        node c1 dc=c
        ",
    );
    let mut targeted = service("web", 10);
    targeted.task_groups[0].spreads.push(model::Spread {
        attribute: "${node.datacenter}".into(),
        weight: 100,
        spread_target: vec![
            model::SpreadTarget { value: "a".into(), percent: 70 },
            model::SpreadTarget { value: "b".into(), percent: 30 },
        ],
    });
    let mut even = service("even", 6);
    even.task_groups[0].spreads.push(model::Spread {
        attribute: "${node.datacenter}".into(),
        weight: 50,
        spread_target: vec![],
    });
    let count = |text: &str| {
        let mut m = std::collections::BTreeMap::<String, u32>::new();
        for l in text.lines().filter(|l| l.starts_with("place")) {
            let node = l.split(" on ").nth(1).unwrap().split(' ').next().unwrap();
            *m.entry(node[..1].to_string()).or_default() += 1;
        }
        format!("{m:?}")
    };
    expect![[r#"
        targeted {"a": 7, "b": 3}
        even {"a": 2, "b": 2, "c": 2}"#]]
    .assert_eq(&format!(
        "targeted {}\neven {}",
        count(&run(&state, &targeted)),
        count(&run(&state, &even))
    ));
}

#[test]
fn affinity_prefers_matching_nodes() {
    let state = cluster(
        "
        node n1 class=slow
        node n2 class=fast
        node n3 class=slow
        ",
    );
    let mut job = service("web", 2);
    job.affinities.push(model::Affinity {
        ltarget: "${node.class}".into(),
        operand: "=".into(),
        rtarget: "fast".into(),
        weight: 100,
    });
    expect![[r#"
        place  web.web[1] on n1 v0
        place  web.web[0] on n2 v0
        group web: DesiredUpdates { ignore: 0, place: 2, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &job));
}

#[test]
fn distinct_hosts_and_distinct_property() {
    let state = cluster(
        "
        node n1 meta.rack=r1
        node n2 meta.rack=r1
        node n3 meta.rack=r2
        node n4
        ",
    );
    let mut hosts = service("h", 5);
    hosts.constraints.push(constraint("", "distinct_hosts", "true"));
    let mut racks = service("r", 3);
    racks.task_groups[0].constraints.push(constraint("${meta.rack}", "distinct_property", ""));
    expect![[r#"
        place  h.h[0] on n1 v0
        place  h.h[2] on n2 v0
        place  h.h[3] on n3 v0
        place  h.h[1] on n4 v0
        group h: DesiredUpdates { ignore: 0, place: 5, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed h: evaluated=4 filtered=4 exhausted=0 coalesced=0
          filtered 4 by distinct_hosts
        blocked eval queued={"h": 1}
        --
        place  r.r[0] on n1 v0
        place  r.r[1] on n3 v0
        group r: DesiredUpdates { ignore: 0, place: 3, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed r: evaluated=4 filtered=4 exhausted=0 coalesced=0
          filtered 4 by distinct_property: ${meta.rack}
        blocked eval queued={"r": 1}
    "#]].assert_eq(&format!("{}--\n{}", run(&state, &hosts), run(&state, &racks)));
}

#[test]
fn the_same_input_gives_the_same_plan_and_seeds_matter() {
    let state = cluster(
        "
        node n1
        node n2
        node n3
        node n4
        ",
    );
    let job = with_port(service("web", 3), "http", 0);
    let a = scheduler::schedule(&state, Some(&job), &ctx("web"));
    let b = scheduler::schedule(&state, Some(&job), &ctx("web"));
    assert_eq!(a, b);
    let mut other = ctx("web");
    other.seed = 7;
    assert_ne!(a, scheduler::schedule(&state, Some(&job), &other));
}

#[test]
fn verify_plan_rejects_a_stale_plan() {
    let state = cluster(
        "
        node n1 cpu=300
        node n2
        ",
    );
    let job = with_port(service("web", 2), "http", 9000);
    let (plan, _) = run_with(&state, Some(&job), &ctx("web"));
    // Meanwhile another worker's plan took n1's cpu and port 9000 on n2.
    let newer = cluster(
        "
        node n1 cpu=300
        node n2
        alloc x.x[0] on n1 cpu=250
        alloc y.y[0] on n2 port=http:9000
        ",
    );
    let verdict = verify_plan(&newer, &plan);
    expect![[r#"{"n1": "cpu over-committed: 350 > 300 MHz", "n2": "port 9000 double-booked"}"#]]
        .assert_eq(&format!("{:?}", verdict.rejected_nodes));
    let mut all = plan.clone();
    all.all_at_once = true;
    let down = cluster(
        "
        node n1 cpu=300
        node n2 status=down
        ",
    );
    expect![[r#"PlanVerdict { accepted_nodes: {}, rejected_nodes: {"n1": "all_at_once: another node was rejected", "n2": "node is down"} }"#]].assert_eq(&format!("{:?}", verify_plan(&down, &all)));
}

/// A plan computed before a node's drain committed places nothing new there (sim seed 1042 in
/// `SimConfig::small`: an allocation landed on a node whose drain had already completed). An
/// allocation already there may still be updated in place: `run_with` verifies every plan of
/// `ineligible_nodes_keep_in_place_updates_but_get_no_new_work` against its own snapshot.
#[test]
fn verify_plan_rejects_new_work_on_an_ineligible_node() {
    let state = cluster(
        "
        node n1
        node n2
        ",
    );
    let (plan, _) = run_with(&state, Some(&service("web", 2)), &ctx("web"));
    assert!(verify_plan(&state, &plan).is_complete());
    let drained = cluster(
        "
        node n1 drain
        node n2 ineligible
        ",
    );
    expect![[r#"{"n1": "node is not eligible", "n2": "node is not eligible"}"#]]
        .assert_eq(&format!("{:?}", verify_plan(&drained, &plan).rejected_nodes));
}

#[test]
fn apply_plan_links_replacements_and_marks_lost() {
    let mut state = cluster(
        "
        node n1 status=down
        node n2
        alloc web.web[0] on n1
        ",
    );
    let (plan, _) = run_with(&state, Some(&service("web", 1)), &ctx("web"));
    let verdict = verify_plan(&state, &plan);
    state.apply_plan(plan, &verdict, NOW);
    let old = state.alloc("a0").unwrap();
    assert_eq!(old.client_status, model::ClientStatus::Lost);
    assert_eq!(old.desired_status, model::DesiredStatus::Stop);
    let new = state.alloc(&old.next_allocation).expect("linked replacement");
    assert_eq!(new.node_id, "n2");
    // The next evaluation is a no-op.
    let (again, _) = run_with(&state, Some(&service("web", 1)), &ctx("web"));
    assert!(again.is_no_op(), "{again:?}");
    assert_eq!(JobType::Service, service("web", 1).job_type);
}

#[test]
fn delay_functions_set_the_followup_time() {
    // Each allocation failed at 9,990 s after two reschedules (delays 20 s, then 40 s). With
    // delay 20 s and max_delay 70 s: constant waits 20 s, exponential 80 s capped to 70 s,
    // fibonacci 40 + 20 = 60 s. `r` ran 90 s (> max_delay) since its last reschedule, so its
    // exponential series resets to 20 s.
    let state = cluster(
        "
        node n1
        alloc c.c[0] on n1 status=failed modify=9990 resched=20@9000,40@9950
        alloc e.e[0] on n1 status=failed modify=9990 resched=20@9000,40@9950
        alloc f.f[0] on n1 status=failed modify=9990 resched=20@9000,40@9950
        alloc r.r[0] on n1 status=failed modify=9990 resched=20@9000,40@9900
        ",
    );
    let mut out = String::new();
    for (id, function) in
        [("c", "constant"), ("e", "exponential"), ("f", "fibonacci"), ("r", "exponential")]
    {
        let mut job = service(id, 1);
        let p = job.task_groups[0].reschedule_policy.as_mut().unwrap();
        p.delay_function = function.into();
        (p.delay, p.max_delay) = (Duration::from_secs(20), Duration::from_secs(70));
        let (plan, _) = run_with(&state, Some(&job), &ctx(id));
        let due = plan.followup_evals[0].wait_until / SEC;
        out.push_str(&format!("{id} {function}: follow-up at {due} s\n"));
    }
    expect![[r#"
        c constant: follow-up at 10010 s
        e exponential: follow-up at 10060 s
        f fibonacci: follow-up at 10050 s
        r exponential: follow-up at 10010 s
    "#]]
    .assert_eq(&out);
}

#[test]
fn ineligible_nodes_keep_in_place_updates_but_get_no_new_work() {
    let mut state = cluster(
        "
        node n1 ineligible
        node n2
        alloc web.web[0] on n1 v=0
        ",
    );
    let old = service("web", 1);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].count = 2;
    expect![[r#"
        update web.web[0] on n1 v1
        place  web.web[1] on n2 v1
        group web: DesiredUpdates { ignore: 0, place: 1, migrate: 0, stop: 0, in_place_update: 1, destructive_update: 0, reschedule_now: 0, reschedule_later: 0, lost: 0 }
    "#]].assert_eq(&run(&state, &new));
}

#[test]
fn destructive_update_on_a_full_cluster_reuses_the_freed_node() {
    // n1 is full with the job's two allocations; the replacements can only go where the old ones
    // ran. A third group member that fits nowhere keeps its old allocation running.
    let mut state = cluster(
        "
        node n1 cpu=200
        alloc web.web[0] on n1 v=0
        alloc web.web[1] on n1 v=0
        ",
    );
    let old = service("web", 2);
    versioned(&mut state, &old);
    let mut new = old.clone();
    new.version = 1;
    new.task_groups[0].update = None;
    new.task_groups[0].tasks[0].env.insert("V".into(), "1".into());
    let fits = run(&state, &new);
    new.task_groups[0].tasks[0].resources.as_mut().unwrap().cpu = 150;
    let too_big = run(&state, &new);
    expect![[r#"
        place  web.web[0] on n1 v1 replaces web.web[0]
        place  web.web[1] on n1 v1 replaces web.web[1]
        stop   web.web[0] on n1 (Stop: alloc is being updated due to job update)
        stop   web.web[1] on n1 (Stop: alloc is being updated due to job update)
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 2, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        --
        group web: DesiredUpdates { ignore: 0, place: 0, migrate: 0, stop: 0, in_place_update: 0, destructive_update: 2, reschedule_now: 0, reschedule_later: 0, lost: 0 }
        failed web: evaluated=1 filtered=0 exhausted=1 coalesced=1
          exhausted 1 on cpu
        blocked eval queued={"web": 2}
    "#]].assert_eq(&format!("{fits}--\n{too_big}"));
}

#[test]
fn a_replaced_failed_allocation_is_not_rescheduled_again_even_unlinked() {
    // The replacement names its predecessor, but the store has not set `next_allocation`.
    let mut state = cluster(
        "
        node n1
        node n2
        alloc web.web[0] on n1 status=failed modify=9000 id=old
        alloc web.web[0] on n2 id=new
        ",
    );
    let mut new = state.alloc("new").unwrap().clone();
    new.previous_allocation = "old".into();
    state.upsert_alloc(new);
    let (plan, _) = run_with(&state, Some(&service("web", 1)), &ctx("web"));
    assert!(plan.is_no_op(), "{}", plan.render(&state));
}
