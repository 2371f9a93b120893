//! Nomad's identifiers for what it registers in Consul (`client/serviceregistration/id.go`):
//! service IDs `_nomad-task-<alloc>-<task | group-<group>>-<service>-<port label>` and check IDs
//! `_nomad-check-<40 hex digits>`, a digest of the service ID and the check's definition (so a
//! changed check gets a new ID, and an unchanged one keeps its ID across agent restarts).
//! Nomad's own digest is SHA-1 over Go structs; orc's is Skein over its own encoding. Tooling
//! matches the prefixes, never the digest.

use crate::wire::CheckRegistration;
use skein::{Digest, Skein512_512};

/// The prefix of every service ID orc (or Nomad) registers for a task or group.
pub const TASK_SERVICE_PREFIX: &str = "_nomad-task-";

/// The prefix of every check ID orc registers.
pub const CHECK_PREFIX: &str = "_nomad-check-";

/// Whose service it is: a task's (`service` inside `task`) or a group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    Task(&'a str),
    Group(&'a str),
}

/// The service ID of one instance.
pub fn service_id(alloc_id: &str, owner: Owner, service: &str, port_label: &str) -> String {
    let owner = match owner {
        Owner::Task(t) => t.to_owned(),
        Owner::Group(g) => format!("group-{g}"),
    };
    format!("{TASK_SERVICE_PREFIX}{alloc_id}-{owner}-{service}-{port_label}")
}

/// Whether `id` names a service orc manages: only those are ever deregistered by a sync.
pub fn is_managed(id: &str) -> bool {
    id.starts_with(TASK_SERVICE_PREFIX)
}

/// The check ID of `check` in service `service_id`. `check.check_id` is ignored.
pub fn check_id(service_id: &str, check: &CheckRegistration) -> String {
    let def = CheckRegistration { check_id: String::new(), ..check.clone() };
    // serde_json of a struct is a fixed field order, so equal definitions hash equally.
    let encoded = serde_json::to_vec(&def).expect("a check definition always encodes");
    let mut h = Skein512_512::new();
    h.update(service_id.as_bytes());
    h.update([0u8]);
    h.update(&encoded);
    let digest = h.finalize();
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("{CHECK_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ids_follow_nomads_scheme() {
        assert_eq!(
            service_id("6f5a", Owner::Task("www1"), "hello-web", "http"),
            "_nomad-task-6f5a-www1-hello-web-http"
        );
        assert_eq!(
            service_id("6f5a", Owner::Group("group1"), "api", "http"),
            "_nomad-task-6f5a-group-group1-api-http"
        );
        assert!(is_managed("_nomad-task-6f5a-www1-hello-web-http"));
        assert!(!is_managed("_nomad-client-abc"));
        assert!(!is_managed("web"));
    }

    #[test]
    fn check_ids_are_stable_and_change_with_the_definition() {
        let c = CheckRegistration {
            name: "tcp".into(),
            tcp: "10.0.0.1:2000".into(),
            interval: "5s".into(),
            timeout: "2s".into(),
            ..CheckRegistration::default()
        };
        let a = check_id("svc", &c);
        assert!(a.starts_with(CHECK_PREFIX) && a.len() == CHECK_PREFIX.len() + 40, "{a}");
        let with_id = CheckRegistration { check_id: a.clone(), ..c.clone() };
        assert_eq!(check_id("svc", &with_id), a);
        assert_ne!(check_id("svc2", &c), a);
        let moved = CheckRegistration { tcp: "10.0.0.1:2001".into(), ..c };
        assert_ne!(check_id("svc", &moved), a);
    }
}
