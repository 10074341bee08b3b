//! The trainer's one error type. Each variant says what went wrong in the user's terms (the
//! file, and what to do) and keeps the error that caused it as its `source()`, so nothing is
//! flattened into a string on the way up. I/O goes through core's helpers
//! (`distill_core::error::IoContext::at`), which name the path. At the stage boundary the error
//! becomes `distill_core::Error::Wrapped`, whole.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] distill_model::Error),

    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),

    /// Core's errors, I/O with its path among them.
    #[error(transparent)]
    Core(#[from] distill_core::Error),

    /// The shards folder cannot be listed.
    #[error("{}: {source} (run the shards stage first)", path.display())]
    ShardsFolder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The shards folder holds no shard.
    #[error("{}: no .parquet shards here (run the shards stage first)", path.display())]
    NoShards { path: PathBuf },

    /// A shard file Parquet cannot read.
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A shard's row group that does not decode into Arrow arrays.
    #[error("{}: {source}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },

    /// A shard file that is not what the shards stage writes (a column missing or of another
    /// type, a row gone); the message says what to do.
    #[error("{}: {message}", path.display())]
    Shard { path: PathBuf, message: String },

    /// The student's `tokenizer.json` cannot be read.
    #[error("{}: {source} (set [train] tokenizer, or run the tokenizer and shards stages)", path.display())]
    TokenizerMissing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not a tokenizer.json: {source}", path.display())]
    TokenizerJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: no vocabulary found in the tokenizer", path.display())]
    TokenizerVocab { path: PathBuf },

    /// A checkpoint that cannot be resumed from; the message says what to do.
    #[error("{}: {message}", path.display())]
    Checkpoint { path: PathBuf, message: String },

    /// A checkpoint whose files do not restore this model and optimizer.
    #[error("{}: {source}", path.display())]
    CheckpointContent {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },

    #[error("optimizer state lacks '{key}'")]
    OptimizerStateMissing { key: String },

    #[error("optimizer state '{key}' has shape {found:?}, parameter has {expected:?}")]
    OptimizerStateShape { key: String, found: Vec<usize>, expected: Vec<usize> },

    /// A CUDA device that cannot be opened (no GPU, or a build without CUDA).
    #[error("device '{name}': {source} (build with `--features cuda`, see `make cuda`)")]
    CudaDevice {
        name: String,
        #[source]
        source: candle_core::Error,
    },

    #[error("device '{name}': use \"cpu\" or \"cuda[:N]\"")]
    UnknownDevice { name: String },

    /// The CUDA driver refused the memory pool setting; `status` is its result code (the
    /// driver's API has no error value to keep).
    #[error("cuda memory pool: {status}")]
    CudaMemoryPool { status: String },

    #[error("no training examples (are the shards empty, or every row skipped?)")]
    NoTrainingExamples,

    #[error("loss became {loss} at step {step}; lower [train.optimizer] lr or check the shards")]
    Diverged { loss: f64, step: u64 },

    #[error("--bench needs at least 1 step")]
    BenchWithoutSteps,

    /// The `[train]` section as JSON (what checkpoints record to refuse a changed config).
    #[error("the [train] config as JSON: {0}")]
    ConfigJson(#[source] serde_json::Error),

    /// The loss curve cannot be drawn.
    #[error(transparent)]
    Plot(#[from] distill_plot::Error),
}

impl From<Error> for distill_core::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            other => distill_core::Error::Wrapped(Box::new(other)),
        }
    }
}
