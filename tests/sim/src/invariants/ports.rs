//! No port is double-booked on a node: two non-terminal allocations on one node never hold the
//! same host port, and none holds a port the node reserves.

use crate::Violation;
use server::state::State;
use std::collections::BTreeMap;

pub fn check(state: &State) -> Result<(), Violation> {
    for node in state.nodes() {
        let reserved = reserved_ports(&node.reserved_resources.networks.reserved_host_ports);
        let mut holders: BTreeMap<u16, &str> = BTreeMap::new();
        for a in state.allocs_by_node(&node.id).into_iter().filter(|a| !a.is_terminal()) {
            for p in a.allocated_resources.shared.ports.iter().filter(|p| p.value != 0) {
                if reserved.contains(&p.value) {
                    return Err(Violation::new(
                        "ports",
                        format!("node {}: alloc {} holds reserved port {}", node.id, a.id, p.value),
                    ));
                }
                if let Some(other) = holders.insert(p.value, &a.id) {
                    if other != a.id {
                        return Err(Violation::new(
                            "ports",
                            format!(
                                "node {}: port {} held by allocs {other} and {}",
                                node.id, p.value, a.id
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Nomad's `reserved_ports` syntax: "22,80,8000-8010".
fn reserved_ports(spec: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{alloc, job, node, state};

    #[test]
    fn one_port_in_two_allocations_fails() {
        let n = || node("n1", 10_000, 10_000);
        let ok = state(
            vec![n()],
            vec![job("web", 2)],
            vec![
                alloc("a1", "web", "n1", 1, 1, &[20000]),
                alloc("a2", "web", "n1", 1, 1, &[20001]),
            ],
        );
        check(&ok).unwrap();
        let twice = state(
            vec![n()],
            vec![job("web", 2)],
            vec![
                alloc("a1", "web", "n1", 1, 1, &[20000]),
                alloc("a2", "web", "n1", 1, 1, &[20000]),
            ],
        );
        assert_eq!(check(&twice).unwrap_err().invariant, "ports");
    }

    #[test]
    fn a_reserved_port_in_use_fails() {
        let mut n = node("n1", 10_000, 10_000);
        n.reserved_resources.networks.reserved_host_ports = "22,8000-8010".into();
        let s = state(vec![n], vec![job("web", 1)], vec![alloc("a1", "web", "n1", 1, 1, &[8005])]);
        assert_eq!(check(&s).unwrap_err().invariant, "ports");
    }
}
