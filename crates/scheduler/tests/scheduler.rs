//! The scheduler's one integration-test binary: readable cluster fixtures and jobs in, plans out
//! (expect-test snapshots, `UPDATE_EXPECT=1`), property tests over random clusters, and the
//! packing-quality check. Benchmarks live in `benches/c1m.rs`, not here.

mod scheduler {
    pub mod fixtures;
    pub mod operators;
    pub mod packing;
    pub mod props;
    pub mod support;
}
