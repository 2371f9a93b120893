//! [`Row`]: how the state holds each stored object, shared rather than copied.
//!
//! A row is an `Arc` that reads like the value and writes copy-on-write. The leader's scheduler
//! view, a snapshot being encoded and the state itself all hold the same allocation or job
//! instead of a copy each; a change to a row that someone else still holds copies that one row
//! first, so nobody ever sees it change under them. This module decides nothing about what is
//! stored; it only makes keeping it cheap.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A stored object: cheap to clone (a reference count), copied on write only while shared.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Row<T>(Arc<T>);

impl<T> Row<T> {
    /// A row holding `value`.
    pub fn new(value: T) -> Self {
        Row(Arc::new(value))
    }

    /// The shared object, for holders outside the state (the scheduler's view).
    pub fn shared(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> Clone for Row<T> {
    fn clone(&self) -> Self {
        Row(Arc::clone(&self.0))
    }
}

impl<T> From<T> for Row<T> {
    fn from(value: T) -> Self {
        Row::new(value)
    }
}

impl<T> Deref for Row<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Writing through a row that is shared copies the object first (`Arc::make_mut`).
impl<T: Clone> DerefMut for Row<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

/// A row serialises as its object, so the persisted format does not know about sharing.
impl<T: Serialize> Serialize for Row<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (*self.0).serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Row<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Row::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_to_a_shared_row_leaves_the_other_holder_unchanged() {
        let mut row = Row::new(vec![1, 2]);
        let held = row.shared().clone();
        row.push(3);
        assert_eq!(*held, vec![1, 2]);
        assert_eq!(*row, vec![1, 2, 3]);
        // Unshared, a write happens in place.
        let before = Arc::as_ptr(row.shared());
        row.push(4);
        assert_eq!(Arc::as_ptr(row.shared()), before);
        assert_eq!(serde_json::to_string(&row).unwrap(), "[1,2,3,4]");
        let back: Row<Vec<i32>> = serde_json::from_str("[5]").unwrap();
        assert_eq!(*back, vec![5]);
    }
}
