use std::path::PathBuf;

/// Everything that can go wrong bringing the test cluster up or down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what} is missing (fix: {fix})")]
    Missing { what: String, fix: String },
    #[error("{what} did not happen within {secs} s{detail} (logs: {logs})")]
    Timeout {
        what: String,
        secs: u64,
        detail: String,
        logs: PathBuf,
    },
    #[error("certificates: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("left behind after down: {0}")]
    Leftovers(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what was being done to an I/O error.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
