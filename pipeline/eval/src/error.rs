//! The one error type of the evaluator.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Benchmark(#[from] distill_benchmarks::Error),

    #[error("sandbox: {0}")]
    Sandbox(#[from] distill_sandbox::Error),

    #[error(transparent)]
    Core(#[from] distill_core::Error),

    /// A samples file that cannot be scored as a whole (unknown task ids, missing tasks).
    #[error("{}: {message}", path.display())]
    Samples { path: PathBuf, message: String },

    /// Computing the expected outputs of a "+" benchmark failed for a task.
    #[error("ground truth for {task_id}: {message}")]
    GroundTruth { task_id: String, message: String },

    /// The generator (student model or endpoint) failed.
    #[error("generation failed: {0}")]
    Generation(String),
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Benchmark(e) => e.into(),
            Error::Samples { path, message } => distill_core::Error::Input { path, line: 0, message },
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
