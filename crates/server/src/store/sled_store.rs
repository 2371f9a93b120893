//! The sled-backed [`Store`]: the only code in orc that imports sled, so replacing sled later
//! touches this file alone.
//!
//! Layout: tree `log` maps big-endian `u64` index → entry bytes (big-endian so that sled's byte
//! order is index order); tree `meta` holds the [`MetaKey`] values and the snapshot under
//! `snapshot.meta` / `snapshot.data`, written in one atomic batch.

use super::{MetaKey, Store, StoreError, StoredEntry, StoredSnapshot};
use std::ops::Range;
use std::path::Path;

const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long [`SledStore::open`] waits for a lock this process may still be releasing.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const SNAPSHOT_META: &[u8] = b"snapshot.meta";
const SNAPSHOT_DATA: &[u8] = b"snapshot.data";

/// A [`Store`] in a sled database directory.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn decode_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("log key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl SledStore {
    /// Opens (creating if needed) the database in `dir`.
    ///
    /// sled locks the directory while a database is open, and a database closed in this process
    /// keeps its lock until its background flusher has stopped, a moment after the last handle
    /// was dropped. So a lock held for less than [`LOCK_WAIT`] is waited for (a server restarted
    /// in the same process); a lock held longer means another process uses the directory.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            // sled's page cache defaults to 1 GiB per database. The log is written once and
            // read back mostly while replicating recent entries, so a small cache serves it.
            match sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).open() {
                Ok(db) => break db,
                // sled reports a held lock as an `Other` I/O error with this message.
                Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Io(format!(
                            "{} is locked by another process (an orc server already uses this \
                             data directory?): {e}",
                            dir.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(io(e)),
            }
        };
        let log = db.open_tree("log").map_err(io)?;
        let meta = db.open_tree("meta").map_err(io)?;
        Ok(SledStore { db, log, meta })
    }
}

impl Store for SledStore {
    fn append(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let mut expected = self.last_entry()?.map(|(last, _)| last + 1);
        let mut batch = sled::Batch::default();
        for (index, bytes) in entries {
            if expected.is_some_and(|e| e != *index) {
                return Err(StoreError::Misuse(format!(
                    "append of index {index} does not continue the log (expected {expected:?})"
                )));
            }
            expected = Some(index + 1);
            batch.insert(&index.to_be_bytes(), bytes.as_slice());
        }
        self.log.apply_batch(batch).map_err(io)
    }

    fn entries(&self, range: Range<u64>) -> Result<Vec<StoredEntry>, StoreError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        self.log
            .range(range.start.to_be_bytes()..range.end.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv.map_err(io)?;
                Ok((decode_index(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn last_entry(&self) -> Result<Option<StoredEntry>, StoreError> {
        match self.log.last().map_err(io)? {
            Some((k, v)) => Ok(Some((decode_index(&k)?, v.to_vec()))),
            None => Ok(None),
        }
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(index.to_be_bytes()..).keys() {
            batch.remove(key.map_err(io)?);
        }
        self.log.apply_batch(batch).map_err(io)
    }

    fn purge_through(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for key in self.log.range(..=index.to_be_bytes()).keys() {
            batch.remove(key.map_err(io)?);
        }
        self.log.apply_batch(batch).map_err(io)
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.name(), value).map_err(io)?;
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key.name()).map_err(io)?.map(|v| v.to_vec()))
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(SNAPSHOT_META, snapshot.meta.as_slice());
        batch.insert(SNAPSHOT_DATA, snapshot.data.as_slice());
        self.meta.apply_batch(batch).map_err(io)
    }

    fn snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let meta = self.meta.get(SNAPSHOT_META).map_err(io)?;
        let data = self.meta.get(SNAPSHOT_DATA).map_err(io)?;
        match (meta, data) {
            (Some(m), Some(d)) => Ok(Some(StoredSnapshot { meta: m.to_vec(), data: d.to_vec() })),
            (None, None) => Ok(None),
            _ => Err(StoreError::Corrupt(
                "snapshot metadata without data, or data without metadata".into(),
            )),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(io)?;
        Ok(())
    }
}
