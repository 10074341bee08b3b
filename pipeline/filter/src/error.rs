//! The filter stage's error type; [`From`] maps it into the core error for the runner.
//! Errors here are about the environment or the config (a record never fails the stage).

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] distill_core::Error),

    /// The Python used for parse checks could not run.
    #[error("parse check with '{python}' failed: {message} (install python3 or set [filter] python)")]
    Python { python: String, message: String },

    #[error("sandbox: {0} (see [filter.sandbox])")]
    Sandbox(String),

    #[error("decontamination: {0} (check [filter.decontamination] data_dir and benchmarks)")]
    Decontamination(String),
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(inner) => inner,
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
