//! Desired registrations vs. what the Consul agent reports → the actions that make Consul match.
//! Pure. Only services with orc's (Nomad's) ID prefix are ever deregistered, so services other
//! tools registered with the same Consul agent are left alone.

use crate::ids;
use crate::wire::{AgentCheck, AgentService, ServiceRegistration};
use std::collections::{BTreeMap, BTreeSet};

/// One call to make to the Consul agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `PUT /v1/agent/service/register?replace-existing-checks=true`.
    Register(ServiceRegistration),
    /// `PUT /v1/agent/service/deregister/:id`.
    Deregister(String),
}

/// The actions that turn `services` and `checks` (Consul's view) into `desired`, registrations
/// first, in ID order.
pub fn plan(
    desired: &BTreeMap<String, ServiceRegistration>,
    services: &BTreeMap<String, AgentService>,
    checks: &BTreeMap<String, AgentCheck>,
) -> Vec<Action> {
    let mut checks_by_service: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for c in checks.values() {
        if c.check_id.starts_with(ids::CHECK_PREFIX) {
            checks_by_service.entry(&c.service_id).or_default().insert(&c.check_id);
        }
    }
    let mut actions = Vec::new();
    for (id, want) in desired {
        let in_sync = services.get(id).is_some_and(|have| {
            let want_checks: BTreeSet<&str> =
                want.checks.iter().map(|c| c.check_id.as_str()).collect();
            let have_checks = checks_by_service.get(id.as_str()).cloned().unwrap_or_default();
            same_service(want, have) && want_checks == have_checks
        });
        if !in_sync {
            actions.push(Action::Register(want.clone()));
        }
    }
    for id in services.keys() {
        if ids::is_managed(id) && !desired.contains_key(id) {
            actions.push(Action::Deregister(id.clone()));
        }
    }
    actions
}

fn same_service(want: &ServiceRegistration, have: &AgentService) -> bool {
    let tags = have.tags.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let meta = have.meta.as_ref().unwrap_or(&empty);
    want.name == have.service
        && want.tags == tags
        && want.port == have.port
        && want.address == have.address
        && &want.meta == meta
        && want.enable_tag_override == have.enable_tag_override
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CheckRegistration;

    fn reg(id: &str, port: u16, check: Option<&str>) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            name: "web".into(),
            tags: vec!["a".into()],
            port,
            address: "10.0.0.1".into(),
            meta: BTreeMap::from([("external-source".into(), "nomad".into())]),
            enable_tag_override: false,
            checks: check
                .map(|c| CheckRegistration { check_id: c.into(), ..CheckRegistration::default() })
                .into_iter()
                .collect(),
        }
    }

    fn observed(r: &ServiceRegistration) -> AgentService {
        AgentService {
            id: r.id.clone(),
            service: r.name.clone(),
            tags: Some(r.tags.clone()),
            meta: Some(r.meta.clone()),
            port: r.port,
            address: r.address.clone(),
            enable_tag_override: r.enable_tag_override,
        }
    }

    fn check(id: &str, service: &str) -> (String, AgentCheck) {
        let c =
            AgentCheck { check_id: id.into(), service_id: service.into(), ..AgentCheck::default() };
        (id.into(), c)
    }

    #[test]
    fn in_sync_means_nothing_to_do() {
        let r = reg("_nomad-task-1", 20000, Some("_nomad-check-1"));
        let desired = BTreeMap::from([(r.id.clone(), r.clone())]);
        let services = BTreeMap::from([(r.id.clone(), observed(&r))]);
        let checks = BTreeMap::from([check("_nomad-check-1", &r.id)]);
        assert_eq!(plan(&desired, &services, &checks), []);
    }

    #[test]
    fn drift_is_repaired_and_strays_are_removed_but_not_foreign_services() {
        let lost = reg("_nomad-task-lost", 20000, None);
        let moved = reg("_nomad-task-moved", 20001, Some("_nomad-check-m"));
        let no_check = reg("_nomad-task-nocheck", 20002, Some("_nomad-check-n"));
        let desired: BTreeMap<_, _> =
            [&lost, &moved, &no_check].into_iter().map(|r| (r.id.clone(), r.clone())).collect();
        let mut moved_seen = observed(&moved);
        moved_seen.port = 1;
        let stray = reg("_nomad-task-stray", 1, None);
        let foreign = AgentService { id: "consul".into(), ..AgentService::default() };
        let services = BTreeMap::from([
            (moved.id.clone(), moved_seen),
            (no_check.id.clone(), observed(&no_check)),
            (stray.id.clone(), observed(&stray)),
            ("consul".into(), foreign),
        ]);
        // The moved service's check is fine; the other one lost its check, and carries a stale
        // one that a re-registration with replace-existing-checks removes.
        let checks = BTreeMap::from([
            check("_nomad-check-m", &moved.id),
            check("_nomad-check-old", &no_check.id),
            check("serfHealth", ""),
        ]);
        assert_eq!(
            plan(&desired, &services, &checks),
            [
                Action::Register(lost),
                Action::Register(moved),
                Action::Register(no_check),
                Action::Deregister("_nomad-task-stray".into()),
            ]
        );
    }
}
