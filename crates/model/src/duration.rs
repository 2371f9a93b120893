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

/// Parses Go's duration syntax as Nomad accepts it in job files and query parameters:
/// a sequence of decimal numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`,
/// e.g. `"30s"`, `"1h30m"`, `"1.5h"`, `"250ms"`. A bare `"0"` is zero. Negative durations are
/// refused because no orc setting means anything by them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration; use a number with a unit, like \"30s\"".into());
    }
    if text.starts_with('-') {
        return Err(format!("duration {s:?} is negative"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("invalid duration {s:?}: expected a number at {rest:?}"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: bad number {:?}", &rest[..number_len]))?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit; use one of ns, us, ms, s, m, h (e.g. \"30s\")"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?}; use one of ns, us, ms, s, m, h"
                ))
            }
        };
        total_nanos += number * scale;
        rest = &rest[unit_len..];
    }
    if total_nanos > i64::MAX as f64 {
        return Err(format!("duration {s:?} is too large"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", 30_000_000_000u64),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("250ms", 250_000_000),
            ("10us", 10_000),
            ("0", 0),
            ("2m3s", 123_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(parse_go_duration(text), Ok(Duration::from_nanos(nanos)), "{text}");
        }
        for bad in ["", "10", "5 s", "-1s", "1d", "s", "1..2s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
