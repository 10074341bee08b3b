//! The teacher, for the generators that ask it: the teacher stage's own client
//! (`distill-teacher-client`), so generator requests share its rate limiter, retries and sled
//! cache. A re-run finds every answer in the cache and sends nothing; a crash loses nothing
//! already answered.
//!
//! Generator requests are ordinary chat [`PromptRecord`]s (id = content digest), answered with
//! `n = 1` and no log-probabilities, at the generator's temperature and token budget.

use std::collections::BTreeMap;

use distill_core::records::PromptRecord;
use distill_teacher_client::{BatchStats, PromptOutcome, SamplingOverrides, TeacherClient, TeacherConfig};

use crate::error::{PromptsError, Result};
use crate::record::{chat, Provenance};

/// The answer to one generator request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text(String),
    /// The teacher gave up on this request (reason as the teacher stage reports it).
    Failed {
        reason: String,
        message: String,
    },
}

pub struct Teacher {
    client: TeacherClient,
    progress: bool,
    /// Counters per generator, summed over its batches (`requested` = sent, not from cache).
    pub stats: BTreeMap<String, BatchStats>,
}

impl Teacher {
    pub fn new(cfg: &TeacherConfig, progress: bool) -> Result<Self> {
        Ok(Teacher { client: TeacherClient::new(cfg)?, progress, stats: BTreeMap::new() })
    }

    /// One answer per request, in order. Only what stops every request (bad key, quota, an
    /// unreachable cache) is an error.
    pub fn ask(&mut self, generator: &str, requests: &[PromptRecord], temperature: f64, max_tokens: u32) -> Result<Vec<Answer>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let overrides = SamplingOverrides { n: Some(1), temperature: Some(temperature), max_tokens: Some(max_tokens), logprobs: Some(false), ..Default::default() };
        let out = self.client.run_batch(requests, &overrides, self.progress).map_err(|e| PromptsError::Teacher(format!("{generator}: {e}")))?;
        add_stats(self.stats.entry(generator.to_string()).or_default(), &out.stats);
        Ok(out
            .results
            .into_iter()
            .map(|r| match r {
                PromptOutcome::Answered(t) => match t.samples.into_iter().next() {
                    Some(s) => Answer::Text(s.text),
                    None => Answer::Failed { reason: "no_samples".into(), message: "the teacher returned no answer".into() },
                },
                PromptOutcome::Failed(f) => Answer::Failed { reason: f.reason, message: f.message },
            })
            .collect())
    }
}

fn add_stats(acc: &mut BatchStats, s: &BatchStats) {
    acc.prompts += s.prompts;
    acc.completed += s.completed;
    acc.from_cache += s.from_cache;
    acc.requested += s.requested;
    acc.http_requests += s.http_requests;
    acc.failed += s.failed;
    for (k, v) in &s.failed_by_reason {
        *acc.failed_by_reason.entry(k.clone()).or_default() += v;
    }
    acc.prompt_tokens += s.prompt_tokens;
    acc.completion_tokens += s.completion_tokens;
    acc.cost_usd += s.cost_usd;
    acc.rate_limited += s.rate_limited;
    acc.retries += s.retries;
    acc.elapsed_secs += s.elapsed_secs;
}

/// A generator's request to the teacher as a prompt record (its meta says which generator).
pub fn request(generator: &str, text: String, extra: BTreeMap<String, serde_json::Value>) -> PromptRecord {
    let p = Provenance { generator, task_type: "generator_request", language: "n/a", difficulty: "n/a", asks_for_tests: false };
    chat("", text, &p, extra)
}

/// Guesses the task type and language of a free-form task a generator produced.
pub fn classify(task: &str) -> (&'static str, &'static str) {
    let t = task.to_lowercase();
    let has = |w: &str| t.contains(w);
    let task_type = if has("fix the bug") || has("find the bug") || has("fix this") || has("buggy") || has("debug") {
        "fix_bug"
    } else if has("unit test") || has("write tests") || has("test cases for") || has("write a test") {
        "write_tests"
    } else if has("refactor") {
        "refactor"
    } else if has("complete the") {
        "complete_function"
    } else if t.starts_with("explain") || has("explain what") || has("explain how") {
        "explain"
    } else {
        "implement_from_spec"
    };
    let language =
        [(" rust", "rust"), ("javascript", "javascript"), ("typescript", "typescript"), (" golang", "go"), (" go ", "go"), ("c++", "cpp"), (" java ", "java"), (" java.", "java")]
            .iter()
            .find(|(needle, _)| t.contains(needle))
            .map_or("python", |(_, l)| l);
    (task_type, language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_reads_the_task_type_and_language() {
        assert_eq!(classify("Write a Python function that sorts."), ("implement_from_spec", "python"));
        assert_eq!(classify("Find the bug in this Rust code: ..."), ("fix_bug", "rust"));
        assert_eq!(classify("Write unit tests for the JavaScript module."), ("write_tests", "javascript"));
        assert_eq!(classify("Explain how a heap works."), ("explain", "python"));
    }
}
