//! Sending the requests the cache lacks: the layered stack of STYLE.md habit 7, per request
//!
//! ```text
//! budget check -> concurrency permit (adaptive) -> rate limits (requests, tokens, pauses)
//!   -> HTTP with timeout -> classify -> durable cache write -> done
//!                              \-> retry with full-jitter backoff
//! ```
//!
//! Everything runs on one current-thread tokio runtime (one core is plenty for thousands of
//! requests a second, and it avoids cross-thread wake-ups); cache flushes run on the writer
//! thread so an fsync never blocks the event loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};

use crate::cache::{Entry, Meta, Writer};
use crate::concurrency::{Adaptive, Signal};
use crate::config::{Api, Settings, ANTHROPIC_VERSION};
use crate::limits::{self, Limits};
use crate::request::Request;
use crate::response::Parsed;
use crate::retry::{classify_api, retry_loop, Backoff, Finished, Step, Verdict};
use crate::stats::cost;

/// How one distinct request ended.
#[derive(Debug)]
pub enum Sent {
    Done(Parsed),
    Failed {
        reason: String,
        message: String,
    },
    /// The batch must stop (bad key, no quota, wrong URL, cache failure).
    Fatal {
        status: u16,
        message: String,
    },
}

#[derive(Default)]
pub struct Counters {
    pub http_requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    pub requested: AtomicU64,
    pub new_prompt_tokens: AtomicU64,
    pub new_completion_tokens: AtomicU64,
    /// Prompts answered from the cache (the engine's `from_cache`, readable while it runs).
    pub from_cache: AtomicU64,
}

struct Budget {
    /// Dollars spent (reported usage).
    spent: f64,
    /// Worst-case dollars of requests in flight.
    in_flight: f64,
}

/// State shared by every request of a batch.
pub struct Shared {
    pub settings: Settings,
    pub http: reqwest::Client,
    /// The credential header (`Authorization: Bearer <key>`, or Anthropic's `x-api-key`),
    /// marked sensitive.
    pub auth: Option<(HeaderName, HeaderValue)>,
    /// The key itself, only to scrub it from server messages before they are logged or stored.
    pub secret: Option<String>,
    pub limits: Limits,
    pub concurrency: Adaptive,
    pub writer: Writer,
    pub counters: Counters,
    budget: Mutex<Budget>,
    stopped: AtomicBool,
    /// The first fatal outcome (status, message), which stops the batch.
    fatal: Mutex<Option<(u16, String)>>,
}

impl Shared {
    pub fn new(settings: Settings, http: reqwest::Client, auth: Option<(HeaderName, HeaderValue)>, secret: Option<String>, writer: Writer) -> Shared {
        Shared {
            limits: Limits::new(settings.requests_per_minute, settings.burst, settings.tokens_per_minute),
            concurrency: Adaptive::new(settings.max_concurrency),
            settings,
            http,
            auth,
            secret,
            writer,
            counters: Counters::default(),
            budget: Mutex::new(Budget { spent: 0.0, in_flight: 0.0 }),
            stopped: AtomicBool::new(false),
            fatal: Mutex::new(None),
        }
    }

    /// The first fatal outcome of the batch (status, message), if any.
    pub fn first_fatal(&self) -> Option<(u16, String)> {
        self.fatal.lock().expect("fatal lock").clone()
    }

    pub fn spent(&self) -> f64 {
        self.budget.lock().expect("budget lock").spent
    }

    pub fn redact(&self, text: String) -> String {
        match &self.secret {
            Some(s) if s.len() >= 4 && text.contains(s.as_str()) => text.replace(s.as_str(), "***"),
            _ => text,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.settings.base_url, path)
    }

    /// A request to `path` with the credential and, for Anthropic, its version header.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self.http.request(method, self.url(path));
        if let Some((name, value)) = &self.auth {
            builder = builder.header(name.clone(), value.clone());
        }
        if self.settings.api == Api::Anthropic {
            builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
        }
        builder
    }

    fn worst_cost(&self, req: &Request) -> f64 {
        let s = &self.settings;
        cost(req.prompt_tokens_estimate, req.completion_tokens_max, s.price_input_per_mtok, s.price_output_per_mtok)
    }

    /// Takes budget for one HTTP request, or says which cap is reached.
    fn take_budget(&self, req: &Request) -> Result<f64, String> {
        let s = &self.settings;
        let worst = self.worst_cost(req);
        let mut b = self.budget.lock().expect("budget lock");
        if s.max_cost_usd > 0.0 && b.spent + b.in_flight + worst > s.max_cost_usd {
            return Err(format!("max_cost_usd ({}) reached: ${:.4} spent, ${:.4} in flight", s.max_cost_usd, b.spent, b.in_flight));
        }
        if s.max_requests > 0 {
            let sent = self.counters.http_requests.fetch_add(1, Relaxed);
            if sent >= s.max_requests {
                self.counters.http_requests.fetch_sub(1, Relaxed);
                return Err(format!("max_requests ({}) reached", s.max_requests));
            }
        } else {
            self.counters.http_requests.fetch_add(1, Relaxed);
        }
        b.in_flight += worst;
        Ok(worst)
    }

    fn settle_budget(&self, worst: f64, spent: f64) {
        let mut b = self.budget.lock().expect("budget lock");
        b.in_flight -= worst;
        b.spent += spent;
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Answers one request: each of its parts from `cached` (the cache's value, when it holds an
/// answer) or by sending it, the missing parts concurrently. One part for OpenAI; Anthropic's
/// `n` samples are `n` parts, merged in order. The first fatal outcome of a part wins, then
/// the first failure.
pub async fn send_request(shared: Arc<Shared>, req: Arc<Request>, cached: Vec<Option<Vec<u8>>>) -> Sent {
    if req.parts.len() == 1 && cached.first().is_none_or(Option::is_none) {
        return send_one(shared, req, 0).await;
    }
    let futures = req.parts.iter().enumerate().map(|(i, _)| {
        let have = cached.get(i).cloned().flatten().and_then(|v| match Entry::decode(&v) {
            Some(Entry::Response { parsed, .. }) => Some(parsed),
            _ => None,
        });
        let (sh, r) = (shared.clone(), req.clone());
        async move {
            match have {
                Some(parsed) => Sent::Done(parsed),
                None => send_one(sh, r, i).await,
            }
        }
    });
    let outcomes = futures::future::join_all(futures).await;
    let mut parsed = Vec::with_capacity(outcomes.len());
    let mut failed = None;
    for o in outcomes {
        match o {
            Sent::Done(p) => parsed.push(p),
            fatal @ Sent::Fatal { .. } => return fatal,
            f @ Sent::Failed { .. } => {
                failed.get_or_insert(f);
            }
        }
    }
    failed.unwrap_or_else(|| Sent::Done(crate::response::merge(parsed)))
}

/// Sends part `part` of a request with retries; see the module docs.
pub async fn send_one(shared: Arc<Shared>, req: Arc<Request>, part: usize) -> Sent {
    shared.counters.requested.fetch_add(1, Relaxed);
    let key = req.parts[part];
    let seed = u64::from_le_bytes(key[..8].try_into().expect("32-byte key"));
    let mut backoff = Backoff::new(shared.settings.backoff_base, shared.settings.backoff_max, seed);
    let max_retries = shared.settings.max_retries;
    let sh = shared.clone();
    let out = retry_loop(max_retries, &mut backoff, move |k| attempt(sh.clone(), req.clone(), key, k)).await;
    match out {
        Finished::Finished(sent) => sent,
        Finished::Exhausted { attempts, last } => Sent::Failed { reason: "retries_exhausted".into(), message: format!("gave up after {attempts} attempts; last: {last}") },
    }
}

async fn attempt(shared: Arc<Shared>, req: Arc<Request>, key: [u8; 32], k: u32) -> Step<Sent> {
    if k > 0 {
        shared.counters.retries.fetch_add(1, Relaxed);
    }
    if shared.stopped.load(Relaxed) {
        return Step::Finish(Sent::Fatal { status: 0, message: "stopped".into() });
    }
    let worst = match shared.take_budget(&req) {
        Ok(w) => w,
        Err(message) => return Step::Finish(Sent::Failed { reason: "budget_exhausted".into(), message }),
    };
    let reserved = req.prompt_tokens_estimate + req.completion_tokens_max;
    let permit = shared.concurrency.acquire().await;
    shared.limits.admit(reserved).await;
    let t0 = Instant::now();
    let sent_at = tokio::time::Instant::now();
    let builder = shared.request(reqwest::Method::POST, req.endpoint.path()).header(CONTENT_TYPE, "application/json").body(req.body.clone());
    let result = match builder.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            resp.bytes().await.map(|b| (status, headers, b))
        }
        Err(e) => Err(e),
    };
    let latency_ms = t0.elapsed().as_millis() as u64;
    let (status, verdict) = match result {
        Ok((status, headers, body)) => {
            shared.limits.observe(&headers, sent_at);
            (status, classify_api(shared.settings.api, status, &body, limits::retry_after(&headers)))
        }
        Err(e) => {
            let reason = if e.is_timeout() { "timeout" } else { "connection_error" };
            // Without the URL: it is ours, and only noise in a per-prompt message.
            let message = format!("{reason}: {}", e.without_url());
            (0, Verdict::Retry { reason, message, retry_after: None, rate_limited: false })
        }
    };
    let signal = match &verdict {
        Verdict::Success(_) => Signal::Success,
        Verdict::Retry { rate_limited: true, .. } => Signal::RateLimited,
        _ => Signal::Other,
    };
    // A success keeps its permit until its answer is durable: the answers paid for but not
    // yet in the cache (what a kill -9 can lose) are then never more than max_concurrency.
    let permit = match verdict {
        Verdict::Success(_) => Some(permit),
        _ => {
            shared.concurrency.release(permit, signal);
            None
        }
    };
    match verdict {
        Verdict::Success(parsed) => {
            let actual = parsed.usage.map(|u| u.prompt_tokens + u.completion_tokens).unwrap_or(reserved);
            shared.limits.correct(reserved, actual);
            let (pt, ct) = parsed.usage.map(|u| (u.prompt_tokens, u.completion_tokens)).unwrap_or((0, 0));
            shared.counters.new_prompt_tokens.fetch_add(pt, Relaxed);
            shared.counters.new_completion_tokens.fetch_add(ct, Relaxed);
            let s = &shared.settings;
            shared.settle_budget(worst, cost(pt, ct, s.price_input_per_mtok, s.price_output_per_mtok));
            let meta = Meta { unix: unix_now(), latency_ms, usage: parsed.usage, status, reason: None, message: None };
            let entry = Entry::Response { meta, parsed };
            let stored = shared.writer.put(&key, &entry).await;
            if let Some(permit) = permit {
                shared.concurrency.release(permit, signal);
            }
            let Entry::Response { mut parsed, .. } = entry else { unreachable!("built as a response above") };
            // What the cache kept is what every later run reads: hand out the same values now.
            parsed.samples.iter_mut().filter_map(|s| s.tokens.as_mut()).for_each(|t| distill_core::logprobs::canonicalize(t));
            match stored {
                Ok(()) => Step::Finish(Sent::Done(parsed)),
                Err(e) => {
                    let message = format!("cannot write the answer to the teacher cache: {e}");
                    shared.fatal.lock().expect("fatal lock").get_or_insert((0, message.clone()));
                    shared.stopped.store(true, Relaxed);
                    Step::Finish(Sent::Fatal { status: 0, message })
                }
            }
        }
        Verdict::Fail { reason, message } => {
            shared.limits.correct(reserved, 0);
            shared.settle_budget(worst, 0.0);
            let message = shared.redact(message);
            tracing::warn!(status, "teacher request failed, not retried: {message}");
            let meta = Meta { unix: unix_now(), latency_ms, usage: None, status, reason: Some(reason.into()), message: Some(message.clone()) };
            if let Err(e) = shared.writer.put(&key, &Entry::Failed { meta }).await {
                let message = format!("cannot write to the teacher cache: {e}");
                shared.fatal.lock().expect("fatal lock").get_or_insert((0, message.clone()));
                shared.stopped.store(true, Relaxed);
                return Step::Finish(Sent::Fatal { status: 0, message });
            }
            Step::Finish(Sent::Failed { reason: reason.into(), message })
        }
        Verdict::Fatal { message } => {
            shared.settle_budget(worst, 0.0);
            let message = shared.redact(message);
            shared.fatal.lock().expect("fatal lock").get_or_insert((status, message.clone()));
            shared.stopped.store(true, Relaxed);
            Step::Finish(Sent::Fatal { status, message })
        }
        Verdict::Retry { reason, message, retry_after, rate_limited } => {
            shared.limits.correct(reserved, 0);
            shared.settle_budget(worst, 0.0);
            if rate_limited {
                shared.counters.rate_limited.fetch_add(1, Relaxed);
                if let Some(d) = retry_after {
                    shared.limits.pause_for(d);
                }
            }
            let message = shared.redact(message);
            tracing::debug!(reason, attempt = k, "teacher request will be retried: {message}");
            Step::Retry { message, retry_after }
        }
    }
}
