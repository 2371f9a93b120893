//! `orc agent` in server mode: turns Nomad-style agent files and flags into a `server::Config`
//! and runs the server until SIGINT or SIGTERM.
//!
//! It owns only the mapping from files and flags to settings (flags override files; later files
//! override earlier ones, block by block as Nomad merges). Everything a server does lives in the
//! `server` crate; this module starts its HTTP API and scheduling pipeline beside it. The client
//! half of the agent is not started here.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `orc agent`, as `nomad agent` spells them.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// An agent configuration file (HCL). Repeatable; later files win.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Run a single in-memory server bound to 127.0.0.1 that bootstraps itself.
    #[arg(long)]
    pub dev: bool,
    /// Enable server mode.
    #[arg(long)]
    pub server: bool,
    /// Where the server keeps its state.
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address to bind listeners to.
    #[arg(long = "bind", value_name = "ADDR")]
    pub bind: Option<String>,
    /// How many servers to wait for before bootstrapping the cluster.
    #[arg(long = "bootstrap-expect", value_name = "N")]
    pub bootstrap_expect: Option<u32>,
    /// A server to join (host or host:port; the port defaults to 4647). Repeatable.
    #[arg(long = "retry-join", value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// Time between join attempts, as a Go duration (`15s`).
    #[arg(long = "retry-interval", value_name = "DURATION")]
    pub retry_interval: Option<String>,
    /// The RPC address other servers reach this one at.
    #[arg(long = "advertise-rpc", value_name = "ADDR")]
    pub advertise_rpc: Option<String>,
    /// The server's name.
    #[arg(long = "node", value_name = "NAME")]
    pub node: Option<String>,
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    #[arg(long = "dc", value_name = "DATACENTER")]
    pub dc: Option<String>,
    /// Enable client mode: run allocations on this host (see `client_cmd`).
    #[arg(long)]
    pub client: bool,
    /// Servers the client registers with (host or host:port; the port defaults to 4647).
    /// Repeatable.
    #[arg(long = "servers", value_name = "ADDR")]
    pub servers: Vec<String>,
    /// The HTTP API port (default 4646).
    #[arg(long = "http-port", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// The server RPC port (default 4647).
    #[arg(long = "rpc-port", value_name = "PORT")]
    pub rpc_port: Option<u16>,
    /// Serve the service catalogue over DNS (UDP) on this port: SRV and A/AAAA records of the
    /// healthy instances of NAME.service.<domain>. Off unless given.
    #[arg(long = "dns-port", value_name = "PORT")]
    pub dns_port: Option<u16>,
    /// The DNS domain the catalogue is served under.
    #[arg(long = "dns-domain", value_name = "DOMAIN", default_value = "orc")]
    pub dns_domain: String,
    /// How long a scheduler may hold an evaluation before it is redelivered, as a Go duration
    /// (`server { eval_nack_timeout }`, default `60s`).
    #[arg(long = "eval-nack-timeout", value_name = "DURATION")]
    pub eval_nack_timeout: Option<String>,
    /// Deliveries of a failing evaluation before it is marked failed
    /// (`server { eval_delivery_limit }`, default 3).
    #[arg(long = "eval-delivery-limit", value_name = "N")]
    pub eval_delivery_limit: Option<u32>,
}

/// Builds the server configuration from `-dev`, the files, then the flags.
pub fn load_config(args: &AgentArgs) -> anyhow::Result<server::Config> {
    let mut config = server::Config::default();
    if args.dev {
        config.bind_addr = "127.0.0.1".into();
        config.server.enabled = true;
        config.server.bootstrap_expect = 1;
    }
    for path in &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading agent configuration {}", path.display()))?;
        let file: server::Config = hcl::from_str(&text)
            .with_context(|| format!("parsing agent configuration {}", path.display()))?;
        merge(&mut config, file, &text);
    }
    if args.server {
        config.server.enabled = true;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = Some(d.clone());
    }
    if let Some(b) = &args.bind {
        config.bind_addr = b.clone();
    }
    if let Some(n) = args.bootstrap_expect {
        config.server.bootstrap_expect = n;
    }
    if !args.retry_join.is_empty() {
        config.server.server_join.retry_join = args.retry_join.clone();
    }
    if let Some(i) = &args.retry_interval {
        config.server.server_join.retry_interval = model::duration::parse_go_duration(i)
            .map_err(|e| anyhow::anyhow!("-retry-interval {i:?}: {e}"))?;
    }
    if let Some(a) = &args.advertise_rpc {
        config.advertise.rpc = Some(a.clone());
    }
    if let Some(n) = &args.node {
        config.name = n.clone();
    }
    if let Some(r) = &args.region {
        config.region = r.clone();
    }
    if let Some(dc) = &args.dc {
        config.datacenter = dc.clone();
    }
    if let Some(p) = args.http_port {
        config.ports.http = p;
    }
    if let Some(p) = args.rpc_port {
        config.ports.rpc = p;
    }
    if let Some(t) = &args.eval_nack_timeout {
        config.server.eval_nack_timeout = model::duration::parse_go_duration(t)
            .map_err(|e| anyhow::anyhow!("-eval-nack-timeout {t:?}: {e}"))?;
    }
    if let Some(n) = args.eval_delivery_limit {
        config.server.eval_delivery_limit = n;
    }
    config.validate().map_err(|e| anyhow::anyhow!("agent configuration: {e}"))?;
    let client = crate::client_cmd::load_settings(args)?;
    if !config.server.enabled && !client.enabled {
        anyhow::bail!("orc agent needs a role: pass -server, -client or -dev, or set server {{ enabled = true }} or client {{ enabled = true }}");
    }
    if config.server.enabled && config.data_dir.is_none() && !args.dev {
        anyhow::bail!("a server needs data_dir (or -data-dir) to keep its state; use -dev for an in-memory server");
    }
    Ok(config)
}

/// Later files override earlier ones only for the top-level settings they mention, as Nomad
/// merges agent files.
fn merge(into: &mut server::Config, file: server::Config, text: &str) {
    let body: hcl::Body = match hcl::from_str(text) {
        Ok(b) => b,
        Err(_) => return,
    };
    let mentioned = |key: &str| {
        body.attributes().any(|a| a.key.as_str() == key)
            || body.blocks().any(|b| b.identifier.as_str() == key)
    };
    if mentioned("name") {
        into.name = file.name;
    }
    if mentioned("region") {
        into.region = file.region;
    }
    if mentioned("datacenter") {
        into.datacenter = file.datacenter;
    }
    if mentioned("data_dir") {
        into.data_dir = file.data_dir;
    }
    if mentioned("bind_addr") {
        into.bind_addr = file.bind_addr;
    }
    if mentioned("ports") {
        into.ports = file.ports;
    }
    if mentioned("advertise") {
        into.advertise = file.advertise;
    }
    if mentioned("server") {
        into.server = file.server;
    }
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run_agent(args: &AgentArgs) -> anyhow::Result<()> {
    let config = load_config(args)?;
    let client = crate::client_cmd::load_settings(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let dns = args.dns_port.map(|port| (port, args.dns_domain.clone()));
    runtime.block_on(serve(config, client, args.dev, dns))?;
    // Give background tasks a moment to log their exit before the runtime is torn down.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Runs the server with its HTTP API on `ports.http` and the scheduling pipeline until SIGINT or
/// SIGTERM. Both listeners are bound before the server starts, so a taken port fails at once.
async fn serve(
    config: server::Config,
    client: crate::client_cmd::ClientSettings,
    dev: bool,
    dns: Option<(u16, String)>,
) -> anyhow::Result<()> {
    if !config.server.enabled {
        let running = crate::client_cmd::run(&config, &client, dev, Vec::new()).await?;
        shutdown_signal().await;
        running.stop().await;
        return Ok(());
    }
    let http_addr = format!("{}:{}", config.bind_addr, config.ports.http);
    let http = tokio::net::TcpListener::bind(&http_addr)
        .await
        .with_context(|| format!("binding the HTTP API to {http_addr}"))?;
    let dns_socket = match &dns {
        Some((port, _)) => {
            let addr = format!("{}:{port}", config.bind_addr);
            let socket = tokio::net::UdpSocket::bind(&addr)
                .await
                .with_context(|| format!("binding the DNS interface to {addr}"))?;
            tracing::info!(%addr, "DNS interface listening");
            Some(socket)
        }
        None => None,
    };
    let seams = server::Seams::tcp(&config).await.with_context(|| {
        format!("binding the RPC listener to {}:{}", config.bind_addr, config.ports.rpc)
    })?;
    let http_config = server::http::HttpConfig::from_server(&config);
    let client_config = config.clone();
    let handle = server::Server::start(config, seams).await.context("starting the server")?;
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(server::http::serve(http, handle.clone(), http_config, async {
        let _ = stopped.await;
    }));
    let pipeline = tokio::spawn(server::pipeline::run(handle.clone()));
    tracing::info!(addr = %http_addr, "HTTP API listening");
    let (stop_dns, dns_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(socket), Some((_, domain))) = (dns_socket, dns) {
        let catalog =
            std::sync::Arc::new(crate::catalog_dns::StateCatalog { handle: handle.clone() });
        tokio::spawn(dns::serve(socket, domain, catalog, async {
            let _ = dns_stopped.await;
        }));
    }
    let running = if client.enabled {
        Some(
            crate::client_cmd::run(&client_config, &client, dev, vec![handle.addr().to_string()])
                .await?,
        )
    } else {
        None
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(running) = running {
        running.stop().await;
    }
    let _ = stop_http.send(());
    let _ = stop_dns.send(());
    pipeline.abort();
    if let Ok(Err(e)) = api.await {
        tracing::warn!(error = %e, "HTTP API stopped with an error");
    }
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_then_flags_make_the_server_config() {
        let dir = tempfile::TempDir::new().unwrap();
        let base = dir.path().join("base.hcl");
        std::fs::write(
            &base,
            r#"
data_dir  = "/var/lib/orc"
bind_addr = "10.0.0.1"
ports {
  rpc = 5647
}
server {
  enabled          = true
  bootstrap_expect = 3
  server_join {
    retry_join     = ["10.0.0.2", "10.0.0.3:5647"]
    retry_interval = "15s"
  }
  eval_nack_timeout   = "2m"
  eval_delivery_limit = 4
}
client {
  enabled = true
}
"#,
        )
        .unwrap();
        let overlay = dir.path().join("overlay.hcl");
        std::fs::write(&overlay, "bind_addr = \"10.0.0.9\"\n").unwrap();
        let args = AgentArgs {
            config: vec![base, overlay],
            bootstrap_expect: Some(5),
            ..AgentArgs::default()
        };
        let c = load_config(&args).unwrap();
        assert_eq!(c.data_dir.as_deref(), Some(std::path::Path::new("/var/lib/orc")));
        assert_eq!(c.bind_addr, "10.0.0.9");
        assert_eq!(c.ports.rpc, 5647);
        assert_eq!(c.server.bootstrap_expect, 5);
        assert_eq!(c.server.server_join.retry_interval, Duration::from_secs(15));
        assert_eq!(c.join_addrs(), vec!["10.0.0.2:4647", "10.0.0.3:5647"]);
        assert_eq!(c.server.eval_nack_timeout, Duration::from_secs(120));
        assert_eq!(c.server.eval_delivery_limit, 4);
        assert_eq!(c.broker().nack_timeout_ns, 120_000_000_000);

        // The flags win over the file; nonsense is refused with the setting's name.
        let flagged = AgentArgs {
            eval_nack_timeout: Some("45s".into()),
            eval_delivery_limit: Some(2),
            ..args.clone()
        };
        let c = load_config(&flagged).unwrap();
        assert_eq!(c.server.eval_nack_timeout, Duration::from_secs(45));
        assert_eq!(c.broker().delivery_limit, 2);
        let zero = AgentArgs { eval_delivery_limit: Some(0), ..args.clone() };
        let err = load_config(&zero).unwrap_err().to_string();
        assert!(err.contains("eval_delivery_limit"), "{err}");
        let bad = AgentArgs { eval_nack_timeout: Some("soon".into()), ..args };
        let err = load_config(&bad).unwrap_err().to_string();
        assert!(err.contains("-eval-nack-timeout"), "{err}");
    }

    #[test]
    fn refuses_a_server_without_state_directory() {
        let args = AgentArgs { server: true, ..AgentArgs::default() };
        let err = load_config(&args).unwrap_err().to_string();
        assert!(err.contains("data_dir"), "{err}");
        let dev = load_config(&AgentArgs { dev: true, ..AgentArgs::default() }).unwrap();
        assert_eq!(dev.bind_addr, "127.0.0.1");
    }
}
