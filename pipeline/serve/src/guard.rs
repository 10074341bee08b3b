//! What every request passes before it reaches a handler: the bearer-token check, then the
//! server's own request-rate limit.
//!
//! Rate limit: a token bucket holding `requests_per_minute` requests, refilled continuously at
//! `requests_per_minute / 60` per second; each request takes one. Every answer carries
//! OpenAI's headers
//! - `x-ratelimit-limit-requests`: the bucket size (requests per minute),
//! - `x-ratelimit-remaining-requests`: whole requests left now,
//! - `x-ratelimit-reset-requests`: time until the bucket is full again (`1.5s`, `250ms`),
//!
//! and a refused request gets 429 `rate_limit_exceeded` with `retry-after-ms` (until one
//! request is available) and `retry-after` (the same, whole seconds rounded up).
//!
//! Authentication compares the whole `Authorization: Bearer <key>` value in constant time; the
//! key a client sent is never logged or echoed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api_error::ApiError;
use crate::config::ApiKey;

/// A token bucket of `per_minute` requests.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

/// The bucket after a request was admitted or refused.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full.
    pub reset: Duration,
    /// Until one request is available (zero when one is).
    pub wait: Duration,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        RateLimiter { per_minute, state: Mutex::new((per_minute as f64, Instant::now())) }
    }

    /// Takes one request from the bucket at time `now`: `Ok` when admitted, `Err` when not.
    pub fn take(&self, now: Instant) -> Result<Bucket, Bucket> {
        let cap = self.per_minute as f64;
        let rate = cap / 60.0; // requests per second
        let mut st = self.state.lock().expect("rate limiter lock");
        let (tokens, last) = *st;
        let tokens = (tokens + now.saturating_duration_since(last).as_secs_f64() * rate).min(cap);
        let admitted = tokens >= 1.0;
        let left = if admitted { tokens - 1.0 } else { tokens };
        *st = (left, now.max(last));
        let bucket = Bucket {
            limit: self.per_minute,
            remaining: left.floor() as u32,
            reset: Duration::from_secs_f64((cap - left) / rate),
            wait: Duration::from_secs_f64(((1.0 - left) / rate).max(0.0)),
        };
        if admitted {
            Ok(bucket)
        } else {
            Err(bucket)
        }
    }
}

/// OpenAI's duration format for reset headers.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{}ms", ms.ceil() as u64)
    } else if ms < 60_000.0 {
        let s = format!("{:.3}", ms / 1000.0);
        format!("{}s", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        let secs = d.as_secs_f64();
        format!("{}m{:.0}s", (secs / 60.0).floor() as u64, secs % 60.0)
    }
}

fn headers(b: &Bucket) -> HeaderMap {
    let mut h = HeaderMap::new();
    let num = |v: u64| HeaderValue::from_str(&v.to_string()).expect("digits");
    h.insert("x-ratelimit-limit-requests", num(b.limit as u64));
    h.insert("x-ratelimit-remaining-requests", num(b.remaining as u64));
    h.insert("x-ratelimit-reset-requests", HeaderValue::from_str(&format_duration(b.reset)).expect("ascii"));
    h
}

/// Shared by the middleware.
#[derive(Clone)]
pub struct Guard {
    pub api_key: Option<ApiKey>,
    pub limiter: Option<Arc<RateLimiter>>,
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: authentication, then the rate limit.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if let Some(ApiKey(key)) = &g.api_key {
        let sent = req.headers().get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
        let Some(token) = sent.strip_prefix(b"Bearer ") else {
            return ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
            .into_response();
        };
        if !same(token, key.as_bytes()) {
            return ApiError::unauthorized("Incorrect API key provided. Use the key in this server's api_key_env variable.").into_response();
        }
    }
    let Some(limiter) = &g.limiter else {
        return next.run(req).await;
    };
    match limiter.take(Instant::now()) {
        Ok(bucket) => {
            let mut resp = next.run(req).await;
            resp.headers_mut().extend(headers(&bucket));
            resp
        }
        Err(bucket) => {
            let mut h = headers(&bucket);
            let ms = (bucket.wait.as_secs_f64() * 1000.0).ceil() as u64;
            h.insert("retry-after-ms", HeaderValue::from_str(&ms.to_string()).expect("digits"));
            h.insert("retry-after", HeaderValue::from_str(&ms.div_ceil(1000).to_string()).expect("digits"));
            ApiError::rate_limited(format!("Rate limit reached for requests: limit {} per minute. Please try again in {}.", bucket.limit, format_duration(bucket.wait)), h)
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_its_size_then_refills_at_the_rate() {
        let rl = RateLimiter::new(60); // one per second
        let t0 = Instant::now();
        for i in 0..60 {
            let b = rl.take(t0).unwrap();
            assert_eq!(b.remaining, 59 - i);
        }
        let refused = rl.take(t0).unwrap_err();
        assert_eq!(refused.remaining, 0);
        assert!((refused.wait.as_secs_f64() - 1.0).abs() < 1e-6, "{:?}", refused.wait);
        assert!((refused.reset.as_secs_f64() - 60.0).abs() < 1e-6);
        assert!(rl.take(t0 + Duration::from_millis(500)).is_err());
        assert!(rl.take(t0 + Duration::from_millis(1001)).is_ok());
    }

    #[test]
    fn durations_in_openai_format() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn key_comparison() {
        assert!(same(b"sk-1", b"sk-1"));
        assert!(!same(b"sk-1", b"sk-2"));
        assert!(!same(b"sk-1", b"sk-12"));
    }
}
