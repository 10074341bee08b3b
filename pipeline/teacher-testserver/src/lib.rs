//! An OpenAI-compatible server for tests and benchmarks: `POST /v1/chat/completions` and
//! `POST /v1/completions`, and Anthropic's `POST /v1/messages`, with
//!
//! - deterministic answers computed from the request, with logprobs, top-k and bytes
//!   ([`generate`]);
//! - its own request quota: a token bucket of `quota_burst` requests refilled at
//!   `quota_rpm / 60` a second; over it, `429` with `retry-after-ms`, `retry-after` and
//!   `x-ratelimit-{limit,remaining,reset}-requests` (also sent on every answer);
//! - faults injected at `fault_rate`, chosen by a seeded generator over the arrival count:
//!   500/502/503, a delay past the client's timeout, a dropped connection, malformed JSON, a
//!   truncated body, a 200 without choices;
//! - markers a test can put in a prompt: `[[status:400]]` (or any code) answers with that
//!   status and an OpenAI-style error; `[[insufficient_quota]]` answers 429
//!   `insufficient_quota`; `[[fail-first:N]]` answers 503 to the first N arrivals of that exact
//!   request;
//! - an optional required API key (401 otherwise);
//! - counters ([`Counters`]) a test reads to see what was sent.
//!
//! `/v1/messages` speaks Anthropic's dialect of all of the above: the key in `x-api-key`, an
//! `anthropic-version` header required (400 without), error bodies `{"type": "error", "error":
//! {"type", "message"}}`, 529 `overloaded_error` where OpenAI's side says 503 (the 503 fault and
//! `[[fail-first:N]]`), `retry-after` in whole seconds, `anthropic-ratelimit-requests-*` headers
//! with an RFC 3339 reset, a 400 "credit balance is too low" for `[[insufficient_quota]]`, and
//! answers without log-probabilities (one per request: the API has no `n`).
//!
//! [`app`] gives the axum `Router`; [`spawn`] runs it on a thread of its own bound to
//! `127.0.0.1:0` (the client under test is blocking and owns its own runtime).

pub mod batches;
pub mod code;
pub mod generate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use generate::{Ask, SplitMix};

/// The kinds of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    Status500,
    Status502,
    Status503,
    /// Answers after `slow_delay` (set it past the client's timeout).
    Slow,
    /// Sends the status line and headers, then drops the connection.
    Drop,
    Malformed,
    Truncated,
    NoChoices,
}

impl Fault {
    pub const ALL: [Fault; 8] = [Fault::Status500, Fault::Status502, Fault::Status503, Fault::Slow, Fault::Drop, Fault::Malformed, Fault::Truncated, Fault::NoChoices];
}

/// A scripted chat model: prompt text -> answer text ([`ServerConfig::chat_answer`]).
pub type ChatAnswer = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
pub struct ServerConfig {
    /// Requests per minute allowed (0 = no quota).
    pub quota_rpm: u32,
    /// Bucket size (0 = one second's worth, at least 1).
    pub quota_burst: u32,
    /// Probability that a request gets a fault instead of its answer.
    pub fault_rate: f64,
    /// Which faults to draw from (empty = all).
    pub faults: Vec<Fault>,
    pub slow_delay: Duration,
    /// Added before every answer.
    pub latency: Duration,
    /// Seed of the fault generator.
    pub seed: u64,
    /// When set, requests without `Authorization: Bearer <key>` get 401.
    pub require_key: Option<String>,
    /// When set, chat requests get realistic code answers in these tokens ([`code`]).
    pub code: Option<Arc<code::CodeAnswers>>,
    /// When set, a chat request (or a `/v1/completions` one, given its raw prompt) is answered
    /// with this function of its prompt text (one choice, no log-probs): a scripted model, for
    /// tests of what a client does with an answer.
    pub chat_answer: Option<ChatAnswer>,
    /// Requests a batch runs each time it is looked at (0 = all at the first look): the
    /// batches' clock, so a test decides when a batch is in flight and when it ends.
    pub batch_step: u64,
    /// A batch expires once it has run this many requests (the rest are `batch_expired`).
    pub batch_expire_after: Option<u64>,
    /// The next this-many batch creations create the batch and then answer 500, as if the
    /// answer were lost (a client that simply retries pays twice).
    pub batch_create_faults: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            quota_rpm: 0,
            quota_burst: 0,
            fault_rate: 0.0,
            faults: Vec::new(),
            slow_delay: Duration::from_secs(5),
            latency: Duration::ZERO,
            seed: 0,
            require_key: None,
            code: None,
            chat_answer: None,
            batch_step: 0,
            batch_expire_after: None,
            batch_create_faults: 0,
        }
    }
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Counters {
    /// Every request that reached a handler.
    pub requests: AtomicU64,
    /// Complete, valid answers sent.
    pub answered: AtomicU64,
    pub rate_limited: AtomicU64,
    pub faults: AtomicU64,
    pub by_status: Mutex<BTreeMap<u16, u64>>,
    pub faults_by_kind: Mutex<BTreeMap<String, u64>>,
    /// sha256 (hex) of each request body -> arrivals.
    pub arrivals: Mutex<HashMap<String, u64>>,
    /// sha256 (hex) of each request body -> valid answers sent.
    pub answers: Mutex<HashMap<String, u64>>,
    /// Authorization (or, on `/v1/messages`, `x-api-key`) headers seen, verbatim (tests check
    /// the key went only there).
    pub auth_headers: Mutex<Vec<String>>,
    /// Batches created (OpenAI and Anthropic).
    pub batches_created: AtomicU64,
    /// custom_id -> times it was submitted in a batch (a paid request sent twice shows as 2).
    pub batch_submissions: Mutex<HashMap<String, u64>>,
    /// Batch results read (OpenAI output and error files, Anthropic results).
    pub batch_downloads: AtomicU64,
    /// The most batches in progress at once (counted when one is created).
    pub most_batches_in_progress: AtomicU64,
}

impl Counters {
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
    pub fn answered(&self) -> u64 {
        self.answered.load(Relaxed)
    }
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Relaxed)
    }
    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }
    /// Bodies (by digest) that got a valid answer.
    pub fn answered_bodies(&self) -> HashMap<String, u64> {
        self.answers.lock().expect("counters lock").clone()
    }
    pub fn arrivals(&self) -> HashMap<String, u64> {
        self.arrivals.lock().expect("counters lock").clone()
    }
    pub fn batches_created(&self) -> u64 {
        self.batches_created.load(Relaxed)
    }
    pub fn batch_submissions(&self) -> HashMap<String, u64> {
        self.batch_submissions.lock().expect("counters lock").clone()
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Server state: its config (tests may change it while running), the quota and the counters.
pub struct Shared {
    pub config: Mutex<ServerConfig>,
    pub counters: Counters,
    /// Uploaded files and batches ([`batches`]).
    pub batches: Mutex<batches::Batches>,
    bucket: Mutex<Option<Bucket>>,
    fault_rng: Mutex<SplitMix>,
}

impl Shared {
    pub fn new(config: ServerConfig) -> Arc<Shared> {
        let seed = config.seed;
        Arc::new(Shared {
            config: Mutex::new(config),
            counters: Counters::default(),
            batches: Mutex::default(),
            bucket: Mutex::new(None),
            fault_rng: Mutex::new(SplitMix::new(seed)),
        })
    }
}

/// The axum application.
pub fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| handle(s, h, b, Dialect::Chat)))
        .route("/v1/completions", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| handle(s, h, b, Dialect::Completions)))
        .route("/v1/messages", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| handle(s, h, b, Dialect::Messages)))
        .merge(batches::routes())
        .with_state(shared)
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>/v1`
    pub base_url: String,
    pub shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Changes the config of the running server.
    pub fn configure(&self, f: impl FnOnce(&mut ServerConfig)) {
        f(&mut self.shared.config.lock().expect("config lock"));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `127.0.0.1:0` and serves on a thread of its own with `threads` tokio workers.
pub fn spawn_with_threads(config: ServerConfig, threads: usize) -> std::io::Result<TestServer> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let shared = Shared::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = app(shared.clone());
    let thread = std::thread::Builder::new().name("teacher-testserver".into()).spawn(move || {
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
        }
        .expect("test server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        // Slow handlers may still be sleeping: do not wait for them.
        rt.shutdown_background();
    })?;
    Ok(TestServer { addr, base_url: format!("http://{addr}/v1"), shared, shutdown: Some(tx), thread: Some(thread) })
}

/// [`spawn_with_threads`] with one thread.
pub fn spawn(config: ServerConfig) -> std::io::Result<TestServer> {
    spawn_with_threads(config, 1)
}

/// Which API a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Chat,
    Completions,
    /// Anthropic's Messages API.
    Messages,
}

pub(crate) fn error_response(dialect: Dialect, status: u16, message: &str, kind: &str, code: &str) -> Response {
    let body = match dialect {
        Dialect::Messages => json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}),
        _ => json!({"error": {"message": message, "type": kind, "code": code, "param": null}}),
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

/// Anthropic's error type for a status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An RFC 3339 time in UTC with whole seconds (`2026-12-06T17:00:30Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn count_status(shared: &Shared, status: u16) {
    *shared.counters.by_status.lock().expect("counters lock").entry(status).or_default() += 1;
}

/// Takes one request from the quota: `Ok(headers)` or `Err(429 response)`.
fn take_quota(shared: &Shared, rpm: u32, burst: u32, dialect: Dialect) -> Result<Vec<(&'static str, String)>, Box<Response>> {
    if rpm == 0 {
        return Ok(Vec::new());
    }
    let cap = if burst == 0 { (rpm / 60).max(1) } else { burst } as f64;
    let rate = f64::from(rpm) / 60.0;
    let mut b = shared.bucket.lock().expect("bucket lock");
    let now = Instant::now();
    let bucket = b.get_or_insert(Bucket { tokens: cap, at: now });
    bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(cap);
    bucket.at = now;
    let ok = bucket.tokens >= 1.0;
    if ok {
        bucket.tokens -= 1.0;
    }
    let reset = (cap - bucket.tokens) / rate;
    let mut headers = match dialect {
        Dialect::Messages => vec![
            ("anthropic-ratelimit-requests-limit", format!("{}", cap as u64)),
            ("anthropic-ratelimit-requests-remaining", format!("{}", bucket.tokens.floor() as u64)),
            // Rounded up to the whole second the format can say.
            ("anthropic-ratelimit-requests-reset", rfc3339(std::time::SystemTime::now() + Duration::from_secs_f64(reset.ceil()))),
        ],
        _ => vec![
            ("x-ratelimit-limit-requests", format!("{}", cap as u64)),
            ("x-ratelimit-remaining-requests", format!("{}", bucket.tokens.floor() as u64)),
            ("x-ratelimit-reset-requests", format!("{:.3}s", reset)),
        ],
    };
    if ok {
        return Ok(headers);
    }
    let wait = (1.0 - bucket.tokens) / rate;
    if dialect != Dialect::Messages {
        headers.push(("retry-after-ms", format!("{:.0}", (wait * 1000.0).ceil())));
    }
    headers.push(("retry-after", format!("{}", wait.ceil() as u64)));
    drop(b);
    let mut resp = error_response(
        dialect,
        429,
        &format!("Rate limit reached: limit {rpm} requests per minute. Please try again in {:.0}ms.", wait * 1000.0),
        "requests",
        "rate_limit_exceeded",
    );
    add_headers(&mut resp, &headers);
    Err(Box::new(resp))
}

fn add_headers(resp: &mut Response, headers: &[(&'static str, String)]) {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            resp.headers_mut().insert(*k, v);
        }
    }
}

/// Text of an Anthropic content field: a string or a list of text blocks.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().filter_map(|b| b["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// The prompt text a request carries: chat messages as `role: content` lines (Anthropic's
/// `system` first, as a `system:` line).
pub(crate) fn prompt_text(req: &Value, dialect: Dialect) -> String {
    if dialect != Dialect::Completions {
        let mut lines: Vec<String> = Vec::new();
        if dialect == Dialect::Messages && !req["system"].is_null() {
            lines.push(format!("system: {}", content_text(&req["system"])));
        }
        if let Some(ms) = req["messages"].as_array() {
            lines.extend(ms.iter().map(|m| format!("{}: {}", m["role"].as_str().unwrap_or(""), content_text(&m["content"]))));
        }
        lines.join("\n")
    } else {
        match &req["prompt"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(|p| p.as_str()).collect::<Vec<_>>().join("\n"),
            _ => String::new(),
        }
    }
}

pub(crate) fn marker<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("[[{name}"))? + name.len() + 2;
    let end = text[start..].find("]]")? + start;
    Some(text[start..end].trim_start_matches(':'))
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes, dialect: Dialect) -> Response {
    shared.counters.requests.fetch_add(1, Relaxed);
    let digest = hex_digest(&body);
    let arrival = {
        let mut a = shared.counters.arrivals.lock().expect("counters lock");
        let n = a.entry(digest.clone()).or_default();
        *n += 1;
        *n
    };
    let config = shared.config.lock().expect("config lock").clone();
    let resp = respond(&shared, &config, &headers, &body, dialect, &digest, arrival).await;
    count_status(&shared, resp.status().as_u16());
    resp
}

pub(crate) fn hex_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

/// The deterministic answer to a parsed request (markers and faults aside), as the body bytes.
pub(crate) fn answer_bytes(config: &ServerConfig, dialect: Dialect, req: &Value, text: String, digest: &str) -> Vec<u8> {
    let (anthropic, chat) = (dialect == Dialect::Messages, dialect == Dialect::Chat);
    let ask = Ask {
        model: req["model"].as_str().unwrap_or("test-model").to_string(),
        prompt: text,
        n: if anthropic { 1 } else { req["n"].as_u64().unwrap_or(1).clamp(1, 128) as u32 },
        temperature: req["temperature"].as_f64().unwrap_or(1.0),
        top_p: req["top_p"].as_f64().unwrap_or(1.0),
        max_tokens: req["max_tokens"].as_u64().unwrap_or(16).clamp(1, 4096) as u32,
        stop: match &req[if anthropic { "stop_sequences" } else { "stop" }] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        },
        seed: req["seed"].as_u64().unwrap_or(0),
        top_logprobs: if anthropic {
            None
        } else if chat {
            (req["logprobs"].as_bool() == Some(true)).then(|| req["top_logprobs"].as_u64().unwrap_or(0).min(20) as u32)
        } else {
            req["logprobs"].as_u64().map(|k| k.min(20) as u32)
        },
    };
    let id = format!("{}-{}", if anthropic { "msg" } else { "cmpl" }, &digest[..24]);
    if let (Some(f), Dialect::Chat) = (&config.chat_answer, dialect) {
        let content = f(&ask.prompt);
        let body = json!({"id": id, "object": "chat.completion", "created": 0, "model": ask.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}});
        return serde_json::to_vec(&body).expect("answer serialises");
    }
    if let (Some(f), Dialect::Completions) = (&config.chat_answer, dialect) {
        let text = f(&ask.prompt);
        let body = json!({"id": id, "object": "text_completion", "created": 0, "model": ask.model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}});
        return serde_json::to_vec(&body).expect("answer serialises");
    }
    match (&config.code, dialect) {
        (_, Dialect::Messages) => serde_json::to_vec(&generate::message_body(&ask, &id)).expect("answer serialises"),
        (Some(code), Dialect::Chat) => code.chat_body(&ask, &id),
        (_, Dialect::Chat) => serde_json::to_vec(&generate::chat_body(&ask, &id)).expect("answer serialises"),
        (_, Dialect::Completions) => serde_json::to_vec(&generate::completion_body(&ask, &id)).expect("answer serialises"),
    }
}

/// Checks the credential of a request (when the server requires one) and records the header.
pub(crate) fn check_key(shared: &Shared, config: &ServerConfig, headers: &HeaderMap, dialect: Dialect) -> Result<(), Box<Response>> {
    let (name, expect): (&str, fn(&str) -> String) = match dialect {
        Dialect::Messages => ("x-api-key", |k| k.to_string()),
        _ => ("authorization", |k| format!("Bearer {k}")),
    };
    let got = headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = &config.require_key {
        if got != Some(expect(key).as_str()) {
            return Err(Box::new(error_response(dialect, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")));
        }
    }
    if let Some(a) = got {
        shared.counters.auth_headers.lock().expect("counters lock").push(a.to_string());
    }
    if dialect == Dialect::Messages && headers.get("anthropic-version").is_none() {
        return Err(Box::new(error_response(dialect, 400, "anthropic-version: header is required", "invalid_request_error", "invalid_request")));
    }
    Ok(())
}

async fn respond(shared: &Shared, config: &ServerConfig, headers: &HeaderMap, body: &Bytes, dialect: Dialect, digest: &str, arrival: u64) -> Response {
    if let Err(resp) = check_key(shared, config, headers, dialect) {
        return *resp;
    }
    let quota_headers = match take_quota(shared, config.quota_rpm, config.quota_burst, dialect) {
        Ok(h) => h,
        Err(resp) => {
            shared.counters.rate_limited.fetch_add(1, Relaxed);
            return *resp;
        }
    };
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error_response(dialect, 400, &format!("We could not parse the JSON body of your request: {e}"), "invalid_request_error", "invalid_json"),
    };
    let anthropic = dialect == Dialect::Messages;
    if anthropic && req["max_tokens"].as_u64().is_none() {
        return error_response(dialect, 400, "max_tokens: Field required", "invalid_request_error", "invalid_request");
    }
    let text = prompt_text(&req, dialect);
    if let Some(code) = marker(&text, "status").and_then(|c| c.parse::<u16>().ok()) {
        return error_response(dialect, code, &format!("injected status {code} for this prompt"), "invalid_request_error", "injected");
    }
    if marker(&text, "insufficient_quota").is_some() {
        return match anthropic {
            true => {
                error_response(dialect, 400, "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.", "", "")
            }
            false => error_response(dialect, 429, "You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota"),
        };
    }
    let overloaded = if anthropic { 529 } else { 503 };
    if let Some(n) = marker(&text, "fail-first").and_then(|c| c.parse::<u64>().ok()) {
        if arrival <= n {
            return error_response(dialect, overloaded, "injected: the engine is overloaded", "server_error", "overloaded");
        }
    }
    let fault = {
        let mut rng = shared.fault_rng.lock().expect("rng lock");
        let (u, pick) = (rng.unit(), rng.next_u64());
        let kinds: &[Fault] = if config.faults.is_empty() { &Fault::ALL } else { &config.faults };
        (u < config.fault_rate).then(|| kinds[(pick % kinds.len() as u64) as usize])
    };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let bytes = answer_bytes(config, dialect, &req, text, digest);
    let id = format!("{}-{}", if anthropic { "msg" } else { "cmpl" }, &digest[..24]);
    if let Some(f) = fault {
        shared.counters.faults.fetch_add(1, Relaxed);
        *shared.counters.faults_by_kind.lock().expect("counters lock").entry(format!("{f:?}")).or_default() += 1;
        let json_resp = |status: u16, body: Vec<u8>| {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).expect("valid status");
            r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            r
        };
        return match f {
            Fault::Status500 => error_response(dialect, 500, "injected: internal error", "server_error", "internal"),
            Fault::Status502 => json_resp(502, b"<html>502 Bad Gateway</html>".to_vec()),
            Fault::Status503 => error_response(dialect, overloaded, "injected: service unavailable", "server_error", "unavailable"),
            Fault::Slow => {
                tokio::time::sleep(config.slow_delay).await;
                json_resp(200, bytes)
            }
            Fault::Drop => {
                let stream = futures::stream::once(async { Err::<Bytes, std::io::Error>(std::io::Error::other("injected: connection dropped")) });
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                r
            }
            Fault::Malformed => json_resp(200, b"{\"id\": \"x\", \"choices\": [ {oops".to_vec()),
            Fault::Truncated => json_resp(200, bytes[..bytes.len() / 2].to_vec()),
            Fault::NoChoices if anthropic => json_resp(200, serde_json::to_vec(&json!({"id": id, "type": "message", "role": "assistant"})).expect("json")),
            Fault::NoChoices => json_resp(200, serde_json::to_vec(&json!({"id": id, "object": "chat.completion", "choices": []})).expect("json")),
        };
    }
    *shared.counters.answers.lock().expect("counters lock").entry(digest.to_string()).or_default() += 1;
    shared.counters.answered.fetch_add(1, Relaxed);
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    add_headers(&mut resp, &quota_headers);
    resp
}
