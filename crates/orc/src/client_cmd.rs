//! The client half of `orc agent`: reads the `client { … }` and `plugin "…" { config { … } }`
//! blocks of agent files, starts `agent::client::Client` talking to the servers over their gRPC
//! (`server::node_endpoint::NodeClient`), and serves the client HTTP endpoints.
//!
//! It owns the mapping from files and flags to `agent::client::ClientConfig`; the adapter from
//! the agent's `ServerApi` seam to the server crate's wire client is `server::agent_api` (shared
//! with the simulator). What a client does lives in the `agent` crate; the server half lives in
//! `server_cmd`.

use agent::client::{Client, ClientConfig};
use agent::pot::PotDriverConfig;
use anyhow::Context;
use serde_json::Value;
use server::agent_api::GrpcServers;
use server::node_endpoint::NodeClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the agent files say about the client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientSettings {
    pub enabled: bool,
    /// Server RPC addresses (`host` or `host:port`, port 4647 by default).
    pub servers: Vec<String>,
    pub node_class: String,
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    pub network_interface: Option<String>,
    /// The client HTTP endpoints' port (0: any free port, advertised in the node's HTTPAddr).
    pub http_port: u16,
    pub raw_exec_enabled: bool,
    /// `None` disables the pot driver; `Some` enables it when the binary answers.
    pub pot_path: Option<PathBuf>,
    pub pot_env: BTreeMap<String, String>,
    /// The client's own state directory (`client { state_dir }`), default `<data_dir>`.
    pub data_dir: Option<PathBuf>,
    /// The top-level `consul { address, token }` block, if the files have one.
    pub consul: Option<(Option<String>, Option<String>)>,
}

impl ClientSettings {
    /// The defaults: pot on at its usual path, raw_exec off (as in Nomad).
    pub fn new() -> Self {
        ClientSettings {
            pot_path: Some(PathBuf::from(agent::pot::driver::DEFAULT_POT_PATH)),
            ..ClientSettings::default()
        }
    }

    /// Applies one agent file's `client` and `plugin` blocks on top of `self`.
    pub fn merge_file(&mut self, text: &str) -> anyhow::Result<()> {
        let file: Value = hcl::from_str(text).context("parsing the client settings")?;
        if let Some(c) = file.get("client").and_then(single) {
            if let Some(v) = c.get("enabled").and_then(Value::as_bool) {
                self.enabled = v;
            }
            if let Some(v) = c.get("servers").and_then(Value::as_array) {
                self.servers = v.iter().filter_map(Value::as_str).map(str::to_string).collect();
            }
            if let Some(v) = c.get("node_class").and_then(Value::as_str) {
                self.node_class = v.into();
            }
            if let Some(v) = c.get("node_pool").and_then(Value::as_str) {
                self.node_pool = v.into();
            }
            if let Some(v) = c.get("network_interface").and_then(Value::as_str) {
                self.network_interface = Some(v.into());
            }
            if let Some(v) = c.get("http_port").and_then(Value::as_u64) {
                self.http_port = u16::try_from(v).context("client.http_port")?;
            }
            if let Some(v) = c.get("state_dir").and_then(Value::as_str) {
                self.data_dir = Some(v.into());
            }
            if let Some(Value::Object(m)) = c.get("meta").and_then(single) {
                for (k, v) in m {
                    self.meta.insert(k.clone(), plain(v));
                }
            }
            // Nomad's deprecated `options { "driver.raw_exec.enable" = "1" }`.
            if let Some(Value::Object(m)) = c.get("options").and_then(single) {
                if let Some(v) = m.get("driver.raw_exec.enable") {
                    self.raw_exec_enabled = matches!(plain(v).as_str(), "1" | "true");
                }
            }
        }
        if let Some(c) = file.get("consul").and_then(single) {
            let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
            self.consul = Some((text("address"), text("token")));
        }
        if let Some(plugins) = file.get("plugin").and_then(single) {
            if let Some(cfg) = plugin_config(plugins, "raw_exec") {
                if let Some(v) = cfg.get("enabled").and_then(Value::as_bool) {
                    self.raw_exec_enabled = v;
                }
            }
            if let Some(cfg) = plugin_config(plugins, "pot") {
                if cfg.get("enabled").and_then(Value::as_bool) == Some(false) {
                    self.pot_path = None;
                } else {
                    if let Some(p) = cfg.get("pot_path").and_then(Value::as_str) {
                        self.pot_path = Some(p.into());
                    }
                    if let Some(Value::Object(m)) = cfg.get("pot_env").and_then(single) {
                        for (k, v) in m {
                            self.pot_env.insert(k.clone(), plain(v));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// HCL blocks may decode as an object or a one-element list of objects.
fn single(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(items) if items.len() == 1 => items.first(),
        other => Some(other),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn plugin_config<'a>(plugins: &'a Value, name: &str) -> Option<&'a Value> {
    let plugin = single(plugins.get(name)?)?;
    single(plugin.get("config")?)
}

/// A running client and its HTTP endpoints.
pub struct RunningClient {
    pub client: Client,
    http: tokio::task::JoinHandle<()>,
}

impl RunningClient {
    /// Stops the client's background work. Tasks keep running and are re-adopted next time.
    pub fn shutdown(self) {
        self.client.shutdown();
        self.http.abort();
    }
}

/// Starts the client against `servers` (RPC addresses), keeping state under `data_dir`.
pub async fn start(
    settings: &ClientSettings,
    servers: Vec<String>,
    data_dir: &Path,
    bind_addr: &str,
    datacenter: &str,
    region: &str,
    name: &str,
) -> anyhow::Result<RunningClient> {
    let listener =
        tokio::net::TcpListener::bind((bind_addr, settings.http_port)).await.with_context(
            || format!("binding the client HTTP endpoints to {bind_addr}:{}", settings.http_port),
        )?;
    let local = listener.local_addr()?;
    let mut config = ClientConfig::new(data_dir.to_path_buf());
    config.region = region.into();
    config.raw_exec_enabled = settings.raw_exec_enabled;
    config.node.datacenter = datacenter.into();
    config.node.node_class = settings.node_class.clone();
    config.node.node_pool = settings.node_pool.clone();
    config.node.meta = settings.meta.clone();
    config.node.network_interface = settings.network_interface.clone();
    if !name.is_empty() {
        config.node.name = Some(name.into());
    }
    let advertise_ip = if local.ip().is_unspecified() {
        agent::fingerprint::host_facts(data_dir, settings.network_interface.as_deref()).ip
    } else {
        local.ip().to_string()
    };
    config.node.http_addr = format!("{advertise_ip}:{}", local.port());
    // Consul is used when configured (a `consul` block, or CONSUL_HTTP_ADDR as Nomad reads it);
    // without either, services with provider "consul" are not registered anywhere.
    let env = |k: &str| std::env::var(k).ok();
    if settings.consul.is_some() || env("CONSUL_HTTP_ADDR").is_some_and(|a| !a.is_empty()) {
        let (address, token) = settings.consul.clone().unwrap_or_default();
        config.consul = Some(
            consul::ConsulConfig::resolve(address.as_deref(), token.as_deref(), env)
                .context("the consul block")?,
        );
    }
    config.pot = settings.pot_path.as_ref().map(|p| PotDriverConfig {
        pot_path: p.clone(),
        pot_env: settings.pot_env.clone(),
        state_dir: PathBuf::new(),
    });
    let servers: Vec<String> = servers
        .into_iter()
        .map(|s| if s.contains(':') { s } else { format!("{s}:4647") })
        .collect();
    let connector = Arc::new(server::transport::TcpConnector);
    let api = Arc::new(GrpcServers::new(NodeClient::new(servers, connector)));
    config.catalog = Some(agent::services::CatalogHandle(api.clone()));
    let client = Client::start(config, api).await.context("starting the client")?;
    let serve_client = client.clone();
    let http = tokio::spawn(async move {
        if let Err(e) = agent::http::serve(listener, serve_client).await {
            tracing::error!(error = %e, "client HTTP endpoints failed");
        }
    });
    tracing::info!(node = %client.node().id, http = %client.node().http_addr, "client running");
    Ok(RunningClient { client, http })
}

/// The client settings from `-dev`, the agent files, then the flags.
pub fn load_settings(args: &crate::server_cmd::AgentArgs) -> anyhow::Result<ClientSettings> {
    let mut settings = ClientSettings::new();
    if args.dev {
        // Like `nomad agent -dev`: a client with raw_exec beside the server. pot is used only
        // if its binary answers.
        settings.enabled = true;
        settings.raw_exec_enabled = true;
    }
    for path in &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading agent configuration {}", path.display()))?;
        settings
            .merge_file(&text)
            .with_context(|| format!("parsing agent configuration {}", path.display()))?;
    }
    if args.client {
        settings.enabled = true;
    }
    if !args.servers.is_empty() {
        settings.servers = args.servers.clone();
    }
    Ok(settings)
}

/// A client started by `orc agent`, with what its shutdown must clean up.
pub struct Running {
    client: RunningClient,
    /// Dev mode's temporary state: allocations are stopped and the directory removed on exit,
    /// since nothing could re-adopt them.
    temporary: Option<PathBuf>,
}

impl Running {
    /// Shuts the client down. Tasks keep running (re-adopted on the next start) unless the
    /// state was temporary.
    pub async fn stop(self) {
        if let Some(dir) = &self.temporary {
            self.client.client.stop_all(Duration::from_secs(30)).await;
            let _ = std::fs::remove_dir_all(dir);
        }
        self.client.shutdown();
    }
}

/// Starts the client of an `orc agent`: `own_servers` are the RPC addresses of the server in
/// the same process, used when the files name no servers.
pub async fn run(
    config: &server::Config,
    settings: &ClientSettings,
    dev: bool,
    own_servers: Vec<String>,
) -> anyhow::Result<Running> {
    let servers = if settings.servers.is_empty() { own_servers } else { settings.servers.clone() };
    let mut settings = settings.clone();
    if dev && settings.network_interface.is_none() {
        // Like `nomad agent -dev`: the node advertises loopback, where its ports answer.
        let lo = if cfg!(target_os = "linux") { "lo" } else { "lo0" };
        settings.network_interface = Some(lo.into());
    }
    let settings = &settings;
    if servers.is_empty() {
        anyhow::bail!(
            "a client needs servers: set client {{ servers = [\"<ip>:4647\"] }} or pass -servers"
        );
    }
    let (data_dir, temporary) = match settings.data_dir.clone().or_else(|| config.data_dir.clone())
    {
        Some(d) => (d, None),
        None if dev => {
            let d = std::env::temp_dir().join(format!("orc-dev-{}", std::process::id()));
            (d.clone(), Some(d))
        }
        None => anyhow::bail!("a client needs data_dir (or -data-dir) to keep its allocations"),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let client = start(
        settings,
        servers,
        &data_dir,
        &config.bind_addr,
        &config.datacenter,
        &config.region,
        &config.name,
    )
    .await?;
    if dev {
        let http = format!("{}:{}", config.bind_addr, config.ports.http);
        println!("==> orc agent started in dev mode");
        println!("    HTTP API: http://{http}");
        println!("    UI:       http://{http}/ui/");
        println!(
            "    Client:   node {} (drivers: {}), data dir {}",
            client.client.node().id,
            client.client.node().drivers.keys().cloned().collect::<Vec<_>>().join(", "),
            data_dir.display()
        );
    }
    Ok(Running { client, temporary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_plugin_blocks() {
        let mut s = ClientSettings::new();
        s.merge_file(
            r#"
datacenter = "dc2"
client {
  enabled    = true
  servers    = ["10.0.0.1", "10.0.0.2:5647"]
  node_class = "jail"
  meta {
    rack = "r1"
  }
}
plugin "raw_exec" {
  config {
    enabled = true
  }
}
plugin "pot" {
  config {
    pot_path = "/opt/bin/pot"
    pot_env  = { POT_FS_ROOT = "/tmp/pots" }
  }
}
"#,
        )
        .unwrap();
        assert!(s.enabled && s.raw_exec_enabled);
        assert_eq!(s.servers, ["10.0.0.1", "10.0.0.2:5647"]);
        assert_eq!(s.node_class, "jail");
        assert_eq!(s.meta["rack"], "r1");
        assert_eq!(s.pot_path.as_deref(), Some(Path::new("/opt/bin/pot")));
        assert_eq!(s.pot_env["POT_FS_ROOT"], "/tmp/pots");
        s.merge_file("plugin \"pot\" {\n  config {\n    enabled = false\n  }\n}\n").unwrap();
        assert_eq!(s.pot_path, None);
    }

    #[test]
    fn the_example_client_file() {
        let mut s = ClientSettings::new();
        s.merge_file(include_str!("../../../examples/client.hcl")).unwrap();
        assert!(s.enabled && !s.raw_exec_enabled);
        assert_eq!(s.servers.len(), 3);
        assert_eq!(s.network_interface.as_deref(), Some("em0"));
        assert_eq!(s.pot_path.as_deref(), Some(Path::new("/usr/local/bin/pot")));
    }
}
