//! An installed tool, not a repository checkout (issue #17): the built binary alone, copied into
//! an empty folder with a config that holds only a `[teacher]` section, runs `status` and every
//! data stage against a teacher on loopback, and scores a samples file. The prompt templates,
//! specs and benchmark files it needs are the copies compiled into it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use distill_teacher_testserver::{code::CodeAnswers, ServerConfig};

fn run(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(dir.join("distill")).args(["--quiet", "--config", "my.toml"]).args(args).current_dir(dir).env_remove("RUST_LOG").output().unwrap();
    assert!(out.status.success(), "distill {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn write_config(dir: &Path, base_url: &str) {
    std::fs::write(dir.join("my.toml"), format!("[teacher]\nbase_url = \"{base_url}\"\nmodel = \"test-teacher\"\n")).unwrap();
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines().count()
}

#[test]
fn the_binary_alone_in_an_empty_folder_runs_every_data_stage_and_scores_samples() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::copy(env!("CARGO_BIN_EXE_distill"), dir.join("distill")).unwrap();
    write_config(dir, "http://127.0.0.1:9/v1");

    let status = String::from_utf8(run(dir, &["status"]).stdout).unwrap();
    for stage in ["tokenizer", "prompts", "teacher", "filter", "shards", "train", "eval", "report"] {
        assert!(status.lines().any(|l| l.starts_with(stage) && l.contains("never run")), "{stage}: {status}");
    }

    // The loopback teacher answers in real Python functions with passing tests, spelled in the
    // student tokenizer's tokens: train that first, then point the config at the server.
    run(dir, &["tokenizer"]);
    let work = dir.join("datasets/my");
    let answers = CodeAnswers::load(&work.join("tokenizer/tokenizer.json")).unwrap();
    let server = distill_teacher_testserver::spawn(ServerConfig { code: Some(Arc::new(answers)), ..Default::default() }).unwrap();
    write_config(dir, &server.base_url);

    run(dir, &["prompts"]);
    let prompts = lines(&work.join("prompts/prompts.jsonl"));
    assert!(prompts >= 50, "the built-in templates and specs give prompts: {prompts}");
    run(dir, &["teacher"]);
    assert_eq!(lines(&work.join("teacher/responses.jsonl")), prompts, "one answer per prompt (n = 1)");
    assert_eq!(server.counters().answered(), prompts as u64);
    run(dir, &["filter"]);
    let kept = lines(&work.join("filter/kept.jsonl"));
    assert!(kept > 0 && kept < prompts, "kept {kept} of {prompts}");
    // Decontamination ran against the built-in benchmark files.
    let filter_stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("filter/stats.json")).unwrap()).unwrap();
    assert!(filter_stats["decontamination_references"].as_u64().unwrap() > 1000, "{filter_stats}");
    run(dir, &["shards"]);
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("shards/shard_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["total_rows"].as_u64(), Some(kept as u64), "{manifest}");

    // Every HumanEval task with its canonical solution, but two answered wrongly.
    let tasks = distill_benchmarks::load(distill_benchmarks::Benchmark::HumanEval).unwrap().tasks;
    let samples: String = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let completion = if i < 2 { "    return None\n" } else { &t.canonical_solution };
            format!("{}\n", serde_json::json!({"task_id": t.task_id, "completion": completion}))
        })
        .collect();
    std::fs::write(dir.join("samples.jsonl"), samples).unwrap();
    let table = String::from_utf8(run(dir, &["eval", "--benchmark", "humaneval", "--samples", "samples.jsonl"]).stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("eval/humaneval/summary.json")).unwrap()).unwrap();
    let pass1 = summary["pass@1"].as_f64().unwrap();
    assert!((pass1 - 162.0 / 164.0).abs() < 1e-9, "{summary}\n{table}");

    // Nothing but what the run made appeared beside the binary.
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["datasets", "distill", "my.toml", "samples.jsonl", "teacher-cache"]);
}
