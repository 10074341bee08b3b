//! What both completion endpoints share: turning a checked request into engine jobs, waiting
//! for their results (whole or as a stream), and the two log-prob layouts OpenAI uses.

use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use distill_model::FinishReason;

use crate::api_error::ApiError;
use crate::config::ChatTemplate;
use crate::engine::{Engine, Event, SeqJob};
use crate::protocol::GenRequest;
use crate::sample::{rng_for, Choice};
use crate::vocab::Vocab;

/// Everything a handler needs.
pub struct AppState {
    pub engine: Engine,
    pub vocab: Arc<Vocab>,
    pub model_name: String,
    pub max_tokens_limit: u32,
    pub default_max_tokens: u32,
    pub truncate_to_context: bool,
    pub chat_template: ChatTemplate,
    /// Unix time the server started (the model's `created`).
    pub created: u64,
}

/// Jobs handed to the engine: one receiver per choice, in choice order.
pub struct Submitted {
    pub receivers: Vec<UnboundedReceiver<Event>>,
    pub prompt_tokens: usize,
}

/// Submits `n` sequences per prompt. Choice `i` of prompt `p` is choice index `p * n + i`
/// and samples with `rng_for(seed, p * n + i)`.
pub fn submit(state: &AppState, req: &GenRequest, prompts: Vec<Vec<u32>>, param: &str) -> Result<Submitted, ApiError> {
    let max_pos = state.engine.max_positions;
    let mut jobs = Vec::new();
    let mut prompt_tokens = 0;
    for (p, prompt) in prompts.into_iter().enumerate() {
        let room = max_pos.saturating_sub(prompt.len());
        let max_new = match req.max_tokens {
            Some(m) if prompt.len() + m > max_pos && !(state.truncate_to_context && room > 0) => return Err(ApiError::context_length(max_pos, prompt.len(), m, param)),
            Some(m) if prompt.len() + m > max_pos => room,
            Some(m) => m,
            None if room == 0 => return Err(ApiError::context_length(max_pos, prompt.len(), 1, param)),
            None => room.min(state.default_max_tokens as usize),
        };
        prompt_tokens += prompt.len();
        let prompt = Arc::new(prompt);
        for i in 0..req.n {
            jobs.push((prompt.clone(), max_new, p * req.n + i));
        }
    }
    let mut receivers = Vec::with_capacity(jobs.len());
    for (prompt, max_new, index) in jobs {
        let (tx, rx) = unbounded_channel();
        let job = SeqJob { prompt, max_new, sampling: req.sampling, rng: rng_for(req.seed, index), stops: req.stops.clone(), events: tx };
        state.engine.submit(job).map_err(|e| ApiError::unavailable(e.to_string()))?;
        receivers.push(rx);
    }
    Ok(Submitted { receivers, prompt_tokens })
}

/// One finished choice.
pub struct Collected {
    pub text: String,
    pub tokens: Vec<Choice>,
    pub finish: FinishReason,
    pub completion_tokens: usize,
}

/// Waits for one choice to finish.
pub async fn collect(mut rx: UnboundedReceiver<Event>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Delta { text: t, tokens: mut k } => {
                text.push_str(&t);
                tokens.append(&mut k);
            }
            Event::Done { finish, completion_tokens } => return Ok(Collected { text, tokens, finish, completion_tokens }),
            Event::Failed(msg) => return Err(ApiError::internal(format!("generation failed: {msg}"))),
        }
    }
    Err(ApiError::internal("generation stopped unexpectedly (the decoding engine failed; see the server log)"))
}

/// Waits for every choice, in order.
pub async fn collect_all(receivers: Vec<UnboundedReceiver<Event>>) -> Result<Vec<Collected>, ApiError> {
    let mut out = Vec::with_capacity(receivers.len());
    for rx in receivers {
        out.push(collect(rx).await?);
    }
    Ok(out)
}

/// Every choice's events as one stream of `(choice index, event)`, in arrival order. A choice
/// whose channel closes without `Done` yields a `Failed`.
pub fn merged(receivers: Vec<UnboundedReceiver<Event>>) -> impl Stream<Item = (usize, Event)> + Send {
    let per_choice = receivers.into_iter().enumerate().map(|(i, rx)| {
        stream::unfold((rx, false), move |(mut rx, ended)| async move {
            if ended {
                return None;
            }
            match rx.recv().await {
                Some(ev) => {
                    let end = matches!(ev, Event::Done { .. } | Event::Failed(_));
                    Some(((i, ev), (rx, end)))
                }
                None => Some(((i, Event::Failed("the decoding engine failed; see the server log".into())), (rx, true))),
            }
        })
        .boxed()
    });
    stream::select_all(per_choice)
}

pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

/// Chat layout: `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}` per token.
pub fn chat_logprobs(vocab: &Vocab, tokens: &[Choice]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|c| {
            let top: Vec<Value> = c.top.iter().map(|&(id, lp)| json!({"token": vocab.text(id), "logprob": lp, "bytes": vocab.bytes(id)})).collect();
            json!({"token": vocab.text(c.id), "logprob": c.logprob, "bytes": vocab.bytes(c.id), "top_logprobs": top})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Completions layout: parallel lists `tokens`, `token_logprobs`, `top_logprobs` (a map per
/// token; when two ids share a text the more likely one is kept) and `text_offset` (character
/// offsets, counted from the start of the prompt as OpenAI does; `start_chars` is where this
/// piece of text begins).
pub fn completion_logprobs(vocab: &Vocab, tokens: &[Choice], start_chars: usize) -> Value {
    let mut offset = start_chars;
    let mut text_offset = Vec::with_capacity(tokens.len());
    for c in tokens {
        text_offset.push(offset);
        // Characters = bytes that are not UTF-8 continuation bytes.
        offset += vocab.bytes(c.id).iter().filter(|&&b| b & 0xC0 != 0x80).count();
    }
    let top: Vec<Value> = tokens
        .iter()
        .map(|c| {
            let mut m = Map::new();
            for &(id, lp) in &c.top {
                m.entry(vocab.text(id)).or_insert(json!(lp));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|c| vocab.text(c.id)).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|c| c.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": text_offset,
    })
}

/// Characters the completions `text_offset` counts for these token bytes.
pub fn chars_of(vocab: &Vocab, tokens: &[Choice]) -> usize {
    tokens.iter().map(|c| vocab.bytes(c.id).iter().filter(|&&b| b & 0xC0 != 0x80).count()).sum()
}

/// `chatcmpl-…` / `cmpl-…` ids.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:024x}", rand::random::<u128>() >> 32)
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
