//! Expected outputs of the "+" sets, computed as EvalPlus computes them: the canonical
//! solution (`prompt + canonical_solution`) run on every base and plus input, each call timed
//! (`time.time()` around `fn(*deepcopy(inp))`). The outputs are pickled and embedded into
//! each sample's program; the times give the per-input limits
//! ([`crate::programs::input_time_limits`]).
//!
//! One sandboxed program per task, in parallel. EvalPlus runs the canonical solutions
//! serially in one process; here they run `workers` at a time, so the measured times carry the
//! load of the machine, which only makes limits (4x those times, at least 1 s) more lenient.
//!
//! The result is cached as JSON under the given folder, keyed by the dataset's sha256, the
//! interpreter and the program text, so scoring again costs nothing.

use std::collections::BTreeMap;
use std::path::Path;

use distill_benchmarks::Dataset;
use distill_sandbox::{Sandbox, Status};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::exec::run_indexed;
use crate::programs::{ground_truth_program, verdict};

/// One task's canonical outputs (base inputs first, then plus inputs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskTruth {
    /// base64 of the pickled list of outputs; `None` when they were too large to embed
    /// (sample programs then recompute them, see `py/ground_truth.py`).
    pub expected_b64: Option<String>,
    /// Seconds per input.
    pub times: Vec<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroundTruth {
    pub tasks: BTreeMap<String, TaskTruth>,
}

/// Loads the ground truth from `cache_dir` or computes (and stores) it.
pub fn ground_truth(ds: &Dataset, sandbox: &Sandbox, python: &str, cache_dir: Option<&Path>, quiet: bool) -> Result<GroundTruth> {
    let key = distill_core::digest::sha256_hex(format!("{}\n{}\n{}", ds.sha256, python, ds.tasks.first().map(|t| ground_truth_program(t).source).unwrap_or_default()).as_bytes());
    let cache = cache_dir.map(|d| d.join(format!("{}-{}.json", ds.benchmark.name(), &key[..16])));
    if let Some(path) = &cache {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(gt) = serde_json::from_str::<GroundTruth>(&text) {
                if ds.tasks.iter().all(|t| gt.tasks.contains_key(&t.task_id)) {
                    tracing::info!(benchmark = %ds.benchmark, path = %path.display(), "ground truth from cache");
                    return Ok(gt);
                }
            }
        }
    }
    tracing::info!(benchmark = %ds.benchmark, tasks = ds.tasks.len(), "computing expected outputs of the canonical solutions");
    let bar = distill_core::progress::bar(ds.tasks.len() as u64, "truth", quiet);
    let outcomes = run_indexed(sandbox, ds.tasks.len(), &|i| ground_truth_program(&ds.tasks[i]), &bar);
    bar.finish_and_clear();
    let mut gt = GroundTruth::default();
    for (task, out) in ds.tasks.iter().zip(outcomes) {
        let fail = |message: String| Error::GroundTruth { task_id: task.task_id.clone(), message };
        if out.status != Status::Passed {
            return Err(fail(format!("the canonical solution did not run: {:?} {} {}", out.status, out.exception.unwrap_or_default(), out.message.unwrap_or_default())));
        }
        let v = verdict(&out.stdout).ok_or_else(|| fail("no result line in the program's output".into()))?;
        let truth: TaskTruth = serde_json::from_value(v).map_err(|e| fail(e.to_string()))?;
        let expected = task.plus.as_ref().map_or(0, |p| p.base_inputs + p.plus_inputs);
        if truth.times.len() != expected {
            return Err(fail(format!("{} outputs for {expected} inputs", truth.times.len())));
        }
        gt.tasks.insert(task.task_id.clone(), truth);
    }
    if let Some(path) = &cache {
        let text = serde_json::to_vec(&gt).map_err(|e| distill_core::Error::json(path, e))?;
        distill_core::atomic::write_file(path, &text)?;
    }
    Ok(gt)
}
