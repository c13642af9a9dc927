//! What tests share across the workspace: finding the real components some of them need, and
//! a single-node Kubernetes cluster on this machine for the tests that need one.
//!
//! A test that needs a component it cannot find fails, saying how to get it; it never passes
//! quietly. Such tests are `#[ignore]`d and named after their component (`real_flux_…`,
//! `real_kube_…`), so a plain `cargo nextest run` reports them as skipped and `tests/run`
//! runs each group when its component is there (and says how many did not run).

pub mod cluster;
pub mod dns;
pub mod error;
pub mod kube;
pub mod require;

pub use error::{Error, Result};
