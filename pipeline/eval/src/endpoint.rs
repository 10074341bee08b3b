//! Scoring an OpenAI-compatible endpoint: a [`Generator`] over the teacher client
//! (`distill-teacher-client`), so requests go through its rate limits, retries and cache, and
//! re-scoring the teacher costs nothing.
//!
//! Each task is one completions request (`prompt`, not chat messages: these are completion
//! benchmarks) with the evaluator's `n`, temperature, top-p, max tokens and per-task seed.
//! OpenAI accepts at most 4 stop sequences, so the first 4 of the benchmark's are sent and the
//! evaluator cuts at all of them afterwards ([`crate::generate::truncate_at_stop`]). Top-k is not
//! part of the OpenAI API and is not sent.

use distill_core::records::PromptRecord;
use distill_teacher_client::{PromptOutcome, SamplingOverrides, TeacherClient};

use crate::error::{Error, Result};
use crate::generate::{GenRequest, Generator};

/// Most stop sequences the OpenAI API takes.
const MAX_STOP: usize = 4;

pub struct EndpointGenerator {
    client: TeacherClient,
    progress: bool,
}

impl EndpointGenerator {
    pub fn new(client: TeacherClient, progress: bool) -> Self {
        EndpointGenerator { client, progress }
    }
}

impl Generator for EndpointGenerator {
    fn name(&self) -> String {
        format!("{} ({})", self.client.settings().model, self.client.settings().base_url)
    }

    fn generate(&self, requests: &[GenRequest]) -> Result<Vec<Vec<String>>> {
        let Some(first) = requests.first() else {
            return Ok(Vec::new());
        };
        // The client takes one sampling per batch; the evaluator's requests share theirs.
        if requests.iter().any(|r| (r.n, r.temperature, r.top_p, r.max_new_tokens, &r.stop) != (first.n, first.temperature, first.top_p, first.max_new_tokens, &first.stop)) {
            return Err(Error::Generation("requests of one batch must share their sampling parameters".into()));
        }
        let overrides = SamplingOverrides {
            n: Some(first.n),
            temperature: Some(first.temperature),
            top_p: Some(first.top_p),
            max_tokens: Some(first.max_new_tokens),
            stop: Some(first.stop.iter().take(MAX_STOP).cloned().collect()),
            seed: Some(Some(first.run_seed)),
            logprobs: Some(false),
            top_logprobs: Some(0),
        };
        let prompts: Vec<PromptRecord> =
            requests.iter().map(|r| PromptRecord { id: format!("eval:{}", r.task_id), messages: None, prompt: Some(r.prompt.clone()), meta: Default::default() }).collect();
        let batch = self.client.run_batch(&prompts, &overrides, self.progress).map_err(|e| Error::Generation(e.to_string()))?;
        requests
            .iter()
            .zip(batch.results)
            .map(|(r, outcome)| match outcome {
                PromptOutcome::Answered(rec) => Ok(rec.samples.into_iter().map(|s| s.text).collect()),
                PromptOutcome::Failed(f) => Err(Error::Generation(format!("{}: {} ({}); run again once fixed: the answers so far are cached", r.task_id, f.reason, f.message))),
            })
            .collect()
    }
}
