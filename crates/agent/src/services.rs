//! Registers the services of this node's running allocations with the local Consul agent
//! (`provider = "consul"`, Nomad's default): registered once an allocation reports running,
//! deregistered once it stops or is collected. The work is the `consul` crate's syncer, which
//! never blocks (Consul being down never delays a task) and repairs drift periodically.
//!
//! Not here yet: orc's own catalogue (`provider = "nomad"`), checks run by the agent (script
//! checks' TTL updates, the native catalogue's health), `check_restart`, and `${...}`
//! interpolation of service fields.

use consul::build::{registration, Instance};
use consul::ids::Owner;
use consul::{Client, ConsulConfig, Syncer};
use model::{Allocation, ClientStatus, Job};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often the whole Consul state is compared with what should be there (Nomad: 30 s).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// The Consul side of the agent's services.
pub struct ConsulServices {
    syncer: Syncer,
    node_address: String,
    /// What is needed to build an allocation's registrations when it reports running.
    allocs: Mutex<BTreeMap<String, (Allocation, Job)>>,
}

impl ConsulServices {
    /// Services for a node reachable at `node_address`; run [`ConsulServices::syncer`]'s loop.
    pub fn new(config: ConsulConfig, node_address: String) -> ConsulServices {
        let syncer = Syncer::new(Client::new(config), SYNC_INTERVAL);
        ConsulServices { syncer, node_address, allocs: Mutex::default() }
    }

    pub fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// Remembers an allocation this agent runs.
    pub fn track(&self, alloc: &Allocation, job: &Job) {
        let mut a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
        a.insert(alloc.id.clone(), (alloc.clone(), job.clone()));
    }

    /// Follows an allocation's status: running → registered, anything terminal → deregistered.
    pub fn status(&self, alloc_id: &str, status: ClientStatus) {
        match status {
            ClientStatus::Running => {
                let a = self.allocs.lock().unwrap_or_else(|e| e.into_inner());
                let Some((alloc, job)) = a.get(alloc_id) else { return };
                let regs = registrations(alloc, job, &self.node_address);
                drop(a);
                self.syncer.set_alloc(alloc_id, regs);
            }
            ClientStatus::Pending => {}
            _ => self.syncer.remove_alloc(alloc_id),
        }
    }

    /// Forgets an allocation (collected): its services go.
    pub fn forget(&self, alloc_id: &str) {
        self.allocs.lock().unwrap_or_else(|e| e.into_inner()).remove(alloc_id);
        self.syncer.remove_alloc(alloc_id);
    }
}

/// The Consul registrations of `alloc`'s group and task services.
pub fn registrations(
    alloc: &Allocation,
    job: &Job,
    node_address: &str,
) -> Vec<consul::ServiceRegistration> {
    let Some(group) = job.task_groups.iter().find(|g| g.name == alloc.task_group) else {
        return Vec::new();
    };
    let ports: BTreeMap<String, u16> =
        alloc.allocated_resources.shared.ports.iter().map(|p| (p.label.clone(), p.value)).collect();
    let group_services = group.services.iter().map(|s| (Owner::Group(&group.name), s));
    let task_services =
        group.tasks.iter().flat_map(|t| t.services.iter().map(move |s| (Owner::Task(&t.name), s)));
    let mut out = Vec::new();
    for (owner, service) in group_services.chain(task_services) {
        if service.provider != "consul" && !service.provider.is_empty() {
            continue;
        }
        let i = Instance { alloc_id: &alloc.id, owner, service, node_address, ports: &ports };
        match registration(&i) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(alloc = %alloc.id, error = %e, "service not registered"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AllocatedPort, Service, Task, TaskGroup};

    #[test]
    fn consul_services_of_the_group_and_its_tasks_with_host_ports() {
        let svc = |name: &str, provider: &str| Service {
            name: name.into(),
            port_label: "http".into(),
            provider: provider.into(),
            ..Service::default()
        };
        let job = Job {
            id: "nginx-minipot".into(),
            task_groups: vec![TaskGroup {
                name: "group1".into(),
                services: vec![svc("group-svc", "consul")],
                tasks: vec![Task {
                    name: "www1".into(),
                    services: vec![svc("hello-web", "consul"), svc("native", "nomad")],
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        let mut alloc =
            Allocation { id: "a1".into(), task_group: "group1".into(), ..Allocation::default() };
        alloc.allocated_resources.shared.ports =
            vec![AllocatedPort { label: "http".into(), value: 23456, ..AllocatedPort::default() }];
        let regs = registrations(&alloc, &job, "10.0.0.5");
        let got: Vec<(&str, &str, u16)> =
            regs.iter().map(|r| (r.id.as_str(), r.address.as_str(), r.port)).collect();
        assert_eq!(
            got,
            [
                ("_nomad-task-a1-group-group1-group-svc-http", "10.0.0.5", 23456),
                ("_nomad-task-a1-www1-hello-web-http", "10.0.0.5", 23456),
            ]
        );
    }
}
