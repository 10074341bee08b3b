//! The head both completion handlers start with: parse the JSON body, check that it names the
//! served model, and check its parameters (sampling, lengths, stops, log-probs) into a
//! [`GenRequest`]. Each failure is OpenAI's 4xx, checked in this order: a body that does not
//! parse, then an unknown model, then a bad value.

use crate::api_error::ApiError;
use crate::generate::AppState;
use crate::protocol::{parse_body, GenBody, GenRequest};

/// The request `body` of endpoint type `R`, and its checked form.
pub fn accept<R: GenBody>(state: &AppState, body: &[u8]) -> Result<(R, GenRequest), ApiError> {
    accept_for(&state.model_name, state.max_tokens_limit, body)
}

/// [`accept`] for the server of `model_name` whose `max_tokens` limit is `limit`.
fn accept_for<R: GenBody>(model_name: &str, limit: u32, body: &[u8]) -> Result<(R, GenRequest), ApiError> {
    let req: R = parse_body(body)?;
    let model = &req.common().model;
    if model != model_name {
        return Err(ApiError::model_not_found(model));
    }
    let gen = req.check(limit)?;
    Ok((req, gen))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::protocol::{ChatRequest, CompletionRequest};

    fn chat(body: serde_json::Value) -> Result<(ChatRequest, GenRequest), ApiError> {
        accept_for("nano", 100, body.to_string().as_bytes())
    }

    fn completion(body: serde_json::Value) -> Result<(CompletionRequest, GenRequest), ApiError> {
        accept_for("nano", 100, body.to_string().as_bytes())
    }

    fn param(e: ApiError) -> (StatusCode, serde_json::Value) {
        (e.status, e.body()["error"]["param"].clone())
    }

    #[test]
    fn both_endpoints_get_the_same_checked_request() {
        let common = json!({"model": "nano", "n": 2, "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "stop": "\n", "seed": 3, "stream": true});
        let mut c = common.clone();
        c["messages"] = json!([{"role": "user", "content": "hi"}]);
        let mut p = common;
        p["prompt"] = json!("hi");
        let (_, a) = chat(c).unwrap();
        let (_, b) = completion(p).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!((a.n, a.max_tokens, a.seed, a.stream), (2, Some(7), 3, true));
    }

    #[test]
    fn a_bad_body_then_an_unknown_model_then_a_bad_value() {
        let bad = |b: &[u8]| param(accept_for::<ChatRequest>("nano", 100, b).unwrap_err());
        assert_eq!(bad(b"{").0, StatusCode::BAD_REQUEST);
        // An unknown model is reported even when a value is bad too.
        let e = chat(json!({"model": "other", "messages": [], "n": 0})).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(param(chat(json!({"model": "nano", "messages": [{"role": "user", "content": "x"}], "n": 0})).unwrap_err()), (StatusCode::BAD_REQUEST, json!("n")));
        assert_eq!(param(completion(json!({"model": "nano", "prompt": "x", "max_tokens": 101})).unwrap_err()).0, StatusCode::BAD_REQUEST);
    }
}
