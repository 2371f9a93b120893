//! Small hand-built states for the checkers' own tests: each test breaks one invariant on
//! purpose and expects its checker to say so.

use crate::ServerView;
use model::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedPort, AllocatedTaskResources,
    Allocation, ClientStatus, Job, Node, NodeStatus, TaskGroup,
};
use server::state::State;

pub fn view(server: u64, applied: u64) -> ServerView {
    ServerView { server, term: 1, leader: false, applied, state: State::new() }
}

pub fn job(id: &str, count: u32) -> Job {
    Job {
        id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        task_groups: vec![TaskGroup { name: "g".into(), count, ..TaskGroup::default() }],
        ..Job::default()
    }
}

pub fn node(id: &str, cpu: u64, memory_mb: u64) -> Node {
    let mut n =
        Node { id: id.into(), name: id.into(), status: NodeStatus::Ready, ..Node::default() };
    n.node_resources.cpu.cpu_shares = cpu;
    n.node_resources.memory.memory_mb = memory_mb;
    n
}

pub fn alloc(
    id: &str,
    job: &str,
    node: &str,
    cpu: u64,
    memory_mb: u64,
    ports: &[u16],
) -> Allocation {
    let mut a = Allocation {
        id: id.into(),
        namespace: "default".into(),
        name: format!("{job}.g[0]"),
        job_id: job.into(),
        task_group: "g".into(),
        node_id: node.into(),
        client_status: ClientStatus::Running,
        ..Allocation::default()
    };
    a.allocated_resources.tasks.insert(
        "t".into(),
        AllocatedTaskResources {
            cpu: AllocatedCpuResources { cpu_shares: cpu, reserved_cores: vec![] },
            memory: AllocatedMemoryResources { memory_mb, memory_max_mb: 0 },
        },
    );
    a.allocated_resources.shared.ports = ports
        .iter()
        .map(|p| AllocatedPort { label: "http".into(), value: *p, ..AllocatedPort::default() })
        .collect();
    a
}

/// A state built through the real `apply`, the way servers build theirs.
pub fn state(nodes: Vec<Node>, jobs: Vec<Job>, allocs: Vec<Allocation>) -> State {
    use server::state::{apply, Command, PlanResults};
    let mut s = State::new();
    let mut index = 0;
    let mut next = || {
        index += 1;
        index
    };
    for node in nodes {
        apply(&mut s, next(), Command::NodeRegister { node: Box::new(node) });
    }
    for job in jobs {
        apply(&mut s, next(), Command::JobRegister { job: Box::new(job), eval: None });
    }
    let plan = PlanResults { allocs, ..PlanResults::default() };
    apply(&mut s, next(), Command::PlanResults(plan));
    s
}
