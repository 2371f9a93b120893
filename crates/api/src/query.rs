//! Nomad's common query parameters (`index`, `wait`, `prefix`, `filter`, `per_page`,
//! `next_token`, `namespace`, `region`, `stale`, `pretty`, `reverse`) parsed from a request's
//! query string, and the paging rule that goes with them.
//!
//! Every value is untrusted: sizes are bounded and a bad value is an error that names the
//! parameter. Endpoint-specific parameters are the endpoint's business, not this module's.

use crate::filter::{Filter, FilterError};
use model::duration::parse_go_duration;
use std::time::Duration;

/// Blocking queries wait 300 s when no `wait` is given, and never longer (Nomad's
/// `DefaultBlockingRPCQueryTime` and `MaxBlockingRPCQueryTime`).
pub const MAX_BLOCKING_WAIT: Duration = Duration::from_secs(300);

/// Nomad adds up to `wait / 16` of random jitter to a blocking query so that many watchers do not
/// all return at once.
pub const JITTER_FRACTION: u32 = 16;

/// The longest prefix or token accepted, in bytes.
const MAX_TOKEN_LEN: usize = 256;

/// The common query options of a read request.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Block until the result's index is greater than this; 0 means do not block.
    pub min_index: u64,
    /// How long to block, already capped at [`MAX_BLOCKING_WAIT`] (jitter not included).
    pub wait: Duration,
    pub prefix: String,
    pub filter: Option<Filter>,
    pub per_page: Option<usize>,
    pub next_token: String,
    /// `default` unless given; `*` means every namespace.
    pub namespace: String,
    pub region: String,
    pub allow_stale: bool,
    pub pretty: bool,
    pub reverse: bool,
}

/// A query parameter that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("invalid value for \"{param}\": {message}")]
    Invalid { param: &'static str, message: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
}

fn invalid(param: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::Invalid { param, message: message.into() }
}

/// Parses a boolean the way Go's `strconv.ParseBool` does, where a present but empty value
/// (`?stale`) means true.
fn parse_bool(param: &'static str, value: &str) -> Result<bool, QueryError> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(invalid(param, format!("{other:?} is not a boolean"))),
    }
}

fn bounded(param: &'static str, value: &str) -> Result<String, QueryError> {
    if value.len() > MAX_TOKEN_LEN {
        return Err(invalid(param, format!("longer than {MAX_TOKEN_LEN} bytes")));
    }
    Ok(value.to_string())
}

impl QueryOptions {
    /// Parses the common options from decoded `(name, value)` pairs. Unknown names are left for
    /// the endpoint to interpret.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, QueryError> {
        let mut q = QueryOptions { namespace: "default".into(), ..QueryOptions::default() };
        let mut wait_given = None;
        for (name, value) in pairs {
            match name {
                "index" => {
                    q.min_index = value.parse().map_err(|_| {
                        invalid("index", format!("{value:?} is not an unsigned integer"))
                    })?
                }
                "wait" => {
                    wait_given = Some(parse_go_duration(value).map_err(|e| invalid("wait", e))?)
                }
                "prefix" => q.prefix = bounded("prefix", value)?,
                "filter" => q.filter = Some(Filter::parse(value)?),
                "per_page" => {
                    let n: usize = value.parse().map_err(|_| {
                        invalid("per_page", format!("{value:?} is not an unsigned integer"))
                    })?;
                    q.per_page = (n > 0).then_some(n);
                }
                "next_token" => q.next_token = bounded("next_token", value)?,
                "namespace" if !value.is_empty() => q.namespace = bounded("namespace", value)?,
                "region" => q.region = bounded("region", value)?,
                "stale" => q.allow_stale = parse_bool("stale", value)?,
                "pretty" => q.pretty = parse_bool("pretty", value)?,
                "reverse" => q.reverse = parse_bool("reverse", value)?,
                _ => {}
            }
        }
        q.wait = wait_given.unwrap_or(MAX_BLOCKING_WAIT).min(MAX_BLOCKING_WAIT);
        Ok(q)
    }

    /// True when the caller asked to block until something changes.
    pub fn is_blocking(&self) -> bool {
        self.min_index > 0
    }

    /// The wait plus Nomad's jitter; `unit_random` is a number in `[0, 1)` from the caller's RNG,
    /// so this stays deterministic under test.
    pub fn wait_with_jitter(&self, unit_random: f64) -> Duration {
        let max_jitter = self.wait / JITTER_FRACTION;
        self.wait + max_jitter.mul_f64(unit_random.clamp(0.0, 1.0))
    }
}

/// One page of a sorted listing and the token of the next page, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Goes back in the `X-Nomad-NextToken` header; empty on the last page.
    pub next_token: String,
}

/// Applies `next_token` and `per_page` to items already sorted by `key` (ascending, or descending
/// when `reverse`). The token is the key of the first item of the next page, as in Nomad.
pub fn paginate<T>(items: Vec<T>, key: impl Fn(&T) -> &str, q: &QueryOptions) -> Page<T> {
    let start = if q.next_token.is_empty() {
        0
    } else if q.reverse {
        items.iter().position(|i| key(i) <= q.next_token.as_str()).unwrap_or(items.len())
    } else {
        items.iter().position(|i| key(i) >= q.next_token.as_str()).unwrap_or(items.len())
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let mut next_token = String::new();
    if let Some(per_page) = q.per_page {
        if rest.len() > per_page {
            next_token = key(&rest[per_page]).to_string();
            rest.truncate(per_page);
        }
    }
    Page { items: rest, next_token }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_options() {
        let q = QueryOptions::from_pairs([
            ("index", "42"),
            ("wait", "10m"),
            ("stale", ""),
            ("namespace", "prod"),
            ("filter", "Tags contains \"x\""),
            ("per_page", "2"),
            ("unknown", "kept for the endpoint"),
        ])
        .unwrap();
        assert_eq!(q.min_index, 42);
        assert_eq!(q.wait, MAX_BLOCKING_WAIT, "a 10m wait is capped at 5m as in Nomad");
        assert!(q.allow_stale);
        assert_eq!(q.namespace, "prod");
        assert!(q.filter.is_some());
        assert_eq!(q.per_page, Some(2));
        assert_eq!(q.wait_with_jitter(0.5), MAX_BLOCKING_WAIT + MAX_BLOCKING_WAIT / 32);
    }

    #[test]
    fn defaults_and_errors() {
        let q = QueryOptions::from_pairs([]).unwrap();
        assert_eq!(q.namespace, "default");
        assert!(!q.is_blocking());
        let err = QueryOptions::from_pairs([("index", "-1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for \"index\": \"-1\" is not an unsigned integer"
        );
        let err = QueryOptions::from_pairs([("wait", "10")]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid value for \"wait\": invalid duration \"10\": missing unit"));
        assert!(QueryOptions::from_pairs([("stale", "maybe")]).is_err());
    }

    #[test]
    fn pages_follow_next_token() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let mut q = QueryOptions { per_page: Some(2), ..QueryOptions::default() };
        let mut seen = Vec::new();
        loop {
            let page = paginate(items.clone(), |s| s.as_str(), &q);
            seen.extend(page.items);
            if page.next_token.is_empty() {
                break;
            }
            q.next_token = page.next_token;
        }
        assert_eq!(seen, items);
    }
}
