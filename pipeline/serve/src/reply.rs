//! The shape both completion endpoints answer in: every response object and stream chunk
//! carries the same envelope (`id`, `object`, `created`, `model`, `system_fingerprint`,
//! `choices`), a whole answer lists every choice with the token counts, and a stream ends the
//! same way (an optional usage chunk with `choices: []`,
//! then `data: [DONE]`). The endpoints differ only in what a choice looks like.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use distill_model::FinishReason;

use crate::api_error::ApiError;
use crate::engine::Event;
use crate::generate::{collect_all, merged, new_id, now_unix, usage, Collected, Submitted};
use crate::sample::Choice;

pub const FINGERPRINT: &str = "fp_distill_serve";

/// The fields every object of one response shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
}

impl Envelope {
    /// A fresh `{id_prefix}-…` id, created now, for objects of type `object`.
    pub fn new(id_prefix: &str, object: &'static str, model: &str) -> Self {
        Envelope { id: new_id(id_prefix), object, created: now_unix(), model: model.to_string() }
    }

    /// The object holding `choices` (a JSON list).
    pub fn wrap(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model, "system_fingerprint": FINGERPRINT, "choices": choices})
    }

    /// The object holding `choices` and the request's token counts.
    fn with_usage(&self, choices: Vec<Value>, prompt_tokens: usize, completion_tokens: usize) -> Value {
        let mut v = self.wrap(Value::Array(choices));
        v["usage"] = usage(prompt_tokens, completion_tokens);
        v
    }
}

/// A whole (not streamed) answer: waits for every choice, in order, and answers the choice
/// objects `choice(index, result)` makes, with the token counts.
pub async fn whole(env: Envelope, sub: Submitted, choice: impl Fn(usize, &Collected) -> Value) -> Result<Response, ApiError> {
    let results = collect_all(sub.receivers).await?;
    let completion_tokens = results.iter().map(|r| r.completion_tokens).sum();
    let choices: Vec<Value> = results.iter().enumerate().map(|(i, r)| choice(i, r)).collect();
    Ok(Json(env.with_usage(choices, sub.prompt_tokens, completion_tokens)).into_response())
}

/// What one stream chunk of a choice reports.
pub enum Piece {
    /// New text and the tokens released with it.
    Delta {
        text: String,
        tokens: Vec<Choice>,
    },
    Done(FinishReason),
}

/// A server-sent-events answer: the `first` chunks, then a chunk per engine event of every
/// submitted choice (holding the choice object `choice(index, piece)` makes; a failure becomes an error
/// body instead), then with `include_usage` a usage chunk, then `[DONE]`.
pub fn stream(env: Envelope, first: Vec<Value>, sub: Submitted, include_usage: bool, mut choice: impl FnMut(usize, Piece) -> Value + Send + 'static) -> Response {
    let completion = Arc::new(AtomicUsize::new(0));
    let (done_count, chunk) = (completion.clone(), env.clone());
    let (receivers, prompt_tokens) = (sub.receivers, sub.prompt_tokens);
    let events = merged(receivers).map(move |(i, ev)| match ev {
        Event::Delta { text, tokens } => chunk.wrap(json!([choice(i, Piece::Delta { text, tokens })])),
        Event::Done { finish, completion_tokens } => {
            done_count.fetch_add(completion_tokens, Ordering::Relaxed);
            chunk.wrap(json!([choice(i, Piece::Done(finish))]))
        }
        Event::Failed(msg) => ApiError::internal(format!("generation failed: {msg}")).body(),
    });
    let tail = stream::once(async move {
        include_usage.then(|| {
            let mut c = env.wrap(json!([]));
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
    axum::response::Sse::new(body).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_of_a_response_shares_its_envelope() {
        let env = Envelope::new("cmpl", "text_completion", "nano");
        let chunk = env.wrap(json!([{"index": 0}]));
        let whole = env.with_usage(vec![json!({"index": 0})], 3, 4);
        for key in ["id", "object", "created", "model", "system_fingerprint", "choices"] {
            assert_eq!(chunk[key], whole[key], "{key}");
        }
        assert!(chunk["id"].as_str().unwrap().starts_with("cmpl-"));
        assert_eq!(chunk["object"], "text_completion");
        assert_eq!(whole["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
        assert!(chunk.get("usage").is_none());
    }
}
