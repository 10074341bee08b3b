//! [`TeacherClient`]: the blocking batch API other stages call.
//!
//! A batch goes: validate each prompt -> build its request and key -> group prompts that make
//! the same request -> look every key up in the cache -> send only the misses (see
//! [`crate::send`]) -> one [`PromptOutcome`] per prompt, in input order.
//!
//! The client owns a current-thread tokio runtime, so `run_batch` must not be called from
//! inside an async context (call it from `spawn_blocking` there), and the client must not be
//! dropped inside one either.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use reqwest::header::HeaderValue;

use distill_core::records::{FailedPrompt, PromptRecord, TeacherRecord};

use crate::cache::{Entry, SledStore, Store, Writer};
use crate::config::{SamplingOverrides, Settings, TeacherConfig};
use crate::error::Error;
use crate::request::{self, Request};
use crate::response::Parsed;
use crate::send::{self, Sent, Shared};
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
                let mut v = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    Error::Setup(format!("the value of ${} is not a valid HTTP header value (stray newline or non-ASCII character?)", settings.api_key_env))
                })?;
                // Marks it for redaction in any Debug output of the request.
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
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

    /// [`TeacherClient::run_batch_with`] with default options.
    pub fn run_batch(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, progress: bool) -> distill_core::Result<BatchOutcome> {
        self.run_batch_with(prompts, overrides, &BatchOptions { progress, retry_failed: false })
    }

    /// Answers every prompt: from the cache where it can, by sending the rest. Errors only for
    /// what stops everything (401/403, `insufficient_quota`, 404, a cache failure); every
    /// other problem is a [`PromptOutcome::Failed`].
    pub fn run_batch_with(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, opts: &BatchOptions) -> distill_core::Result<BatchOutcome> {
        let t0 = Instant::now();
        let settings = &self.shared.settings;
        let sampling = overrides.apply(&settings.sampling)?;
        let prep = self.prepare(prompts, &sampling, opts.retry_failed)?;
        let mut stats = BatchStats { prompts: prompts.len() as u64, duplicates: prep.duplicates, ..Default::default() };
        let before = (
            self.shared.counters.http_requests.load(Relaxed),
            self.shared.counters.rate_limited.load(Relaxed),
            self.shared.counters.retries.load(Relaxed),
            self.shared.counters.requested.load(Relaxed),
            self.shared.spent(),
        );

        let mut by_request: Vec<Option<Result<Parsed, (String, String)>>> = prep.cached;
        let to_send: Vec<Arc<Request>> = prep.misses.iter().map(|&r| prep.requests[r].clone()).collect();
        if !to_send.is_empty() {
            let bar = distill_core::progress::bar(to_send.len() as u64, "teacher", !opts.progress);
            let shared = self.shared.clone();
            let sent = self.runtime.block_on(send::send_all(
                shared.clone(),
                to_send,
                |_, _| bar.inc(1),
                || {
                    let secs = t0.elapsed().as_secs_f64().max(1e-3);
                    let c = &shared.counters;
                    let tokens = c.new_prompt_tokens.load(Relaxed) + c.new_completion_tokens.load(Relaxed);
                    bar.set_message(format!(
                        "{:.0} tok/s ${:.4} retries {} 429s {}",
                        tokens as f64 / secs,
                        shared.spent() - before.4,
                        c.retries.load(Relaxed) - before.2,
                        c.rate_limited.load(Relaxed) - before.1
                    ));
                },
            ));
            bar.finish_and_clear();
            let sent = sent.map_err(|(status, message)| Error::Fatal { status, message })?;
            for (i, s) in sent {
                let r = prep.misses[i];
                by_request[r] = Some(match s {
                    Sent::Done(p) => Ok(p),
                    Sent::Failed { reason, message } => Err((reason, message)),
                    Sent::Fatal { .. } => unreachable!("send_all returns fatal outcomes as errors"),
                });
            }
        }

        let c = &self.shared.counters;
        stats.http_requests = c.http_requests.load(Relaxed) - before.0;
        stats.rate_limited = c.rate_limited.load(Relaxed) - before.1;
        stats.retries = c.retries.load(Relaxed) - before.2;
        stats.requested = c.requested.load(Relaxed) - before.3;
        stats.cost_usd = self.shared.spent() - before.4;
        // Prompts left per request: the last one takes the parsed answer instead of a copy
        // (a copy of every token's top-k is most of the cost of a batch with logprobs).
        let mut uses = vec![0usize; prep.requests.len()];
        for r in prep.assignment.iter().flatten() {
            uses[*r] += 1;
        }
        let mut results = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            let outcome = match &prep.assignment[i] {
                Err(message) => PromptOutcome::Failed(FailedPrompt { id: p.id.clone(), reason: "invalid_prompt".into(), message: message.clone() }),
                Ok(r) => {
                    if prep.cached_at_start[*r] {
                        stats.from_cache += 1;
                    }
                    uses[*r] -= 1;
                    let answer = if uses[*r] == 0 { by_request[*r].take() } else { by_request[*r].clone() };
                    match answer {
                        Some(Ok(parsed)) => {
                            let req = &prep.requests[*r];
                            if parsed.usage.is_none() {
                                stats.usage_missing += 1;
                            }
                            let usage = parsed.usage.unwrap_or_default();
                            stats.prompt_tokens += usage.prompt_tokens;
                            stats.completion_tokens += usage.completion_tokens;
                            PromptOutcome::Answered(TeacherRecord {
                                id: p.id.clone(),
                                prompt: p.clone(),
                                model: parsed.model.unwrap_or_else(|| settings.model.clone()),
                                endpoint: req.endpoint.name().to_string(),
                                temperature: sampling.temperature as f32,
                                samples: parsed.samples,
                                usage,
                            })
                        }
                        Some(Err((reason, message))) => PromptOutcome::Failed(FailedPrompt { id: p.id.clone(), reason, message }),
                        None => unreachable!("every request is either cached or sent"),
                    }
                }
            };
            match &outcome {
                PromptOutcome::Answered(_) => stats.completed += 1,
                PromptOutcome::Failed(f) => {
                    stats.failed += 1;
                    *stats.failed_by_reason.entry(f.reason.clone()).or_default() += 1;
                }
            }
            results.push(outcome);
        }
        stats.elapsed_secs = t0.elapsed().as_secs_f64();
        tracing::info!(
            prompts = stats.prompts,
            from_cache = stats.from_cache,
            requested = stats.requested,
            failed = stats.failed,
            cost_usd = stats.cost_usd,
            "teacher batch done"
        );
        Ok(BatchOutcome { results, stats })
    }

    /// What [`TeacherClient::run_batch_with`] would send, without sending anything.
    pub fn plan(&self, prompts: &[PromptRecord], overrides: &SamplingOverrides, retry_failed: bool) -> distill_core::Result<Plan> {
        let sampling = overrides.apply(&self.shared.settings.sampling)?;
        let prep = self.prepare(prompts, &sampling, retry_failed)?;
        Ok(plan_from(&prep, &self.shared.settings))
    }

    fn prepare(&self, prompts: &[PromptRecord], sampling: &crate::config::Sampling, retry_failed: bool) -> distill_core::Result<Prepared> {
        prepare(Some(self.store.as_ref()), &self.shared.settings, prompts, sampling, retry_failed)
    }
}

/// A dry run that never creates the cache: when `cache_dir` does not exist, everything is to
/// be requested.
pub fn dry_run(cfg: &TeacherConfig, prompts: &[PromptRecord], overrides: &SamplingOverrides, retry_failed: bool) -> distill_core::Result<Plan> {
    let settings = cfg.settings("config")?;
    let sampling = overrides.apply(&settings.sampling)?;
    let store = if settings.cache_dir.exists() { Some(SledStore::open(&settings.cache_dir)?) } else { None };
    let prep = prepare(store.as_ref().map(|s| s as &dyn Store), &settings, prompts, &sampling, retry_failed)?;
    Ok(plan_from(&prep, &settings))
}

/// A batch after validation, grouping and cache look-up.
struct Prepared {
    /// Distinct requests, in first-use order.
    requests: Vec<Arc<Request>>,
    /// Per prompt: its request, or why it is not a valid request.
    assignment: Vec<Result<usize, String>>,
    /// Per request: the cached outcome, if any.
    cached: Vec<Option<Result<Parsed, (String, String)>>>,
    cached_at_start: Vec<bool>,
    /// Requests to send.
    misses: Vec<usize>,
    duplicates: u64,
    /// Cached completion tokens per request, for the dry-run's expectation.
    cached_completion: Vec<u64>,
    cached_failed: Vec<bool>,
}

fn prepare(store: Option<&dyn Store>, settings: &Settings, prompts: &[PromptRecord], sampling: &crate::config::Sampling, retry_failed: bool) -> distill_core::Result<Prepared> {
    let mut index: HashMap<[u8; 32], usize> = HashMap::with_capacity(prompts.len());
    let mut p = Prepared {
        requests: Vec::new(),
        assignment: Vec::with_capacity(prompts.len()),
        cached: Vec::new(),
        cached_at_start: Vec::new(),
        misses: Vec::new(),
        duplicates: 0,
        cached_completion: Vec::new(),
        cached_failed: Vec::new(),
    };
    for prompt in prompts {
        if let Err(e) = prompt.validate() {
            p.assignment.push(Err(e));
            continue;
        }
        let req = request::build(prompt, &settings.model, sampling, &settings.extra_body);
        if let Some(&r) = index.get(&req.key) {
            p.duplicates += 1;
            p.assignment.push(Ok(r));
            continue;
        }
        let r = p.requests.len();
        index.insert(req.key, r);
        let cached = match store {
            Some(s) => s.get(&req.key)?.and_then(|v| Entry::decode(&v)),
            None => None,
        };
        let (outcome, completion, failed) = match cached {
            Some(Entry::Response { parsed, .. }) => {
                let c = parsed.usage.map(|u| u.completion_tokens).unwrap_or(0);
                (Some(Ok(parsed)), c, false)
            }
            Some(Entry::Failed { meta }) if !retry_failed => {
                let reason = meta.reason.unwrap_or_else(|| "bad_request".into());
                (Some(Err((reason, meta.message.unwrap_or_default()))), 0, true)
            }
            Some(Entry::Failed { .. }) => (None, 0, true),
            None => (None, 0, false),
        };
        if outcome.is_none() {
            p.misses.push(r);
        }
        p.cached_at_start.push(outcome.is_some());
        p.cached.push(outcome);
        p.cached_completion.push(completion);
        p.cached_failed.push(failed);
        p.requests.push(Arc::new(req));
        p.assignment.push(Ok(r));
    }
    Ok(p)
}

fn plan_from(p: &Prepared, s: &Settings) -> Plan {
    let mut plan = Plan { prompts: p.assignment.len() as u64, duplicates: p.duplicates, to_request: p.misses.len() as u64, ..Default::default() };
    for a in &p.assignment {
        match a {
            Err(_) => plan.invalid += 1,
            Ok(r) if p.cached_at_start[*r] && p.cached_failed[*r] => plan.cached_failed += 1,
            Ok(r) if p.cached_at_start[*r] => plan.cached += 1,
            Ok(_) => {}
        }
    }
    for &r in &p.misses {
        plan.projected_prompt_tokens += p.requests[r].prompt_tokens_estimate;
        plan.projected_completion_tokens_max += p.requests[r].completion_tokens_max;
    }
    plan.projected_cost_usd_max = cost(plan.projected_prompt_tokens, plan.projected_completion_tokens_max, s.price_input_per_mtok, s.price_output_per_mtok);
    let answered: Vec<u64> = (0..p.requests.len()).filter(|&r| p.cached_at_start[r] && !p.cached_failed[r]).map(|r| p.cached_completion[r]).collect();
    if !answered.is_empty() {
        let mean = answered.iter().sum::<u64>() as f64 / answered.len() as f64;
        let expected = (mean * p.misses.len() as f64).round() as u64;
        plan.projected_completion_tokens_expected = Some(expected);
        plan.projected_cost_usd_expected = Some(cost(plan.projected_prompt_tokens, expected, s.price_input_per_mtok, s.price_output_per_mtok));
    }
    plan
}
