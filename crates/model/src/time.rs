//! Serde adapter for the few times Nomad's JSON writes as Go's `time.Time` (RFC 3339 with
//! nanoseconds, `"2026-11-26T03:04:05.123456789Z"`) while orc keeps them as Unix nanoseconds.
//! Zero is Go's zero time (`"0001-01-01T00:00:00Z"`). Input may also be an integer of Unix
//! nanoseconds (what orc wrote before), so older persisted state still reads.

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Go's zero `time.Time`, which Nomad sends for "never".
const GO_ZERO: &str = "0001-01-01T00:00:00Z";

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix nanoseconds as RFC 3339 in UTC, as Go's JSON writes `time.Time` (`RFC3339Nano`: the
/// fraction loses its trailing zeros, and its dot when it is zero). Zero is Go's zero time.
pub fn format(nanos: i64) -> String {
    if nanos == 0 {
        return GO_ZERO.to_owned();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let frac = if frac == 0 {
        String::new()
    } else {
        format!(".{frac:09}").trim_end_matches('0').to_owned()
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Unix nanoseconds as RFC 3339 in UTC to the second (`2024-05-01T12:00:00Z`), for people.
pub fn format_secs(nanos: i64) -> String {
    format(nanos - nanos.rem_euclid(1_000_000_000))
}

/// RFC 3339 (`Z` or a `±HH:MM` offset, any fraction up to nanoseconds) → Unix nanoseconds.
pub fn parse(s: &str) -> Option<i64> {
    if s == GO_ZERO {
        return Some(0);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut pos = 19;
    let mut frac = 0i64;
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        frac = num(start..end)? * 10i64.pow(9 - (end - start) as u32);
        pos = end;
    }
    let offset = match s.get(pos..)? {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(&o[..1], "+" | "-") && &o[3..4] == ":" => {
            let v = num(pos + 1..pos + 3)? * 3600 + num(pos + 4..pos + 6)? * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac)
}

/// `#[serde(with = "crate::time::rfc3339")]` for an `i64` of Unix nanoseconds.
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(nanos: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*nanos))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = i64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or Unix nanoseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                parse(v).ok_or_else(|| E::custom(format!("invalid RFC 3339 time {v:?}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(|_| E::custom("time out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_what_go_and_older_orc_write() {
        let t = 1_795_662_245_123_456_789; // 2026-11-26T03:04:05.123456789Z
        assert_eq!(format(t), "2026-11-26T03:04:05.123456789Z");
        assert_eq!(parse(&format(t)), Some(t));
        assert_eq!(format(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(format(1_795_662_245_500_000_000), "2026-11-26T03:04:05.5Z");
        assert_eq!(format_secs(t), "2026-11-26T03:04:05Z");
        assert_eq!(format(0), "0001-01-01T00:00:00Z");
        assert_eq!(parse("0001-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2026-11-26T04:04:05.5+01:00"), Some(1_795_662_245_500_000_000));
        assert_eq!(parse("2026-11-26T03:04:05Z"), Some(1_795_662_245_000_000_000));
        for bad in [
            "",
            "2026-11-26",
            "2026-13-26T03:04:05Z",
            "2026-11-26T03:04:05",
            "2026-11-26T03:04:05.Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct W {
            #[serde(with = "rfc3339")]
            t: i64,
        }
        let json = serde_json::to_string(&W { t }).unwrap();
        assert_eq!(json, r#"{"t":"2026-11-26T03:04:05.123456789Z"}"#);
        assert_eq!(serde_json::from_str::<W>(&json).unwrap(), W { t });
        assert_eq!(serde_json::from_str::<W>(r#"{"t":42}"#).unwrap(), W { t: 42 });
        assert!(serde_json::from_str::<W>(r#"{"t":"yesterday"}"#).is_err());
        let d = crate::AllocDeploymentStatus { timestamp: t, ..Default::default() };
        assert_eq!(
            serde_json::to_value(&d).unwrap()["Timestamp"],
            "2026-11-26T03:04:05.123456789Z"
        );
    }
}
