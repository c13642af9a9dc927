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
    /// No cluster to talk to: not in a pod, and no kubeconfig.
    #[error(
        "cannot find a Kubernetes cluster: {0} (fix: run in a pod with a ServiceAccount, or point KUBECONFIG at a kubeconfig)"
    )]
    NoCluster(String),
    /// The operator may not read what it must watch.
    #[error(
        "the operator may not {what}: {reason} (fix: give its ServiceAccount the rules of deploy/rbac.yaml — `minicluster manifests --namespace NS` for a one-namespace install — and check --namespace)"
    )]
    Forbidden { what: String, reason: String },
    /// The MiniCluster has no name or namespace (the API server always sets both).
    #[error("the MiniCluster has no {0}")]
    Metadata(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;
