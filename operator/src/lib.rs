//! The MiniCluster operator: pure builders of every child object ([`build`]), the reconcile
//! pipeline ([`reconcile`]: read → validate → build → apply → status) and its server.

pub mod build;
pub mod error;
pub mod labels;

pub use error::{Error, Result};
