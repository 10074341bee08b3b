//! `POST /v1/completions` (the legacy text endpoint): one or several prompts (text or token
//! ids), `n` choices each, answered whole or as server-sent events.
//!
//! Whole: `{id, object: "text_completion", created, model, choices: [{text, index, logprobs:
//! null | {tokens, token_logprobs, top_logprobs, text_offset}, finish_reason}], usage}`; choice
//! `p * n + i` is the `i`-th sample of prompt `p`. `logprobs: k` asks for `k` alternatives per
//! token (0 = only the sampled token's). Stream chunks carry the same choice objects with the
//! new `text` and its tokens, `finish_reason` on the last one; then `data: [DONE]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::generate::{chars_of, completion_logprobs, submit, AppState};
use crate::head::accept;
use crate::protocol::{CompletionRequest, Prompt};
use crate::reply::{self, Envelope, Piece};

pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let (req, gen) = accept::<CompletionRequest>(&state, &body)?;
    let vocab_size = state.engine.vocab_size;
    let mut ids = Vec::new();
    let mut prompt_chars = Vec::new();
    for p in req.prompts()? {
        match p {
            Prompt::Text(t) => {
                prompt_chars.push(t.chars().count());
                ids.push(state.vocab.encode(&t).map_err(|m| ApiError::invalid("prompt", m))?);
            }
            Prompt::Ids(v) => {
                if let Some(bad) = v.iter().find(|&&t| t as usize >= vocab_size) {
                    return Err(ApiError::invalid("prompt", format!("token id {bad} is outside the vocabulary (size {vocab_size})")));
                }
                let bytes: Vec<u8> = v.iter().flat_map(|&t| state.vocab.bytes(t).to_vec()).collect();
                prompt_chars.push(String::from_utf8_lossy(&bytes).chars().count());
                ids.push(if v.is_empty() { state.vocab.empty_prompt.clone() } else { v });
            }
        }
    }
    let n = gen.n;
    let sub = submit(&state, &gen, ids, "prompt")?;
    let env = Envelope::new("cmpl", "text_completion", &state.model_name);
    let start_of = move |choice: usize| prompt_chars[choice / n];
    if gen.stream {
        let vocab = state.vocab.clone();
        let mut offsets: Vec<usize> = (0..sub.receivers.len()).map(&start_of).collect();
        return Ok(reply::stream(env, Vec::new(), sub, gen.include_usage, move |i, piece| match piece {
            Piece::Delta { text, tokens } => {
                let lp = if gen.logprobs { completion_logprobs(&vocab, &tokens, offsets[i]) } else { Value::Null };
                offsets[i] += chars_of(&vocab, &tokens);
                json!({"text": text, "index": i, "logprobs": lp, "finish_reason": null})
            }
            Piece::Done(finish) => json!({"text": "", "index": i, "logprobs": null, "finish_reason": finish.as_str()}),
        }));
    }
    reply::whole(env, sub, |i, r| {
        let lp = if gen.logprobs { completion_logprobs(&state.vocab, &r.tokens, start_of(i)) } else { Value::Null };
        json!({"text": r.text, "index": i, "logprobs": lp, "finish_reason": r.finish.as_str()})
    })
    .await
}
