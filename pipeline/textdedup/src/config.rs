//! The `dedup` and `decontamination` config sections, the same for every stage that cleans
//! text (`[prompts.dedup]`, `[filter.dedup]`, `[prompts.decontamination]`,
//! `[filter.decontamination]`).

use distill_benchmarks::Benchmark;
use serde::{Deserialize, Serialize};

use crate::{DecontamConfig, MinHashConfig};

/// `[<stage>.dedup]`: exact and MinHash near-duplicate removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Drop texts equal after lower-casing and collapsing whitespace.
    pub exact: bool,
    /// Drop near duplicates (MinHash LSH, settings in `[<stage>.dedup.minhash]`).
    pub near: bool,
    pub minhash: MinHashConfig,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { exact: true, near: true, minhash: MinHashConfig::default() }
    }
}

/// `[<stage>.decontamination]`: drop texts too close to a benchmark task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecontaminationConfig {
    pub enabled: bool,
    /// Folder of the benchmark files under their vendored names (checked against their sha256),
    /// relative to the config file. Empty: the copies built into `distill`.
    pub data_dir: String,
    /// Benchmarks compared against: humaneval, humaneval+, mbpp (the test split), mbpp-full
    /// (all 974), mbpp-sanitized, mbpp+.
    pub benchmarks: Vec<Benchmark>,
    /// n-gram and docstring matching (`[<stage>.decontamination.matching]`).
    pub matching: DecontamConfig,
}

impl Default for DecontaminationConfig {
    fn default() -> Self {
        DecontaminationConfig {
            enabled: true,
            data_dir: String::new(),
            benchmarks: vec![Benchmark::HumanEval, Benchmark::HumanEvalPlus, Benchmark::MbppFull, Benchmark::MbppSanitized, Benchmark::MbppPlus],
            matching: DecontamConfig::default(),
        }
    }
}
