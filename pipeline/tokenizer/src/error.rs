//! The tokenizer stage's error type. Every variant names what to fix; [`From`] maps it into the
//! core error so a stage run reports it with the stage name.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] distill_core::Error),

    /// The Python interpreter could not tell where its standard library is.
    #[error("cannot find the Python standard library with '{python}': {message} (install python3, or set [tokenizer] corpus to a folder of code)")]
    Stdlib { python: String, message: String },

    /// The corpus selection found nothing to train on.
    #[error("the tokenizer corpus '{corpus}' has no usable files (extensions {extensions:?}): point [tokenizer] corpus at a folder or glob of source files")]
    EmptyCorpus { corpus: String, extensions: Vec<String> },

    /// The `tokenizers` library failed to train, save or load.
    #[error("tokenizer {what} failed{}: {message}", path.as_ref().map(|p| format!(" for {}", p.display())).unwrap_or_default())]
    Tokenizers { what: &'static str, path: Option<PathBuf>, message: String },
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
