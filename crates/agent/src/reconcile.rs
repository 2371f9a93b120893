//! The agent's reconciler, a pure function: what the servers want on this node and what runs
//! here in, the actions that close the gap out. No IO, no clock; the client executes the
//! actions.

use model::{Allocation, DesiredStatus};
use std::collections::{BTreeMap, BTreeSet};

/// What the agent knows about one local allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// A stop was already sent.
    pub stopping: bool,
    /// Every task is dead.
    pub done: bool,
    /// The job version the runner has.
    pub job_version: u64,
}

/// One step for the client to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start running a new allocation.
    Run(String),
    /// Stop every task of a running allocation.
    Stop(String),
    /// Hand a running allocation its new job version: the servers updated it in place.
    Update(String),
    /// Remove a terminal allocation's directory and state: the servers no longer need it here.
    Gc(String),
    /// Report an allocation the servers stopped before it ever ran here as complete, its
    /// tasks dead, without starting anything (as Nomad's client does with a terminal
    /// allocation it is handed).
    Discard(String),
}

/// Compares the servers' allocations for this node with the local ones.
pub fn reconcile(desired: &[Allocation], local: &BTreeMap<String, Local>) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut seen = BTreeSet::new();
    for alloc in desired {
        seen.insert(alloc.id.as_str());
        let wants_run = alloc.desired_status == DesiredStatus::Run;
        match local.get(&alloc.id) {
            None if wants_run && !alloc.client_status.is_terminal() => {
                actions.push(Action::Run(alloc.id.clone()))
            }
            // Otherwise the servers wait for a terminal status that nothing would send.
            None if !alloc.client_status.is_terminal() => {
                actions.push(Action::Discard(alloc.id.clone()))
            }
            None => {}
            Some(l)
                if wants_run && !l.stopping && !l.done && alloc.job_version != l.job_version =>
            {
                actions.push(Action::Update(alloc.id.clone()))
            }
            Some(l) if !wants_run && !l.done && !l.stopping => {
                actions.push(Action::Stop(alloc.id.clone()))
            }
            Some(l) if !wants_run && l.done && alloc.client_status.is_terminal() => {
                actions.push(Action::Gc(alloc.id.clone()))
            }
            Some(_) => {}
        }
    }
    for (id, l) in local {
        if seen.contains(id.as_str()) {
            continue;
        }
        // The servers garbage-collected it (or it was never theirs): stop, then forget it.
        if l.done {
            actions.push(Action::Gc(id.clone()));
        } else if !l.stopping {
            actions.push(Action::Stop(id.clone()));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ClientStatus;

    fn alloc(id: &str, desired: DesiredStatus, client: ClientStatus) -> Allocation {
        Allocation {
            id: id.into(),
            desired_status: desired,
            client_status: client,
            ..Allocation::default()
        }
    }

    #[test]
    fn runs_new_stops_unwanted_and_collects_terminal() {
        let desired = vec![
            alloc("new", DesiredStatus::Run, ClientStatus::Pending),
            alloc("old-done", DesiredStatus::Run, ClientStatus::Complete),
            alloc("stop-me", DesiredStatus::Stop, ClientStatus::Running),
            alloc("stopped", DesiredStatus::Stop, ClientStatus::Complete),
            alloc("running", DesiredStatus::Run, ClientStatus::Running),
            alloc("never-ran", DesiredStatus::Stop, ClientStatus::Pending),
            alloc("never-ran-reported", DesiredStatus::Stop, ClientStatus::Complete),
        ];
        let running = Local { stopping: false, done: false, job_version: 0 };
        let done = Local { stopping: true, done: true, job_version: 0 };
        let local = BTreeMap::from([
            ("stop-me".to_string(), running),
            ("stopped".to_string(), done),
            ("running".to_string(), running),
            ("forgotten".to_string(), running),
            ("forgotten-done".to_string(), done),
        ]);
        assert_eq!(
            reconcile(&desired, &local),
            vec![
                Action::Run("new".into()),
                Action::Stop("stop-me".into()),
                Action::Gc("stopped".into()),
                Action::Discard("never-ran".into()),
                Action::Stop("forgotten".into()),
                Action::Gc("forgotten-done".into()),
            ]
        );
        // Applying the same view again asks for nothing new once stops are under way.
        let local2 = BTreeMap::from([
            ("stop-me".to_string(), Local { stopping: true, done: false, job_version: 0 }),
            ("running".to_string(), running),
            ("new".to_string(), running),
        ]);
        // The never-run allocation is reported again until the servers show it terminal.
        assert_eq!(reconcile(&desired, &local2), vec![Action::Discard("never-ran".into())]);
    }

    #[test]
    fn a_new_job_version_on_a_running_allocation_is_an_update_not_a_restart() {
        let mut updated = alloc("a", DesiredStatus::Run, ClientStatus::Running);
        updated.job_version = 2;
        let at = |job_version| {
            BTreeMap::from([("a".to_string(), Local { stopping: false, done: false, job_version })])
        };
        assert_eq!(reconcile(&[updated.clone()], &at(1)), vec![Action::Update("a".into())]);
        assert_eq!(reconcile(&[updated.clone()], &at(2)), vec![]);
        // Nothing to update once it is stopping or done.
        let stopping = BTreeMap::from([(
            "a".to_string(),
            Local { stopping: true, done: false, job_version: 1 },
        )]);
        assert_eq!(reconcile(&[updated], &stopping), vec![]);
    }
}
