//! Request bodies of `/v1/chat/completions` and `/v1/completions` as OpenAI documents them,
//! and their checked form [`GenRequest`].
//!
//! Parsing is lenient where servers usually are (unknown fields such as vLLM's
//! `prompt_logprobs` are ignored, `stop` may be a string or a list, chat `content` a string or
//! a list of text parts, `seed` any integer) and strict about values: every out-of-range value
//! is a 400 naming its `param`, as OpenAI does.

use serde::Deserialize;
use serde_json::Value;

use crate::api_error::ApiError;
use crate::sample::Sampling;

/// Most alternatives per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most choices per request.
pub const MAX_N: u32 = 128;
/// Most stop strings (OpenAI's limit).
pub const MAX_STOPS: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Value>,
}

#[derive(Debug, Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling fields shared by both endpoints.
#[derive(Debug, Deserialize)]
pub struct Common {
    pub model: String,
    pub n: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stop: Option<OneOrMany>,
    pub seed: Option<serde_json::Number>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(flatten)]
    pub common: Common,
    pub messages: Vec<ChatMessage>,
    /// The newer name of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PromptField {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(flatten)]
    pub common: Common,
    pub prompt: PromptField,
    /// Number of alternatives per token (0 = only the sampled token's log-prob).
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
    pub best_of: Option<u32>,
}

/// A checked request, the same for both endpoints.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub n: usize,
    pub sampling: Sampling,
    /// `None` = the server default, capped to the room the prompt leaves.
    pub max_tokens: Option<usize>,
    pub stops: Vec<String>,
    pub seed: u64,
    /// Report log-probs (chat `logprobs: true`; completions `logprobs` present).
    pub logprobs: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// Parses a JSON body into `T`, answering 400 with serde's message when it does not fit.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_body("We could not parse the JSON body of your request: the body is empty. (Send JSON with Content-Type: application/json.)"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_body(format!("We could not parse the JSON body of your request: {e}")))
}

impl Common {
    /// Checks the shared sampling fields; `top_logprobs`/`logprobs` come from the endpoint.
    pub fn check(&self, max_tokens: Option<u32>, logprobs: bool, top_logprobs: u32, limit: u32) -> Result<GenRequest, ApiError> {
        let n = self.n.unwrap_or(1);
        if n == 0 || n > MAX_N {
            return Err(ApiError::invalid("n", format!("{n} is not a valid value for 'n': use 1 to {MAX_N}.")));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::invalid("temperature", format!("{temperature} is greater than the maximum of 2 or less than 0 - 'temperature'")));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("{top_p} is not a valid value for 'top_p': use a value in (0, 1].")));
        }
        if let Some(m) = max_tokens {
            if m == 0 || m > limit {
                return Err(ApiError::invalid("max_tokens", format!("max_tokens is {m}: use 1 to {limit} (this server's max_tokens_limit).")));
            }
        }
        if top_logprobs > MAX_TOP_LOGPROBS {
            return Err(ApiError::invalid("top_logprobs", format!("{top_logprobs} is greater than the maximum of {MAX_TOP_LOGPROBS} - 'top_logprobs'")));
        }
        let stops = self.stop.as_ref().map(|s| match s {
            OneOrMany::One(x) => vec![x.clone()],
            OneOrMany::Many(v) => v.clone(),
        });
        let stops: Vec<String> = stops.unwrap_or_default().into_iter().filter(|s| !s.is_empty()).collect();
        if stops.len() > MAX_STOPS {
            return Err(ApiError::invalid("stop", format!("[{}] has {} stop sequences; at most {MAX_STOPS} are allowed - 'stop'", stops.join(", "), stops.len())));
        }
        let seed = match &self.seed {
            None => rand::random::<u64>(),
            Some(num) => match (num.as_u64(), num.as_i64()) {
                (Some(u), _) => u,
                (None, Some(i)) => i as u64,
                _ => return Err(ApiError::invalid("seed", format!("{num} is not an integer - 'seed'"))),
            },
        };
        Ok(GenRequest {
            n: n as usize,
            sampling: Sampling { temperature, top_p, top_logprobs: top_logprobs as usize },
            max_tokens: max_tokens.map(|m| m as usize),
            stops,
            seed,
            logprobs,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
        })
    }
}

/// What the two endpoints' bodies offer the head they share ([`accept`](crate::head::accept)).
pub trait GenBody: serde::de::DeserializeOwned {
    /// The fields both endpoints have.
    fn common(&self) -> &Common;
    /// Checks the body into its [`GenRequest`]; `limit` caps `max_tokens`.
    fn check(&self, limit: u32) -> Result<GenRequest, ApiError>;
}

impl GenBody for ChatRequest {
    fn common(&self) -> &Common {
        &self.common
    }

    fn check(&self, limit: u32) -> Result<GenRequest, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "[] is too short - 'messages'"));
        }
        let top = self.top_logprobs.unwrap_or(0);
        if top > 0 && !self.logprobs {
            return Err(ApiError::invalid("top_logprobs", "Setting 'top_logprobs' requires 'logprobs' to be true."));
        }
        self.common.check(self.max_completion_tokens.or(self.common.max_tokens), self.logprobs, top, limit)
    }
}

impl ChatRequest {
    /// (role, text) of every message; content parts of type `text` are concatenated.
    pub fn messages(&self) -> Result<Vec<(String, String)>, ApiError> {
        let mut out = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
                return Err(ApiError::invalid(
                    &format!("messages.[{i}].role"),
                    format!("'{}' is not one of ['system', 'developer', 'user', 'assistant', 'tool'] - 'messages.{i}.role'", m.role),
                ));
            }
            let text = match &m.content {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                            (Some("text"), Some(t)) => s.push_str(t),
                            _ => return Err(ApiError::invalid(&format!("messages.[{i}].content"), "only text content parts are supported by this model")),
                        }
                    }
                    s
                }
                Some(_) => return Err(ApiError::invalid(&format!("messages.[{i}].content"), "content must be a string or a list of text parts")),
            };
            out.push((m.role.clone(), text));
        }
        Ok(out)
    }
}

/// A completions prompt: text to encode, or token ids given directly.
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

impl GenBody for CompletionRequest {
    fn common(&self) -> &Common {
        &self.common
    }

    fn check(&self, limit: u32) -> Result<GenRequest, ApiError> {
        if self.echo {
            return Err(ApiError::invalid("echo", "echo is not supported by this server"));
        }
        if self.suffix.is_some() {
            return Err(ApiError::invalid("suffix", "suffix is not supported by this server"));
        }
        if self.best_of.is_some_and(|b| Some(b) != self.common.n && b != 1) {
            return Err(ApiError::invalid("best_of", "best_of is not supported by this server (use n)"));
        }
        let top = self.logprobs.unwrap_or(0);
        self.common.check(self.common.max_tokens, self.logprobs.is_some(), top, limit)
    }
}

impl CompletionRequest {
    pub fn prompts(&self) -> Result<Vec<Prompt>, ApiError> {
        let p: Vec<Prompt> = match &self.prompt {
            PromptField::Text(s) => vec![Prompt::Text(s.clone())],
            PromptField::Texts(v) => v.iter().cloned().map(Prompt::Text).collect(),
            PromptField::Ids(v) => vec![Prompt::Ids(v.clone())],
            PromptField::IdLists(v) => v.iter().cloned().map(Prompt::Ids).collect(),
        };
        if p.is_empty() {
            return Err(ApiError::invalid("prompt", "[] is too short - 'prompt'"));
        }
        Ok(p)
    }
}
