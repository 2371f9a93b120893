//! Reaching the API from the CLI: the `-address`/`-token` flags with their environment
//! fallbacks, turning client errors into messages, and resolving short ID prefixes as Nomad's
//! CLI does.
//!
//! HTTP itself is `api::client`'s; what a command does with the replies is the command's.

use crate::output::{self, short_id};
use api::client::{resolve_addr, Client, ClientError};
use clap::Args;
use serde_json::Value;

/// Flags every command that talks to a server takes.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiArgs {
    /// The address of an orc (or Nomad) server's HTTP API. Defaults to $ORC_ADDR, then
    /// $NOMAD_ADDR, then http://127.0.0.1:4646.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// The ACL token sent as X-Nomad-Token. Defaults to $ORC_TOKEN, then $NOMAD_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Flags of commands that read and print.
#[derive(Debug, Clone, Default, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show full IDs.
    #[arg(long)]
    pub verbose: bool,
}

impl ApiArgs {
    /// A client for the chosen address.
    pub fn client(&self) -> Client {
        let env = |k: &str| std::env::var(k).ok();
        let addr = resolve_addr(self.address.as_deref(), env);
        let token = self
            .token
            .clone()
            .or_else(|| env("ORC_TOKEN").filter(|t| !t.is_empty()))
            .or_else(|| env("NOMAD_TOKEN"));
        Client::new(&addr, token)
    }
}

/// Wraps a client error in Nomad's wording ("Error querying job: ...").
pub fn context(what: &str, e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("{what}: {e}")
}

/// Resolves `prefix` against `GET list_path?prefix=`, as Nomad's CLI does: an exact match or a
/// single match wins; several matches are listed and refused.
pub fn resolve(
    client: &Client,
    list_path: &str,
    prefix: &str,
    what: &str,
) -> anyhow::Result<Value> {
    if prefix.is_empty() {
        anyhow::bail!("{what} ID must not be empty");
    }
    let (list, _) = client
        .get::<Vec<Value>>(list_path, &[("prefix", prefix)])
        .map_err(|e| context(&format!("Error querying {what}"), e))?;
    if let Some(exact) = list.iter().find(|v| v["ID"] == prefix) {
        return Ok(exact.clone());
    }
    match list.len() {
        0 => anyhow::bail!("No {what} with prefix or ID {prefix:?} found"),
        1 => Ok(list.into_iter().next().expect("one element")),
        _ => {
            let mut rows = vec![vec!["ID".to_owned()]];
            rows.extend(list.iter().map(|v| vec![short_id(&output::s(v, "ID"), true)]));
            anyhow::bail!("Prefix matched multiple {what}s\n\n{}", output::table(&rows).trim_end())
        }
    }
}
