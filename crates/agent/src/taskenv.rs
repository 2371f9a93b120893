//! The Nomad task environment (`NOMAD_*` variables) and runtime interpolation of `${...}`.
//!
//! Jobs written for Nomad read `NOMAD_PORT_http`, `NOMAD_ALLOC_ID`, `NOMAD_META_x`, … and use
//! `${NOMAD_PORT_http}`, `${attr.kernel.name}`, `${node.unique.id}` or `${meta.rack}` in their
//! config, env and args; jobspec leaves those verbatim and this module resolves them on the node,
//! exactly as Nomad's client does. The environment is built only from the job, the allocation and
//! the node: the agent's own process environment never enters it, so nothing of the host leaks into
//! a jail. This module does no IO.

use model::{Allocation, Job, Node, Task, TaskGroup};
use std::collections::BTreeMap;

/// Where the task sees its directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsIsolation {
    /// The task runs on the host filesystem (`raw_exec`): directories are host paths.
    None,
    /// The task has its own root (`pot`): directories appear at `/alloc`, `/local`, `/secrets`.
    Image,
}

/// Host paths of an allocation's directories for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDirs {
    /// `<alloc dir>/alloc`, shared by the group's tasks.
    pub alloc_dir: String,
    /// `<alloc dir>/<task>/local`.
    pub local_dir: String,
    /// `<alloc dir>/<task>/secrets`.
    pub secrets_dir: String,
}

/// Everything the environment is built from.
#[derive(Debug, Clone, Copy)]
pub struct TaskEnvInput<'a> {
    pub node: &'a Node,
    /// The node's region, from the agent's configuration.
    pub region: &'a str,
    pub job: &'a Job,
    pub group: &'a TaskGroup,
    pub task: &'a Task,
    pub alloc: &'a Allocation,
    pub dirs: &'a TaskDirs,
    pub isolation: FsIsolation,
    /// The address the node advertises for its ports (`attr.unique.network.ip-address`).
    pub host_ip: &'a str,
}

/// A task's environment and the node values runtime interpolation may read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskEnv {
    /// The variables the task process (or jail) receives, `env {}` included and interpolated.
    pub env: BTreeMap<String, String>,
    /// `attr.*`, `node.*` and `meta.*` values for `${...}` interpolation.
    node_values: BTreeMap<String, String>,
}

impl TaskEnv {
    /// Builds the environment of `input.task`, then adds the task's `env {}` block with its values
    /// interpolated against the variables built so far, as Nomad does.
    pub fn build(input: &TaskEnvInput<'_>) -> TaskEnv {
        let mut env = BTreeMap::new();
        let TaskEnvInput { node, region, job, group, task, alloc, dirs, isolation, host_ip } =
            *input;

        let (alloc_dir, local_dir, secrets_dir) = match isolation {
            FsIsolation::None => {
                (dirs.alloc_dir.clone(), dirs.local_dir.clone(), dirs.secrets_dir.clone())
            }
            FsIsolation::Image => ("/alloc".into(), "/local".into(), "/secrets".into()),
        };
        env.insert("NOMAD_ALLOC_DIR".into(), alloc_dir);
        env.insert("NOMAD_TASK_DIR".into(), local_dir);
        env.insert("NOMAD_SECRETS_DIR".into(), secrets_dir);

        if let Some(resources) = &task.resources {
            env.insert("NOMAD_MEMORY_LIMIT".into(), resources.memory_mb.to_string());
            if resources.memory_max_mb > 0 {
                env.insert("NOMAD_MEMORY_MAX_LIMIT".into(), resources.memory_max_mb.to_string());
            }
            env.insert("NOMAD_CPU_LIMIT".into(), cpu_limit(alloc, task).to_string());
            if resources.cores > 0 {
                env.insert("NOMAD_CPU_CORES".into(), cpu_cores(alloc, task));
            }
        }

        env.insert("NOMAD_ALLOC_ID".into(), alloc.id.clone());
        env.insert("NOMAD_SHORT_ALLOC_ID".into(), alloc.id.chars().take(8).collect());
        env.insert("NOMAD_ALLOC_NAME".into(), alloc.name.clone());
        if let Some(index) = alloc.name_index() {
            env.insert("NOMAD_ALLOC_INDEX".into(), index.to_string());
        }
        env.insert("NOMAD_TASK_NAME".into(), task.name.clone());
        env.insert("NOMAD_GROUP_NAME".into(), group.name.clone());
        env.insert("NOMAD_JOB_ID".into(), job.id.clone());
        env.insert("NOMAD_JOB_NAME".into(), job.name.clone());
        env.insert("NOMAD_DC".into(), node.datacenter.clone());
        env.insert("NOMAD_NAMESPACE".into(), alloc.namespace.clone());
        env.insert("NOMAD_REGION".into(), region.to_string());

        // Job, group and task meta combine with the innermost winning.
        let meta = job.meta.iter().chain(group.meta.iter()).chain(task.meta.iter());
        for (key, value) in meta {
            env.insert(format!("NOMAD_META_{key}"), value.clone());
            env.insert(format!("NOMAD_META_{}", meta_env_key(key)), value.clone());
        }

        for port in &alloc.allocated_resources.shared.ports {
            let label = &port.label;
            let ip = if port.host_ip.is_empty() { host_ip } else { port.host_ip.as_str() };
            let host_port = port.value.to_string();
            // A mapped port (`to`) is what the task listens on inside its namespace.
            let task_port = if port.to > 0 { port.to.to_string() } else { host_port.clone() };
            env.insert(format!("NOMAD_HOST_IP_{label}"), ip.to_string());
            env.insert(format!("NOMAD_HOST_PORT_{label}"), host_port.clone());
            env.insert(format!("NOMAD_HOST_ADDR_{label}"), join_host_port(ip, &host_port));
            env.insert(format!("NOMAD_ALLOC_PORT_{label}"), task_port.clone());
            env.insert(format!("NOMAD_IP_{label}"), ip.to_string());
            env.insert(format!("NOMAD_PORT_{label}"), task_port);
            env.insert(format!("NOMAD_ADDR_{label}"), join_host_port(ip, &host_port));
        }

        let mut task_env = TaskEnv { env, node_values: node_values(node, region) };
        for (key, value) in &task.env {
            let value = task_env.interpolate(value);
            task_env.env.insert(key.clone(), value);
        }
        task_env
    }

    /// Replaces every `${name}` whose name is a task variable or a node value (`attr.*`,
    /// `node.*`, `meta.*`) and leaves any other `${...}` exactly as written, as Nomad does.
    pub fn interpolate(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let key = &after[..end];
            match self.lookup(key) {
                Some(value) => out.push_str(value),
                None => out.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Interpolates every string inside a driver's `config` value (lists and maps included); map
    /// keys are left alone, as Nomad does.
    pub fn interpolate_value(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.interpolate(s)),
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.interpolate_value(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter().map(|(k, v)| (k.clone(), self.interpolate_value(v))).collect(),
            ),
            other => other.clone(),
        }
    }

    fn lookup(&self, key: &str) -> Option<&str> {
        self.env.get(key).or_else(|| self.node_values.get(key)).map(String::as_str)
    }
}

/// The values `${attr.*}`, `${node.*}` and `${meta.*}` resolve to on `node`.
fn node_values(node: &Node, region: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    values.insert("node.unique.id".into(), node.id.clone());
    values.insert("node.unique.name".into(), node.name.clone());
    values.insert("node.datacenter".into(), node.datacenter.clone());
    values.insert("node.region".into(), region.to_string());
    values.insert("node.class".into(), node.node_class.clone());
    values.insert("node.pool".into(), node.node_pool.clone());
    for (k, v) in &node.attributes {
        values.insert(format!("attr.{k}"), v.clone());
    }
    for (k, v) in &node.meta {
        values.insert(format!("meta.{k}"), v.clone());
    }
    values
}

/// Nomad's upper-cased meta key: characters outside `[A-Za-z0-9_.]` become `_`.
fn meta_env_key(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
        .collect::<String>()
        .to_uppercase()
}

fn cpu_limit(alloc: &Allocation, task: &Task) -> u64 {
    alloc
        .allocated_resources
        .tasks
        .get(&task.name)
        .map(|r| r.cpu.cpu_shares)
        .filter(|&mhz| mhz > 0)
        .unwrap_or_else(|| task.resources.as_ref().map_or(0, |r| u64::from(r.cpu)))
}

fn cpu_cores(alloc: &Allocation, task: &Task) -> String {
    let cores = alloc
        .allocated_resources
        .tasks
        .get(&task.name)
        .map(|r| r.cpu.reserved_cores.clone())
        .unwrap_or_default();
    cores.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn join_host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{AllocatedPort, Resources};

    fn fixture() -> (Node, Job, Allocation) {
        let mut node = Node {
            id: "node-1".into(),
            name: "jailhost1".into(),
            datacenter: "minipot".into(),
            node_class: "jails".into(),
            node_pool: "default".into(),
            ..Node::default()
        };
        node.attributes.insert("kernel.name".into(), "freebsd".into());
        node.meta.insert("rack".into(), "r1".into());
        let task = Task {
            name: "www1".into(),
            driver: "pot".into(),
            resources: Some(Resources { cpu: 200, memory_mb: 64, ..Resources::default() }),
            env: BTreeMap::from([
                ("LISTEN".into(), "0.0.0.0:${NOMAD_PORT_http}".into()),
                ("WHERE".into(), "${attr.kernel.name}/${node.unique.name}/${meta.rack}".into()),
                ("KEEP".into(), "${env[\"HOME\"]} and ${NOMAD_PORT_nope}".into()),
            ]),
            meta: BTreeMap::from([("owner-team".into(), "web".into())]),
            ..Task::default()
        };
        let group = TaskGroup { name: "group1".into(), tasks: vec![task], ..TaskGroup::default() };
        let job = Job {
            id: "nginx-minipot".into(),
            name: "nginx-minipot".into(),
            task_groups: vec![group],
            ..Job::default()
        };
        let mut alloc = Allocation {
            id: "cb34cd8f-388d-7a38-e3fe-e01b62c93aa2".into(),
            name: "nginx-minipot.group1[0]".into(),
            namespace: "default".into(),
            ..Allocation::default()
        };
        alloc.allocated_resources.shared.ports.push(AllocatedPort {
            label: "http".into(),
            value: 23456,
            to: 0,
            host_ip: String::new(),
        });
        (node, job, alloc)
    }

    fn build(isolation: FsIsolation) -> TaskEnv {
        let (node, job, alloc) = fixture();
        let group = &job.task_groups[0];
        let dirs = TaskDirs {
            alloc_dir: "/var/orc/alloc/cb34/alloc".into(),
            local_dir: "/var/orc/alloc/cb34/www1/local".into(),
            secrets_dir: "/var/orc/alloc/cb34/www1/secrets".into(),
        };
        TaskEnv::build(&TaskEnvInput {
            node: &node,
            region: "global",
            job: &job,
            group,
            task: &group.tasks[0],
            alloc: &alloc,
            dirs: &dirs,
            isolation,
            host_ip: "192.0.2.10",
        })
    }

    #[test]
    fn builds_nomads_variables_for_a_jail() {
        let env = build(FsIsolation::Image);
        let text: String = env.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        expect_test::expect![[r#"
            KEEP=${env["HOME"]} and ${NOMAD_PORT_nope}
            LISTEN=0.0.0.0:23456
            NOMAD_ADDR_http=192.0.2.10:23456
            NOMAD_ALLOC_DIR=/alloc
            NOMAD_ALLOC_ID=cb34cd8f-388d-7a38-e3fe-e01b62c93aa2
            NOMAD_ALLOC_INDEX=0
            NOMAD_ALLOC_NAME=nginx-minipot.group1[0]
            NOMAD_ALLOC_PORT_http=23456
            NOMAD_CPU_LIMIT=200
            NOMAD_DC=minipot
            NOMAD_GROUP_NAME=group1
            NOMAD_HOST_ADDR_http=192.0.2.10:23456
            NOMAD_HOST_IP_http=192.0.2.10
            NOMAD_HOST_PORT_http=23456
            NOMAD_IP_http=192.0.2.10
            NOMAD_JOB_ID=nginx-minipot
            NOMAD_JOB_NAME=nginx-minipot
            NOMAD_MEMORY_LIMIT=64
            NOMAD_META_OWNER_TEAM=web
            NOMAD_META_owner-team=web
            NOMAD_NAMESPACE=default
            NOMAD_PORT_http=23456
            NOMAD_REGION=global
            NOMAD_SECRETS_DIR=/secrets
            NOMAD_SHORT_ALLOC_ID=cb34cd8f
            NOMAD_TASK_DIR=/local
            NOMAD_TASK_NAME=www1
            WHERE=freebsd/jailhost1/r1
        "#]]
        .assert_eq(&text);
    }

    #[test]
    fn host_paths_without_isolation() {
        let env = build(FsIsolation::None);
        assert_eq!(env.env["NOMAD_TASK_DIR"], "/var/orc/alloc/cb34/www1/local");
        assert_eq!(env.env["NOMAD_ALLOC_DIR"], "/var/orc/alloc/cb34/alloc");
    }

    #[test]
    fn interpolation_keeps_unknown_and_unterminated_text() {
        let env = build(FsIsolation::Image);
        assert_eq!(env.interpolate("-p ${NOMAD_PORT_http}"), "-p 23456");
        assert_eq!(env.interpolate("${node.datacenter}-${node.class}"), "minipot-jails");
        assert_eq!(env.interpolate("${ nope } ${attr.missing}"), "${ nope } ${attr.missing}");
        assert_eq!(env.interpolate("tail ${NOMAD_PORT_http"), "tail ${NOMAD_PORT_http");
        assert_eq!(env.interpolate("$HOME ${}"), "$HOME ${}");
        let config = serde_json::json!({"args": ["-p", "${NOMAD_PORT_http}"], "port_map": {"http": "${NOMAD_PORT_http}"}});
        assert_eq!(
            env.interpolate_value(&config),
            serde_json::json!({"args": ["-p", "23456"], "port_map": {"http": "23456"}})
        );
    }

    #[test]
    fn mapped_ports_expose_the_inner_port() {
        let (node, job, mut alloc) = fixture();
        alloc.allocated_resources.shared.ports[0].to = 8080;
        let group = &job.task_groups[0];
        let dirs =
            TaskDirs { alloc_dir: "a".into(), local_dir: "l".into(), secrets_dir: "s".into() };
        let env = TaskEnv::build(&TaskEnvInput {
            node: &node,
            region: "global",
            job: &job,
            group,
            task: &group.tasks[0],
            alloc: &alloc,
            dirs: &dirs,
            isolation: FsIsolation::Image,
            host_ip: "192.0.2.10",
        });
        assert_eq!(env.env["NOMAD_PORT_http"], "8080");
        assert_eq!(env.env["NOMAD_HOST_PORT_http"], "23456");
        assert_eq!(env.env["NOMAD_ADDR_http"], "192.0.2.10:23456");
    }
}
