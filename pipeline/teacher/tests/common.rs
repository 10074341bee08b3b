//! Helpers shared by the stage's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use distill_core::StageContext;
use distill_teacher::TeacherConfig;
use distill_teacher_testserver::TestServer;

/// Writes `n` chat prompts (every fifth a completion prompt) to `<work>/prompts/prompts.jsonl`.
pub fn write_prompts(work: &Path, n: usize, extra_lines: &[&str]) -> PathBuf {
    let path = work.join("prompts").join("prompts.jsonl");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for i in (0..n).rev() {
        let rec = if i % 5 == 4 {
            serde_json::json!({"id": format!("p{i:05}"), "prompt": format!("def f{i}(x):\n    \"\"\"Return x plus {i}.\"\"\"\n")})
        } else {
            serde_json::json!({"id": format!("p{i:05}"), "messages": [{"role": "system", "content": "You write Python."}, {"role": "user", "content": format!("Write a function that returns {i} squared.")}], "meta": {"generator": "test"}})
        };
        text.push_str(&rec.to_string());
        text.push('\n');
    }
    for l in extra_lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

pub fn config(server: &TestServer, cache: &Path) -> TeacherConfig {
    TeacherConfig {
        base_url: server.base_url.clone(),
        model: "test-teacher".into(),
        api_key_env: "DISTILL_TEST_UNSET_KEY".into(),
        requests_per_minute: 0,
        max_concurrency: 8,
        timeout_secs: 2.0,
        max_retries: 6,
        backoff_base_ms: 2,
        backoff_max_secs: 0.05,
        max_tokens: 24,
        cache_dir: cache.display().to_string(),
        ..Default::default()
    }
}

pub fn context<'a>(work: &'a Path, out: &Path) -> StageContext<'a> {
    std::fs::create_dir_all(out).unwrap();
    StageContext { stage: "teacher", work_dir: work, out_dir: out.to_path_buf(), scratch_dir: work.join(".scratch/teacher"), shard: None, quiet: true }
}

pub fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
}
