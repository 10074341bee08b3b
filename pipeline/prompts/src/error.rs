//! The crate's one error type. Every variant names the file (and line, where there is one)
//! and says what to do; [`From`] turns it into the core error the runner reports.

use std::path::PathBuf;

pub type Result<T, E = PromptsError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    /// A template file is malformed (bad TOML, unknown placeholder, missing field).
    #[error("{}:{line}: {message}", path.display())]
    Template { path: PathBuf, line: usize, message: String },

    /// A data file (specs, seed tasks, user prompts) has a malformed line.
    #[error("{}:{line}: {message}", path.display())]
    DataLine { path: PathBuf, line: usize, message: String },

    /// The code corpus cannot be read or parsed.
    #[error("code corpus {}: {message}", path.display())]
    Corpus { path: PathBuf, message: String },

    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// The teacher client failed as a whole (not one prompt: those are counted and reported).
    #[error("teacher: {0}")]
    Teacher(String),

    #[error(transparent)]
    Core(#[from] distill_core::Error),
}

impl PromptsError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PromptsError::Io { path: path.into(), source }
    }
}

impl From<PromptsError> for distill_core::Error {
    fn from(e: PromptsError) -> Self {
        match e {
            PromptsError::Template { path, line, message } | PromptsError::DataLine { path, line, message } => distill_core::Error::Input { path, line, message },
            PromptsError::Io { path, source } => distill_core::Error::Io { path, source },
            PromptsError::Core(e) => e,
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
