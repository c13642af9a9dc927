//! The one error type of the operator.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The MiniCluster spec is not valid (every problem listed) or cannot be described.
    #[error(transparent)]
    Core(#[from] minicluster_core::Error),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object the builders made did not serialise (a bug).
    #[error("building {what}: {reason}")]
    Build { what: String, reason: String },
    /// The MiniCluster has no name or namespace (the API server always sets both).
    #[error("the MiniCluster has no {0}")]
    Metadata(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;
