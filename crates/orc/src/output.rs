//! Human output shaped like Nomad's CLI: column tables (`columnize`), `Key = Value` blocks,
//! short IDs, timestamps and "5s ago" ages.
//!
//! It formats values it is given; it fetches nothing and decides nothing about what to show.

use serde_json::Value;

/// Columns separated by two spaces, left-aligned; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key = Value` lines with the `=` aligned, as Nomad's `formatKV`.
pub fn kv(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let v = if v.is_empty() { "<none>" } else { v.as_str() };
        out.push_str(&format!("{k:width$} = {v}\n"));
    }
    out
}

/// The first 8 characters of an ID, or all of it with `-verbose`.
pub fn short_id(id: &str, verbose: bool) -> String {
    if verbose {
        id.to_owned()
    } else {
        id.chars().take(8).collect()
    }
}

/// A string field of a JSON object, empty when absent.
pub fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Unix nanoseconds now.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Unix nanoseconds as RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
pub fn timestamp(nanos: i64) -> String {
    model::time::format_secs(nanos)
}

/// How long ago `nanos` was, as Nomad's `prettyTimeDiff`: `5s ago`, `3m2s ago`, `2h5m ago`,
/// `3d4h ago`.
pub fn ago(nanos: i64, now: i64) -> String {
    if nanos == 0 {
        return "<none>".into();
    }
    let secs = ((now - nanos) / 1_000_000_000).max(0);
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let text = if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    };
    format!("{text} ago")
}

/// Pretty JSON with four-space indentation, as Nomad's `-json` and `-output` print.
pub fn pretty_json(value: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Serialising a `Value` to memory cannot fail.
    let _ = value.serialize(&mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

/// Writes to stdout; a closed pipe (`orc ... | head`) is not an error.
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn tables_and_kv_look_like_nomad() {
        let t = table(&[
            vec!["ID".into(), "Type".into(), "Status".into()],
            vec!["nginx-minipot".into(), "service".into(), "running".into()],
        ]);
        expect![[r#"
            ID             Type     Status
            nginx-minipot  service  running
        "#]]
        .assert_eq(&t);
        let k = kv(&[("ID", "x".into()), ("Submit Date", "".into())]);
        expect![[r#"
            ID          = x
            Submit Date = <none>
        "#]]
        .assert_eq(&k);
    }

    #[test]
    fn times() {
        assert_eq!(timestamp(0), "0001-01-01T00:00:00Z");
        assert_eq!(timestamp(1_709_251_200_000_000_000), "2024-03-01T00:00:00Z");
        let now = 10_000 * 1_000_000_000;
        assert_eq!(ago(now - 5_000_000_000, now), "5s ago");
        assert_eq!(ago(now - 125_000_000_000, now), "2m5s ago");
        assert_eq!(ago(now - 7_300_000_000_000, now), "2h1m ago");
    }
}
