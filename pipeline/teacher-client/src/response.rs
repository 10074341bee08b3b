//! Lenient parsing of chat and completions responses.
//!
//! Servers differ: vLLM, llama.cpp and Ollama omit `top_logprobs` inside token entries, send
//! `null` log-probabilities, invent finish reasons, leave out `usage`, or ignore `n`. Every
//! field here therefore has a default and finish reasons are kept as strings. What is *not*
//! accepted is a body that is not JSON or has no choices: the caller retries those.
//!
//! Shapes:
//! - chat: `choices[i].message.content`, `choices[i].logprobs.content[t] = {token, logprob,
//!   bytes?, top_logprobs?: [{token, logprob, bytes?}]}`
//! - completions: `choices[i].text`, `choices[i].logprobs = {tokens[t], token_logprobs[t],
//!   top_logprobs[t]: {token: logprob}}` (no bytes; alternatives sorted by log-prob, highest
//!   first, ties by token text so the order is deterministic)

use std::collections::BTreeMap;

use serde::Deserialize;

use distill_core::records::{TeacherSample, TokenLogprob, TopLogprob, Usage};

/// The floor OpenAI itself uses for "probability zero"; JSON has no -inf.
const LOGPROB_FLOOR: f32 = -9999.0;

#[derive(Debug, Default, Deserialize)]
struct RawResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<RawChoice>>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct RawChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<RawMessage>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    logprobs: Option<RawLogprobs>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMessage {
    #[serde(default)]
    content: Option<String>,
}

/// Legacy completions' alternatives at one position: `{token: logprob}` (either may be null).
type TopMap = Option<BTreeMap<String, Option<f32>>>;

/// Both logprob layouts in one struct: chat fills `content`, completions the three lists.
#[derive(Debug, Default, Deserialize)]
struct RawLogprobs {
    #[serde(default)]
    content: Option<Vec<RawToken>>,
    #[serde(default)]
    tokens: Option<Vec<String>>,
    #[serde(default)]
    token_logprobs: Option<Vec<Option<f32>>>,
    #[serde(default)]
    top_logprobs: Option<Vec<TopMap>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawToken {
    #[serde(default)]
    token: String,
    #[serde(default)]
    logprob: Option<f32>,
    #[serde(default)]
    bytes: Option<Vec<u8>>,
    #[serde(default)]
    top_logprobs: Option<Vec<RawTop>>,
}

#[derive(Debug, Default, Deserialize)]
struct RawTop {
    #[serde(default)]
    token: String,
    #[serde(default)]
    logprob: Option<f32>,
    #[serde(default)]
    bytes: Option<Vec<u8>>,
}

/// A usable answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The model the server says answered, when it says.
    pub model: Option<String>,
    /// One per choice, in `index` order.
    pub samples: Vec<TeacherSample>,
    /// `None` when the server reported no usage.
    pub usage: Option<Usage>,
}

/// Why a 2xx body is unusable (both are retried).
#[derive(Debug, Clone, PartialEq)]
pub enum BadBody {
    /// Not JSON, or cut short.
    Malformed(String),
    /// JSON without any choice.
    NoChoices,
}

/// Parses a 2xx body.
pub fn parse(body: &[u8]) -> Result<Parsed, BadBody> {
    let raw: RawResponse = serde_json::from_slice(body).map_err(|e| BadBody::Malformed(e.to_string()))?;
    let mut choices = raw.choices.unwrap_or_default();
    if choices.is_empty() {
        return Err(BadBody::NoChoices);
    }
    choices.sort_by_key(|c| c.index.unwrap_or(0));
    let samples = choices.into_iter().map(sample).collect();
    let usage = raw.usage.map(|u| Usage { prompt_tokens: u.prompt_tokens.unwrap_or(0), completion_tokens: u.completion_tokens.unwrap_or(0) });
    Ok(Parsed { model: raw.model, samples, usage })
}

fn sample(c: RawChoice) -> TeacherSample {
    let text = c.message.and_then(|m| m.content).or(c.text).unwrap_or_default();
    let tokens = c.logprobs.and_then(tokens);
    TeacherSample { text, finish_reason: c.finish_reason, tokens }
}

fn tokens(lp: RawLogprobs) -> Option<Vec<TokenLogprob>> {
    if let Some(content) = lp.content {
        return Some(
            content
                .into_iter()
                .map(|t| TokenLogprob {
                    token: t.token,
                    bytes: t.bytes,
                    logprob: t.logprob.unwrap_or(LOGPROB_FLOOR),
                    top: t
                        .top_logprobs
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| TopLogprob { token: a.token, bytes: a.bytes, logprob: a.logprob.unwrap_or(LOGPROB_FLOOR) })
                        .collect(),
                })
                .collect(),
        );
    }
    let toks = lp.tokens?;
    let lps = lp.token_logprobs.unwrap_or_default();
    let tops = lp.top_logprobs.unwrap_or_default();
    Some(
        toks.into_iter()
            .enumerate()
            .map(|(i, token)| {
                let mut top: Vec<TopLogprob> = tops
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(token, lp)| TopLogprob { token, bytes: None, logprob: lp.unwrap_or(LOGPROB_FLOOR) })
                    .collect();
                top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob).then_with(|| a.token.cmp(&b.token)));
                TokenLogprob { token, bytes: None, logprob: lps.get(i).copied().flatten().unwrap_or(LOGPROB_FLOOR), top }
            })
            .collect(),
    )
}

#[derive(Debug, Default, Deserialize)]
struct RawMessageResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Option<Vec<RawBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<RawMessageUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct RawBlock {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawMessageUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// The finish reason of an Anthropic `stop_reason`, in OpenAI's words where there is one:
/// `end_turn` and `stop_sequence` are `stop`, `max_tokens` is `length`; others are kept.
pub fn anthropic_finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop".into(),
        "max_tokens" => "length".into(),
        other => other.into(),
    }
}

/// Parses a 2xx body of Anthropic's Messages API: one sample (the text blocks joined), no
/// log-probabilities. A body without `content` is [`BadBody::NoChoices`].
pub fn parse_message(body: &[u8]) -> Result<Parsed, BadBody> {
    let raw: RawMessageResponse = serde_json::from_slice(body).map_err(|e| BadBody::Malformed(e.to_string()))?;
    let blocks = raw.content.ok_or(BadBody::NoChoices)?;
    let text: String = blocks.into_iter().filter(|b| b.kind.as_deref().is_none_or(|k| k == "text")).filter_map(|b| b.text).collect();
    let sample = TeacherSample { text, finish_reason: raw.stop_reason.as_deref().map(anthropic_finish_reason), tokens: None };
    let usage = raw.usage.map(|u| Usage { prompt_tokens: u.input_tokens.unwrap_or(0), completion_tokens: u.output_tokens.unwrap_or(0) });
    Ok(Parsed { model: raw.model, samples: vec![sample], usage })
}

/// The answers of several requests for one prompt (Anthropic's `n` samples) as one: samples in
/// order, usage summed (absent when any part reported none).
pub fn merge(parts: Vec<Parsed>) -> Parsed {
    let mut it = parts.into_iter();
    let mut first = it.next().unwrap_or(Parsed { model: None, samples: Vec::new(), usage: None });
    for p in it {
        first.samples.extend(p.samples);
        first.usage = match (first.usage, p.usage) {
            (Some(a), Some(b)) => Some(Usage { prompt_tokens: a.prompt_tokens + b.prompt_tokens, completion_tokens: a.completion_tokens + b.completion_tokens }),
            _ => None,
        };
    }
    first
}

/// The server's error message from an error body (`{"error": {"message", "code", "type"}}`,
/// Anthropic's `{"type": "error", "error": {"type", "message"}}`,
/// `{"error": "text"}`, `{"detail": ...}` or plain text), and the code or type when given.
pub fn error_message(body: &[u8]) -> (String, Option<String>) {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (text.chars().take(500).collect(), None);
    };
    let err = v.get("error").unwrap_or(&v);
    let message = match err {
        serde_json::Value::String(s) => s.clone(),
        _ => err
            .get("message")
            .or_else(|| err.get("detail"))
            .map(|m| m.as_str().map(str::to_string).unwrap_or_else(|| m.to_string()))
            .unwrap_or_else(|| text.chars().take(500).collect()),
    };
    let code = ["code", "type"].iter().find_map(|k| err.get(*k).and_then(|c| c.as_str()).map(str::to_string));
    (message, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_with_missing_top_logprobs_and_odd_finish_reasons_parses() {
        let body = br#"{"model":"m","choices":[
            {"index":1,"message":{"content":"b"},"finish_reason":"eos_token","logprobs":{"content":[{"token":"b","logprob":null}]}},
            {"index":0,"message":{"role":"assistant","content":"a"},"finish_reason":"stop","logprobs":{"content":[
                {"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[{"token":"a","logprob":-0.5},{"token":"c","logprob":-1.5,"bytes":[99]}]}]}}]}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.usage, None);
        assert_eq!(p.samples[0].text, "a");
        let t = &p.samples[0].tokens.as_ref().unwrap()[0];
        assert_eq!((t.logprob, t.bytes.as_deref(), t.top.len()), (-0.5, Some(&b"a"[..]), 2));
        assert_eq!(p.samples[1].finish_reason.as_deref(), Some("eos_token"));
        assert_eq!(p.samples[1].tokens.as_ref().unwrap()[0].logprob, LOGPROB_FLOOR);
        assert!(p.samples[1].tokens.as_ref().unwrap()[0].top.is_empty());
    }

    #[test]
    fn legacy_completions_logprobs_are_sorted() {
        let body = br#"{"choices":[{"text":"x y","finish_reason":"length","logprobs":{"tokens":["x"," y"],
            "token_logprobs":[-0.1,-0.2],"top_logprobs":[{"z":-3.0,"x":-0.1},null]}}],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
        let p = parse(body).unwrap();
        let toks = p.samples[0].tokens.as_ref().unwrap();
        assert_eq!(toks[0].top.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(), vec!["x", "z"]);
        assert!(toks[1].top.is_empty());
        assert_eq!(p.usage, Some(Usage { prompt_tokens: 3, completion_tokens: 2 }));
    }

    #[test]
    fn unusable_bodies_are_told_apart() {
        assert_eq!(parse(br#"{"choices":[]}"#), Err(BadBody::NoChoices));
        assert_eq!(parse(br#"{"object":"chat.completion"}"#), Err(BadBody::NoChoices));
        assert!(matches!(parse(br#"{"choices":[{"text":"#), Err(BadBody::Malformed(_))));
    }

    #[test]
    fn anthropic_messages_parse_and_their_stop_reasons_map() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"def f"},{"type":"text","text":"(): pass"}],
            "stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":7}}"#;
        let p = parse_message(body).unwrap();
        assert_eq!((p.samples[0].text.as_str(), p.samples[0].finish_reason.as_deref(), p.samples[0].tokens.is_none()), ("def f(): pass", Some("length"), true));
        assert_eq!(p.usage, Some(Usage { prompt_tokens: 12, completion_tokens: 7 }));
        for (raw, ours) in [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("refusal", "refusal")] {
            assert_eq!(anthropic_finish_reason(raw), ours);
        }
        assert_eq!(parse_message(br#"{"type":"message"}"#), Err(BadBody::NoChoices));
        let two = merge(vec![p.clone(), p.clone()]);
        assert_eq!((two.samples.len(), two.usage), (2, Some(Usage { prompt_tokens: 24, completion_tokens: 14 })));
        let (m, c) = error_message(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
        assert_eq!((m.as_str(), c.as_deref()), ("Overloaded", Some("overloaded_error")));
    }

    #[test]
    fn error_messages_come_out_of_every_shape() {
        let (m, c) = error_message(br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#);
        assert_eq!((m.as_str(), c.as_deref()), ("too long", Some("context_length_exceeded")));
        assert_eq!(error_message(br#"{"error":"nope"}"#).0, "nope");
        assert_eq!(error_message(b"Bad Gateway").0, "Bad Gateway");
    }
}
