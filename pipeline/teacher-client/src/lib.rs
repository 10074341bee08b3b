//! An OpenAI-compatible teacher client that pays for each distinct request once, ever.
//!
//! Used by the teacher stage, the prompt generators and the evaluator (scoring an endpoint):
//!
//! ```no_run
//! use distill_teacher_client::{TeacherClient, TeacherConfig, SamplingOverrides};
//! # fn main() -> distill_core::Result<()> {
//! let client = TeacherClient::new(&TeacherConfig::default())?;
//! let prompts: Vec<distill_core::records::PromptRecord> = Vec::new();
//! let out = client.run_batch(&prompts, &SamplingOverrides { temperature: Some(0.0), ..Default::default() }, true)?;
//! for record in out.records() { /* TeacherRecord */ }
//! # Ok(()) }
//! ```
//!
//! The API other stages use:
//!
//! - [`TeacherClient::new`]`(&TeacherConfig) -> distill_core::Result<TeacherClient>`: validates
//!   the `[teacher]` section, opens the cache, reads the key from `$api_key_env`.
//! - [`TeacherClient::run_batch`]`(&self, &[PromptRecord], &SamplingOverrides, progress: bool)
//!   -> distill_core::Result<BatchOutcome>` (blocking; [`TeacherClient::run_batch_with`] takes
//!   [`BatchOptions`] for `retry_failed`). [`BatchOutcome::results`] has one
//!   [`PromptOutcome`] per prompt in input order (a `TeacherRecord` or a `FailedPrompt`), and
//!   [`BatchOutcome::stats`] the counters. An `Err` means the batch was stopped: the key was
//!   refused (401/403), the account has no quota, the URL or model is wrong (404), or the
//!   cache failed.
//! - [`TeacherClient::plan`] / [`dry_run`]: what a batch would send and cost, sending nothing.
//! - [`SamplingOverrides`]: per-batch `n`, `temperature`, `top_p`, `max_tokens`, `stop`,
//!   `seed`, `logprobs`, `top_logprobs`. Chat prompts (`messages`) go to `/chat/completions`,
//!   completion prompts (`prompt`) to `/completions`.
//!
//! With `[teacher] api = "anthropic"` the same client speaks Anthropic's Messages API
//! (`/messages`, `x-api-key`, `anthropic-version`, 529 overloaded retried, the
//! `anthropic-ratelimit-*` headers fed to the limiter): no log-probabilities, and `n` samples
//! are `n` requests with a cache key each ([`request`]).
//!
//! With `[teacher] transport = "batch"`, [`TeacherClient::run_stream_by_transport`] (what the
//! teacher stage calls) sends what the cache lacks through the provider's batch API instead,
//! at `batch_discount` of the price, and reads the answers into the same cache under the same
//! keys ([`batch`]: the journal that makes a killed run re-attach instead of paying twice, the
//! splitting by the API's limits, the budget refusal). `run_batch` and `run_stream` (the
//! prompt generators, the evaluator) always go online.
//!
//! Parts: [`config`] (the `[teacher]` section), [`request`] (canonical body and cache key),
//! [`response`] (lenient parsing), [`cache`] (the sled store with group commit) and
//! [`compact`] (its value format), [`batch`] (batch transports and their journal), [`limits`]
//! and [`concurrency`] (rate limits, adaptive concurrency), [`retry`] (classifier and
//! full-jitter backoff), [`send`] (the request stack), [`stream`] (the windowed engine in
//! input order) and [`client`] (the blocking API: batches and streams).
//!
//! Why plain reqwest and our own types rather than async-openai: async-openai 0.43 retries on
//! its own (3 times, whole-second `Retry-After` only), throws response headers away
//! (`retry-after-ms`, `x-ratelimit-*`, which the limiter needs), and parses strictly (a
//! missing `top_logprobs` or an unknown `finish_reason`, both common with vLLM, llama.cpp and
//! Ollama, fail the whole response). Working around all three (a replaced HTTP service, a
//! header-capturing middleware, `byot` types) leaves it doing nothing but building a URL, so
//! the client speaks HTTP itself: two endpoints, a JSON body we must canonicalise for the
//! cache key anyway, and lenient response types.

pub mod batch;
pub mod cache;
pub mod client;
pub mod compact;
pub mod concurrency;
pub mod config;
pub mod error;
pub mod limits;
pub mod request;
pub mod response;
pub mod retry;
pub mod send;
pub mod stats;
pub mod stream;
pub mod valuelog;

pub use batch::JobStats;
pub use client::{dry_run, BatchOptions, BatchOutcome, PromptOutcome, TeacherClient};
pub use config::{Api, Sampling, SamplingOverrides, Settings, TeacherConfig, Transport};
pub use error::Error;
pub use request::Endpoint;
pub use stats::{BatchStats, Live, Plan};
