//! The shards stage's error type; [`From`] maps it into the core error for the runner.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] distill_core::Error),

    /// The student tokenizer could not be loaded or used.
    #[error("student tokenizer {}: {message} (run the tokenizer stage, or set [shards] tokenizer to a tokenizer.json)", path.display())]
    Tokenizer { path: PathBuf, message: String },

    /// Arrow or Parquet refused a batch or a file.
    #[error("writing Parquet {}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stage's own error crosses into the core error whole: a caller can still downcast it.
    #[test]
    fn the_core_error_keeps_the_stage_error() {
        let core: distill_core::Error = Error::Tokenizer { path: "t.json".into(), message: "gone".into() }.into();
        assert!(core.to_string().starts_with("student tokenizer t.json: gone"), "{core}");
        let distill_core::Error::Wrapped(inner) = &core else { panic!("{core:?}") };
        assert!(matches!(inner.downcast_ref::<Error>(), Some(Error::Tokenizer { .. })));
    }
}
