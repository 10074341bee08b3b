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
//! never depend on (or leak) a secret.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use distill_core::records::PromptRecord;

use crate::config::Sampling;

/// Which OpenAI endpoint a prompt goes to: chat for `messages`, legacy completions for `prompt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    /// Path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
        }
    }

    /// The name stored in `TeacherRecord::endpoint`.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }
}

/// A ready-to-send request.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoint: Endpoint,
    /// Canonical JSON body, sent as is.
    pub body: bytes::Bytes,
    /// Cache key (sha256, 32 bytes).
    pub key: [u8; 32],
    /// Estimated prompt tokens (bytes / 4, rounded up, plus 4 per chat message).
    pub prompt_tokens_estimate: u64,
    /// Worst-case completion tokens: `n * max_tokens`.
    pub completion_tokens_max: u64,
}

/// Builds the request for one prompt. The prompt must have passed `PromptRecord::validate`.
pub fn build(prompt: &PromptRecord, model: &str, s: &Sampling, extra: &BTreeMap<String, Value>) -> Request {
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
        }
    }
    let body = distill_core::digest::canonical_json(&Value::Object(body)).into_bytes();
    let mut h = Sha256::new();
    h.update(b"distill-teacher/v1\0");
    h.update(endpoint.path().as_bytes());
    h.update(b"\0");
    h.update(&body);
    Request { endpoint, key: h.finalize().into(), body: body.into(), prompt_tokens_estimate: estimate, completion_tokens_max: u64::from(s.n) * u64::from(s.max_tokens) }
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
}
