//! Which outcomes are retried, and how long to wait.
//!
//! Classifier (the issue's table):
//!
//! | outcome | action |
//! |---|---|
//! | 2xx with at least one choice | success |
//! | 2xx malformed, truncated, or without choices | retry |
//! | 408, 409, 429 (`rate_limit_exceeded`), 5xx | retry |
//! | connection error, timeout | retry |
//! | 429 with `insufficient_quota`, 401, 403 | stop the whole batch |
//! | 404 | stop the whole batch (wrong `base_url` or `model`: every request would fail) |
//! | other 4xx (400, 413, 422, ...) | fail this prompt, never retried, remembered |
//!
//! Backoff is "full jitter" (AWS architecture blog, 2015): before retry `k` (0-based) wait a
//! uniform random time in `[0, min(cap, base * 2^k)]`, but never less than the server's
//! `retry-after`. Jitter spreads retries of many concurrent requests so they do not return in
//! lockstep; the exponential ceiling backs off from a struggling server.

use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::Api;
use crate::response::{self, BadBody, Parsed};

/// What to do with one attempt's outcome.
#[derive(Debug)]
pub enum Verdict {
    Success(Parsed),
    Retry {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
    /// Never retried; recorded as a failure of this prompt.
    Fail {
        reason: &'static str,
        message: String,
    },
    /// Stops everything.
    Fatal {
        message: String,
    },
}

/// Classifies a complete HTTP response of an OpenAI-compatible server.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    classify_api(Api::Openai, status, body, retry_after)
}

/// Classifies a complete HTTP response in the dialect of `api`. Anthropic's differences: a
/// 2xx is a message ([`response::parse_message`]); 529 `overloaded_error` is retried like any
/// 5xx; an empty credit balance (a 400 whose message says so) stops the batch like OpenAI's
/// `insufficient_quota`.
pub fn classify_api(api: Api, status: u16, body: &[u8], retry_after: Option<Duration>) -> Verdict {
    if (200..300).contains(&status) {
        let parsed = match api {
            Api::Openai => response::parse(body),
            Api::Anthropic => response::parse_message(body),
        };
        return match parsed {
            Ok(p) => Verdict::Success(p),
            Err(BadBody::NoChoices) => Verdict::Retry { reason: "no_choices", message: format!("HTTP {status} without choices"), retry_after: None, rate_limited: false },
            Err(BadBody::Malformed(e)) => {
                Verdict::Retry { reason: "malformed_response", message: format!("HTTP {status} with an unreadable body: {e}"), retry_after: None, rate_limited: false }
            }
        };
    }
    let (message, code) = response::error_message(body);
    let code = code.unwrap_or_default();
    if api == Api::Anthropic && status == 400 && message.contains("credit balance") {
        return Verdict::Fatal { message: format!("HTTP 400: {message} (add credit to the account, or point [teacher] base_url elsewhere)") };
    }
    match status {
        429 if code == "insufficient_quota" || message.contains("insufficient_quota") => {
            Verdict::Fatal { message: format!("HTTP 429 insufficient_quota: {message} (add credit to the account, or point [teacher] base_url elsewhere)") }
        }
        401 | 403 => {
            Verdict::Fatal { message: format!("HTTP {status}: {message} (check the API key in the variable named by [teacher] api_key_env, and that it may use this model)") }
        }
        404 => Verdict::Fatal { message: format!("HTTP 404: {message} (check [teacher] base_url, which should end in /v1, and [teacher] model)") },
        429 => Verdict::Retry { reason: "rate_limited", message: format!("HTTP 429: {message}"), retry_after, rate_limited: true },
        408 | 409 => Verdict::Retry { reason: "http_retriable", message: format!("HTTP {status}: {message}"), retry_after, rate_limited: false },
        500..=599 => Verdict::Retry { reason: "server_error", message: format!("HTTP {status}: {message}"), retry_after, rate_limited: false },
        400..=499 => Verdict::Fail { reason: "bad_request", message: format!("HTTP {status}: {message}") },
        _ => Verdict::Retry { reason: "unexpected_status", message: format!("HTTP {status}: {message}"), retry_after: None, rate_limited: false },
    }
}

/// Full-jitter exponential backoff with its own seeded generator.
pub struct Backoff {
    base: Duration,
    cap: Duration,
    rng: StdRng,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Backoff {
        Backoff { base, cap, rng: StdRng::seed_from_u64(seed) }
    }

    /// The ceiling before retry `k`: `min(cap, base * 2^k)`.
    pub fn ceiling(&self, k: u32) -> Duration {
        self.base.saturating_mul(1u32.checked_shl(k.min(31)).unwrap_or(u32::MAX)).min(self.cap)
    }

    /// The wait before retry `k`.
    pub fn delay(&mut self, k: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(k).as_secs_f64();
        let jitter = Duration::from_secs_f64(self.rng.random_range(0.0..=ceiling));
        jitter.max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classifier_follows_the_table() {
        let ok = br#"{"choices":[{"text":"x"}]}"#;
        assert!(matches!(classify(200, ok, None), Verdict::Success(_)));
        assert!(matches!(classify(200, br#"{"choices":[]}"#, None), Verdict::Retry { reason: "no_choices", .. }));
        assert!(matches!(classify(200, br#"{"choi"#, None), Verdict::Retry { reason: "malformed_response", .. }));
        for s in [408, 409, 500, 502, 503] {
            assert!(matches!(classify(s, b"", None), Verdict::Retry { rate_limited: false, .. }), "{s}");
        }
        let wait = Some(Duration::from_millis(20));
        assert!(matches!(classify(429, br#"{"error":{"code":"rate_limit_exceeded","message":"slow down"}}"#, wait),
            Verdict::Retry { rate_limited: true, retry_after: Some(d), .. } if d == Duration::from_millis(20)));
        assert!(matches!(classify(429, br#"{"error":{"code":"insufficient_quota","message":"no money"}}"#, None), Verdict::Fatal { .. }));
        assert!(matches!(classify(401, b"", None), Verdict::Fatal { .. }));
        assert!(matches!(classify(403, b"", None), Verdict::Fatal { .. }));
        assert!(matches!(classify(400, br#"{"error":{"message":"context too long"}}"#, None),
            Verdict::Fail { reason: "bad_request", message } if message.contains("context too long")));
    }

    #[test]
    fn anthropic_overload_is_retried_and_an_empty_credit_balance_stops() {
        let overloaded = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(matches!(classify_api(Api::Anthropic, 529, overloaded, None), Verdict::Retry { reason: "server_error", rate_limited: false, .. }));
        let wait = Some(Duration::from_secs(2));
        let limited = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert!(matches!(classify_api(Api::Anthropic, 429, limited, wait), Verdict::Retry { rate_limited: true, retry_after: Some(d), .. } if d == Duration::from_secs(2)));
        let broke = br#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#;
        assert!(matches!(classify_api(Api::Anthropic, 400, broke, None), Verdict::Fatal { .. }));
        assert!(matches!(classify_api(Api::Anthropic, 400, b"{}", None), Verdict::Fail { .. }));
        let ok = br#"{"content":[{"type":"text","text":"x"}],"stop_reason":"end_turn"}"#;
        assert!(matches!(classify_api(Api::Anthropic, 200, ok, None), Verdict::Success(_)));
        assert!(matches!(classify_api(Api::Anthropic, 200, br#"{"choices":[{"text":"x"}]}"#, None), Verdict::Retry { reason: "no_choices", .. }));
    }

    #[test]
    fn delays_stay_under_the_doubling_ceiling_and_honour_retry_after() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        let ceilings: Vec<u128> = (0..7).map(|k| b.ceiling(k).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        let mut total = Duration::ZERO;
        for k in 0..200 {
            let d = b.delay(k % 7, None);
            assert!(d <= b.ceiling(k % 7));
            total += d;
        }
        // Full jitter averages half the ceiling; 200 draws land well inside these bounds.
        let mean = total.as_secs_f64() / 200.0;
        assert!((0.3..0.8).contains(&mean), "{mean}");
        assert!(b.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }
}

/// One attempt's result as the retry loop sees it.
#[derive(Debug)]
pub enum Step<T> {
    /// Done, one way or the other (success, a permanent failure, a stop): no more attempts.
    Finish(T),
    /// Try again after the backoff (and at least `retry_after`).
    Retry { message: String, retry_after: Option<Duration> },
}

/// How the loop ended.
#[derive(Debug, PartialEq)]
pub enum Finished<T> {
    Finished(T),
    /// Every attempt asked for a retry; `last` is the last attempt's message.
    Exhausted {
        attempts: u32,
        last: String,
    },
}

/// Calls `attempt(k)` for k = 0, 1, ... until it finishes or `max_retries` retries are spent,
/// sleeping `backoff.delay(k, retry_after)` on tokio's clock between attempts.
pub async fn retry_loop<T, F, Fut>(max_retries: u32, backoff: &mut Backoff, mut attempt: F) -> Finished<T>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Step<T>>,
{
    let mut k = 0;
    loop {
        match attempt(k).await {
            Step::Finish(t) => return Finished::Finished(t),
            Step::Retry { message, retry_after } => {
                if k >= max_retries {
                    return Finished::Exhausted { attempts: k + 1, last: message };
                }
                tokio::time::sleep(backoff.delay(k, retry_after)).await;
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod loop_tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    /// On paused time the loop's waits are exactly the backoff sequence of the same seed,
    /// each under its doubling ceiling, and a server's retry-after is honoured.
    #[tokio::test(start_paused = true)]
    async fn the_backoff_sequence_is_exact_on_paused_time() {
        let (base, cap, seed) = (Duration::from_millis(200), Duration::from_secs(5), 42);
        let times = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let mut backoff = Backoff::new(base, cap, seed);
        let rec = times.clone();
        let out = retry_loop(6, &mut backoff, move |k| {
            let rec = rec.clone();
            async move {
                rec.lock().unwrap().push(Instant::now() - t0);
                match k {
                    // A 429 asking for 3 s on the third attempt.
                    2 => Step::Retry { message: "429".into(), retry_after: Some(Duration::from_secs(3)) },
                    k if k < 5 => Step::Retry { message: format!("500 #{k}"), retry_after: None },
                    _ => Step::Finish("ok"),
                }
            }
        })
        .await;
        assert_eq!(out, Finished::Finished("ok"));
        let times = times.lock().unwrap().clone();
        assert_eq!(times.len(), 6);
        // The waits of seed 42, written out: full jitter under the ceilings 200, 400, 800,
        // 1,600 and 3,200 ms, the third raised to the server's 3 s (any draw there is under 800 ms).
        let expected_nanos: [u64; 5] = [105_311_482, 217_090_084, 3_000_000_000, 649_442_813, 109_897_017];
        let mut at = Duration::ZERO;
        assert_eq!(times[0], at);
        for k in 0..5u32 {
            let d = Duration::from_nanos(expected_nanos[k as usize]);
            assert!(k == 2 || d <= base * 2u32.pow(k), "retry {k}: {d:?} is over its ceiling");
            at += d;
            let got = times[k as usize + 1];
            // tokio's paused clock advances in whole milliseconds.
            assert!(got.abs_diff(at) <= Duration::from_millis(1 + k as u64), "retry {k}: {got:?} vs {at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_max_retries() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50), 1);
        let calls = Arc::new(Mutex::new(0));
        let c = calls.clone();
        let out: Finished<()> = retry_loop(3, &mut backoff, move |k| {
            *c.lock().unwrap() += 1;
            async move { Step::Retry { message: format!("try {k}"), retry_after: None } }
        })
        .await;
        assert_eq!(out, Finished::Exhausted { attempts: 4, last: "try 3".into() });
        assert_eq!(*calls.lock().unwrap(), 4);
    }
}
