//! The crate's one error type. Only setting a sandbox up can fail; running a program never
//! returns an error (a program that cannot even be started is an [`crate::Outcome`] with
//! [`crate::Status::Error`]).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of [`crate::SandboxConfig`] has a value that cannot work.
    #[error("sandbox.{key}: {message}")]
    Config { key: &'static str, message: String },

    /// A program the sandbox needs is missing.
    #[error("{what} not found: {} ({fix})", path.display())]
    NotFound { what: &'static str, path: PathBuf, fix: &'static str },

    /// `isolation = "bwrap"` was asked for but bubblewrap does not work here.
    #[error("bubblewrap does not work on this machine: {0} (install it with scripts/system-deps.sh, allow unprivileged user namespaces, or set sandbox.isolation = \"direct\")")]
    BwrapUnusable(String),

    /// The interpreter could not run a trivial program inside the sandbox.
    #[error("the sandboxed interpreter {} fails a trivial program: {message}", python.display())]
    ProbeFailed { python: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Config { key, message } => distill_core::Error::config_value("config", None, &format!("sandbox.{key}"), message),
            Error::Io { path, source } => distill_core::Error::io(path, source),
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
