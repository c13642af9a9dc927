//! The one error type of this crate.

use std::fmt;

/// A problem with one field of a MiniCluster spec: where it is, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.containers[0].volumes.data.path`.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl FieldError {
    pub(crate) fn new(
        path: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.path, self.problem, self.fix)
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not a readable MiniCluster document.
    #[error("{source_name}: {reason}")]
    Input {
        /// File name, or `<stdin>` / `<embedded>`.
        source_name: String,
        reason: String,
    },
    /// The spec parsed but has invalid fields; every problem is listed.
    #[error("{}", list_problems(.0))]
    Invalid(Vec<FieldError>),
    /// A hostlist that does not follow RFC 29.
    #[error("invalid hostlist {input:?}: {reason}")]
    Hostlist { input: String, reason: String },
    /// A malformed or mismatched CURVE certificate. Never carries key material.
    #[error("invalid CURVE certificate: {reason}")]
    Cert { reason: String },
    /// A template that does not parse or render.
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },
    /// Reading or writing a file.
    #[error("{path}: {io}")]
    Io { path: String, io: std::io::Error },
}

fn list_problems(errors: &[FieldError]) -> String {
    let mut out = format!(
        "the MiniCluster spec has {} problem{}:",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        out.push_str("\n  - ");
        out.push_str(&e.to_string());
    }
    out
}
