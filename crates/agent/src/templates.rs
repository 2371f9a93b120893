//! A task's `template` blocks: reading and parsing them, looking up the services they read
//! (`nomadService` through the servers' catalogue, `service` through Consul), rendering them
//! into the task directory (a file is written only when its content changed), and the watch
//! that re-renders them when those services change and applies `change_mode`.
//!
//! Rendering itself is the pure `template` crate; this module does the IO around it. The
//! runner calls [`render`] before every start and [`watch`] once the task has started.

use crate::services::CatalogApi;
use crate::taskenv::TaskEnv;
use futures::future::BoxFuture;
use model::Template as Block;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use template::{Catalog, Dependency, Instance};

/// How long one blocking read of a service waits before asking again.
const BLOCKING_WAIT: Duration = Duration::from_secs(60);
/// After a read that returned no new index, the pause before the next one.
const UNCHANGED_PAUSE: Duration = Duration::from_secs(1);
/// After a failed read, the wait before the next one.
const RETRY: Duration = Duration::from_secs(2);
/// At most this many service lookups per task (each is a watch).
const MAX_DEPENDENCIES: usize = 64;

/// Where templates read services.
#[derive(Clone, Default)]
pub struct Sources {
    /// orc's catalogue on the servers (`nomadService`).
    pub nomad: Option<Arc<dyn CatalogApi>>,
    /// The agent's Consul (`service`); `None`: the agent has no Consul.
    pub consul: Option<consul::ConsulConfig>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("nomad", &self.nomad.is_some())
            .field("consul", &self.consul)
            .finish()
    }
}

/// The services a task's templates read, with the index each was read at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    services: BTreeMap<(Catalog, String), (u64, Vec<Instance>)>,
}

/// One parsed template block.
struct Parsed {
    block: Block,
    dest_rel: String,
    dest: PathBuf,
    mode: u32,
    tpl: template::Template,
}

/// What one render did.
#[derive(Debug, Default)]
pub struct Rendered {
    /// `KEY=VALUE` lines of `env = true` templates.
    pub vars: Vec<(String, String)>,
    /// The blocks whose file changed (was written).
    pub changed: Vec<Block>,
}

/// Reads (a `source` from inside the task directory) and parses every template of the task.
fn parse_all(task_env: &TaskEnv, task_dir: &Path, blocks: &[Block]) -> Result<Vec<Parsed>, String> {
    let mut out = Vec::new();
    for b in blocks {
        let dest_rel = task_env.interpolate(&b.dest_path);
        let fail = |m: String| format!("template {dest_rel}: {m}");
        let text = if b.source_path.is_empty() {
            b.embedded_tmpl.clone()
        } else {
            // Nomad's file sandbox: a source is read from inside the task directory.
            let source = task_env.interpolate(&b.source_path);
            let path = crate::artifact::contained(task_dir, &source).map_err(|e| fail(e.0))?;
            std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("source {}: {e}", path.display())))?
        };
        let tpl = template::parse(&text, &b.left_delim, &b.right_delim).map_err(|e| {
            let (line, col) = e.line_col(&text);
            fail(format!("line {line}, column {col}: {}", e.message))
        })?;
        let dest = crate::artifact::contained(task_dir, &dest_rel).map_err(|e| fail(e.0))?;
        let mode = if b.perms.is_empty() { "644" } else { b.perms.as_str() };
        let mode = u32::from_str_radix(mode, 8).map_err(|_| fail(format!("perms {mode:?}")))?;
        out.push(Parsed { block: b.clone(), dest_rel: dest_rel.clone(), dest, mode, tpl });
    }
    Ok(out)
}

fn dependencies(parsed: &[Parsed], watched_only: bool) -> Vec<Dependency> {
    let mut deps: Vec<Dependency> = Vec::new();
    for p in parsed.iter().filter(|p| !(watched_only && p.block.once)) {
        for d in p.tpl.dependencies() {
            if !deps.iter().any(|x| x.catalog == d.catalog && x.name == d.name) {
                deps.push(d);
            }
        }
    }
    deps
}

/// Reads one service: at once when `min_index` is 0, else once its index passes `min_index`
/// or after `wait`.
pub fn read(
    sources: &Sources,
    namespace: &str,
    dep: &Dependency,
    min_index: u64,
    wait: Duration,
) -> BoxFuture<'static, Result<(u64, Vec<Instance>), String>> {
    let (sources, namespace, dep) = (sources.clone(), namespace.to_string(), dep.clone());
    Box::pin(async move {
        match dep.catalog {
            Catalog::Nomad => {
                let Some(nomad) = sources.nomad else {
                    return Err("nomadService: this agent has no connection to orc's service \
                                catalogue"
                        .into());
                };
                let (index, regs) = nomad.read(&namespace, &dep.name, min_index, wait).await?;
                let mut instances: Vec<Instance> = regs
                    .into_iter()
                    .map(|r| Instance {
                        name: r.service_name,
                        id: r.id,
                        address: r.address,
                        port: r.port,
                        tags: r.tags,
                        alloc_id: r.alloc_id,
                        node_id: r.node_id,
                        datacenter: r.datacenter,
                    })
                    .collect();
                instances.sort_by(|a, b| a.id.cmp(&b.id));
                Ok((index, instances))
            }
            Catalog::Consul => match sources.consul {
                None => Err(format!(
                    "service {:?}: this agent has no Consul configured (add a consul block or \
                     set CONSUL_HTTP_ADDR), so {{{{ service }}}} cannot be read; use \
                     nomadService for services with provider = \"nomad\"",
                    dep.name
                )),
                Some(config) => {
                    let name = dep.name.clone();
                    tokio::task::spawn_blocking(move || {
                        consul::Client::new(config)
                            .health_service(&name, min_index, wait)
                            .map_err(|e| e.to_string())
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|(index, entries)| {
                        let instances = entries
                            .into_iter()
                            .map(|e| Instance {
                                name: e.service.service.clone(),
                                id: e.service.id.clone(),
                                address: if e.service.address.is_empty() {
                                    e.node.address.clone()
                                } else {
                                    e.service.address.clone()
                                },
                                port: e.service.port,
                                tags: e.service.tags.clone().unwrap_or_default(),
                                alloc_id: String::new(),
                                node_id: e.node.id.clone(),
                                datacenter: e.node.datacenter.clone(),
                            })
                            .collect();
                        (index, instances)
                    })
                }
            },
        }
    })
}

struct Cx<'a> {
    env: &'a TaskEnv,
    snapshot: &'a Snapshot,
}

impl template::Context for Cx<'_> {
    fn env(&self, name: &str) -> Option<String> {
        self.env.env.get(name).cloned()
    }
    fn services(&self, catalog: Catalog, name: &str) -> Result<Vec<Instance>, String> {
        self.snapshot
            .services
            .get(&(catalog, name.to_string()))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("service {name:?} was not read"))
    }
}

/// Renders every template of the task into `task_dir`: reads the services they use (at once),
/// writes each file whose content changed. Returns what changed and the snapshot read.
pub async fn render(
    sources: &Sources,
    namespace: &str,
    task_env: &TaskEnv,
    task_dir: &Path,
    blocks: &[Block],
) -> Result<(Rendered, Snapshot), String> {
    let parsed = {
        let (env, dir, blocks) = (task_env.clone(), task_dir.to_path_buf(), blocks.to_vec());
        tokio::task::spawn_blocking(move || parse_all(&env, &dir, &blocks))
            .await
            .map_err(|e| format!("reading templates: {e}"))??
    };
    let deps = dependencies(&parsed, false);
    if deps.len() > MAX_DEPENDENCIES {
        return Err(format!("templates read {} services; at most {MAX_DEPENDENCIES}", deps.len()));
    }
    let mut snapshot = Snapshot::default();
    for d in &deps {
        let (index, instances) = read(sources, namespace, d, 0, Duration::ZERO).await?;
        snapshot.services.insert((d.catalog, d.name.clone()), (index, instances));
    }
    let rendered = write_all(parsed, task_env, &snapshot, false).await?;
    Ok((rendered, snapshot))
}

async fn write_all(
    parsed: Vec<Parsed>,
    task_env: &TaskEnv,
    snapshot: &Snapshot,
    skip_once: bool,
) -> Result<Rendered, String> {
    let (env, snapshot) = (task_env.clone(), snapshot.clone());
    let work = move || {
        let mut out = Rendered::default();
        for p in parsed.iter().filter(|p| !(skip_once && p.block.once)) {
            let fail = |m: String| format!("template {}: {m}", p.dest_rel);
            let text = p
                .tpl
                .render(&Cx { env: &env, snapshot: &snapshot })
                .map_err(|e| fail(e.message))?;
            // Written only when the content changed, so a watcher or a restart that renders
            // the same thing leaves the file (and its mtime) alone.
            let same = std::fs::read(&p.dest).is_ok_and(|old| old == text.as_bytes());
            if !same {
                crate::runner::write_file(&p.dest, text.as_bytes(), p.mode)
                    .map_err(|e| fail(format!("{}: {e}", p.dest.display())))?;
                out.changed.push(p.block.clone());
            }
            if p.block.envvars {
                out.vars.extend(template::parse_env_file(&text).map_err(fail)?);
            }
        }
        Ok(out)
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("rendering templates: {e}"))?
}

/// What the watch asks of the task when a file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Restart,
    Signal(String),
}

/// The actions `change_mode` asks for, given the blocks whose file changed: one restart if
/// any asks it (it covers signals too, as in Nomad), else each distinct signal once; `noop`
/// asks nothing. Also the longest `splay` among them.
pub fn changes(changed: &[Block]) -> (Vec<Change>, Duration) {
    let splay = changed.iter().map(|b| b.splay).max().unwrap_or_default();
    if changed.iter().any(|b| b.change_mode.is_empty() || b.change_mode == "restart") {
        return (vec![Change::Restart], splay);
    }
    let mut out = Vec::new();
    for b in changed.iter().filter(|b| b.change_mode == "signal") {
        let c = Change::Signal(b.change_signal.clone());
        if !out.contains(&c) {
            out.push(c);
        }
    }
    (out, splay)
}

/// Watches the services the templates read (blocking reads from `snapshot`'s indexes),
/// re-renders on a change and hands each resulting [`Change`] (after the splay) to `apply`.
/// Runs until the caller drops it; `current` gives the task's environment, directory and
/// blocks as they are now (an in-place update may change them).
pub async fn watch(
    sources: Sources,
    namespace: String,
    mut snapshot: Snapshot,
    current: impl Fn() -> (TaskEnv, PathBuf, Vec<Block>) + Send,
    apply: impl Fn(Change) + Send,
) {
    loop {
        let (task_env, task_dir, blocks) = current();
        let parsed = {
            let (env, dir, b) = (task_env.clone(), task_dir.clone(), blocks.clone());
            tokio::task::spawn_blocking(move || parse_all(&env, &dir, &b)).await
        };
        let Ok(Ok(parsed)) = parsed else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let deps = dependencies(&parsed, true);
        if deps.is_empty() || deps.len() > MAX_DEPENDENCIES {
            return;
        }
        let reads = deps.iter().map(|d| {
            let index = snapshot.services.get(&(d.catalog, d.name.clone())).map_or(0, |s| s.0);
            let dep = d.clone();
            let read = read(&sources, &namespace, d, index.max(1), BLOCKING_WAIT);
            Box::pin(async move { (dep, read.await) })
        });
        let ((dep, result), _, _) = futures::future::select_all(reads).await;
        let key = (dep.catalog, dep.name.clone());
        match result {
            Ok((index, instances)) => {
                let old = snapshot.services.get(&key);
                let same = old.is_some_and(|(_, v)| *v == instances);
                let moved = old.is_none_or(|(i, _)| *i != index);
                snapshot.services.insert(key, (index, instances));
                if !moved {
                    // The wait ended with nothing new (or a catalogue without indexes, which
                    // answers at once): do not spin.
                    tokio::time::sleep(UNCHANGED_PAUSE).await;
                }
                if same {
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(service = %dep.name, error = %e, "template service read failed");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        let rendered = match write_all(parsed, &task_env, &snapshot, true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "re-rendering templates failed");
                continue;
            }
        };
        let (todo, splay) = changes(&rendered.changed);
        if todo.is_empty() {
            continue;
        }
        if !splay.is_zero() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let frac = f64::from(nanos % 1000) / 1000.0;
            tokio::time::sleep(splay.mul_f64(frac)).await;
        }
        for c in todo {
            apply(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(mode: &str, signal: &str, splay: u64) -> Block {
        Block {
            change_mode: mode.into(),
            change_signal: signal.into(),
            splay: Duration::from_secs(splay),
            ..Block::default()
        }
    }

    #[test]
    fn change_modes_combine_as_nomad_does() {
        let (c, s) = changes(&[block("signal", "SIGHUP", 1), block("restart", "", 3)]);
        assert_eq!((c, s), (vec![Change::Restart], Duration::from_secs(3)));
        let (c, _) = changes(&[block("", "", 0)]);
        assert_eq!(c, vec![Change::Restart]);
        let (c, _) = changes(&[
            block("signal", "SIGHUP", 0),
            block("signal", "SIGHUP", 0),
            block("signal", "SIGUSR1", 0),
            block("noop", "", 0),
        ]);
        assert_eq!(c, vec![Change::Signal("SIGHUP".into()), Change::Signal("SIGUSR1".into())]);
        assert!(changes(&[block("noop", "", 0)]).0.is_empty());
    }
}
