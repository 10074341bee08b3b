//! The small core every stage crate depends on: record types that stages exchange through
//! files, config loading that reports every problem at once, content digests, atomic
//! publishing of outputs, stage manifests and the runner that decides what is up to date.
//!
//! It holds no stage logic and no numeric code (no candle): stage crates build on it and meet
//! each other only through the files described in [`records`].

pub mod atomic;
pub mod config;
pub mod digest;
pub mod error;
pub mod frames;
pub mod jsonl;
pub mod logprobs;
pub mod manifest;
pub mod progress;
pub mod records;
pub mod runner;
pub mod shard;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod varint;

pub use error::{Error, Result};
pub use runner::{Runner, StageContext, StageDef, StageState, StageStatus};
pub use shard::ShardSpec;
