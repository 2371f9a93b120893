//! [`Id`]: an allocation's ID as the state's maps hold it, inline rather than on the heap.
//!
//! The state looks allocations up by ID in B-trees of up to millions of keys. With `String`
//! keys every comparison on the way down reads another heap buffer, a cache miss each; an ID
//! of up to 36 bytes (a UUID) is kept in the key itself, so a search reads only the tree's
//! nodes. Longer IDs, which orc never generates but an older state might hold, go on the heap.
//! Keys order exactly as their strings do, so ranges and prefixes work as before.

use arrayvec::ArrayString;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// The longest ID kept inline: a UUID's length.
const INLINE: usize = 36;

/// An ID as a map key; borrows as `str`, so maps keyed by it are searched with a `&str`.
#[derive(Clone)]
pub struct Id(Repr);

#[derive(Clone)]
enum Repr {
    Inline(ArrayString<INLINE>),
    Heap(Box<str>),
}

impl Id {
    pub fn new(id: &str) -> Id {
        match ArrayString::from(id) {
            Ok(inline) => Id(Repr::Inline(inline)),
            Err(_) => Id(Repr::Heap(id.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(s) => s.as_str(),
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for Id {
    fn from(id: &str) -> Id {
        Id::new(id)
    }
}

impl From<&String> for Id {
    fn from(id: &String) -> Id {
        Id::new(id)
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Id) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Id) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_order_and_compare_as_their_strings_inline_or_not() {
        let long = "x".repeat(INLINE + 1);
        let ids = ["b", "a", "", "ab", &long, "0f8c1f2e-3a5b-4c6d-8e9f-a0b1c2d3e4f5", "a"];
        let keys: BTreeSet<Id> = ids.iter().map(|s| Id::new(s)).collect();
        let strings: BTreeSet<&str> = ids.iter().copied().collect();
        let got: Vec<&str> = keys.iter().map(Id::as_str).collect();
        assert_eq!(got, strings.into_iter().collect::<Vec<_>>());
        assert!(keys.contains("ab") && keys.contains(long.as_str()) && !keys.contains("c"));
        use std::ops::Bound::{Excluded, Included};
        let (from, to): (&str, &str) = ("a", "b");
        let range: Vec<&str> =
            keys.range::<str, _>((Included(from), Excluded(to))).map(Id::as_str).collect();
        assert_eq!(range, ["a", "ab"]);
        assert_eq!(format!("{:?}", Id::new(&long)), format!("{long:?}"));
    }
}
