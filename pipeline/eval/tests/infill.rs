//! HumanEval infilling through generation and the sandbox: the FIM prompt a generator gets,
//! truncation at the single-line stop, and real Python judging `prefix + middle + suffix` with
//! the task's tests (canonical middles pass, broken ones fail), on the tasks of the first
//! HumanEval problems (every task's reassembly is checked in `distill-benchmarks`).

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use distill_benchmarks::{Benchmark, Dataset};
use distill_eval::stage::generate_samples;
use distill_eval::{GenRequest, Generator, Scorer};

/// The tasks of HumanEval problems 0-11.
fn subset(b: Benchmark) -> Dataset {
    let mut ds = dataset(b);
    ds.tasks.retain(|t| t.task_id.split('/').nth(1).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n < 12));
    ds
}

/// Answers each FIM prompt it was told about, and records the requests.
struct Oracle {
    answers: HashMap<String, String>,
    seen: Mutex<Vec<GenRequest>>,
}

impl Generator for Oracle {
    fn name(&self) -> String {
        "oracle".into()
    }
    fn generate(&self, requests: &[GenRequest]) -> distill_eval::Result<Vec<Vec<String>>> {
        self.seen.lock().unwrap().extend(requests.iter().cloned());
        Ok(requests.iter().map(|r| vec![self.answers.get(&r.prompt).unwrap_or_else(|| panic!("unexpected prompt {:?}", r.prompt)).clone(); r.n as usize]).collect())
    }
}

#[test]
fn single_line_infilling_prompts_truncates_and_scores_in_the_sandbox() {
    let s = settings();
    let ds = subset(Benchmark::HumanEvalInfillSingle);
    assert!(ds.tasks.len() > 50, "{}", ds.tasks.len());
    // Even tasks: the canonical line, then more text the single-line stop must cut off; odd
    // tasks: a line that does not parse, which no test can pass.
    let answers: HashMap<String, String> = ds
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let prompt = format!("<|fim_prefix|>{}<|fim_suffix|>{}<|fim_middle|>", t.prompt, t.suffix);
            let answer = if i % 2 == 0 { format!("{}\n    this is not python(\n", t.canonical_solution) } else { "    )(".to_string() };
            (prompt, answer)
        })
        .collect();
    let oracle = Oracle { answers, seen: Mutex::new(Vec::new()) };
    let samples = generate_samples(&ds, &s, &oracle, true).unwrap();
    let seen = oracle.seen.lock().unwrap();
    assert_eq!(seen.len(), ds.tasks.len());
    assert!(seen.iter().all(|r| r.stop == ["\n"]), "single-line infilling stops at the first newline");
    for (i, (t, sample)) in ds.tasks.iter().zip(&samples).enumerate() {
        let want = if i % 2 == 0 { t.canonical_solution.as_str() } else { "    )(" };
        assert_eq!((sample.task_id.as_str(), sample.completion.as_str()), (t.task_id.as_str(), want));
    }
    let sb = sandbox(&s);
    let out = tempfile::tempdir().unwrap();
    let scored = Scorer { settings: &s, sandbox: &sb, cache_dir: None, quiet: true }.score_samples(&ds, &samples, "oracle".as_ref(), &info(), out.path()).unwrap();
    for (i, r) in scored.results.iter().enumerate() {
        assert_eq!(r.passed, i % 2 == 0, "{} {}: {}", r.task_id, r.completion, r.result);
    }
    let even = ds.tasks.len().div_ceil(2);
    assert_eq!(scored.summary["pass@1"], even as f64 / ds.tasks.len() as f64);
    assert_eq!(scored.summary["benchmark"], "humaneval-infill-single");
    assert!(scored.summary["conventions"]["prompt"].as_str().unwrap().contains("PSM"), "{}", scored.summary["conventions"]);
    assert_eq!(scored.summary["conventions"]["stop_sequences"], serde_json::json!(["\n"]));
}

#[test]
fn multi_line_canonical_middles_pass_and_an_empty_middle_fails_where_the_block_matters() {
    let s = settings();
    let ds = subset(Benchmark::HumanEvalInfillMulti);
    let sb = sandbox(&s);
    // The whole solution as the middle (every task L<first>-<last> of a problem) must pass,
    // and leaving it empty must fail: the function then returns nothing.
    let whole: Vec<&distill_benchmarks::Task> = ds.tasks.iter().filter(|t| t.prompt.ends_with("\"\"\"\n") && t.suffix.trim().is_empty()).collect();
    assert!(whole.len() >= 10, "{}", whole.len());
    let mut small = ds.clone();
    small.tasks = whole.iter().map(|t| (*t).clone()).collect();
    let out = tempfile::tempdir().unwrap();
    let score = |completion: &dyn Fn(&distill_benchmarks::Task) -> String| {
        let samples: Vec<distill_eval::Sample> = small.tasks.iter().map(|t| distill_eval::Sample { task_id: t.task_id.clone(), completion: completion(t) }).collect();
        Scorer { settings: &s, sandbox: &sb, cache_dir: None, quiet: true }.score_samples(&small, &samples, "m".as_ref(), &info(), out.path()).unwrap()
    };
    let canonical = score(&|t| t.canonical_solution.clone());
    assert!(canonical.results.iter().all(|r| r.passed), "{:?}", canonical.results.iter().filter(|r| !r.passed).collect::<Vec<_>>());
    let empty = score(&|_| "    pass".to_string());
    assert!(empty.results.iter().all(|r| !r.passed), "{:?}", empty.results.iter().filter(|r| r.passed).collect::<Vec<_>>());
}
