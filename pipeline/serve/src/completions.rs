//! `POST /v1/completions` (the legacy text endpoint): one or several prompts (text or token
//! ids), `n` choices each, answered whole or as server-sent events.
//!
//! Whole: `{id, object: "text_completion", created, model, choices: [{text, index, logprobs:
//! null | {tokens, token_logprobs, top_logprobs, text_offset}, finish_reason}], usage}`; choice
//! `p * n + i` is the `i`-th sample of prompt `p`. `logprobs: k` asks for `k` alternatives per
//! token (0 = only the sampled token's). Stream chunks carry the same choice objects with the
//! new `text` and its tokens, `finish_reason` on the last one; then `data: [DONE]`.

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
use crate::chat::FINGERPRINT;
use crate::engine::Event;
use crate::generate::{chars_of, collect_all, completion_logprobs, merged, new_id, now_unix, submit, usage, AppState};
use crate::protocol::{parse_body, CompletionRequest, Prompt};

pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match handle(state, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: Arc<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse_body(&body)?;
    if req.common.model != state.model_name {
        return Err(ApiError::model_not_found(&req.common.model));
    }
    let gen = req.check(state.max_tokens_limit)?;
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
    let (id, created) = (new_id("cmpl"), now_unix());
    let model = state.model_name.clone();
    let start_of = move |choice: usize| prompt_chars[choice / n];
    if gen.stream {
        let chunk = {
            let (id, model) = (id.clone(), model.clone());
            move |choices: Value| json!({"id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": FINGERPRINT, "choices": choices})
        };
        let completion = Arc::new(AtomicUsize::new(0));
        let (vocab, done_count, chunk2) = (state.vocab.clone(), completion.clone(), chunk.clone());
        let mut offsets: Vec<usize> = (0..sub.receivers.len()).map(&start_of).collect();
        let events = merged(sub.receivers).map(move |(i, ev)| match ev {
            Event::Delta { text, tokens } => {
                let lp = if gen.logprobs { completion_logprobs(&vocab, &tokens, offsets[i]) } else { Value::Null };
                offsets[i] += chars_of(&vocab, &tokens);
                chunk2(json!([{"text": text, "index": i, "logprobs": lp, "finish_reason": null}]))
            }
            Event::Done { finish, completion_tokens } => {
                done_count.fetch_add(completion_tokens, Ordering::Relaxed);
                chunk2(json!([{"text": "", "index": i, "logprobs": null, "finish_reason": finish.as_str()}]))
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
        let body = events.chain(tail).map(|v| Sse::default().data(v.to_string())).chain(stream::once(async { Sse::default().data("[DONE]") })).map(Ok::<_, Infallible>);
        return Ok(axum::response::Sse::new(body).keep_alive(KeepAlive::default()).into_response());
    }
    let results = collect_all(sub.receivers).await?;
    let completion_tokens = results.iter().map(|r| r.completion_tokens).sum();
    let choices: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let lp = if gen.logprobs { completion_logprobs(&state.vocab, &r.tokens, start_of(i)) } else { Value::Null };
            json!({"text": r.text, "index": i, "logprobs": lp, "finish_reason": r.finish.as_str()})
        })
        .collect();
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage(sub.prompt_tokens, completion_tokens),
    }))
    .into_response())
}
