//! One conformance suite for every [`Store`]: each case is a generic function, instantiated for
//! [`MemStore`] and [`SledStore`] by the macro at the bottom, so both are held to the same contract.

use super::*;
use tempfile::TempDir;

fn e(index: u64) -> StoredEntry {
    (index, format!("entry-{index}").into_bytes())
}

fn indexes(entries: &[StoredEntry]) -> Vec<u64> {
    entries.iter().map(|(i, _)| *i).collect()
}

fn empty_store_has_nothing(s: &dyn Store) {
    assert_eq!(s.last_entry().unwrap(), None);
    assert_eq!(s.entries(0..u64::MAX).unwrap(), vec![]);
    assert_eq!(s.get_meta(MetaKey::Vote).unwrap(), None);
    assert_eq!(s.snapshot().unwrap(), None);
}

fn append_then_read_ranges(s: &dyn Store) {
    s.append(&[e(1), e(2), e(3)]).unwrap();
    s.append(&[e(4)]).unwrap();
    assert_eq!(s.entries(2..4).unwrap(), vec![e(2), e(3)]);
    assert_eq!(indexes(&s.entries(0..100).unwrap()), vec![1, 2, 3, 4]);
    assert_eq!(s.entries(3..3).unwrap(), vec![]);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 5..2;
    assert_eq!(s.entries(reversed).unwrap(), vec![]);
    assert_eq!(s.last_entry().unwrap(), Some(e(4)));
}

fn append_refuses_gaps_and_rewinds(s: &dyn Store) {
    s.append(&[e(5), e(6)]).unwrap();
    assert!(matches!(s.append(&[e(8)]), Err(StoreError::Misuse(_))));
    assert!(matches!(s.append(&[e(6)]), Err(StoreError::Misuse(_))));
    assert!(matches!(s.append(&[e(7), e(9)]), Err(StoreError::Misuse(_))));
    // A refused batch leaves nothing behind.
    assert_eq!(s.last_entry().unwrap(), Some(e(6)));
}

fn truncate_removes_suffix_and_allows_rewrite(s: &dyn Store) {
    s.append(&[e(1), e(2), e(3), e(4)]).unwrap();
    s.truncate_from(3).unwrap();
    assert_eq!(indexes(&s.entries(0..100).unwrap()), vec![1, 2]);
    let replacement = (3, b"other".to_vec());
    s.append(std::slice::from_ref(&replacement)).unwrap();
    assert_eq!(s.last_entry().unwrap(), Some(replacement));
    s.truncate_from(1).unwrap();
    assert_eq!(s.last_entry().unwrap(), None);
}

fn purge_removes_prefix_and_appends_continue(s: &dyn Store) {
    s.append(&[e(1), e(2), e(3), e(4)]).unwrap();
    s.purge_through(2).unwrap();
    assert_eq!(indexes(&s.entries(0..100).unwrap()), vec![3, 4]);
    s.append(&[e(5)]).unwrap();
    s.purge_through(5).unwrap();
    assert_eq!(s.last_entry().unwrap(), None);
    // After purging everything a snapshot install may restart the log anywhere.
    s.append(&[e(42)]).unwrap();
    assert_eq!(s.last_entry().unwrap(), Some(e(42)));
}

fn meta_values_are_independent_and_replaceable(s: &dyn Store) {
    s.put_meta(MetaKey::Vote, b"v1").unwrap();
    s.put_meta(MetaKey::Committed, b"c1").unwrap();
    s.put_meta(MetaKey::Vote, b"v2").unwrap();
    assert_eq!(s.get_meta(MetaKey::Vote).unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(s.get_meta(MetaKey::Committed).unwrap().as_deref(), Some(&b"c1"[..]));
    assert_eq!(s.get_meta(MetaKey::LastPurged).unwrap(), None);
}

fn snapshot_is_replaced_whole(s: &dyn Store) {
    let a = StoredSnapshot { meta: b"m1".to_vec(), data: vec![1; 1000] };
    let b = StoredSnapshot { meta: b"m2".to_vec(), data: vec![2; 10] };
    s.save_snapshot(&a).unwrap();
    assert_eq!(s.snapshot().unwrap(), Some(a));
    s.save_snapshot(&b).unwrap();
    assert_eq!(s.snapshot().unwrap(), Some(b));
    // Snapshots and the log do not interfere.
    s.append(&[e(1)]).unwrap();
    s.flush().unwrap();
    assert_eq!(s.last_entry().unwrap(), Some(e(1)));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem_store {
            $(#[test] fn $case() { super::$case(&super::MemStore::new()); })*
        }
        mod sled_store {
            $(#[test] fn $case() {
                let dir = super::TempDir::new().unwrap();
                super::$case(&super::SledStore::open(dir.path()).unwrap());
            })*
        }
    };
}

conformance!(
    empty_store_has_nothing,
    append_then_read_ranges,
    append_refuses_gaps_and_rewinds,
    truncate_removes_suffix_and_allows_rewrite,
    purge_removes_prefix_and_appends_continue,
    meta_values_are_independent_and_replaceable,
    snapshot_is_replaced_whole,
);

#[test]
fn sled_store_keeps_flushed_data_across_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.append(&[e(1), e(2), e(3)]).unwrap();
        s.purge_through(1).unwrap();
        s.put_meta(MetaKey::Vote, b"vote").unwrap();
        s.save_snapshot(&StoredSnapshot { meta: b"m".to_vec(), data: b"d".to_vec() }).unwrap();
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&s.entries(0..10).unwrap()), vec![2, 3]);
    assert_eq!(s.get_meta(MetaKey::Vote).unwrap().as_deref(), Some(&b"vote"[..]));
    assert_eq!(s.snapshot().unwrap().unwrap().data, b"d".to_vec());
}

#[test]
fn sled_store_waits_for_a_released_lock_and_names_a_held_one() {
    let dir = TempDir::new().unwrap();
    let first = SledStore::open(dir.path()).unwrap();
    // Held for good: refused after the wait, saying why.
    let err = SledStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("locked by another process"), "{err}");
    // Released a moment later, as by a server restarting in this process: waited for.
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
    });
    SledStore::open(dir.path()).unwrap();
    release.join().unwrap();
}
