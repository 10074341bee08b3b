//! One error type for the core, with the context a user needs to fix the problem: the file,
//! the line and what to do. The binary maps [`Error::exit_code`] to the process exit status:
//! 2 for bad usage or bad config, 1 when the work itself failed.

use std::path::{Path, PathBuf};

use crate::config::ConfigProblem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every problem found in a config file, one per line of the message.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Config { problems: Vec<ConfigProblem> },

    /// The command line asks for something that cannot be done (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// A line of an input file the user gave is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Input { path: PathBuf, line: usize, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },

    /// A stage failed; the message says why.
    #[error("stage '{stage}' failed: {source}")]
    Stage { stage: String, source: Box<dyn std::error::Error + Send + Sync> },

    /// A stage crate's own error, kept whole: its message as it is, and `source()` still
    /// reaches its cause (an `io::Error`, a Parquet error, ...) instead of a flattened string.
    #[error(transparent)]
    Wrapped(Box<dyn std::error::Error + Send + Sync>),

    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The process exit code for this error: 2 for usage and config problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::Usage(_) => 2,
            Error::Stage { source, .. } => match source.downcast_ref::<Error>() {
                Some(inner) => inner.exit_code(),
                None => 1,
            },
            _ => 1,
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn json(path: impl AsRef<Path>, source: serde_json::Error) -> Self {
        Error::Json { path: path.as_ref().to_path_buf(), source }
    }

    /// A config problem found after parsing (a value out of range, say), reported like the
    /// parser's problems: file, line when known, key and the fix.
    pub fn config_value(file: &str, line: Option<usize>, key: &str, message: impl Into<String>) -> Self {
        Error::Config { problems: vec![ConfigProblem { file: file.to_string(), line, key: key.to_string(), message: message.into() }] }
    }
}

/// Adds a path to `std::io::Error`s: `fs::read(p).at(p)?`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
