//! What the integration tests share: chat prompts, a client configuration for the test server
//! on loopback (short timeouts and backoff, no rate limit, a cache in the test's folder) and a
//! handle that keeps a cache open for a whole test.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::Path;

use distill_core::records::PromptRecord;
use distill_teacher_client::cache::SledStore;
use distill_teacher_client::config::Api;
use distill_teacher_client::TeacherConfig;
use distill_teacher_testserver::TestServer;

/// The OpenAI API of `server`, model `test-teacher`, its cache in `cache`; no key is set.
/// Batches (only where a test asks for `transport = "batch"`) are polled every 10 ms.
pub fn config(server: &TestServer, cache: &Path) -> TeacherConfig {
    TeacherConfig {
        base_url: server.base_url.clone(),
        model: "test-teacher".into(),
        api_key_env: "DISTILL_TEST_NO_SUCH_KEY".into(),
        requests_per_minute: 0,
        max_concurrency: 8,
        timeout_secs: 2.0,
        max_retries: 6,
        backoff_base_ms: 2,
        backoff_max_secs: 0.05,
        max_tokens: 24,
        cache_dir: cache.display().to_string(),
        batch_poll_secs: 0.01,
        ..Default::default()
    }
}

/// [`config`] for Anthropic's Messages API, model `claude-test`.
pub fn anthropic_config(server: &TestServer, cache: &Path) -> TeacherConfig {
    TeacherConfig { api: Api::Anthropic, model: "claude-test".into(), ..config(server, cache) }
}

/// Holds the cache open for the whole test: clients of the same cache made one after another
/// then share it, instead of racing sled's release of its folder lock (it happens on a
/// background thread a moment after the last handle is dropped).
pub fn keep_open(cache: &Path) -> SledStore {
    SledStore::open(cache).unwrap()
}

/// A chat prompt of one user message.
pub fn chat(id: &str, text: &str) -> PromptRecord {
    serde_json::from_value(serde_json::json!({"id": id, "messages": [{"role": "user", "content": text}]})).unwrap()
}

/// A chat prompt of a system message ("You write Python.") and one user message.
pub fn python_chat(id: &str, text: &str) -> PromptRecord {
    serde_json::from_value(serde_json::json!({"id": id, "messages": [
        {"role": "system", "content": "You write Python."}, {"role": "user", "content": text}]}))
    .unwrap()
}

/// `n` distinct [`chat`] prompts, ids `{tag}-0000`, `{tag}-0001`, ...
pub fn prompts(n: usize, tag: &str) -> Vec<PromptRecord> {
    numbered(chat, n, tag)
}

/// [`prompts`] made with [`python_chat`].
pub fn python_prompts(n: usize, tag: &str) -> Vec<PromptRecord> {
    numbered(python_chat, n, tag)
}

fn numbered(chat: fn(&str, &str) -> PromptRecord, n: usize, tag: &str) -> Vec<PromptRecord> {
    (0..n).map(|i| chat(&format!("{tag}-{i:04}"), &format!("Write function number {i} ({tag})."))).collect()
}
