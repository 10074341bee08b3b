//! `POST /v1/chat/completions`: messages rendered with the configured chat template (see
//! [`vocab`](crate::vocab)), answered whole or as server-sent events.
//!
//! Whole: `{id, object: "chat.completion", created, model, system_fingerprint, choices: [{index,
//! message: {role: "assistant", content}, logprobs: null | {content: [...], refusal: null},
//! finish_reason}], usage}`.
//!
//! Stream (`stream: true`): per choice a first chunk with `delta: {role: "assistant", content:
//! ""}`, then `delta: {content}` chunks (with that text's tokens in `logprobs.content`), then
//! `delta: {}` with the `finish_reason`; with `stream_options.include_usage` a last chunk with
//! `choices: []` and `usage`; then `data: [DONE]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::generate::{chat_logprobs, submit, AppState};
use crate::head::accept;
use crate::protocol::ChatRequest;
use crate::reply::{self, Envelope, Piece};
use crate::vocab::render_chat;

pub async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let (req, gen) = accept::<ChatRequest>(&state, &body)?;
    let prompt = render_chat(state.chat_template, &req.messages()?);
    let ids = state.vocab.encode(&prompt).map_err(|m| ApiError::invalid("messages", m))?;
    let sub = submit(&state, &gen, vec![ids], "messages")?;
    if gen.stream {
        let env = Envelope::new("chatcmpl", "chat.completion.chunk", &state.model_name);
        let first: Vec<Value> =
            (0..sub.receivers.len()).map(|i| env.wrap(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]))).collect();
        let vocab = state.vocab.clone();
        return Ok(reply::stream(env, first, sub, gen.include_usage, move |i, piece| match piece {
            Piece::Delta { text, tokens } => {
                let lp = if gen.logprobs { chat_logprobs(&vocab, &tokens) } else { Value::Null };
                json!({"index": i, "delta": {"content": text}, "logprobs": lp, "finish_reason": null})
            }
            Piece::Done(finish) => json!({"index": i, "delta": {}, "logprobs": null, "finish_reason": finish.as_str()}),
        }));
    }
    let env = Envelope::new("chatcmpl", "chat.completion", &state.model_name);
    reply::whole(env, sub, |i, r| {
        let lp = if gen.logprobs { chat_logprobs(&state.vocab, &r.tokens) } else { Value::Null };
        json!({"index": i, "message": {"role": "assistant", "content": r.text, "refusal": null}, "logprobs": lp, "finish_reason": r.finish.as_str()})
    })
    .await
}
