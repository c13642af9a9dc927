//! The MiniCluster contract shared by the CLI, the operator, the launchers and the entrypoint:
//! the `MiniCluster` spec (flux-operator v1alpha2), Flux hostlists, CURVE certificates, the
//! cluster description, and the broker config rendered from it.

pub mod cert;
pub mod config;
pub mod description;
mod error;
pub mod exit_codes;
pub mod hostlist;
pub mod names;
pub mod spec;

pub use cert::CurveCert;
pub use config::Templates;
pub use description::{ClusterDescription, DescribeOptions, Mode, describe};
pub use error::{Error, FieldError};
pub use hostlist::Hostlist;
pub use spec::{MiniCluster, MiniClusterSpec};
