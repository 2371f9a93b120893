//! The durable-storage seam of a server: Raft's log, vote, committed marker and the state-machine
//! snapshot, all as opaque bytes.
//!
//! This module owns the [`Store`] trait and its two implementations: [`SledStore`] (the only code
//! in orc that imports sled) and [`MemStore`] (for unit tests and the simulator). It deliberately
//! knows nothing of Raft's types or of the encoding of what it stores; the `raft` module encodes.
//!
//! Durability contract: every mutating call is visible to later reads on the same store at once,
//! but is only guaranteed to survive a crash (process kill or power loss) after a later
//! [`Store::flush`] has returned `Ok`. Callers that acknowledge something to a peer (an appended
//! entry, a granted vote) must flush first.

mod mem;
mod sled_store;

pub use mem::MemStore;
pub use sled_store::SledStore;

use std::ops::Range;

/// Errors from a store. Storage errors are not recoverable by retrying the same call: the Raft
/// layer treats them as fatal for this server.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The underlying storage failed (disk full, permission, IO).
    #[error("storage failed: {0}")]
    Io(String),
    /// What was read back is not what could have been written.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// A caller broke the contract (for example appended a non-contiguous entry).
    #[error("storage misuse: {0}")]
    Misuse(String),
}

/// Small named values kept beside the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaKey {
    /// The last vote this server cast or holds.
    Vote,
    /// The highest log position known to be committed.
    Committed,
    /// The position of the last entry removed by [`Store::purge_through`].
    LastPurged,
}

impl MetaKey {
    fn name(self) -> &'static str {
        match self {
            MetaKey::Vote => "vote",
            MetaKey::Committed => "committed",
            MetaKey::LastPurged => "last_purged",
        }
    }
}

/// A log entry as stored: its index and its encoded bytes.
pub type StoredEntry = (u64, Vec<u8>);

/// A stored snapshot: encoded metadata and encoded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

/// What a server persists. Implementations are synchronous and cheap except [`Store::flush`],
/// which callers run off the async executor.
pub trait Store: Send + Sync + 'static {
    /// Appends entries. Indexes must be strictly increasing and continue the log: the first must
    /// be one past the last stored entry (or anything, when the log is empty).
    fn append(&self, entries: &[StoredEntry]) -> Result<(), StoreError>;

    /// The stored entries whose index lies in `range`, in index order. Missing indexes (purged or
    /// never written) are simply absent.
    fn entries(&self, range: Range<u64>) -> Result<Vec<StoredEntry>, StoreError>;

    /// The entry with the highest index, if any.
    fn last_entry(&self) -> Result<Option<StoredEntry>, StoreError>;

    /// Removes every entry with index `>= index` (a conflicting suffix).
    fn truncate_from(&self, index: u64) -> Result<(), StoreError>;

    /// Removes every entry with index `<= index` (compaction after a snapshot).
    fn purge_through(&self, index: u64) -> Result<(), StoreError>;

    /// Stores a named value, replacing the previous one.
    fn put_meta(&self, key: MetaKey, value: &[u8]) -> Result<(), StoreError>;

    /// Reads a named value.
    fn get_meta(&self, key: MetaKey) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the stored snapshot. Metadata and data are replaced together or not at all.
    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError>;

    /// The stored snapshot, if any.
    fn snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError>;

    /// Makes every earlier mutation durable. Blocks until the data is on stable storage.
    fn flush(&self) -> Result<(), StoreError>;

    /// Whether calls may wait on the disk. Raft runs the slow ones (flushes, snapshots) on
    /// tokio's blocking pool when they may, and inline otherwise, which keeps a simulation on
    /// an in-memory store deterministic (a thread pool finishes in real time).
    fn blocks_on_io(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod conformance;
