//! What a request passes before a handler sees it.
//!
//! - **Rate limit**, per client IP address, on every route: a GCRA bucket (governor) of
//!   `requests_per_second` with a burst of twice that. A refused request gets 429 with
//!   `retry-after` (whole seconds, rounded up). An open event stream counts once, when opened.
//! - **API key** (`Authorization: Bearer <key>`, compared in constant time, never logged):
//!   needed by every `/api` request when the server listens beyond loopback, and by every
//!   request that starts or cancels work wherever it listens ([`require_key`]). Without a
//!   configured key those requests are refused, with the variable to set.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::api::AppState;
use crate::error::ApiError;

pub type Limiter = DefaultKeyedRateLimiter<IpAddr>;

/// `per_second` requests a second on average, bursts of twice that.
pub fn limiter(per_second: u32) -> Arc<Limiter> {
    let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
    let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("at least 2");
    Arc::new(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

/// Middleware: the per-client rate limit.
pub async fn rate_limit(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    match state.limiter.check_key(&peer.ip()) {
        Ok(()) => next.run(req).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = ApiError {
                status: axum::http::StatusCode::TOO_MANY_REQUESTS,
                code: "rate_limited",
                message: format!("more than {} requests a second from {}; retry in {} ms", state.cfg.requests_per_second, peer.ip(), wait.as_millis().max(1)),
            }
            .into_response();
            resp.headers_mut().insert("retry-after", HeaderValue::from(secs.max(1)));
            resp
        }
    }
}

/// Middleware on `/api`: the key, when the server listens beyond loopback.
pub async fn api_key_beyond_loopback(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.cfg.bind.ip().is_loopback() {
        if let Err(e) = require_key(&state, req.headers()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token against the configured key (which must exist).
pub fn require_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let env = &state.cfg.api_key_env;
    let Some(key) = &state.cfg.api_key else {
        return Err(ApiError::unauthorized(format!(
            "starting or cancelling work needs an API key: restart the dashboard with {env} set to a secret, and send it as `Authorization: Bearer <key>`"
        )));
    };
    let sent = headers.get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
    let Some(token) = sent.strip_prefix(b"Bearer ") else {
        return Err(ApiError::unauthorized(format!("no API key: send `Authorization: Bearer <key>` with the key in the dashboard's {env}")));
    };
    if !same(token, key.as_bytes()) {
        return Err(ApiError::unauthorized(format!("wrong API key: use the key in the dashboard's {env}")));
    }
    Ok(())
}
