//! Acceptance: the canonical solutions pass (HumanEval 164/164, MBPP test split 500/500,
//! HumanEval+ 164/164, MBPP+ 377/378 with Mbpp/120 failing for its missing `import math`), and
//! empty completions score 0. These run every program for real in the sandbox.

mod common;

use common::*;
use distill_benchmarks::Benchmark;
use distill_eval::Sample;

fn score_canonical(b: Benchmark) -> (Vec<distill_eval::SampleResult>, serde_json::Value) {
    let s = settings();
    let sb = sandbox(&s);
    let ds = dataset(b);
    let out = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let scored = distill_eval::Scorer { settings: &s, sandbox: &sb, cache_dir: Some(cache.path()), quiet: true }
        .score_samples(&ds, &canonical(&ds), "canonical".as_ref(), &info(), out.path())
        .unwrap();
    eprintln!("{b}: {} programs in {:.1} s", scored.results.len(), t0.elapsed().as_secs_f64());
    for r in scored.results.iter().filter(|r| !r.passed) {
        eprintln!("  {} {}", r.task_id, r.result);
    }
    assert!(out.path().join("results.jsonl").exists() && out.path().join("summary.md").exists());
    (scored.results, scored.summary)
}

#[test]
fn humaneval_canonical_solutions_pass_164_of_164() {
    let (results, summary) = score_canonical(Benchmark::HumanEval);
    assert_eq!(results.iter().filter(|r| r.passed).count(), 164);
    assert_eq!(summary["pass@1"], 1.0);
    assert!(summary.get("pass@10").is_none(), "pass@10 needs n >= 10");
}

#[test]
fn mbpp_test_split_canonical_solutions_pass_500_of_500() {
    let (results, _) = score_canonical(Benchmark::MbppTest);
    assert_eq!(results.len(), 500);
    assert_eq!(results.iter().filter(|r| r.passed).count(), 500);
}

#[test]
fn humaneval_plus_canonical_solutions_pass_164_of_164() {
    let (results, summary) = score_canonical(Benchmark::HumanEvalPlus);
    assert_eq!(results.iter().filter(|r| r.passed).count(), 164);
    assert_eq!(summary["base"]["pass@1"], 1.0);
}

#[test]
fn mbpp_plus_canonical_solutions_pass_377_of_378() {
    let (results, _) = score_canonical(Benchmark::MbppPlus);
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].task_id, "Mbpp/120");
    assert_eq!(failed[0].result, "failed: name 'math' is not defined");
    assert_eq!(failed[0].base_passed, Some(false));
}

#[test]
fn empty_completions_score_zero() {
    let s = settings();
    let sb = sandbox(&s);
    for b in [Benchmark::HumanEval, Benchmark::MbppTest] {
        let ds = dataset(b);
        // 40 tasks are enough to show it; every task must be attempted, so the rest get the
        // canonical solution and the figures are checked on the empty ones.
        let samples: Vec<Sample> = ds
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| Sample { task_id: t.task_id.clone(), completion: if i < 40 { String::new() } else { t.canonical_solution.clone() } })
            .collect();
        let out = tempfile::tempdir().unwrap();
        let scored = distill_eval::Scorer { settings: &s, sandbox: &sb, cache_dir: None, quiet: true }.score_samples(&ds, &samples, "empty".as_ref(), &info(), out.path()).unwrap();
        assert!(scored.results[..40].iter().all(|r| !r.passed && r.result.starts_with("failed: ")), "{:?}", &scored.results[..3]);
        let expect = (ds.tasks.len() - 40) as f64 / ds.tasks.len() as f64;
        assert!((scored.summary["pass@1"].as_f64().unwrap() - expect).abs() < 1e-12);
    }
}
