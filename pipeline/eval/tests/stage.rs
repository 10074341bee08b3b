//! The `eval` stage end to end with a real OpenAI-compatible server on loopback (the teacher
//! test server, whose answers are deterministic text, not code): generation through the
//! teacher client, truncation, `samples.jsonl`, scoring in the sandbox, the result files; a
//! second run is answered from the client's cache (no request reaches the server) and gives
//! byte-identical files. Also the external-samples entry point and its paths.

mod common;

use common::*;
use distill_benchmarks::Benchmark;
use distill_core::StageContext;
use distill_eval::{evaluate_samples_file, EndpointGenerator, EvalConfig, Generator};
use distill_teacher_client::{TeacherClient, TeacherConfig};

fn teacher(base_url: &str, cache: &std::path::Path) -> TeacherConfig {
    TeacherConfig { base_url: base_url.to_string(), model: "test-model".into(), cache_dir: cache.display().to_string(), ..TeacherConfig::default() }
}

#[test]
fn the_stage_generates_through_the_endpoint_and_scores() {
    let server = distill_teacher_testserver::spawn(Default::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let cfg = EvalConfig { benchmarks: vec!["humaneval".into()], n: 2, temperature: 0.8, max_new_tokens: 32, timeout_secs: 3.0, ..config() };
    let mut outputs = Vec::new();
    for round in 0..2 {
        let gen = EndpointGenerator::new(TeacherClient::new(&teacher(&server.base_url, &work.path().join("cache"))).unwrap(), false);
        assert!(gen.name().starts_with("test-model"));
        let out_dir = work.path().join(format!("out{round}"));
        std::fs::create_dir_all(&out_dir).unwrap();
        let ctx = StageContext { stage: "eval", work_dir: work.path(), out_dir: out_dir.clone(), scratch_dir: work.path().join(".scratch/eval"), shard: None, quiet: true };
        let stats = distill_eval::run(&ctx, &cfg, &gen).unwrap();
        assert_eq!(stats["humaneval"]["counts"]["samples"], 328);
        let dir = out_dir.join("humaneval");
        let samples: Vec<serde_json::Value> = distill_core::jsonl::read_strict(&dir.join("samples.jsonl")).unwrap();
        assert_eq!(samples.len(), 328);
        // Completions are cut at the stop sequences.
        assert!(samples.iter().all(|s| !s["completion"].as_str().unwrap().contains("\ndef")));
        let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["sampling"]["n"], 2);
        assert_eq!(summary["dataset"]["sha256"], Benchmark::HumanEval.data_file().sha256());
        assert!(summary["pass@1"].is_number() && summary["pass@2"].is_number() && summary.get("pass@10").is_none());
        assert!(std::fs::read_to_string(out_dir.join("summary.md")).unwrap().contains("| humaneval |"));
        outputs.push(["samples.jsonl", "results.jsonl", "summary.json"].map(|f| std::fs::read(dir.join(f)).unwrap()));
        if round == 0 {
            assert_eq!(server.counters().answered(), 164);
        }
    }
    assert_eq!(server.counters().answered(), 164, "the second run must come from the cache");
    assert!(outputs[0] == outputs[1], "same inputs and config must give byte-identical outputs");
}

#[test]
fn external_samples_are_scored_into_the_documented_paths() {
    let work = tempfile::tempdir().unwrap();
    let ds = dataset(Benchmark::MbppTest);
    let path = work.path().join("samples.jsonl");
    // Bare numeric ids are accepted for MBPP; every other sample is empty.
    let lines: Vec<String> = ds
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let completion = if i % 2 == 0 { t.canonical_solution.as_str() } else { "" };
            serde_json::json!({"task_id": t.number(), "completion": completion}).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let summary = evaluate_samples_file(work.path(), Benchmark::MbppTest, &path, &config(), true).unwrap();
    assert_eq!(summary["counts"]["samples"], 500);
    assert_eq!(summary["pass@1"], 0.5);
    let ci = summary["pass@1_ci95"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() < 0.5 && ci[1].as_f64().unwrap() > 0.5);
    let dir = work.path().join("eval/mbpp");
    let results: Vec<serde_json::Value> = distill_core::jsonl::read_strict(&dir.join("results.jsonl")).unwrap();
    assert_eq!(results[0]["task_id"], "11");
    assert_eq!(results[1]["passed"], false);
    assert!(dir.join("summary.json").exists() && dir.join("summary.md").exists());

    // A file that misses tasks is refused, naming them.
    std::fs::write(&path, lines[..10].join("\n")).unwrap();
    let err = evaluate_samples_file(work.path(), Benchmark::MbppTest, &path, &EvalConfig { ..config() }, true).unwrap_err().to_string();
    assert!(err.contains("490 of the 500 tasks") && err.contains("Mbpp/21"), "{err}");
}
