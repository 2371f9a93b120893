//! The in-memory [`Store`]: for unit tests and the deterministic simulator. Nothing survives the
//! value being dropped; `flush` is a no-op because there is no crash to survive.

use super::{MetaKey, Store, StoreError, StoredEntry, StoredSnapshot};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

/// A [`Store`] held in memory.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    log: BTreeMap<u64, Vec<u8>>,
    meta: BTreeMap<MetaKey, Vec<u8>>,
    snapshot: Option<StoredSnapshot>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way later calls
        // would misread (each call is one map operation), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn blocks_on_io(&self) -> bool {
        false
    }

    fn append(&self, entries: &[StoredEntry]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let mut expected = inner.log.keys().next_back().map(|last| last + 1);
        for (index, _) in entries {
            if expected.is_some_and(|e| e != *index) {
                return Err(StoreError::Misuse(format!(
                    "append of index {index} does not continue the log (expected {expected:?})"
                )));
            }
            expected = Some(index + 1);
        }
        for (index, bytes) in entries {
            inner.log.insert(*index, bytes.clone());
        }
        Ok(())
    }

    fn entries(&self, range: Range<u64>) -> Result<Vec<StoredEntry>, StoreError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        Ok(self.lock().log.range(range).map(|(i, b)| (*i, b.clone())).collect())
    }

    fn last_entry(&self) -> Result<Option<StoredEntry>, StoreError> {
        Ok(self.lock().log.iter().next_back().map(|(i, b)| (*i, b.clone())))
    }

    fn truncate_from(&self, index: u64) -> Result<(), StoreError> {
        self.lock().log.split_off(&index);
        Ok(())
    }

    fn purge_through(&self, index: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let keep = inner.log.split_off(&index.saturating_add(1));
        inner.log = keep;
        Ok(())
    }

    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError> {
        self.lock().meta.insert(key, value.to_vec());
        Ok(())
    }

    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().meta.get(&key).cloned())
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        self.lock().snapshot = Some(snapshot.clone());
        Ok(())
    }

    fn snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self.lock().snapshot.clone())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
