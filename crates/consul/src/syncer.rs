//! The shell around [`crate::sync`]: holds what should be registered, and makes Consul match it
//! whenever that changes and every `interval` (which repairs drift after a Consul restart, or
//! after someone deregistered a service by hand). A failed pass is retried with backoff; nothing
//! the agent does ever waits for Consul, so Consul being down never blocks a task.

use crate::client::{Client, ConsulError};
use crate::sync::{self, Action};
use crate::wire::ServiceRegistration;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The first retry delay after a failed pass; it doubles up to the sync interval.
const MIN_RETRY: Duration = Duration::from_millis(250);

/// Keeps a Consul agent's registrations matching the agent's allocations. Cheap to clone.
#[derive(Clone)]
pub struct Syncer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    interval: Duration,
    /// Registrations by allocation ID.
    desired: Mutex<BTreeMap<String, Vec<ServiceRegistration>>>,
    /// TTL (script) check results not yet sent, by check ID.
    ttl: Mutex<BTreeMap<String, (String, String)>>,
    status: Mutex<SyncStatus>,
    wake: Notify,
}

/// How the last sync pass went, for the agent's status output and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    pub passes: u64,
    pub last_error: Option<ConsulError>,
    pub last_success: Option<Instant>,
}

impl Syncer {
    /// A syncer for `client`, doing a full pass at least every `interval` (Nomad: 30s).
    pub fn new(client: Client, interval: Duration) -> Syncer {
        Syncer {
            inner: Arc::new(Inner {
                client,
                interval,
                desired: Mutex::default(),
                ttl: Mutex::default(),
                status: Mutex::default(),
                wake: Notify::new(),
            }),
        }
    }

    /// Sets the registrations of one allocation (replacing what it had) and schedules a sync.
    pub fn set_alloc(&self, alloc_id: &str, registrations: Vec<ServiceRegistration>) {
        let mut d = self.inner.desired.lock().expect("syncer lock");
        if registrations.is_empty() {
            d.remove(alloc_id);
        } else {
            d.insert(alloc_id.to_owned(), registrations);
        }
        drop(d);
        self.inner.wake.notify_one();
    }

    /// Forgets an allocation's registrations (its tasks stopped) and schedules a sync, which
    /// deregisters them.
    pub fn remove_alloc(&self, alloc_id: &str) {
        self.set_alloc(alloc_id, Vec::new());
    }

    /// Queues a script check's result for Consul's TTL check `check_id`.
    pub fn report_ttl(&self, check_id: &str, status: &str, output: &str) {
        let mut t = self.inner.ttl.lock().expect("syncer lock");
        t.insert(check_id.to_owned(), (status.to_owned(), output.to_owned()));
        drop(t);
        self.inner.wake.notify_one();
    }

    /// The Consul agent this syncer writes to (the agent also reads check statuses from it).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn status(&self) -> SyncStatus {
        self.inner.status.lock().expect("syncer lock").clone()
    }

    /// One full pass now; returns how many register/deregister calls it made.
    pub async fn sync_now(&self) -> Result<usize, ConsulError> {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || inner.pass())
            .await
            .unwrap_or_else(|e| Err(ConsulError::Config(format!("sync pass panicked: {e}"))));
        let mut s = self.inner.status.lock().expect("syncer lock");
        s.passes += 1;
        match &result {
            Ok(_) => {
                s.last_error = None;
                s.last_success = Some(Instant::now());
            }
            Err(e) => s.last_error = Some(e.clone()),
        }
        result
    }

    /// Syncs until `shutdown` completes: after every change, every interval, and with backoff
    /// after a failure.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut delay = Duration::ZERO;
        let mut retry = MIN_RETRY;
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(delay) => {}
            }
            match self.sync_now().await {
                Ok(_) => {
                    delay = self.inner.interval;
                    retry = MIN_RETRY;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "consul sync failed");
                    delay = retry;
                    retry = (retry * 2).min(self.inner.interval);
                }
            }
        }
    }
}

impl Inner {
    fn pass(&self) -> Result<usize, ConsulError> {
        let desired: BTreeMap<String, ServiceRegistration> = {
            let d = self.desired.lock().expect("syncer lock");
            d.values().flatten().map(|r| (r.id.clone(), r.clone())).collect()
        };
        let services = self.client.services()?;
        let checks = self.client.checks()?;
        let actions = sync::plan(&desired, &services, &checks);
        let mut first_error = None;
        for action in &actions {
            let r = match action {
                Action::Register(reg) => self.client.register(reg),
                Action::Deregister(id) => self.client.deregister(id),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "consul sync action failed");
                first_error.get_or_insert(e);
            }
        }
        // TTL updates go out after registration, so a new check exists before its first result.
        let ttl = std::mem::take(&mut *self.ttl.lock().expect("syncer lock"));
        let known: std::collections::BTreeSet<&str> =
            desired.values().flat_map(|r| r.checks.iter().map(|c| c.check_id.as_str())).collect();
        for (id, (status, output)) in ttl {
            if !known.contains(id.as_str()) {
                continue;
            }
            if let Err(e) = self.client.update_ttl(&id, &status, &output) {
                first_error.get_or_insert(e);
                // Keep the newest result for the next pass unless a newer one arrived meanwhile.
                self.ttl.lock().expect("syncer lock").entry(id).or_insert((status, output));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(actions.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{registration, Instance};
    use crate::client::ConsulConfig;
    use crate::ids::Owner;
    use consul_fake::FakeConsul;
    use model::{Service, ServiceCheck};
    use serde_json::json;
    use tokio::net::TcpListener;

    fn seed_registration(alloc: &str, port: u16) -> ServiceRegistration {
        let s = Service {
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
        };
        let ports = BTreeMap::from([("http".to_string(), port)]);
        let i = Instance {
            alloc_id: alloc,
            owner: Owner::Task("www1"),
            service: &s,
            node_address: "127.0.0.1",
            ports: &ports,
        };
        registration(&i).unwrap()
    }

    fn syncer_for(addr: &str, token: Option<&str>) -> Syncer {
        let mut config = ConsulConfig::resolve(Some(addr), token, |_| None).unwrap();
        config.timeout = Duration::from_millis(500);
        Syncer::new(Client::new(config), Duration::from_millis(200))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registers_exactly_what_nomad_would_and_deregisters_on_stop() {
        let fake =
            FakeConsul::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), Some("t".into()))
                .unwrap();
        let syncer = syncer_for(&fake.url(), Some("t"));
        let reg = seed_registration("a1", 23000);
        syncer.set_alloc("a1", vec![reg.clone()]);
        assert_eq!(syncer.sync_now().await, Ok(1));
        // A second pass finds Consul in sync and changes nothing.
        assert_eq!(syncer.sync_now().await, Ok(0));
        syncer.remove_alloc("a1");
        assert_eq!(syncer.sync_now().await, Ok(1));
        assert!(fake.services().is_empty());

        let calls: Vec<(String, String, String)> = fake
            .requests()
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.query.clone()))
            .collect();
        let get = |p: &str| ("GET".to_string(), p.to_string(), String::new());
        assert_eq!(
            calls,
            [
                get("/v1/agent/services"),
                get("/v1/agent/checks"),
                (
                    "PUT".into(),
                    "/v1/agent/service/register".into(),
                    "replace-existing-checks=true".into()
                ),
                get("/v1/agent/services"),
                get("/v1/agent/checks"),
                get("/v1/agent/services"),
                get("/v1/agent/checks"),
                (
                    "PUT".into(),
                    "/v1/agent/service/deregister/_nomad-task-a1-www1-hello-web-http".into(),
                    String::new()
                ),
            ]
        );
        let r = fake.requests();
        assert!(r.iter().all(|r| r.token.as_deref() == Some("t")));
        assert_eq!(
            r[2].body,
            json!({
                "ID": "_nomad-task-a1-www1-hello-web-http",
                "Name": "hello-web",
                "Tags": ["nginx", "www"],
                "Port": 23000,
                "Address": "127.0.0.1",
                "Meta": {"external-source": "nomad"},
                "Checks": [{
                    "CheckID": reg.checks[0].check_id,
                    "Name": "tcp",
                    "TCP": "127.0.0.1:23000",
                    "Interval": "5s",
                    "Timeout": "2s",
                }],
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn consul_down_is_retried_and_a_restarted_consul_is_repaired() {
        // Reserve a port, then leave it closed: Consul is down.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let syncer = syncer_for(&format!("http://{addr}"), None);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let loop_task = tokio::spawn(syncer.clone().run(async {
            let _ = stopped.await;
        }));
        // Registering never waits for Consul.
        let started = Instant::now();
        syncer.set_alloc("a1", vec![seed_registration("a1", 23000)]);
        assert!(started.elapsed() < Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(matches!(syncer.status().last_error, Some(ConsulError::Unreachable { .. })));

        // Consul comes up: a retry registers the service.
        let fake = FakeConsul::start(TcpListener::bind(addr).await.unwrap(), None).unwrap();
        let id = "_nomad-task-a1-www1-hello-web-http";
        assert!(fake.wait_for(Duration::from_secs(5), |s, _| s.contains_key(id)).await);

        // Consul restarts and forgets everything: the periodic sync puts it back.
        fake.stop();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fake = FakeConsul::start(TcpListener::bind(addr).await.unwrap(), None).unwrap();
        assert!(
            fake.wait_for(Duration::from_secs(5), |s, c| s.contains_key(id) && c.len() == 1).await
        );
        assert!(syncer.status().last_error.is_none());
        let _ = stop.send(());
        loop_task.await.unwrap();
    }
}
