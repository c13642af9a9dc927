//! The one error type of the launchers. Each message says what is wrong and how to fix it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] minicluster_core::Error),
    #[error(
        "MiniCluster {name} is already running ({launcher}) (fix: `minicluster down {name}`, or pick another --name)"
    )]
    NameTaken { name: String, launcher: String },
    #[error(
        "MiniCluster {name} already started its work once ({detail}); launching it again would run that work a second time (fix: read its outcome, then `minicluster down {name}` to forget it, or pick another --name)"
    )]
    AlreadyStarted { name: String, detail: String },
    #[error("no MiniCluster named {0} (fix: `minicluster ls` lists them)")]
    NotFound(String),
    #[error(
        "port {port} on 127.0.0.1 is in use (fix: choose another --port, or leave it out to pick free ones)"
    )]
    PortInUse { port: u16 },
    #[error("{what}: {reason} (fix: {fix})")]
    Setup {
        what: String,
        reason: String,
        fix: String,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.display().to_string();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
