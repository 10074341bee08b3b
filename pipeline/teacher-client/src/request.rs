//! Building one request and its cache key.
//!
//! The body is built as a JSON object and serialised once in canonical form (sorted keys,
//! compact; see `distill_core::digest`). Those exact bytes are both sent and hashed, so the
//! key can never disagree with what was asked. The key is
//!
//! ```text
//! sha256("distill-teacher/v1\0" ‖ endpoint path ‖ "\0" ‖ canonical body)
//! ```
//!
//! where the body holds the model, the messages or prompt, every sampling parameter, `n`, the
//! logprob settings and any `extra_body` fields. The base URL and the API key are not part of
//! it: the same request to a mirror of the same model is the same request, and the key must
//! never depend on (or leak) a secret. The transport is not part of it either: a request sent
//! in a batch has exactly this body, so its answer is stored under this key.
//!
//! Anthropic (`api = "anthropic"`, endpoint `messages`) has no `n`: a prompt with `n` samples
//! is `n` requests of the same body, sample `i` under the key
//!
//! ```text
//! sha256("distill-teacher/v1\0" ‖ "messages" ‖ "\0" ‖ canonical body ‖ "\0sample\0" ‖ i)
//! ```
//!
//! (`i` in decimal), so the keys are distinct, stable, and independent of `n`: raising `n`
//! from 2 to 4 sends only samples 2 and 3.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use distill_core::records::PromptRecord;

use crate::config::{Api, Sampling};

/// Which OpenAI endpoint a prompt goes to: chat for `messages`, legacy completions for `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    /// Anthropic's Messages API.
    Messages,
}

impl Endpoint {
    /// Path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Messages => "messages",
        }
    }

    /// The name stored in `TeacherRecord::endpoint`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Messages => "messages",
        }
    }
}

/// A ready-to-send request.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoint: Endpoint,
    /// Canonical JSON body, sent as is.
    pub body: bytes::Bytes,
    /// The request's identity within a run (prompts with equal keys share one answer). For a
    /// request of one part it is that part's cache key.
    pub key: [u8; 32],
    /// Cache key of each HTTP request the answer takes (sha256, 32 bytes): one for OpenAI,
    /// `n` for Anthropic (see the module docs).
    pub parts: Vec<[u8; 32]>,
    /// Estimated prompt tokens of one HTTP request (bytes / 4, rounded up, plus 4 per chat
    /// message).
    pub prompt_tokens_estimate: u64,
    /// Worst-case completion tokens of one HTTP request: `n * max_tokens` (OpenAI) or
    /// `max_tokens` (Anthropic).
    pub completion_tokens_max: u64,
}

fn digest(endpoint: Endpoint, body: &[u8], suffix: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"distill-teacher/v1\0");
    h.update(endpoint.path().as_bytes());
    h.update(b"\0");
    h.update(body);
    h.update(suffix);
    h.finalize().into()
}

/// The cache key of sample `i` of an Anthropic request body.
pub fn anthropic_part_key(body: &[u8], i: u32) -> [u8; 32] {
    digest(Endpoint::Messages, body, format!("\0sample\0{i}").as_bytes())
}

/// Builds the OpenAI request for one prompt (see [`build_for`]).
pub fn build(prompt: &PromptRecord, model: &str, s: &Sampling, extra: &BTreeMap<String, Value>) -> Request {
    build_for(Api::Openai, prompt, model, s, extra)
}

/// Builds the request for one prompt in the dialect of `api`. The prompt must have passed
/// `PromptRecord::validate`.
pub fn build_for(api: Api, prompt: &PromptRecord, model: &str, s: &Sampling, extra: &BTreeMap<String, Value>) -> Request {
    if api == Api::Anthropic {
        return build_anthropic(prompt, model, s, extra);
    }
    let mut body = Map::new();
    for (k, v) in extra {
        body.insert(k.clone(), v.clone());
    }
    body.insert("model".into(), json!(model));
    let (endpoint, estimate) = match (&prompt.messages, &prompt.prompt) {
        (Some(messages), _) => {
            let list: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
            body.insert("messages".into(), Value::Array(list));
            let est = messages.iter().map(|m| m.content.len().div_ceil(4) as u64 + 4).sum();
            (Endpoint::Chat, est)
        }
        (None, text) => {
            let text = text.as_deref().unwrap_or_default();
            body.insert("prompt".into(), json!(text));
            (Endpoint::Completions, text.len().div_ceil(4) as u64)
        }
    };
    body.insert("n".into(), json!(s.n));
    body.insert("temperature".into(), json!(s.temperature));
    body.insert("top_p".into(), json!(s.top_p));
    body.insert("max_tokens".into(), json!(s.max_tokens));
    if !s.stop.is_empty() {
        body.insert("stop".into(), json!(s.stop));
    }
    if let Some(seed) = s.seed {
        body.insert("seed".into(), json!(seed));
    }
    if s.logprobs {
        match endpoint {
            // Chat: a boolean plus the number of alternatives.
            Endpoint::Chat => {
                body.insert("logprobs".into(), json!(true));
                if s.top_logprobs > 0 {
                    body.insert("top_logprobs".into(), json!(s.top_logprobs));
                }
            }
            // Legacy completions: `logprobs` is the number of alternatives (0 = sampled token only).
            Endpoint::Completions => {
                body.insert("logprobs".into(), json!(s.top_logprobs));
            }
            Endpoint::Messages => unreachable!("OpenAI requests are chat or completions"),
        }
    }
    let body = distill_core::digest::canonical_json(&Value::Object(body)).into_bytes();
    let key = digest(endpoint, &body, b"");
    Request { endpoint, key, parts: vec![key], body: body.into(), prompt_tokens_estimate: estimate, completion_tokens_max: u64::from(s.n) * u64::from(s.max_tokens) }
}

/// Anthropic's Messages API: system messages go to `system` (joined by a blank line), the
/// rest to `messages`; a completion prompt becomes one user message. `max_tokens` is always
/// sent (it is required), `top_p` only when below 1 (recent models refuse both it and
/// `temperature`), `stop` as `stop_sequences`. There is no `n`, `seed` or log-probabilities.
fn build_anthropic(prompt: &PromptRecord, model: &str, s: &Sampling, extra: &BTreeMap<String, Value>) -> Request {
    let mut body = Map::new();
    for (k, v) in extra {
        body.insert(k.clone(), v.clone());
    }
    body.insert("model".into(), json!(model));
    let (mut system, mut list, mut estimate) = (Vec::new(), Vec::new(), 0u64);
    match (&prompt.messages, &prompt.prompt) {
        (Some(messages), _) => {
            for m in messages {
                estimate += m.content.len().div_ceil(4) as u64 + 4;
                if m.role == "system" {
                    system.push(m.content.as_str());
                } else {
                    list.push(json!({"role": m.role, "content": m.content}));
                }
            }
        }
        (None, text) => {
            let text = text.as_deref().unwrap_or_default();
            estimate += text.len().div_ceil(4) as u64 + 4;
            list.push(json!({"role": "user", "content": text}));
        }
    }
    body.insert("messages".into(), Value::Array(list));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("max_tokens".into(), json!(s.max_tokens));
    body.insert("temperature".into(), json!(s.temperature));
    if s.top_p < 1.0 {
        body.insert("top_p".into(), json!(s.top_p));
    }
    if !s.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(s.stop));
    }
    let body = distill_core::digest::canonical_json(&Value::Object(body)).into_bytes();
    let parts: Vec<[u8; 32]> = (0..s.n).map(|i| anthropic_part_key(&body, i)).collect();
    let key = if s.n == 1 { parts[0] } else { digest(Endpoint::Messages, &body, format!("\0n\0{}", s.n).as_bytes()) };
    Request { endpoint: Endpoint::Messages, key, parts, body: body.into(), prompt_tokens_estimate: estimate, completion_tokens_max: u64::from(s.max_tokens) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TeacherConfig;

    fn chat(id: &str, text: &str) -> PromptRecord {
        serde_json::from_value(json!({"id": id, "messages": [{"role": "user", "content": text}], "meta": {"x": 1}})).unwrap()
    }

    #[test]
    fn the_key_covers_the_request_and_nothing_else() {
        let s = TeacherConfig::default().settings("x").unwrap().sampling;
        let none = BTreeMap::new();
        let a = build(&chat("a", "hello"), "m", &s, &none);
        // The id and meta are not part of what the teacher sees.
        let b = build(&chat("b", "hello"), "m", &s, &none);
        assert_eq!(a.key, b.key);
        assert_eq!(a.body, b.body);
        let hotter = Sampling { temperature: 0.9, ..s.clone() };
        assert_ne!(build(&chat("a", "hello"), "m", &hotter, &none).key, a.key);
        assert_ne!(build(&chat("a", "hello!"), "m", &s, &none).key, a.key);
        assert_ne!(build(&chat("a", "hello"), "m2", &s, &none).key, a.key);
        let extra = BTreeMap::from([("prompt_logprobs".to_string(), json!(1))]);
        assert_ne!(build(&chat("a", "hello"), "m", &s, &extra).key, a.key);
        let body: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["logprobs"], json!(true));
        assert_eq!(body["top_logprobs"], json!(5));
        assert_eq!(a.endpoint, Endpoint::Chat);
    }

    #[test]
    fn completions_use_an_integer_logprobs() {
        let s = TeacherConfig::default().settings("x").unwrap().sampling;
        let p: PromptRecord = serde_json::from_value(json!({"id": "c", "prompt": "def f():"})).unwrap();
        let r = build(&p, "m", &s, &BTreeMap::new());
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(r.endpoint, Endpoint::Completions);
        assert_eq!(body["logprobs"], json!(5));
        assert_eq!(body["prompt"], json!("def f():"));
        assert_eq!(r.completion_tokens_max, 512);
    }

    #[test]
    fn anthropic_requests_map_the_system_prompt_and_have_one_stable_key_per_sample() {
        let s = Sampling { n: 3, stop: vec!["\ndef".into()], ..TeacherConfig::default().settings("x").unwrap().sampling };
        let p: PromptRecord = serde_json::from_value(json!({"id": "a", "messages": [
            {"role": "system", "content": "You write Python."}, {"role": "user", "content": "add"}]}))
        .unwrap();
        let none = BTreeMap::new();
        let r = build_for(Api::Anthropic, &p, "claude", &s, &none);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["system"], json!("You write Python."));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "add"}]));
        assert_eq!((body["max_tokens"].clone(), body["stop_sequences"].clone()), (json!(512), json!(["\ndef"])));
        for absent in ["n", "logprobs", "top_logprobs", "top_p", "stop", "seed"] {
            assert!(body.get(absent).is_none(), "{absent} was sent");
        }
        assert_eq!((r.endpoint, r.parts.len(), r.completion_tokens_max), (Endpoint::Messages, 3, 512));
        // Distinct per sample, stable, and independent of n: n = 2 shares the first two.
        let distinct: std::collections::HashSet<_> = r.parts.iter().collect();
        assert_eq!(distinct.len(), 3);
        let two = build_for(Api::Anthropic, &p, "claude", &Sampling { n: 2, ..s.clone() }, &none);
        assert_eq!(two.parts[..], r.parts[..2]);
        assert_ne!(two.key, r.key);
        let one = build_for(Api::Anthropic, &p, "claude", &Sampling { n: 1, ..s.clone() }, &none);
        assert_eq!((one.key, one.parts[0]), (r.parts[0], r.parts[0]));
        // Never equal to the OpenAI key of the same prompt.
        assert_ne!(build(&p, "claude", &s, &none).key, r.parts[0]);
    }
}
