//! The one error type of the entrypoint. Every message says what is wrong and how to fix it,
//! and none carries key material.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster description is missing, unreadable or not one this build reads.
    #[error(
        "cluster description {path}: {reason} (fix: mount the description written by `minicluster render --out` or the operator's ConfigMap there, or pass --description)"
    )]
    Description { path: PathBuf, reason: String },
    /// This broker cannot tell which rank it is, or is not one of the MiniCluster's hosts.
    #[error("{problem} (fix: {fix})")]
    Identity { problem: String, fix: String },
    /// The CURVE certificate is missing, malformed, mismatched or never appeared.
    #[error("CURVE certificate {path}: {reason} (fix: {fix})")]
    Cert {
        path: PathBuf,
        reason: String,
        fix: String,
    },
    /// A file or directory could not be created, written or changed.
    #[error("cannot {action} {path}: {source} (fix: {fix})")]
    Io {
        action: &'static str,
        path: PathBuf,
        fix: String,
        source: std::io::Error,
    },
    /// A command of the description that cannot be run as written.
    #[error("{field}: {reason} (fix: {fix})")]
    Command {
        field: &'static str,
        reason: String,
        fix: String,
    },
    /// No `flux` to run.
    #[error(
        "no flux command found ({searched}) (fix: use an image with Flux on its PATH, give the directory in the container's environment PATH in the MiniCluster spec, mount the Flux view, or pass --flux PATH)"
    )]
    FluxNotFound { searched: String },
    /// A helper program that must succeed did not.
    #[error("{what} failed: {reason}")]
    Program { what: String, reason: String },
    /// Something waited for never happened.
    #[error("gave up after {}s waiting for {what} (fix: {fix})", after.as_secs())]
    Timeout {
        what: String,
        after: Duration,
        fix: String,
    },
    /// Rank 0 did not prove in a CURVE handshake that it holds this broker's certificate.
    #[error("rank 0 ({endpoint}) {} (fix: {fix})", crate::curve_check::predicate(.failure))]
    Rank0Cert {
        endpoint: String,
        failure: crate::curve_handshake::Failure,
        fix: String,
    },
    /// A hook exited non-zero under `strict` logging.
    #[error("the {hook} hook exited with code {code} (strict mode stops on a failing hook)")]
    Hook { hook: &'static str, code: i32 },
    /// `--exit-file` was claimed by an earlier start: running now would run the work twice.
    #[error(
        "the exit file {exit_file} was already claimed by {by} ({started} exists): this start would run the work a second time (fix: remove {started} and {exit_file} if you really want to run it again)"
    )]
    AlreadyStarted {
        exit_file: PathBuf,
        started: PathBuf,
        by: String,
    },
    /// SIGTERM or SIGINT arrived before the broker started.
    #[error("stopped by {0} before the broker started")]
    Stopped(&'static str),
    /// The core crate refused something (template, hostlist).
    #[error(transparent)]
    Core(#[from] minicluster_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A closure turning an I/O error into [`Error::Io`] with what was done and the fix.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        fix: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        let fix = fix.into();
        move |source| Error::Io {
            action,
            path,
            fix,
            source,
        }
    }
}
