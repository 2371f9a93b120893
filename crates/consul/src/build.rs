//! A service block of a running allocation → the registration Consul gets. Pure: the agent
//! passes in the (already interpolated) service, the node's address and the allocation's host
//! ports. Address mode is `host` (the node's address and the host port), which is what pot's
//! `port_map` publishes.

use crate::ids::{self, Owner};
use crate::wire::{go_duration, CheckRegistration, ServiceRegistration};
use std::collections::BTreeMap;
use std::time::Duration;

/// One service instance of an allocation.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    pub alloc_id: &'a str,
    pub owner: Owner<'a>,
    pub service: &'a model::Service,
    /// The node's address, used unless the service sets its own.
    pub node_address: &'a str,
    /// The allocation's host ports by label.
    pub ports: &'a BTreeMap<String, u16>,
}

/// Why a service cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("service {service:?}: no port labelled {label:?} in the allocation")]
    UnknownPort { service: String, label: String },
}

/// Extra time a TTL check gets beyond one interval and timeout before Consul marks it critical,
/// so a script that takes its whole timeout does not flap.
const TTL_SLACK: Duration = Duration::from_secs(1);

/// `host:port`, with brackets for IPv6.
pub fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

fn resolve_port(i: &Instance, label: &str) -> Result<u16, BuildError> {
    if label.is_empty() {
        return Ok(0);
    }
    if let Some(p) = i.ports.get(label) {
        return Ok(*p);
    }
    // Nomad allows a literal port number in place of a label.
    label.parse().map_err(|_| BuildError::UnknownPort {
        service: i.service.name.clone(),
        label: label.to_owned(),
    })
}

/// The registration of `i`, with Nomad's IDs.
pub fn registration(i: &Instance) -> Result<ServiceRegistration, BuildError> {
    let s = i.service;
    let address = if s.address.is_empty() { i.node_address } else { &s.address };
    let port = resolve_port(i, &s.port_label)?;
    let id = ids::service_id(i.alloc_id, i.owner, &s.name, &s.port_label);
    let mut meta = s.meta.clone();
    // Consul's UI and tooling recognise workloads registered by a scheduler this way.
    meta.insert("external-source".into(), "nomad".into());
    let mut checks = Vec::with_capacity(s.checks.len());
    for c in &s.checks {
        let check_port =
            if c.port_label.is_empty() { port } else { resolve_port(i, &c.port_label)? };
        let mut reg = CheckRegistration {
            name: c.name.clone(),
            status: c.initial_status.clone(),
            success_before_passing: c.success_before_passing,
            failures_before_warning: c.failures_before_warning,
            failures_before_critical: c.failures_before_critical,
            ..CheckRegistration::default()
        };
        match c.check_type.as_str() {
            "tcp" => reg.tcp = host_port(address, check_port),
            "http" => {
                let protocol = if c.protocol.is_empty() { "http" } else { &c.protocol };
                let path =
                    if c.path.starts_with('/') { c.path.clone() } else { format!("/{}", c.path) };
                reg.http = format!("{protocol}://{}{path}", host_port(address, check_port));
                reg.method = c.method.clone();
                reg.header = c.header.clone();
                reg.body = c.body.clone();
                reg.tls_skip_verify = c.tls_skip_verify;
                reg.tls_server_name = c.tls_server_name.clone();
            }
            // The agent runs script checks in the task and reports through Consul's TTL.
            _ => reg.ttl = go_duration(c.interval + c.timeout + TTL_SLACK),
        }
        if reg.ttl.is_empty() {
            reg.interval = go_duration(c.interval);
            reg.timeout = go_duration(c.timeout);
        }
        reg.check_id = ids::check_id(&id, &reg);
        checks.push(reg);
    }
    Ok(ServiceRegistration {
        id,
        name: s.name.clone(),
        tags: s.tags.clone(),
        port,
        address: address.to_owned(),
        meta,
        enable_tag_override: s.enable_tag_override,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Service, ServiceCheck};

    fn seed_service() -> Service {
        Service {
            name: "hello-web".into(),
            tags: vec!["nginx".into(), "www".into()],
            port_label: "http".into(),
            checks: vec![ServiceCheck {
                name: "tcp".into(),
                check_type: "tcp".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(2),
                ..ServiceCheck::default()
            }],
            ..Service::default()
        }
    }

    #[test]
    fn the_seed_service_registers_with_the_host_port_and_a_tcp_check() {
        let s = seed_service();
        let ports = BTreeMap::from([("http".to_string(), 22854)]);
        let i = Instance {
            alloc_id: "636d3241-0000-0000-0000-000000000000",
            owner: Owner::Task("www1"),
            service: &s,
            node_address: "10.0.0.5",
            ports: &ports,
        };
        let r = registration(&i).unwrap();
        let check_id = r.checks[0].check_id.clone();
        assert!(check_id.starts_with("_nomad-check-"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ID": "_nomad-task-636d3241-0000-0000-0000-000000000000-www1-hello-web-http",
                "Name": "hello-web",
                "Tags": ["nginx", "www"],
                "Port": 22854,
                "Address": "10.0.0.5",
                "Meta": {"external-source": "nomad"},
                "Checks": [{
                    "CheckID": check_id,
                    "Name": "tcp",
                    "TCP": "10.0.0.5:22854",
                    "Interval": "5s",
                    "Timeout": "2s",
                }],
            })
        );
    }

    #[test]
    fn http_and_script_checks_and_ipv6() {
        let mut s = seed_service();
        s.checks = vec![
            ServiceCheck {
                name: "web".into(),
                check_type: "http".into(),
                path: "health?full=1".into(),
                method: "GET".into(),
                port_label: "admin".into(),
                interval: Duration::from_secs(10),
                timeout: Duration::from_millis(1500),
                initial_status: "passing".into(),
                ..ServiceCheck::default()
            },
            ServiceCheck {
                name: "script".into(),
                check_type: "script".into(),
                command: "/bin/true".into(),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(3),
                ..ServiceCheck::default()
            },
        ];
        let ports = BTreeMap::from([("http".to_string(), 20000), ("admin".to_string(), 20001)]);
        let i = Instance {
            alloc_id: "a",
            owner: Owner::Group("g"),
            service: &s,
            node_address: "2003:f1::1",
            ports: &ports,
        };
        let r = registration(&i).unwrap();
        assert_eq!(r.id, "_nomad-task-a-group-g-hello-web-http");
        assert_eq!(r.checks[0].http, "http://[2003:f1::1]:20001/health?full=1");
        assert_eq!(
            (r.checks[0].interval.as_str(), r.checks[0].timeout.as_str()),
            ("10s", "1500ms")
        );
        assert_eq!(r.checks[0].status, "passing");
        assert_eq!((r.checks[1].ttl.as_str(), r.checks[1].interval.as_str()), ("14s", ""));

        let unknown = Service { port_label: "nope".into(), ..s.clone() };
        let i = Instance { service: &unknown, ..i };
        assert_eq!(
            registration(&i),
            Err(BuildError::UnknownPort { service: "hello-web".into(), label: "nope".into() })
        );
    }
}
