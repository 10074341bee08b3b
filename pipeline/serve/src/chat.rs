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

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::engine::Event;
use crate::generate::{chat_logprobs, collect_all, merged, new_id, now_unix, submit, usage, AppState};
use crate::protocol::{parse_body, ChatRequest};
use crate::vocab::render_chat;

pub const FINGERPRINT: &str = "fp_distill_serve";

pub async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match handle(state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: ChatRequest = parse_body(&body)?;
    if req.common.model != state.model_name {
        return Err(ApiError::model_not_found(&req.common.model));
    }
    let gen = req.check(state.max_tokens_limit)?;
    let prompt = render_chat(state.chat_template, &req.messages()?);
    let ids = state.vocab.encode(&prompt).map_err(|m| ApiError::invalid("messages", m))?;
    let sub = submit(&state, &gen, vec![ids], "messages")?;
    let (id, created) = (new_id("chatcmpl"), now_unix());
    let model = state.model_name.clone();
    if gen.stream {
        let n = sub.receivers.len();
        let chunk = {
            let (id, model) = (id.clone(), model.clone());
            move |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": FINGERPRINT, "choices": choices})
        };
        let first: Vec<Value> = (0..n).map(|i| chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]))).collect();
        let completion = Arc::new(AtomicUsize::new(0));
        let (vocab, done_count) = (state.vocab.clone(), completion.clone());
        let chunk2 = chunk.clone();
        let events = merged(sub.receivers).map(move |(i, ev)| match ev {
            Event::Delta { text, tokens } => {
                let lp = if gen.logprobs { chat_logprobs(&vocab, &tokens) } else { Value::Null };
                chunk2(json!([{"index": i, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}]))
            }
            Event::Done { finish, completion_tokens } => {
                done_count.fetch_add(completion_tokens, Ordering::Relaxed);
                chunk2(json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish.as_str()}]))
            }
            Event::Failed(msg) => ApiError::internal(format!("generation failed: {msg}")).body(),
        });
        let prompt_tokens = sub.prompt_tokens;
        let tail = stream::once(async move {
            gen.include_usage.then(|| {
                let mut c = chunk(json!([]));
                c["usage"] = usage(prompt_tokens, completion.load(Ordering::Relaxed));
                c
            })
        })
        .filter_map(|c| async move { c });
        let body = stream::iter(first)
            .chain(events)
            .chain(tail)
            .map(|v| Sse::default().data(v.to_string()))
            .chain(stream::once(async { Sse::default().data("[DONE]") }))
            .map(Ok::<_, Infallible>);
        return Ok(axum::response::Sse::new(body).keep_alive(KeepAlive::default()).into_response());
    }
    let results = collect_all(sub.receivers).await?;
    let completion_tokens = results.iter().map(|r| r.completion_tokens).sum();
    let choices: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let lp = if gen.logprobs { chat_logprobs(&state.vocab, &r.tokens) } else { Value::Null };
            json!({"index": i, "message": {"role": "assistant", "content": r.text, "refusal": null}, "logprobs": lp, "finish_reason": r.finish.as_str()})
        })
        .collect();
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage(sub.prompt_tokens, completion_tokens),
    }))
    .into_response())
}
