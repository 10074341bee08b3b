//! [`TeacherClient`]: the blocking batch API other stages call.
//!
//! A batch goes: validate each prompt -> build its request and key -> share one request among
//! prompts that make the same one -> look the key up in the cache -> send only the misses (see
//! [`crate::send`]) -> one [`PromptOutcome`] per prompt, in input order ([`crate::stream`]).
//!
//! The client owns a current-thread tokio runtime, so `run_batch` must not be called from
//! inside an async context (call it from `spawn_blocking` there), and the client must not be
//! dropped inside one either.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};

use distill_core::records::{FailedPrompt, PromptRecord, TeacherRecord};

use crate::cache::{Entry, SledStore, Store, Writer};
use crate::config::{Api, SamplingOverrides, Settings, TeacherConfig};
use crate::error::Error;
use crate::request;
use crate::send::Shared;
use crate::stats::{cost, BatchStats, Plan};

/// The answer to one prompt, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptOutcome {
    Answered(TeacherRecord),
    Failed(FailedPrompt),
}

/// Results in the order of the prompts given, and the batch's counters.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    pub results: Vec<PromptOutcome>,
    pub stats: BatchStats,
}

impl BatchOutcome {
    pub fn records(&self) -> impl Iterator<Item = &TeacherRecord> {
        self.results.iter().filter_map(|r| match r {
            PromptOutcome::Answered(t) => Some(t),
            PromptOutcome::Failed(_) => None,
        })
    }

    pub fn failures(&self) -> impl Iterator<Item = &FailedPrompt> {
        self.results.iter().filter_map(|r| match r {
            PromptOutcome::Failed(f) => Some(f),
            PromptOutcome::Answered(_) => None,
        })
    }
}

/// Per-batch options beyond sampling.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Re-send requests whose non-retriable failure is cached.
    pub retry_failed: bool,
}

/// An OpenAI-compatible client with a durable per-request cache; see the crate docs.
pub struct TeacherClient {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Runtime,
}

/// Reads the key from the environment; an empty or missing variable means "no key".
fn api_key(settings: &Settings) -> Option<String> {
    std::env::var(&settings.api_key_env).ok().map(|k| k.trim().to_string()).filter(|k| !k.is_empty())
}

impl TeacherClient {
    /// Validates the config, opens the cache at `cache_dir` and reads the API key from the
    /// variable named by `api_key_env` (a missing key is fine for local servers).
    pub fn new(cfg: &TeacherConfig) -> distill_core::Result<Self> {
        let settings = cfg.settings("config")?;
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&settings.cache_dir)?);
        Self::with_store(settings, store)
    }

    /// Like [`TeacherClient::new`] with another [`Store`] (another engine, or a test double).
    pub fn with_store(settings: Settings, store: Arc<dyn Store>) -> distill_core::Result<Self> {
        // reqwest is built without a default TLS provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let secret = api_key(&settings);
        let auth = match &secret {
            Some(k) => {
                let (name, value) = match settings.api {
                    Api::Openai => (AUTHORIZATION, format!("Bearer {k}")),
                    Api::Anthropic => (HeaderName::from_static("x-api-key"), k.clone()),
                };
                let mut v = HeaderValue::from_str(&value)
                    .map_err(|_| Error::Setup(format!("the value of ${} is not a valid HTTP header value (stray newline or non-ASCII character?)", settings.api_key_env)))?;
                // Marks it for redaction in any Debug output of the request.
                v.set_sensitive(true);
                Some((name, v))
            }
            None => None,
        };
        if settings.api == Api::Anthropic && settings.sampling.logprobs {
            tracing::info!("Anthropic returns no log-probabilities: the teacher's records carry none, and the shards stage trains them on hard labels");
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .pool_max_idle_per_host(settings.max_concurrency)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Setup(e.to_string()))?;
        let writer = Writer::start(store.clone());
        let shared = Arc::new(Shared::new(settings, http, auth, secret, writer));
        Ok(TeacherClient { shared, store, runtime })
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The running totals of every batch so far; cheap (atomic loads), callable from a sink.
    pub fn live(&self) -> crate::stats::Live {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.counters;
        crate::stats::Live {
            from_cache: c.from_cache.load(Relaxed),
            requested: c.requested.load(Relaxed),
            http_requests: c.http_requests.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            retries: c.retries.load(Relaxed),
            new_prompt_tokens: c.new_prompt_tokens.load(Relaxed),
            new_completion_tokens: c.new_completion_tokens.load(Relaxed),
            cost_usd: self.shared.spent(),
        }
    }

    /// [`TeacherClient::run_batch_with`] with default options.
    pub fn run_batch(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, progress: bool) -> distill_core::Result<BatchOutcome> {
        self.run_batch_with(prompts, overrides, &BatchOptions { progress, retry_failed: false })
    }

    /// Answers every prompt: from the cache where it can, by sending the rest. Errors only for
    /// what stops everything (401/403, `insufficient_quota`, 404, a cache failure); every
    /// other problem is a [`PromptOutcome::Failed`]. Holds every answer in memory: for data
    /// sets of real size use [`TeacherClient::run_stream`].
    pub fn run_batch_with(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, opts: &BatchOptions) -> distill_core::Result<BatchOutcome> {
        let mut results = Vec::with_capacity(prompts.len());
        let stats = self.run_stream(prompts.iter().cloned(), Some(prompts.len() as u64), overrides, opts, |o| {
            results.push(o);
            Ok(())
        })?;
        Ok(BatchOutcome { results, stats })
    }

    /// Answers a stream of prompts and hands `sink` one [`PromptOutcome`] per prompt, in input
    /// order, as soon as it and every earlier one are ready (see [`crate::stream`]): memory is
    /// bounded by the window of prompts in flight, not by the number of prompts. `total`
    /// (when known) sizes the progress bar.
    pub fn run_stream(
        &self,
        prompts: impl IntoIterator<Item = PromptRecord>,
        total: Option<u64>,
        overrides: &SamplingOverrides,
        opts: &BatchOptions,
        sink: impl FnMut(PromptOutcome) -> distill_core::Result<()>,
    ) -> distill_core::Result<BatchStats> {
        let sampling = overrides.apply(&self.shared.settings.sampling)?;
        let engine = crate::stream::Engine { shared: self.shared.clone(), store: self.store.as_ref(), sampling: &sampling, retry_failed: opts.retry_failed, cache_only: None };
        let bar = distill_core::progress::bar(total.unwrap_or(0), "teacher", !opts.progress);
        let stats = self.runtime.block_on(engine.run(prompts.into_iter(), &bar, sink));
        bar.finish_and_clear();
        let stats = stats?;
        tracing::info!(prompts = stats.prompts, from_cache = stats.from_cache, requested = stats.requested, failed = stats.failed, cost_usd = stats.cost_usd, "teacher batch done");
        Ok(stats)
    }

    /// [`TeacherClient::run_stream`] for the teacher stage, by the configured transport. Online,
    /// it is `run_stream` over `prompts()`. With `transport = "batch"` it goes over the prompts
    /// twice: first the requests the cache lacks go out in batches and their answers into the
    /// cache ([`crate::batch`]), then `sink` gets every prompt's outcome in input order from the
    /// cache, nothing being sent online (a request no batch answered is a failure of this run,
    /// submitted again by the next). The second value is the batches' counters.
    pub fn run_stream_by_transport<I: IntoIterator<Item = PromptRecord>>(
        &self,
        prompts: impl Fn() -> distill_core::Result<I>,
        total: Option<u64>,
        overrides: &SamplingOverrides,
        opts: &BatchOptions,
        sink: impl FnMut(PromptOutcome) -> distill_core::Result<()>,
    ) -> distill_core::Result<(BatchStats, Option<crate::batch::JobStats>)> {
        if self.shared.settings.transport == crate::config::Transport::Online {
            return Ok((self.run_stream(prompts()?, total, overrides, opts, sink)?, None));
        }
        let sampling = overrides.apply(&self.shared.settings.sampling)?;
        let bar = distill_core::progress::bar(0, "batches", !opts.progress);
        let mut job = crate::batch::Job::open(self.shared.clone(), self.store.as_ref(), &bar)?;
        let done = self.runtime.block_on(job.run(prompts()?.into_iter(), &sampling, opts.retry_failed));
        bar.finish_and_clear();
        done?;
        let engine =
            crate::stream::Engine { shared: self.shared.clone(), store: self.store.as_ref(), sampling: &sampling, retry_failed: opts.retry_failed, cache_only: Some(&job.results) };
        let bar = distill_core::progress::bar(total.unwrap_or(0), "teacher", !opts.progress);
        let stats = self.runtime.block_on(engine.run(prompts()?.into_iter(), &bar, sink));
        bar.finish_and_clear();
        let mut stats = stats?;
        let job = job.stats;
        // What the batches bought is this run's spending.
        stats.cost_usd += job.cost_usd;
        stats.requested += job.requests_submitted;
        tracing::info!(
            prompts = stats.prompts,
            from_cache = stats.from_cache,
            batches = job.batches_submitted,
            answered_in_batches = job.requests_succeeded,
            failed = stats.failed,
            cost_usd = stats.cost_usd,
            "teacher batches done"
        );
        Ok((stats, Some(job)))
    }

    /// What [`TeacherClient::run_batch_with`] would send, without sending anything.
    pub fn plan(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, retry_failed: bool) -> distill_core::Result<Plan> {
        let sampling = overrides.apply(&self.shared.settings.sampling)?;
        plan(Some(self.store.as_ref()), &self.shared.settings, prompts.iter().cloned(), &sampling, retry_failed)
    }
}

/// A dry run that never creates the cache: when `cache_dir` does not exist, everything is to
/// be requested. Streams: holds one request key per distinct prompt, nothing else.
pub fn dry_run(cfg: &TeacherConfig, prompts: impl IntoIterator<Item = PromptRecord>, overrides: &SamplingOverrides, retry_failed: bool) -> distill_core::Result<Plan> {
    let settings = cfg.settings("config")?;
    let sampling = overrides.apply(&settings.sampling)?;
    let store = if settings.cache_dir.exists() { Some(SledStore::open(&settings.cache_dir)?) } else { None };
    plan(store.as_ref().map(|s| s as &dyn Store), &settings, prompts, &sampling, retry_failed)
}

/// Counts what a run would answer from the cache and what it would send. Reads only the
/// metadata of cached entries (their usage), never their answers.
fn plan(
    store: Option<&dyn Store>,
    s: &Settings,
    prompts: impl IntoIterator<Item = PromptRecord>,
    sampling: &crate::config::Sampling,
    retry_failed: bool,
) -> distill_core::Result<Plan> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Cached,
        CachedFailed,
        ToRequest,
        /// Every part not cached is in an open batch.
        InBatches,
    }
    let mut seen: HashMap<[u8; 32], State> = HashMap::new();
    let mut plan = Plan::default();
    // Batches of a killed run hold requests the next run will not submit again.
    let held = match s.transport {
        crate::config::Transport::Batch => crate::batch::journal::held_keys(&s.cache_dir.join("batches")),
        crate::config::Transport::Online => Default::default(),
    };
    let (mut answered, mut answered_completion) = (0u64, 0u64);
    for prompt in prompts {
        plan.prompts += 1;
        if prompt.validate().is_err() {
            plan.invalid += 1;
            continue;
        }
        let req = request::build_for(s.api, &prompt, &s.model, sampling, &s.extra_body);
        let state = match seen.get(&req.key) {
            Some(&state) => {
                plan.duplicates += 1;
                state
            }
            None => {
                // Every part answered: cached; any part a cached failure: that failure;
                // otherwise the parts without an answer are to be sent.
                let (mut missing, mut failed, mut completion, mut in_batches) = (0u64, false, 0u64, 0u64);
                for key in &req.parts {
                    let cached = match store {
                        Some(st) => st.get(key)?.and_then(|v| Entry::decode_meta(&v)),
                        None => None,
                    };
                    match cached {
                        Some((false, meta)) => completion += meta.usage.map_or(0, |u| u.completion_tokens),
                        Some((true, _)) if !retry_failed => failed = true,
                        _ if held.contains(key) => in_batches += 1,
                        _ => missing += 1,
                    }
                }
                plan.in_open_batches += in_batches;
                let state = if failed {
                    State::CachedFailed
                } else if missing == 0 && in_batches > 0 {
                    State::InBatches
                } else if missing == 0 {
                    answered += 1;
                    answered_completion += completion;
                    State::Cached
                } else {
                    plan.to_request += 1;
                    plan.projected_prompt_tokens += missing * req.prompt_tokens_estimate;
                    plan.projected_completion_tokens_max += missing * req.completion_tokens_max;
                    State::ToRequest
                };
                seen.insert(req.key, state);
                state
            }
        };
        match state {
            State::Cached => plan.cached += 1,
            State::CachedFailed => plan.cached_failed += 1,
            State::ToRequest | State::InBatches => {}
        }
    }
    // At the batch discount when the transport is batch.
    let (price_in, price_out) = s.prices();
    plan.projected_cost_usd_max = cost(plan.projected_prompt_tokens, plan.projected_completion_tokens_max, price_in, price_out);
    if answered > 0 {
        let mean = answered_completion as f64 / answered as f64;
        let expected = (mean * plan.to_request as f64).round() as u64;
        plan.projected_completion_tokens_expected = Some(expected);
        plan.projected_cost_usd_expected = Some(cost(plan.projected_prompt_tokens, expected, price_in, price_out));
    }
    Ok(plan)
}
