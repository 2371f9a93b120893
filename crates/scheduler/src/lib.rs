//! Placeholder replaced by the scheduler work.
