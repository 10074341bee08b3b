//! The `[teacher]` section of the config and its validated runtime form.
//!
//! Two layers (STYLE.md): [`TeacherConfig`] mirrors the TOML with defaults and unknown keys
//! rejected; [`TeacherConfig::settings`] checks every cross-field rule at once and produces
//! [`Settings`] with `Duration`s and resolved defaults. The key names listed in the issue are
//! relied on by scripts and must not change.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use distill_core::config::ConfigProblem;

/// `[teacher]`: where the teacher lives, how hard to call it, how to sample, and what it may cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    /// Which API the teacher speaks: `"openai"` (chat/completions and completions, also vLLM,
    /// llama.cpp, Ollama) or `"anthropic"` (the Messages API: no log-probabilities, so its
    /// records are trained on hard labels; `n` > 1 sends `n` requests).
    pub api: Api,
    /// How requests travel (teacher stage only): `"online"` (one HTTP request each, answers in
    /// seconds) or `"batch"` (the provider's batch API: OpenAI's `/files` + `/batches`,
    /// Anthropic's `/messages/batches`; about half the price, answers within 24 hours). The
    /// answers land in the same cache under the same keys either way.
    pub transport: Transport,
    /// Base URL of the OpenAI-compatible API, up to and including `/v1`
    /// (`https://api.openai.com/v1`, `http://127.0.0.1:8000/v1` for vLLM, ...).
    pub base_url: String,
    /// Model name sent in every request.
    pub model: String,
    /// Name of the environment variable holding the API key (sent only as `Authorization:
    /// Bearer`, or `x-api-key` for `api = "anthropic"`). A missing variable is fine for local
    /// servers that need no key. With `api = "anthropic"` the default `OPENAI_API_KEY` reads
    /// `ANTHROPIC_API_KEY` instead.
    pub api_key_env: String,
    /// Requests per minute the client never exceeds (0 = no limit).
    pub requests_per_minute: u32,
    /// Tokens per minute (prompt estimate + `max_tokens` x `n` reserved per request, corrected
    /// from the reported usage; 0 = no limit).
    pub tokens_per_minute: u64,
    /// Requests that may start back to back before the per-minute pacing applies
    /// (0 = one second's worth of `requests_per_minute`).
    pub burst: u32,
    /// Most requests in flight at once; halved on each 429, recovered one at a time.
    pub max_concurrency: usize,
    /// Seconds before one HTTP request is abandoned (and retried).
    pub timeout_secs: f64,
    /// Retries of one prompt after a retriable failure (429, 5xx, timeouts, bad bodies).
    pub max_retries: u32,
    /// First backoff ceiling in milliseconds; the ceiling doubles with each retry (full jitter).
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling in seconds.
    pub backoff_max_secs: f64,
    /// Answers sampled per prompt.
    pub n: u32,
    /// Sampling temperature (0 to 2).
    pub temperature: f64,
    /// Nucleus sampling mass (0 < top_p <= 1).
    pub top_p: f64,
    /// Most tokens per answer.
    pub max_tokens: u32,
    /// Stop sequences (at most 4 on OpenAI).
    pub stop: Vec<String>,
    /// Sampling seed sent to the server, when set.
    pub seed: Option<u64>,
    /// Ask for the log-probability of every sampled token.
    pub logprobs: bool,
    /// Alternatives per position with their log-probabilities (0 to 20; needs `logprobs`).
    pub top_logprobs: u32,
    /// Extra fields merged into every request body, e.g. vLLM's `prompt_logprobs`
    /// (`[teacher.extra_body]`). They are part of the cache key.
    pub extra_body: BTreeMap<String, serde_json::Value>,
    /// Folder of the response cache (a sled database).
    pub cache_dir: String,
    /// Most HTTP requests one run may send, retries included (0 = no cap).
    pub max_requests: u64,
    /// Most dollars one run may spend, counting requests in flight at their worst case
    /// (0 = no cap; needs the two prices).
    pub max_cost_usd: f64,
    /// Price of a million prompt tokens in dollars.
    pub price_input_per_mtok: f64,
    /// Price of a million completion tokens in dollars.
    pub price_output_per_mtok: f64,
    /// Fraction of the online price a batch costs (OpenAI and Anthropic: 0.5), applied to the
    /// two prices for `transport = "batch"` in budgets, dry runs and stats.
    pub batch_discount: f64,
    /// Most requests in one batch (0 = the API's limit: 50,000 OpenAI, 100,000 Anthropic).
    pub batch_max_requests: u64,
    /// Most bytes of one batch's input (0 = the API's limit: 200 MB OpenAI, 256 MB Anthropic).
    pub batch_max_bytes: u64,
    /// Seconds between two looks at the batches in flight.
    pub batch_poll_secs: f64,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        TeacherConfig {
            api: Api::Openai,
            base_url: "http://127.0.0.1:8080/v1".into(),
            model: "teacher".into(),
            api_key_env: "OPENAI_API_KEY".into(),
            requests_per_minute: 500,
            tokens_per_minute: 0,
            burst: 0,
            max_concurrency: 16,
            timeout_secs: 120.0,
            max_retries: 8,
            backoff_base_ms: 500,
            backoff_max_secs: 60.0,
            n: 1,
            temperature: 0.7,
            top_p: 1.0,
            max_tokens: 512,
            stop: Vec::new(),
            seed: None,
            logprobs: true,
            top_logprobs: 5,
            extra_body: BTreeMap::new(),
            cache_dir: "teacher-cache".into(),
            max_requests: 0,
            max_cost_usd: 0.0,
            price_input_per_mtok: 0.0,
            price_output_per_mtok: 0.0,
            transport: Transport::Online,
            batch_discount: 0.5,
            batch_max_requests: 0,
            batch_max_bytes: 0,
            batch_poll_secs: 60.0,
        }
    }
}

/// How requests travel (`[teacher] transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Online,
    Batch,
}

/// The API the teacher speaks (`[teacher] api`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI-compatible: `/chat/completions` and `/completions`, `Authorization: Bearer`.
    #[default]
    Openai,
    /// Anthropic's Messages API: `/messages`, `x-api-key` and `anthropic-version`.
    Anthropic,
}

/// The API version header Anthropic requires on every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// What one request asks the model for (the sampling part of the cache key).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub n: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    pub logprobs: bool,
    pub top_logprobs: u32,
}

/// The validated, runtime form of [`TeacherConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: Api,
    /// Base URL without a trailing slash.
    pub base_url: String,
    pub model: String,
    pub api_key_env: String,
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    /// Resolved: at least 1 when `requests_per_minute` > 0.
    pub burst: u32,
    pub max_concurrency: usize,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub sampling: Sampling,
    pub extra_body: BTreeMap<String, serde_json::Value>,
    pub cache_dir: std::path::PathBuf,
    pub max_requests: u64,
    pub max_cost_usd: f64,
    pub price_input_per_mtok: f64,
    pub price_output_per_mtok: f64,
    pub transport: Transport,
    pub batch_discount: f64,
    /// Resolved: the API's limit when the config says 0.
    pub batch_max_requests: u64,
    pub batch_max_bytes: u64,
    pub batch_poll: Duration,
}

impl Settings {
    /// The prices of one million prompt and completion tokens as this transport pays them.
    pub fn prices(&self) -> (f64, f64) {
        let f = if self.transport == Transport::Batch { self.batch_discount } else { 1.0 };
        (self.price_input_per_mtok * f, self.price_output_per_mtok * f)
    }
}

/// Request-body fields the client sets itself; `extra_body` may not override them (that would
/// make the cache key lie about what was asked).
const RESERVED: &[&str] =
    &["model", "messages", "prompt", "n", "temperature", "top_p", "max_tokens", "stop", "seed", "logprobs", "top_logprobs", "stream", "system", "stop_sequences"];

impl TeacherConfig {
    /// The keys that decide what the answers are, not how fast or at what cost they arrive:
    /// the teacher's part of stage fingerprints, so tuning rate limits never makes the data
    /// downstream stale.
    pub fn fingerprint_section(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("the teacher config serialises");
        if let serde_json::Value::Object(map) = &mut v {
            // The default API is left out, so fingerprints made before the key existed hold.
            if self.api == Api::Openai {
                map.remove("api");
            }
            for key in [
                "requests_per_minute",
                "tokens_per_minute",
                "burst",
                "max_concurrency",
                "timeout_secs",
                "max_retries",
                "backoff_base_ms",
                "backoff_max_secs",
                "cache_dir",
                "api_key_env",
                "price_input_per_mtok",
                "price_output_per_mtok",
                "transport",
                "batch_discount",
                "batch_max_requests",
                "batch_max_bytes",
                "batch_poll_secs",
            ] {
                map.remove(key);
            }
        }
        v
    }

    /// Checks every rule and returns all problems at once; `file` names the config in messages.
    pub fn settings(&self, file: &str) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem { file: file.to_string(), line: None, key: format!("teacher.{key}"), message: format!("[teacher] {key}: {message}") })
        };
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bad("base_url", format!("'{}' is not an http(s) URL; use e.g. \"https://api.openai.com/v1\"", self.base_url));
        }
        if self.model.trim().is_empty() {
            bad("model", "is empty; name the teacher model".into());
        }
        if self.api_key_env.trim().is_empty() {
            bad("api_key_env", "is empty; name an environment variable (default OPENAI_API_KEY)".into());
        }
        if self.max_concurrency == 0 {
            bad("max_concurrency", "must be at least 1".into());
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            bad("timeout_secs", format!("must be a positive number of seconds, not {}", self.timeout_secs));
        }
        if !(self.backoff_max_secs.is_finite() && self.backoff_max_secs > 0.0) {
            bad("backoff_max_secs", "must be a positive number of seconds".into());
        }
        if self.n == 0 {
            bad("n", "must be at least 1".into());
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            bad("temperature", format!("{} is outside 0..=2", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bad("top_p", format!("{} is outside (0, 1]", self.top_p));
        }
        if self.max_tokens == 0 {
            bad("max_tokens", "must be at least 1".into());
        }
        if self.top_logprobs > 20 {
            bad("top_logprobs", format!("{} is more than 20, the most any OpenAI-compatible server returns", self.top_logprobs));
        }
        if self.top_logprobs > 0 && !self.logprobs {
            bad("top_logprobs", "needs logprobs = true".into());
        }
        for (k, v) in [("max_cost_usd", self.max_cost_usd), ("price_input_per_mtok", self.price_input_per_mtok), ("price_output_per_mtok", self.price_output_per_mtok)] {
            if !(v.is_finite() && v >= 0.0) {
                bad(k, format!("{v} must be a non-negative number"));
            }
        }
        if self.max_cost_usd > 0.0 && self.price_input_per_mtok == 0.0 && self.price_output_per_mtok == 0.0 {
            bad("max_cost_usd", "a cost cap needs price_input_per_mtok and price_output_per_mtok".into());
        }
        for k in self.extra_body.keys() {
            if RESERVED.contains(&k.as_str()) {
                bad("extra_body", format!("'{k}' is set by the client; use the [teacher] key of that name instead"));
            }
        }
        if self.api == Api::Anthropic && self.temperature > 1.0 {
            bad("temperature", format!("{} is outside 0..=1, Anthropic's range", self.temperature));
        }
        if !(self.batch_discount.is_finite() && self.batch_discount > 0.0 && self.batch_discount <= 1.0) {
            bad("batch_discount", format!("{} is outside (0, 1]; it is the fraction of the online price a batch costs (0.5 = half)", self.batch_discount));
        }
        if !(self.batch_poll_secs.is_finite() && self.batch_poll_secs > 0.0) {
            bad("batch_poll_secs", "must be a positive number of seconds".into());
        }
        if self.cache_dir.trim().is_empty() {
            bad("cache_dir", "is empty; name a folder (default \"teacher-cache\")".into());
        }
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        let burst = match (self.burst, self.requests_per_minute) {
            (0, rpm) => (rpm / 60).max(1),
            (b, _) => b,
        };
        let api_key_env = match self.api {
            Api::Anthropic if self.api_key_env == TeacherConfig::default().api_key_env => "ANTHROPIC_API_KEY".to_string(),
            _ => self.api_key_env.clone(),
        };
        Ok(Settings {
            api: self.api,
            base_url: base.to_string(),
            model: self.model.clone(),
            api_key_env,
            requests_per_minute: self.requests_per_minute,
            tokens_per_minute: self.tokens_per_minute,
            burst,
            max_concurrency: self.max_concurrency,
            timeout: Duration::from_secs_f64(self.timeout_secs),
            max_retries: self.max_retries,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_secs_f64(self.backoff_max_secs),
            sampling: Sampling {
                n: self.n,
                temperature: self.temperature,
                top_p: self.top_p,
                max_tokens: self.max_tokens,
                stop: self.stop.clone(),
                seed: self.seed,
                logprobs: self.logprobs,
                top_logprobs: self.top_logprobs,
            },
            extra_body: self.extra_body.clone(),
            cache_dir: self.cache_dir.clone().into(),
            max_requests: self.max_requests,
            max_cost_usd: self.max_cost_usd,
            price_input_per_mtok: self.price_input_per_mtok,
            price_output_per_mtok: self.price_output_per_mtok,
            transport: self.transport,
            batch_discount: self.batch_discount,
            batch_max_requests: match (self.batch_max_requests, self.api) {
                (0, Api::Openai) => 50_000,
                (0, Api::Anthropic) => 100_000,
                (n, _) => n,
            },
            batch_max_bytes: match (self.batch_max_bytes, self.api) {
                (0, Api::Openai) => 200_000_000,
                (0, Api::Anthropic) => 256_000_000,
                (n, _) => n,
            },
            batch_poll: Duration::from_secs_f64(self.batch_poll_secs),
        })
    }
}

/// Per-batch changes to the configured sampling (the evaluator's stop sequences, a prompt
/// generator's temperature). Every field left `None` keeps the config's value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    pub n: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub stop: Option<Vec<String>>,
    pub seed: Option<Option<u64>>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
}

impl SamplingOverrides {
    /// The sampling for one batch; errors name the override that is out of range.
    pub fn apply(&self, base: &Sampling) -> distill_core::Result<Sampling> {
        let s = Sampling {
            n: self.n.unwrap_or(base.n),
            temperature: self.temperature.unwrap_or(base.temperature),
            top_p: self.top_p.unwrap_or(base.top_p),
            max_tokens: self.max_tokens.unwrap_or(base.max_tokens),
            stop: self.stop.clone().unwrap_or_else(|| base.stop.clone()),
            seed: self.seed.unwrap_or(base.seed),
            logprobs: self.logprobs.unwrap_or(base.logprobs),
            top_logprobs: match (self.top_logprobs, self.logprobs) {
                (Some(k), _) => k,
                (None, Some(false)) => 0,
                (None, _) => base.top_logprobs,
            },
        };
        let bad = |what: &str| Err(distill_core::Error::Usage(format!("teacher sampling override: {what}")));
        if s.n == 0 {
            return bad("n must be at least 1");
        }
        if !(0.0..=2.0).contains(&s.temperature) {
            return bad("temperature must be within 0..=2");
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return bad("top_p must be within (0, 1]");
        }
        if s.max_tokens == 0 {
            return bad("max_tokens must be at least 1");
        }
        if s.top_logprobs > 20 || (s.top_logprobs > 0 && !s.logprobs) {
            return bad("top_logprobs must be 0..=20 and needs logprobs");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_keeps_what_decides_the_answers_and_drops_speed_and_cost() {
        let base = TeacherConfig::default();
        let faster = TeacherConfig { requests_per_minute: 9_000, max_concurrency: 128, price_input_per_mtok: 3.0, cache_dir: "elsewhere".into(), ..base.clone() };
        assert_eq!(base.fingerprint_section(), faster.fingerprint_section());
        let hotter = TeacherConfig { temperature: base.temperature + 0.5, ..base.clone() };
        assert_ne!(base.fingerprint_section(), hotter.fingerprint_section());
        let other = TeacherConfig { model: "another-model".into(), ..base.clone() };
        assert_ne!(base.fingerprint_section(), other.fingerprint_section());
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let cfg = TeacherConfig { base_url: "api.openai.com".into(), n: 0, top_logprobs: 21, max_cost_usd: 5.0, ..Default::default() };
        let err = cfg.settings("run.toml").unwrap_err();
        let text = err.to_string();
        for key in ["base_url", "[teacher] n:", "top_logprobs", "max_cost_usd"] {
            assert!(text.contains(key), "{key} missing from: {text}");
        }
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_toml_keys_are_the_documented_names() {
        let text = "[teacher]\nbase_url = \"http://h/v1/\"\nmodel = \"m\"\napi_key_env = \"K\"\nrequests_per_minute = 120\n\
                    tokens_per_minute = 1000\nmax_concurrency = 4\ntimeout_secs = 5\nmax_retries = 2\nn = 3\ntemperature = 0.2\n\
                    top_p = 0.9\nmax_tokens = 64\ntop_logprobs = 20\ncache_dir = \"c\"\nmax_requests = 9\nmax_cost_usd = 1.5\n\
                    price_input_per_mtok = 2.5\nprice_output_per_mtok = 10\n[teacher.extra_body]\nprompt_logprobs = 1\n";
        #[derive(Deserialize)]
        struct Doc {
            teacher: TeacherConfig,
        }
        let doc: Doc = distill_core::config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let s = doc.teacher.settings("t.toml").unwrap();
        assert_eq!(s.base_url, "http://h/v1");
        assert_eq!(s.burst, 2);
        assert_eq!(s.sampling.n, 3);
        assert_eq!(s.extra_body["prompt_logprobs"], serde_json::json!(1));
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let base = TeacherConfig::default().settings("x").unwrap().sampling;
        let o = SamplingOverrides { temperature: Some(0.0), stop: Some(vec!["\ndef".into()]), logprobs: Some(false), ..Default::default() };
        let s = o.apply(&base).unwrap();
        assert_eq!((s.temperature, s.top_logprobs, s.logprobs, s.n), (0.0, 0, false, base.n));
        assert_eq!(s.stop, vec!["\ndef".to_string()]);
        assert!(SamplingOverrides { n: Some(0), ..Default::default() }.apply(&base).is_err());
    }
}
