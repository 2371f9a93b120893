//! Placeholder replaced by the jobspec work.
