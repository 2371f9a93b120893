//! Serde adapters that write `std::time::Duration` as Nomad does: integer nanoseconds.
//!
//! Nomad's JSON carries every duration as an int64 count of nanoseconds (`"KillTimeout": 5000000000`).
//! Negative values never occur in valid jobs and are refused on input.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// `#[serde(with = "nanos")]` for a `Duration` field.
pub mod nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_nanos(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_nanos(i64::deserialize(d)?)
    }
}

/// `#[serde(with = "opt_nanos")]` for an `Option<Duration>` field (`null` when absent).
pub mod opt_nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_i64(to_nanos(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<i64>::deserialize(d)? {
            Some(n) => from_nanos(n).map(Some),
            None => Ok(None),
        }
    }
}

/// Nanoseconds as Nomad writes them; saturates at `i64::MAX` (about 292 years).
pub fn to_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn from_nanos<E: serde::de::Error>(n: i64) -> Result<Duration, E> {
    u64::try_from(n)
        .map(Duration::from_nanos)
        .map_err(|_| E::custom(format!("duration must not be negative, got {n}ns")))
}
