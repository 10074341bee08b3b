//! The one error type of this crate. Every variant names the file involved and the fix.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source} (a data_dir must hold the files of evals/data/ under their names; leave data_dir empty for the copies built into distill)", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    /// The file is not byte-for-byte the vendored one.
    #[error(
        "{}: sha256 is {actual}, expected {expected} (see evals/SOURCES.md): the file is not the vendored copy; restore it from evals/data/ of the distill repository, or leave data_dir empty for the built-in copies",
        path.display()
    )]
    Checksum { path: PathBuf, expected: String, actual: String },

    /// A record could not be read; `line` is 1-based (0 for whole-file JSON).
    #[error("{}:{line}: {message}", path.display())]
    Parse { path: PathBuf, line: usize, message: String },

    #[error("unknown benchmark '{0}' (known: humaneval, humaneval+, mbpp, mbpp-full, mbpp-sanitized, mbpp+)")]
    UnknownBenchmark(String),
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { path, source } => distill_core::Error::Io { path, source },
            Error::Parse { path, line, message } => distill_core::Error::Input { path, line, message },
            e @ Error::UnknownBenchmark(_) => distill_core::Error::Usage(e.to_string()),
            e @ Error::Checksum { .. } => distill_core::Error::Wrapped(Box::new(e)),
        }
    }
}
