//! The persisted and wire encoding of everything a server writes: one format-version byte, then
//! JSON. It owns the version check; it does not know what the values mean.
//!
//! JSON rather than a compact binary format because the model types carry serde attributes
//! (`default`, renames) that only self-describing formats honour, and because a log that `jq`
//! can read is worth its size. When the format changes, bump [`FORMAT_VERSION`] and teach
//! [`decode`] to read the old version and migrate it; never reinterpret old bytes silently.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte written in front of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Decoding failed: the bytes were written by an unknown version, or are damaged.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty value: no format version byte")]
    Empty,
    #[error("format version {found} is not supported (this build reads version {FORMAT_VERSION}); upgrade orc")]
    UnknownVersion { found: u8 },
    #[error("malformed value: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encodes `value` as the version byte followed by its JSON.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serialising our own types to a Vec cannot fail: they have no maps with non-string keys
    // and no fallible custom serialisers.
    serde_json::to_writer(&mut out, value).expect("orc's types always serialise to JSON");
    out
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, json)) => Ok(serde_json::from_slice(json)?),
        Some((&found, _)) => Err(DecodeError::UnknownVersion { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let bytes = encode(&vec![1u64, 2, 3]);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<Vec<u64>>(&bytes).unwrap(), vec![1, 2, 3]);
        let mut future = bytes.clone();
        future[0] = FORMAT_VERSION + 1;
        assert!(matches!(decode::<Vec<u64>>(&future), Err(DecodeError::UnknownVersion { .. })));
        assert!(matches!(decode::<Vec<u64>>(&[]), Err(DecodeError::Empty)));
        assert!(matches!(decode::<Vec<u64>>(&bytes[..3]), Err(DecodeError::Malformed(_))));
    }
}
