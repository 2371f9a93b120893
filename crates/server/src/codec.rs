//! The persisted and wire encoding of everything a server writes: one format-version byte, then
//! JSON. It owns the version check; it does not know what the values mean.
//!
//! Snapshots, which hold the whole state, are written as version [`FORMAT_VERSION_DEFLATE`]: the
//! same JSON, zlib-compressed as it is produced ([`encode_compressed`]), so neither the encoder
//! nor the store nor a follower receiving it ever holds the full-size JSON (about 1.3 KB per
//! allocation, ten times its compressed size). [`decode`] reads both versions.
//!
//! JSON rather than a compact binary format because the model types carry serde attributes
//! (`default`, renames) that only self-describing formats honour, and because a log that `jq`
//! can read is worth its size. When the format changes, bump [`FORMAT_VERSION`] and teach
//! [`decode`] to read the old version and migrate it; never reinterpret old bytes silently.
//!
//! Versions 1 and 2 (JSON and compressed JSON) were written while orc's Raft identified a leader
//! by `(term, node ID)`; since openraft's `single-term-leader` feature a log ID's leader is the
//! term alone and a vote names `voted_for`. Those bytes cannot be migrated safely (an old vote
//! would decode as "voted for nobody", and an old log may hold entries of two leaders of one
//! term), so [`decode`] refuses them with [`DecodeError::Obsolete`].

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The version byte written in front of every encoded value.
pub const FORMAT_VERSION: u8 = 3;

/// The version byte of a value written by [`encode_compressed`]: zlib-compressed JSON.
pub const FORMAT_VERSION_DEFLATE: u8 = 4;

/// The versions written before Raft had one leader per term (see the module comment).
const OBSOLETE_VERSIONS: [u8; 2] = [1, 2];

/// Decoding failed: the bytes were written by an unknown version, or are damaged.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty value: no format version byte")]
    Empty,
    #[error("format version {found} is not supported (this build reads version {FORMAT_VERSION}); upgrade orc")]
    UnknownVersion { found: u8 },
    #[error("format version {found} was written by an older orc whose Raft allowed two leaders per term; this build cannot read it: remove the server's data directory and let it rejoin the cluster")]
    Obsolete { found: u8 },
    #[error("malformed value: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("malformed compressed value: {0}")]
    Compressed(std::io::Error),
}

/// Encodes `value` as the version byte followed by its JSON.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Serialising our own types to a Vec cannot fail: they have no maps with non-string keys
    // and no fallible custom serialisers.
    serde_json::to_writer(&mut out, value).expect("orc's types always serialise to JSON");
    out
}

/// Encodes `value` as [`FORMAT_VERSION_DEFLATE`] followed by its JSON compressed with zlib, for
/// large values (snapshots). The JSON is compressed while it is written: it never exists whole.
pub fn encode_compressed<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    use std::io::Write;
    let out = vec![FORMAT_VERSION_DEFLATE];
    let z = flate2::write::ZlibEncoder::new(out, flate2::Compression::fast());
    // serde_json writes in small pieces; the buffer hands the compressor larger ones.
    let mut w = std::io::BufWriter::with_capacity(1 << 16, z);
    // Writing into memory cannot fail (see `encode` for why serialising cannot either).
    serde_json::to_writer(&mut w, value).expect("orc's types always serialise to JSON");
    w.flush().expect("writing to memory cannot fail");
    let z = w.into_inner().map_err(|e| e.into_error()).expect("writing to memory cannot fail");
    z.finish().expect("writing to memory cannot fail")
}

/// Decodes bytes written by [`encode`] or [`encode_compressed`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match bytes.split_first() {
        None => Err(DecodeError::Empty),
        Some((&FORMAT_VERSION, json)) => Ok(serde_json::from_slice(json)?),
        Some((&FORMAT_VERSION_DEFLATE, compressed)) => {
            let z = flate2::read::ZlibDecoder::new(compressed);
            let reader = std::io::BufReader::with_capacity(1 << 16, z);
            serde_json::from_reader(reader).map_err(|e| match e.io_error_kind() {
                Some(_) => DecodeError::Compressed(e.into()),
                None => DecodeError::Malformed(e),
            })
        }
        Some((&found, _)) if OBSOLETE_VERSIONS.contains(&found) => {
            Err(DecodeError::Obsolete { found })
        }
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
        future[0] = FORMAT_VERSION_DEFLATE + 1;
        assert!(matches!(decode::<Vec<u64>>(&future), Err(DecodeError::UnknownVersion { .. })));
        assert!(matches!(decode::<Vec<u64>>(&[]), Err(DecodeError::Empty)));
        for old in OBSOLETE_VERSIONS {
            let mut old_bytes = bytes.clone();
            old_bytes[0] = old;
            let err = decode::<Vec<u64>>(&old_bytes).unwrap_err();
            assert!(matches!(err, DecodeError::Obsolete { found } if found == old));
            assert!(err.to_string().contains("remove the server's data directory"), "{err}");
        }
        assert!(matches!(decode::<Vec<u64>>(&bytes[..3]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn compressed_values_round_trip_and_damage_is_reported() {
        let value: Vec<String> = (0..2000).map(|i| format!("allocation-{}", i % 7)).collect();
        let bytes = encode_compressed(&value);
        assert_eq!(bytes[0], FORMAT_VERSION_DEFLATE);
        assert!(bytes.len() * 10 < encode(&value).len(), "repetitive JSON compresses");
        assert_eq!(decode::<Vec<String>>(&bytes).unwrap(), value);
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(decode::<Vec<String>>(truncated), Err(DecodeError::Compressed(_))));
        let mut garbled = bytes.clone();
        garbled[1] ^= 0xff;
        assert!(decode::<Vec<String>>(&garbled).is_err());
    }
}
