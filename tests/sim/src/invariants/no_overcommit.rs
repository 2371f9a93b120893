//! No node is over-committed in committed state: the non-terminal allocations on a node never
//! ask for more CPU or memory than the node offers after its reservation. The plan applier
//! re-checks every plan against the latest state; a race past that check shows up here.

use crate::Violation;
use server::state::State;

pub fn check(state: &State) -> Result<(), Violation> {
    for node in state.nodes() {
        let (mut cpu, mut memory_mb) = (0u64, 0u64);
        for a in state.allocs_by_node(&node.id).into_iter().filter(|a| !a.is_terminal()) {
            for t in a.allocated_resources.tasks.values() {
                cpu += t.cpu.cpu_shares;
                memory_mb += t.memory.memory_mb;
            }
        }
        let r = &node.node_resources;
        let reserved = &node.reserved_resources;
        let cpu_free = r.cpu.cpu_shares.saturating_sub(reserved.cpu.cpu_shares);
        let memory_free = r.memory.memory_mb.saturating_sub(reserved.memory.memory_mb);
        if cpu > cpu_free || memory_mb > memory_free {
            return Err(Violation::new(
                "no_overcommit",
                format!(
                    "node {}: allocations use cpu {cpu}/{cpu_free} MHz, memory \
                     {memory_mb}/{memory_free} MB at index {}",
                    node.id,
                    state.index()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::fixtures::{alloc, job, node, state};

    #[test]
    fn allocations_beyond_the_node_fail() {
        let fits = state(
            vec![node("n1", 1000, 1024)],
            vec![job("web", 2)],
            vec![alloc("a1", "web", "n1", 500, 512, &[]), alloc("a2", "web", "n1", 500, 512, &[])],
        );
        check(&fits).unwrap();
        let over = state(
            vec![node("n1", 1000, 1024)],
            vec![job("web", 2)],
            vec![alloc("a1", "web", "n1", 600, 512, &[]), alloc("a2", "web", "n1", 500, 512, &[])],
        );
        assert_eq!(check(&over).unwrap_err().invariant, "no_overcommit");
    }
}
