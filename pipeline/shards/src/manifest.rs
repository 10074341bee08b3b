//! `shard_manifest.json`: what a trainer needs to trust the shards without opening them.
//! (The runner's own `manifest.json` beside it records fingerprints; this one the data.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::writer::FileInfo;

pub const FILE_NAME: &str = "shard_manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardManifest {
    pub schema_version: u32,
    /// `[(column, type)]` in file order.
    pub columns: Vec<(String, String)>,
    /// Filter scores stored as `score_<name>` columns.
    pub score_names: Vec<String>,
    pub files: Vec<FileInfo>,
    /// Rows per split.
    pub rows: BTreeMap<String, usize>,
    pub total_rows: usize,
    pub tokenizer_path: String,
    /// sha256 of the student `tokenizer.json` the ids refer to.
    pub tokenizer_sha256: String,
    pub vocab_size: usize,
    /// The teacher model when all rows share one (else `null`; see `teacher_models`).
    pub teacher_model: Option<String>,
    pub teacher_models: Vec<String>,
    /// Sampling temperature the teacher's log-probs were captured at, when all rows share one.
    pub capture_temperature: Option<f32>,
    pub capture_temperatures: Vec<f32>,
    /// Rows per alignment outcome (`exact`, `boundaries_differ`, ...).
    pub alignment: BTreeMap<String, usize>,
    pub hard_label_only_rows: usize,
    /// Bytes of every row's completion, and those spelled by positions with soft labels: their
    /// ratio is the run's soft-label coverage (1 with a shared tokenizer; see `align.rs`).
    #[serde(default)]
    pub completion_bytes: u64,
    #[serde(default)]
    pub soft_label_bytes: u64,
    /// Mean teacher probability listed at positions with soft labels (`null` without any).
    #[serde(default)]
    pub teacher_mass_captured: Option<f64>,
    pub row_group_rows: usize,
    pub compression: String,
    pub validation_fraction: f64,
    pub split_seed: u64,
    /// Fill-in-the-middle rows by order (`psm`, `spm`; see `fim.rs`); empty when none.
    #[serde(default)]
    pub fim_rows: BTreeMap<String, usize>,
}
