//! The MiniCluster operator: pure builders of every child object ([`build`]), the reconcile
//! pipeline ([`reconcile`]: read → validate → build → apply → status), the status it reports
//! ([`status`]), its manifests ([`deploy`]) and its process ([`server`]).

pub mod build;
pub mod deploy;
pub mod error;
pub mod features;
pub mod labels;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod status;

pub use error::{Error, Result};
