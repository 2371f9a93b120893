//! Request bodies: untrusted JSON decoded the way Nomad's Go server decodes it.
//!
//! Go's `encoding/json` matches object keys case-insensitively, treats `null` as "leave the
//! default", and ignores keys it does not know. This module does the same, but reports the
//! unknown keys (by JSON path) so a misspelt field does not vanish silently. Syntax and type
//! errors name the line and column. Size limits are enforced before this module runs
//! (`DefaultBodyLimit`); this module does not know any endpoint's shape beyond `T`.

use super::ApiError;
use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A decoded body and the keys in it that `T` has no field for.
#[derive(Debug)]
pub struct Decoded<T> {
    pub value: T,
    pub unknown: Vec<String>,
}

impl<T> Decoded<T> {
    /// Unknown fields as the `Warnings` line Nomad-compatible clients print.
    pub fn warnings(&self) -> String {
        if self.unknown.is_empty() {
            String::new()
        } else {
            format!("ignored unknown fields: {}", self.unknown.join(", "))
        }
    }
}

/// Parses `bytes` as JSON into a [`Value`], failing with the position of a syntax error.
pub fn parse_value(bytes: &Bytes) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Request body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

/// Decodes `bytes` into `T` leniently (see the module comment).
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &Bytes) -> Result<Decoded<T>, ApiError> {
    let value = parse_value(bytes)?;
    decode_value(value, bytes)
}

/// Decodes an already parsed value. `raw` is the original text, decoded again on a type error
/// so the message can say where.
pub fn decode_value<T: DeserializeOwned + Serialize>(
    mut value: Value,
    raw: &[u8],
) -> Result<Decoded<T>, ApiError> {
    strip_nulls(&mut value);
    let mut decoded: T = match serde_json::from_value(value.clone()) {
        Ok(v) => v,
        Err(e) => return Err(type_error::<T>(e, raw)),
    };
    // What `T` makes of the input, serialised back, has every key `T` knows at this shape; keys
    // of the input missing from it are either differently cased (fixed, then decoded again) or
    // unknown. A renamed key can reveal a nested shape, so this repeats until nothing changes;
    // each round fixes at least one more level, and JSON nesting is bounded by serde_json.
    let mut unknown;
    loop {
        let known =
            serde_json::to_value(&decoded).map_err(|e| ApiError::Internal(e.to_string()))?;
        unknown = Vec::new();
        if !fix_case(&mut value, &known, "", &mut unknown) {
            break;
        }
        decoded = serde_json::from_value(value.clone()).map_err(|e| type_error::<T>(e, raw))?;
    }
    let value = decoded;
    if !unknown.is_empty() {
        tracing::warn!(fields = ?unknown, "request body has fields orc does not know; ignored");
    }
    Ok(Decoded { value, unknown })
}

fn type_error<T: DeserializeOwned>(e: serde_json::Error, raw: &[u8]) -> ApiError {
    // Decoding the raw text usually gives the same error with a line and column.
    let positioned = serde_json::from_slice::<T>(raw).err();
    match positioned {
        Some(p) => ApiError::BadRequest(format!("invalid JSON: {p}")),
        None => ApiError::BadRequest(format!("invalid request body: {e}")),
    }
}

/// Removes `null` members so `#[serde(default)]` applies, as Go leaves a field at its zero value.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Renames keys of `input` that match a key of `known` only case-insensitively; records keys
/// with no match at all in `unknown`. Returns true if anything was renamed.
fn fix_case(input: &mut Value, known: &Value, path: &str, unknown: &mut Vec<String>) -> bool {
    match (input, known) {
        (Value::Object(inp), Value::Object(kn)) => {
            let mut renamed = false;
            let keys: Vec<String> = inp.keys().cloned().collect();
            let mut out = Map::new();
            for key in keys {
                let mut v = inp.remove(&key).expect("key listed above");
                let target = if kn.contains_key(&key) {
                    Some(key.clone())
                } else {
                    kn.keys().find(|k| k.eq_ignore_ascii_case(&key)).cloned()
                };
                let sub = format!("{path}{}{key}", if path.is_empty() { "" } else { "." });
                match target {
                    Some(t) => {
                        renamed |= t != key;
                        renamed |= fix_case(&mut v, &kn[&t], &sub, unknown);
                        out.insert(t, v);
                    }
                    None => {
                        unknown.push(sub);
                        out.insert(key, v);
                    }
                }
            }
            *inp = out;
            renamed
        }
        (Value::Array(inp), Value::Array(kn)) => {
            let mut renamed = false;
            for (i, (a, b)) in inp.iter_mut().zip(kn).enumerate() {
                renamed |= fix_case(a, b, &format!("{path}[{i}]"), unknown);
            }
            renamed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Inner {
        count: u32,
        tags: Vec<String>,
    }

    #[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
    #[serde(rename_all = "PascalCase", default)]
    struct Outer {
        #[serde(rename = "ID")]
        id: String,
        groups: Vec<Inner>,
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_ones_are_reported() {
        let body = Bytes::from(
            r#"{"id":"x","Groups":[{"count":2,"Tags":null,"Colour":"red"}],"Extra":1}"#,
        );
        let d: Decoded<Outer> = decode(&body).unwrap();
        assert_eq!(
            d.value,
            Outer { id: "x".into(), groups: vec![Inner { count: 2, tags: vec![] }] }
        );
        assert_eq!(d.unknown, vec!["Groups[0].Colour".to_string(), "Extra".to_string()]);
    }

    #[test]
    fn errors_say_where() {
        let e = decode::<Outer>(&Bytes::from("{\n  \"ID\": \"x\",\n  \"Groups\": [}")).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("line 3 column"), "{e}");
        let e = decode::<Outer>(&Bytes::from("{\"ID\": 5}")).unwrap_err();
        assert!(e.to_string().contains("invalid type: integer `5`, expected a string"), "{e}");
        assert!(e.to_string().contains("line 1 column"), "{e}");
        let e = decode::<Outer>(&Bytes::from("  ")).unwrap_err();
        assert_eq!(e.to_string(), "Request body is empty");
    }
}
