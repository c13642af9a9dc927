//! The one error type of this crate.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// errno values Flux uses with a meaning of their own.
pub mod errno {
    pub const EPERM: u32 = 1;
    pub const ENOENT: u32 = 2;
    pub const EINVAL: u32 = 22;
    pub const ENOSYS: u32 = 38;
    pub const ENODATA: u32 = 61;
    pub const EPROTO: u32 = 71;
    pub const ECONNRESET: u32 = 104;
    pub const ETIMEDOUT: u32 = 110;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No broker address was given and `FLUX_URI` is unset.
    #[error("no Flux broker to talk to: set FLUX_URI (e.g. local:///run/flux/local)")]
    NoUri,
    #[error("unsupported Flux URI {uri:?}: {reason}")]
    Uri { uri: String, reason: String },
    #[error("cannot connect to the broker socket {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The connector refused us (its one-byte answer was an errno).
    #[error("the broker refused the connection: {}", errno_text(*errno))]
    Rejected { errno: u32 },
    /// The peer broke the protocol; the connection is unusable afterwards.
    #[error("Flux protocol error: {0}")]
    Protocol(String),
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("{topic}: no response within {after:?}")]
    Timeout { topic: String, after: Duration },
    /// The connection ended; pending calls get this.
    #[error("connection to the broker closed: {0}")]
    Closed(String),
    /// The broker answered with an error response.
    #[error("{topic}: {}", remote_text(*errnum, message.as_deref()))]
    Remote {
        topic: String,
        errnum: u32,
        message: Option<String>,
    },
    /// A success response whose payload is not what the call expects.
    #[error("{topic}: unexpected response: {reason}")]
    Payload { topic: String, reason: String },
    #[error("cannot encode request: {0}")]
    Encode(String),
    #[error("invalid job id {input:?}: {reason}")]
    JobId { input: String, reason: String },
    #[error("invalid jobspec: {0}")]
    Jobspec(String),
    #[error("socket I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn protocol(reason: impl Into<String>) -> Self {
        Error::Protocol(reason.into())
    }

    /// The errno of a broker error response, if this is one.
    pub fn errnum(&self) -> Option<u32> {
        match self {
            Error::Remote { errnum, .. } => Some(*errnum),
            _ => None,
        }
    }

    /// True for an error response meaning "no such thing" (ENOENT).
    pub fn is_not_found(&self) -> bool {
        self.errnum() == Some(errno::ENOENT)
    }
}

/// "No such file or directory (ENOENT)" for an errno.
pub fn errno_text(errno: u32) -> String {
    let os = std::io::Error::from_raw_os_error(errno as i32).to_string();
    let text = os.split(" (os error").next().unwrap_or(&os).to_owned();
    match errno_name(errno) {
        Some(name) => format!("{text} ({name})"),
        None => format!("{text} (errno {errno})"),
    }
}

fn remote_text(errnum: u32, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{m} ({})", errno_name(errnum).unwrap_or("error")),
        _ => errno_text(errnum),
    }
}

/// Symbolic names of the errnos a Flux client meets.
pub fn errno_name(errno: u32) -> Option<&'static str> {
    Some(match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        22 => "EINVAL",
        28 => "ENOSPC",
        38 => "ENOSYS",
        61 => "ENODATA",
        71 => "EPROTO",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        125 => "ECANCELED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_read_well() {
        let e = Error::Remote {
            topic: "attr.get".into(),
            errnum: 2,
            message: None,
        };
        assert_eq!(
            e.to_string(),
            "attr.get: No such file or directory (ENOENT)"
        );
        let e = Error::Remote {
            topic: "job-manager.raise".into(),
            errnum: 2,
            message: Some("unknown job id".into()),
        };
        assert_eq!(e.to_string(), "job-manager.raise: unknown job id (ENOENT)");
        assert_eq!(
            Error::Rejected { errno: 1 }.to_string(),
            "the broker refused the connection: Operation not permitted (EPERM)"
        );
    }
}
