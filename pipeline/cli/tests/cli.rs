//! The `distill` binary as a user meets it: exit codes, config errors, `status`, `--dry-run`.

mod common;

use common::{distill, repo_root};

#[test]
fn a_bad_config_reports_every_problem_with_its_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[teacher]\ntemperatur = 0.2\nn = \"3\"\n\n[trian]\nsteps = 1\n").unwrap();
    let out = distill(dir.path(), &["status", "--config", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2: unknown key 'temperatur' in [teacher] (did you mean 'temperature'?)"), "{err}");
    assert!(err.contains("bad.toml:3: key 'n' in [teacher]: invalid type: string \"3\", expected u32"), "{err}");
    assert!(err.contains("bad.toml:5: unknown key 'trian' in the top level (did you mean 'train'?)"), "{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout when the config is bad");
}

#[test]
fn range_errors_of_every_section_fail_status_and_run_before_any_stage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ranges.toml");
    std::fs::write(&cfg, "[filter.consistency]\nmin_pass_rate = 2.0\n\n[train]\nsteps = 5\nbatch_size = 0\n\n[shards]\nzstd_level = 40\n").unwrap();
    let work = dir.path().join("w");
    for command in ["status", "run"] {
        let out = distill(dir.path(), &[command, "--config", cfg.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        let file = cfg.display();
        assert!(err.contains(&format!("{file}:2: [filter] consistency.min_pass_rate: 2 is outside [0, 1]")), "{command}: {err}");
        assert!(err.contains(&format!("{file}:6: train.batch_size: must be at least 1")), "{command}: {err}");
        assert!(err.contains(&format!("{file}:9: [shards] zstd_level: 40 is outside 1..=22")), "{command}: {err}");
        assert!(!work.exists(), "{command}: nothing ran, nothing was written");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = distill(dir.path(), &["status", "--config", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(distill(dir.path(), &["no-such-stage"]).status.code(), Some(2));
    assert_eq!(distill(dir.path(), &["teacher", "--shard", "4/4"]).status.code(), Some(2));
}

#[test]
fn status_on_a_fresh_work_dir_lists_every_stage_as_never_run() {
    // A file with only a [teacher] section is a whole config, in a folder with no data files.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("only-teacher.toml");
    std::fs::write(&cfg, "[teacher]\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n").unwrap();
    let work = dir.path().join("w");
    let out = distill(dir.path(), &["status", "--config", cfg.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let stages: Vec<&str> = table.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(stages, ["tokenizer", "prompts", "teacher", "filter", "shards", "train", "eval", "report"], "{table}");
    assert!(table.lines().skip(1).all(|l| l.contains("never run")), "{table}");
}

#[test]
fn paths_in_a_config_are_relative_to_the_config_file_and_missing_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("mine.jsonl"), "{\"id\": \"u1\", \"prompt\": \"Write a function that reverses a list of words.\"}\n").unwrap();
    let only_mine = "[teacher]\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n[prompts]\nuser_files = [\"mine.jsonl\"]\n\n[prompts.template]\nenabled = false\n";
    std::fs::write(conf.join("my.toml"), only_mine).unwrap();
    // Run from the folder above the config: `mine.jsonl` is found beside the config.
    let out = distill(dir.path(), &["prompts", "--quiet", "--config", "conf/my.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let prompts = std::fs::read_to_string(dir.path().join("datasets/my/prompts/prompts.jsonl")).unwrap();
    assert_eq!(prompts.lines().count(), 1, "{prompts}");
    assert!(prompts.contains("\"id\":\"u1\"") && prompts.contains("reverses a list of words"), "{prompts}");

    // Input paths that do not exist: every one named with its line, before anything runs.
    let bad = "[prompts]\nspecs_file = \"specs.jsonl\"\nuser_files = [\"mine.jsonl\", \"gone.jsonl\"]\n\n[eval]\ndata_dir = \"/no/such/benchmarks\"\n";
    std::fs::write(conf.join("bad.toml"), bad).unwrap();
    let work = dir.path().join("w");
    for command in ["status", "run"] {
        let out = distill(dir.path(), &[command, "--config", "conf/bad.toml", "--work-dir", work.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("conf/bad.toml:2: [prompts] specs_file: 'conf/specs.jsonl' does not exist"), "{command}: {err}");
        assert!(err.contains("conf/bad.toml:3: [prompts] user_files: 'conf/gone.jsonl' does not exist"), "{command}: {err}");
        assert!(!err.contains("mine.jsonl"), "{command}: {err}");
        assert!(err.contains("conf/bad.toml:6: [eval] data_dir: '/no/such/benchmarks' does not exist"), "{command}: {err}");
        assert!(!work.exists(), "{command}: nothing ran");
    }
}

#[test]
fn without_a_config_a_folder_with_none_gets_the_built_in_offline_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = distill(dir.path(), &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    // The offline default's own stage: its teacher is trained locally.
    assert!(table.lines().any(|l| l.starts_with("teacher-bootstrap") && l.contains("never run")), "{table}");
    assert!(!dir.path().join("datasets").exists(), "status writes nothing");
}

#[test]
fn the_shipped_configs_are_valid() {
    let root = repo_root();
    for name in ["default", "openai", "anthropic", "vllm", "llamacpp", "ollama"] {
        let cfg = root.join("configs").join(format!("{name}.toml"));
        let work = tempfile::tempdir().unwrap();
        let out = distill(&root, &["status", "--config", cfg.to_str().unwrap(), "--work-dir", work.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn train_bench_times_real_steps_of_the_configured_shape_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "[train]\nmodel = \"qwen2-nano\"\nvocab_from_tokenizer = false\nbatch_size = 2\nseq_len = 48\n[train.loss]\nkd = 1.0\nce = 1.0\ncapture_temperature = 1.0\n",
    )
    .unwrap();
    let out = distill(dir.path(), &["-q", "--config", "b.toml", "--work-dir", "w", "train", "--bench", "3", "--bench-warmup", "1", "--bench-topk", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["tokens_per_step"], 96);
    assert_eq!(r["topk"], 5);
    assert_eq!(r["step_secs"].as_array().unwrap().len(), 3);
    let losses: Vec<f64> = r["losses"].as_array().unwrap().iter().map(|l| l.as_f64().unwrap()).collect();
    assert_eq!(losses.len(), 4);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    for phase in ["forward", "loss", "backward", "clip", "adamw"] {
        assert!(r["phase_secs"][phase].as_f64().unwrap() > 0.0, "phase {phase}");
    }
    assert!(!dir.path().join("w").exists(), "a benchmark writes nothing");
    // On the CPU a seeded benchmark is deterministic: the same steps give the same losses.
    let again = distill(dir.path(), &["-q", "--config", "b.toml", "--work-dir", "w", "train", "--bench", "3", "--bench-warmup", "1", "--bench-topk", "5"]);
    let r2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r2["losses"], r["losses"]);
}

#[test]
fn print_params_prints_the_closed_form_count_of_the_configured_student() {
    let dir = tempfile::tempdir().unwrap();
    // Published sizes: GPT-2 small 124,439,808; Llama-3.2-1B 1,235,814,400 (tied embeddings).
    for (preset, want) in [("gpt2-124m", "gpt2-124m (gpt2): 124,439,808 parameters"), ("llama-1b", "llama-1b (llama): 1,235,814,400 parameters")] {
        std::fs::write(dir.path().join("p.toml"), format!("[train]\nmodel = \"{preset}\"\nvocab_from_tokenizer = false\n")).unwrap();
        let out = distill(dir.path(), &["-q", "--config", "p.toml", "--work-dir", "w", "train", "--print-params"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
    assert!(!dir.path().join("w").exists(), "printing the count writes nothing");
}
