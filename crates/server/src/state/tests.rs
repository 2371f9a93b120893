//! Unit tests of `apply`: each feeds commands at increasing indexes and checks the state.

use super::*;
use crate::codec;
use model::{EvalStatus, TaskGroup};

fn job(id: &str, count: u32) -> Job {
    Job {
        namespace: "default".into(),
        id: id.into(),
        name: id.into(),
        task_groups: vec![TaskGroup { name: "g".into(), count, ..TaskGroup::default() }],
        ..Job::default()
    }
}

fn eval(id: &str, job_id: &str, status: EvalStatus) -> Evaluation {
    Evaluation {
        id: id.into(),
        namespace: "default".into(),
        job_id: job_id.into(),
        status,
        ..Evaluation::default()
    }
}

fn alloc(id: &str, job_id: &str, node_id: &str) -> Allocation {
    Allocation {
        id: id.into(),
        namespace: "default".into(),
        job_id: job_id.into(),
        node_id: node_id.into(),
        task_group: "g".into(),
        ..Allocation::default()
    }
}

fn node(id: &str) -> Node {
    Node { id: id.into(), datacenter: "dc1".into(), status: NodeStatus::Ready, ..Node::default() }
}

/// Applies commands at indexes 1, 2, … and returns the state and the outcomes.
fn run(commands: Vec<Command>) -> (State, Vec<Outcome>) {
    let mut state = State::new();
    let outcomes = commands.into_iter().zip(1..).map(|(c, i)| apply(&mut state, i, c)).collect();
    (state, outcomes)
}

fn register(j: Job, e: Option<Evaluation>) -> Command {
    Command::JobRegister { job: Box::new(j), eval: e.map(Box::new) }
}

#[test]
fn job_versions_advance_only_when_the_spec_changes() {
    let (state, outcomes) = run(vec![
        register(job("web", 1), Some(eval("e1", "web", EvalStatus::Pending))),
        register(job("web", 1), None),
        register(job("web", 3), None),
    ]);
    assert_eq!(
        outcomes,
        vec![
            Outcome::JobRegistered { job_version: 0, job_modify_index: 1 },
            Outcome::JobRegistered { job_version: 0, job_modify_index: 1 },
            Outcome::JobRegistered { job_version: 1, job_modify_index: 3 },
        ]
    );
    let web = state.job("default", "web").unwrap();
    assert_eq!((web.create_index, web.modify_index, web.version), (1, 3, 1));
    assert_eq!(web.status, "pending", "an open evaluation keeps a job pending");
    let versions: Vec<u64> =
        state.job_versions("default", "web").iter().map(|j| j.version).collect();
    assert_eq!(versions, vec![1, 0]);
    assert_eq!(state.eval("e1").unwrap().job_modify_index, 1);
    assert_eq!(state.table_index(Table::Jobs), 3);
    assert_eq!(state.table_index(Table::Evals), 1);
    assert_eq!(state.index(), 3);
}

#[test]
fn only_the_last_tracked_versions_are_kept() {
    let commands = (1..=10).map(|count| register(job("web", count), None)).collect();
    let (state, _) = run(commands);
    let versions: Vec<u64> =
        state.job_versions("default", "web").iter().map(|j| j.version).collect();
    assert_eq!(versions, vec![9, 8, 7, 6, 5, 4]);
    assert_eq!(versions.len(), JOB_TRACKED_VERSIONS);
}

#[test]
fn deregister_stops_and_purge_removes() {
    let (state, outcomes) = run(vec![
        register(job("web", 1), None),
        Command::JobDeregister {
            namespace: "default".into(),
            job_id: "web".into(),
            eval: Some(Box::new(eval("e2", "web", EvalStatus::Complete))),
        },
        Command::JobPurge { namespace: "default".into(), job_id: "nope".into(), eval: None },
    ]);
    let web = state.job("default", "web").unwrap();
    assert!(web.stop);
    assert_eq!(web.version, 1, "stopping a job is a new version");
    assert_eq!(web.status, "dead");
    assert!(matches!(outcomes[2], Outcome::NotFound { .. }));

    let mut state = state;
    let purge = Command::JobPurge { namespace: "default".into(), job_id: "web".into(), eval: None };
    assert_eq!(apply(&mut state, 4, purge), Outcome::Applied);
    assert!(state.job("default", "web").is_none());
    assert!(state.job_versions("default", "web").is_empty());
}

#[test]
fn plans_place_and_stop_allocations_and_agents_report_on_them() {
    let mut placed = alloc("a1", "web", "n1");
    placed.desired_description = "first".into();
    let (mut state, _) = run(vec![
        register(job("web", 2), Some(eval("e1", "web", EvalStatus::Pending))),
        Command::PlanResults(PlanResults {
            eval_id: "e1".into(),
            allocs: vec![placed.clone(), alloc("a2", "web", "n2")],
            stops: vec![],
            evals: vec![eval("e1", "web", EvalStatus::Complete)],
        }),
    ]);
    assert_eq!(state.allocs_by_node("n1").len(), 1);
    assert_eq!(state.allocs_by_job("default", "web").len(), 2);
    assert_eq!(state.job("default", "web").unwrap().status, "running");

    let report = AllocClientUpdate {
        alloc_id: "a1".into(),
        client_status: ClientStatus::Running,
        ..AllocClientUpdate::default()
    };
    let unknown = AllocClientUpdate { alloc_id: "gone".into(), ..AllocClientUpdate::default() };
    apply(
        &mut state,
        3,
        Command::AllocClientUpdate { updates: vec![report, unknown], evals: vec![] },
    );
    let a1 = state.alloc("a1").unwrap();
    assert_eq!(
        (a1.client_status, a1.modify_index, a1.alloc_modify_index),
        (ClientStatus::Running, 3, 2)
    );

    // An in-place update from a later plan keeps what the agent reported.
    placed.desired_description = "updated".into();
    let stop = AllocStop {
        alloc_id: "a2".into(),
        desired_description: "node down".into(),
        client_status: Some(ClientStatus::Lost),
        ..AllocStop::default()
    };
    apply(
        &mut state,
        4,
        Command::PlanResults(PlanResults {
            allocs: vec![placed],
            stops: vec![stop],
            ..PlanResults::default()
        }),
    );
    let a1 = state.alloc("a1").unwrap();
    assert_eq!(
        (a1.client_status, a1.desired_description.as_str()),
        (ClientStatus::Running, "updated")
    );
    assert_eq!(a1.create_index, 2);
    let a2 = state.alloc("a2").unwrap();
    assert_eq!((a2.desired_status, a2.client_status), (DesiredStatus::Stop, ClientStatus::Lost));

    let done = AllocClientUpdate {
        alloc_id: "a1".into(),
        client_status: ClientStatus::Complete,
        ..AllocClientUpdate::default()
    };
    apply(&mut state, 5, Command::AllocClientUpdate { updates: vec![done], evals: vec![] });
    assert_eq!(state.job("default", "web").unwrap().status, "dead");

    apply(
        &mut state,
        6,
        Command::EvalDelete { eval_ids: vec!["e1".into()], alloc_ids: vec!["a2".into()] },
    );
    assert!(state.eval("e1").is_none());
    assert!(state.allocs_by_node("n2").is_empty());
    assert_eq!(state.allocs_by_job("default", "web").len(), 1);
}

#[test]
fn operators_own_eligibility_and_drain() {
    let mut reregistered = node("n1");
    reregistered.status = NodeStatus::Initializing;
    let (state, outcomes) = run(vec![
        Command::NodeRegister { node: Box::new(node("n1")) },
        Command::NodeDrain {
            node_id: "n1".into(),
            drain: Some(DrainStrategy::default()),
            mark_eligible: false,
            evals: vec![],
            event: None,
            last_drain: None,
        },
        Command::NodeEligibility {
            node_id: "n1".into(),
            eligibility: SchedulingEligibility::Eligible,
            evals: vec![],
        },
        Command::NodeRegister { node: Box::new(reregistered) },
        Command::NodeStatus {
            node_id: "missing".into(),
            status: NodeStatus::Down,
            status_description: String::new(),
            evals: vec![],
        },
    ]);
    assert!(matches!(outcomes[2], Outcome::Rejected { .. }));
    assert!(matches!(outcomes[4], Outcome::NotFound { .. }));
    let n1 = state.node("n1").unwrap();
    assert!(n1.drain, "re-registering does not end a drain");
    assert_eq!(n1.scheduling_eligibility, SchedulingEligibility::Ineligible);
    assert_eq!(n1.status, NodeStatus::Initializing);
    assert_eq!((n1.create_index, n1.modify_index), (1, 4));
    assert_eq!(n1.computed_class, n1.compute_class());

    let mut state = state;
    let undrain = Command::NodeDrain {
        node_id: "n1".into(),
        drain: None,
        mark_eligible: true,
        evals: vec![],
        event: None,
        last_drain: None,
    };
    apply(&mut state, 6, undrain);
    let n1 = state.node("n1").unwrap();
    assert!(!n1.drain);
    assert_eq!(n1.scheduling_eligibility, SchedulingEligibility::Eligible);
}

#[test]
fn services_register_and_deregister_with_their_own_index() {
    let svc = |id: &str| ServiceRegistration {
        id: id.into(),
        service_name: "web".into(),
        ..Default::default()
    };
    let (state, _) = run(vec![
        Command::ServiceRegister { services: vec![svc("s1"), svc("s2")] },
        Command::NodeRegister { node: Box::new(node("n1")) },
        Command::ServiceRegister { services: vec![svc("s1")] },
        Command::ServiceDeregister { ids: vec!["s2".into(), "never".into()] },
    ]);
    let s1 = state.service("s1").unwrap();
    assert_eq!((s1.create_index, s1.modify_index), (1, 3));
    assert!(state.service("s2").is_none());
    assert_eq!(state.table_index(Table::Services), 4);
    assert_eq!(state.table_index(Table::Nodes), 2);
}

fn busy_history() -> Vec<Command> {
    vec![
        Command::NodeRegister { node: Box::new(node("n1")) },
        register(job("web", 2), Some(eval("e1", "web", EvalStatus::Pending))),
        register(job("api", 1), Some(eval("e2", "api", EvalStatus::Pending))),
        Command::PlanResults(PlanResults {
            eval_id: "e1".into(),
            allocs: vec![alloc("a1", "web", "n1"), alloc("a2", "api", "n1")],
            stops: vec![],
            evals: vec![eval("e1", "web", EvalStatus::Complete)],
        }),
        Command::ServiceRegister {
            services: vec![ServiceRegistration { id: "s1".into(), ..Default::default() }],
        },
    ]
}

#[test]
fn snapshots_round_trip_through_the_versioned_encoding() {
    let (state, _) = run(busy_history());
    let bytes = codec::encode(&state.to_snapshot());
    let restored = State::from_snapshot(codec::decode(&bytes).unwrap());
    assert_eq!(restored, state, "tables and rebuilt secondary indexes must match");
}

#[test]
fn commands_round_trip_and_replay_deterministically() {
    let history = busy_history();
    let decoded: Vec<Command> =
        history.iter().map(|c| codec::decode(&codec::encode(c)).unwrap()).collect();
    assert_eq!(decoded, history);
    assert_eq!(run(decoded).0, run(history).0);
}

#[test]
fn register_if_index_is_check_and_set_in_log_order() {
    let cas = |count, index| Command::JobRegisterIfIndex {
        job: Box::new(job("web", count)),
        eval: None,
        job_modify_index: index,
    };
    let (state, outcomes) = run(vec![cas(1, 0), cas(2, 0), cas(3, 1), cas(4, 1), cas(5, 9)]);
    assert_eq!(outcomes[0], Outcome::JobRegistered { job_version: 0, job_modify_index: 1 });
    assert_eq!(
        outcomes[1],
        Outcome::Rejected { reason: "Enforcing job modify index 0: job already exists".into() }
    );
    assert_eq!(outcomes[2], Outcome::JobRegistered { job_version: 1, job_modify_index: 3 });
    // The second submission planned against index 1 loses: the first one moved the job on.
    assert_eq!(
        outcomes[3],
        Outcome::Rejected {
            reason: "Enforcing job modify index 1: job exists with conflicting job modify index: 3"
                .into()
        }
    );
    assert!(matches!(outcomes[4], Outcome::Rejected { .. }));
    assert_eq!(state.job("default", "web").unwrap().task_groups[0].count, 3);
}

/// The state's content with every index removed, to compare states reached at different indexes.
fn content(state: &State) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !k.to_ascii_lowercase().ends_with("index"));
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(state.to_snapshot()).unwrap();
    strip(&mut v);
    v
}

#[test]
fn applying_a_command_twice_changes_nothing_but_indexes() {
    // Forwarding retries a write whose first attempt may have committed (the leader died before
    // answering). That is safe only because every command is idempotent: IDs and times are
    // chosen before proposing, never inside `apply`.
    let mut history = busy_history();
    history.push(Command::JobDeregister {
        namespace: "default".into(),
        job_id: "api".into(),
        eval: Some(Box::new(eval("e3", "api", EvalStatus::Pending))),
    });
    history.push(Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            alloc_id: "a1".into(),
            client_status: ClientStatus::Running,
            ..AllocClientUpdate::default()
        }],
        evals: vec![],
    });
    history.push(Command::EvalDelete { eval_ids: vec!["e2".into()], alloc_ids: vec![] });
    let (once, _) = run(history.clone());
    for (i, command) in history.iter().enumerate() {
        let mut twice = history[..=i].to_vec();
        twice.push(command.clone());
        twice.extend(history[i + 1..].iter().cloned());
        let (state, _) = run(twice);
        assert_eq!(content(&state), content(&once), "re-applying command {i}: {command:?}");
    }
}

/// Job summaries recounted from every allocation, the way the API computed them before the
/// state kept them.
fn recount(state: &State) -> BTreeMap<JobKey, BTreeMap<String, AllocCounts>> {
    let mut out: BTreeMap<JobKey, BTreeMap<String, AllocCounts>> = BTreeMap::new();
    for a in state.allocs() {
        let key = (a.namespace.clone(), a.job_id.clone());
        let c = out.entry(key).or_default().entry(a.task_group.clone()).or_default();
        *c.slot(a.client_status) += 1;
    }
    out
}

#[test]
fn job_summaries_follow_every_allocation_change_and_survive_snapshots() {
    let mut history = busy_history();
    let report = |id: &str, status| Command::AllocClientUpdate {
        updates: vec![AllocClientUpdate {
            alloc_id: id.into(),
            client_status: status,
            ..AllocClientUpdate::default()
        }],
        evals: vec![],
    };
    history.push(report("a1", ClientStatus::Running));
    history.push(report("a2", ClientStatus::Failed));
    history.push(Command::PlanResults(PlanResults {
        // An in-place update of a1, a new a3, and a2 stopped as lost.
        allocs: vec![alloc("a1", "web", "n1"), alloc("a3", "web", "n1")],
        stops: vec![AllocStop {
            alloc_id: "a2".into(),
            client_status: Some(ClientStatus::Lost),
            ..AllocStop::default()
        }],
        ..PlanResults::default()
    }));
    history.push(report("a3", ClientStatus::Complete));
    history.push(report("gone", ClientStatus::Running));
    history
        .push(Command::EvalDelete { eval_ids: vec![], alloc_ids: vec!["a2".into(), "a3".into()] });
    let mut state = State::new();
    for (i, command) in history.into_iter().enumerate() {
        apply(&mut state, i as u64 + 1, command.clone());
        let kept: BTreeMap<JobKey, BTreeMap<String, AllocCounts>> = state
            .jobs()
            .filter_map(|j| {
                let c = state.job_alloc_counts(&j.namespace, &j.id)?;
                Some(((j.namespace.clone(), j.id.clone()), c.clone()))
            })
            .collect();
        assert_eq!(kept, recount(&state), "after {command:?}");
        let restored = State::from_snapshot(state.to_snapshot());
        assert_eq!(restored.summaries, state.summaries, "restored after {command:?}");
    }
    let web = state.job_alloc_counts("default", "web").unwrap();
    assert_eq!(web["g"], AllocCounts { running: 1, ..AllocCounts::default() });
    assert!(state.job_alloc_counts("default", "api").is_none(), "a2 was collected");
}

/// A plan read its copy of an allocation before another plan stopped it: its in-place update
/// changes the job version but never the stop (desired status only moves forward).
#[test]
fn an_in_place_update_does_not_undo_a_stop_committed_since() {
    let stale = alloc("a1", "web", "n1");
    let (mut state, _) = run(vec![
        register(job("web", 1), None),
        Command::PlanResults(PlanResults { allocs: vec![stale.clone()], ..PlanResults::default() }),
        Command::PlanResults(PlanResults {
            stops: vec![AllocStop {
                alloc_id: "a1".into(),
                desired_description: "alloc not needed".into(),
                ..AllocStop::default()
            }],
            ..PlanResults::default()
        }),
    ]);
    let mut updated = stale;
    updated.job_version = 1;
    apply(
        &mut state,
        4,
        Command::PlanResults(PlanResults { allocs: vec![updated], ..PlanResults::default() }),
    );
    let a1 = state.alloc("a1").unwrap();
    assert_eq!(a1.job_version, 1);
    assert_eq!(a1.desired_status, DesiredStatus::Stop);
    assert_eq!(a1.desired_description, "alloc not needed");
}
