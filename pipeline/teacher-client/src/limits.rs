//! Rate limits: requests per minute, tokens per minute, and pauses the server asks for.
//!
//! - Requests: a governor GCRA limiter, `requests_per_minute` with `burst - 1` cells (one
//!   kept in reserve against jitter). A request waits for one cell before it is sent; over any
//!   window of length `t` at most `burst + t * rpm / 60` requests start.
//! - Tokens: governor cannot refund, so the budget is *reserve then correct*: before sending,
//!   a request reserves `prompt estimate + n * max_tokens`; the reservation is taken first from
//!   a local credit balance and only the rest from governor (in chunks no larger than its
//!   capacity, since a larger request would fail with `InsufficientCapacity`). When the answer
//!   arrives, `reserved - actual` goes back to the balance: positive is credit for the next
//!   requests, negative is debt they pay first. Over time the tokens drawn from governor are
//!   actual usage plus at most the outstanding reservations, so the limit holds.
//! - Server hints: `retry-after-ms` / `retry-after` on a 429 and `x-ratelimit-remaining-*: 0`
//!   with `x-ratelimit-reset-*` set a shared pause: no request starts before it ends.
//!   Anthropic's `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*` are read
//!   the same way; their reset is an RFC 3339 time rather than a duration.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::time::Instant;

pub struct Limits {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, u32)>,
    /// Tokens reserved but not used (positive) or used beyond reservations (negative).
    balance: Mutex<i64>,
    pause_until: Mutex<Option<Instant>>,
    /// One waiter at a time, first come first served. governor's waiters are neither queued
    /// nor fair: with 64 requests waiting, every freed cell woke all 64 to race for it (64
    /// wake-ups per request, most of the client's CPU in a rate-limited run), and a large
    /// token reservation could starve behind small ones.
    gate: tokio::sync::Mutex<()>,
}

impl Limits {
    /// `rpm` / `tpm` of 0 mean no limit.
    pub fn new(rpm: u32, burst: u32, tpm: u64) -> Limits {
        // One cell of the burst is kept in reserve: a server whose window matches ours exactly
        // would otherwise see a request that network jitter delivered a little early as one
        // too many. The long-run rate is unchanged.
        let cells = if burst > 1 { burst - 1 } else { 1 };
        let requests = NonZeroU32::new(rpm).map(|r| RateLimiter::direct(Quota::per_minute(r).allow_burst(NonZeroU32::new(cells).expect("cells >= 1"))));
        // The token bucket holds the same span of time as the request burst.
        let burst_secs = if rpm > 0 { (f64::from(burst.max(1)) * 60.0 / f64::from(rpm)).max(1.0) } else { 1.0 };
        let tokens = NonZeroU32::new(tpm.min(u64::from(u32::MAX)) as u32).map(|t| {
            let cap = ((tpm as f64 / 60.0 * burst_secs) as u64).clamp(1, u64::from(u32::MAX)) as u32;
            (RateLimiter::direct(Quota::per_minute(t).allow_burst(NonZeroU32::new(cap).expect("clamped to >= 1"))), cap)
        });
        Limits { requests, tokens, balance: Mutex::new(0), pause_until: Mutex::new(None), gate: tokio::sync::Mutex::new(()) }
    }

    /// Waits until a request of `tokens` (estimated) may start.
    pub async fn admit(&self, tokens: u64) {
        if self.requests.is_none() && self.tokens.is_none() {
            return self.wait_pause().await;
        }
        let _turn = self.gate.lock().await;
        self.wait_pause().await;
        if let Some(r) = &self.requests {
            r.until_ready().await;
        }
        if let Some((limiter, cap)) = &self.tokens {
            let need = {
                let mut bal = self.balance.lock().expect("balance lock");
                let need = tokens as i64 - *bal;
                *bal = (-need).max(0);
                need.max(0) as u64
            };
            let mut left = need;
            while left > 0 {
                let chunk = left.min(u64::from(*cap)) as u32;
                limiter.until_n_ready(NonZeroU32::new(chunk).expect("chunk > 0")).await.expect("chunks never exceed the capacity");
                left -= u64::from(chunk);
            }
        }
    }

    /// Returns the difference between a reservation and the tokens actually used.
    pub fn correct(&self, reserved: u64, actual: u64) {
        if self.tokens.is_some() {
            *self.balance.lock().expect("balance lock") += reserved as i64 - actual as i64;
        }
    }

    /// No request starts before `now + d` (a longer pause already set wins).
    pub fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.pause_until.lock().expect("pause lock");
        if p.is_none_or(|old| old < until) {
            *p = Some(until);
        }
    }

    async fn wait_pause(&self) {
        loop {
            let until = *self.pause_until.lock().expect("pause lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    /// Reads `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` of a response to a request
    /// sent at `sent_at`. When nothing remains, no request starts before the server has
    /// replenished one: the window refills `limit` in `reset`, so one comes `reset / limit`
    /// after the moment the server counted (about when we sent). Without a limit header, the
    /// whole `reset` is waited.
    pub fn observe(&self, headers: &HeaderMap, sent_at: Instant) {
        for kind in ["requests", "tokens"] {
            let num = |name: &str| header_str(headers, &format!("x-ratelimit-{name}-{kind}")).and_then(|v| v.trim().parse::<f64>().ok());
            if num("remaining").is_some_and(|r| r <= 0.0) {
                if let Some(reset) = header_str(headers, &format!("x-ratelimit-reset-{kind}")).and_then(parse_duration) {
                    self.pause_for_window(reset, num("limit"), sent_at);
                }
            }
        }
        if !headers.keys().any(|k| k.as_str().starts_with("anthropic-ratelimit-")) {
            return;
        }
        for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
            let name = |part: &str| format!("anthropic-ratelimit-{kind}-{part}");
            let num = |part: &str| header_str(headers, &name(part)).and_then(|v| v.trim().parse::<f64>().ok());
            if num("remaining").is_some_and(|r| r <= 0.0) {
                if let Some(at) = header_str(headers, &name("reset")).and_then(parse_rfc3339) {
                    let reset = at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
                    self.pause_for_window(reset, num("limit"), Instant::now());
                }
            }
        }
    }

    /// A window of `limit` requests refilled in `reset` is empty: pause one request's share.
    fn pause_for_window(&self, reset: Duration, limit: Option<f64>, sent_at: Instant) {
        let one = match limit {
            Some(l) if l >= 1.0 => reset.div_f64(l),
            _ => reset,
        };
        let until = sent_at + one.min(Duration::from_secs(300));
        let mut p = self.pause_until.lock().expect("pause lock");
        if p.is_none_or(|old| old < until) {
            *p = Some(until);
        }
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// How long a 429 (or 503) asks us to wait: `retry-after-ms` first, then `retry-after` in
/// seconds (an HTTP date is ignored: clocks disagree, and the backoff still applies).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    header_str(headers, "retry-after").and_then(|v| v.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

/// An RFC 3339 time in UTC or with an offset (`2026-12-06T17:00:30Z`,
/// `2026-12-06T18:00:30.25+01:00`), as Anthropic's reset headers give it.
pub fn parse_rfc3339(text: &str) -> Option<std::time::SystemTime> {
    let t = text.trim();
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    let mut rest = &t[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac = format!("0.{}", &r[..end]).parse().ok()?;
        rest = &r[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let m = o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60;
            if o.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_secs_f64(frac))
}

/// OpenAI's reset format: `1s`, `6m0s`, `1h2m3.5s`, `20ms`, `0.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reset_durations_parse() {
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_duration("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn rfc3339_times_parse() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(at("2024-02-29T12:00:30.5Z"), Some(1_709_208_030.5));
        assert_eq!(at("2024-02-29T13:00:30.5+01:00"), Some(1_709_208_030.5));
        assert_eq!(at("soon"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn anthropic_rate_limit_headers_pause_like_openai_ones() {
        let limits = Limits::new(0, 0, 0);
        let mut h = HeaderMap::new();
        let reset = std::time::SystemTime::now() + Duration::from_secs(20);
        let secs = reset.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        // Whole seconds, as the test server writes them; the pause is 1/10 of what is left.
        let text = distill_teacher_testserver::rfc3339(reset);
        assert_eq!(parse_rfc3339(&text).unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), secs);
        h.insert("anthropic-ratelimit-requests-remaining", HeaderValue::from_static("0"));
        h.insert("anthropic-ratelimit-requests-limit", HeaderValue::from_static("10"));
        h.insert("anthropic-ratelimit-requests-reset", HeaderValue::from_str(&text).unwrap());
        limits.observe(&h, Instant::now());
        let t0 = Instant::now();
        limits.admit(1).await;
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(1800) && waited <= Duration::from_millis(2000), "{waited:?}");
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_micros(150_500)));
        h.remove("retry-after-ms");
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_exhausted_window_pauses_every_request_until_its_reset() {
        let limits = Limits::new(0, 0, 0);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("1.5s"));
        limits.observe(&h, Instant::now());
        let t0 = Instant::now();
        limits.admit(10).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(1500));
        // With the window's size known, only one request's share of it is waited.
        h.insert("x-ratelimit-limit-requests", HeaderValue::from_static("100"));
        h.insert("x-ratelimit-reset-requests", HeaderValue::from_static("10s"));
        limits.observe(&h, Instant::now());
        let t1 = Instant::now();
        limits.admit(10).await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }

    #[test]
    fn token_reservations_are_corrected_from_usage() {
        // 600 tokens/min, capacity 10 tokens: after the first 10, each token costs 100 ms.
        let limits = Limits::new(0, 0, 600);
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            limits.admit(10).await; // the whole bucket
            limits.correct(10, 4); // only 4 used: 6 tokens of credit
            let t0 = std::time::Instant::now();
            limits.admit(6).await; // paid from credit: no wait
            assert!(t0.elapsed() < Duration::from_millis(50), "{:?}", t0.elapsed());
            limits.correct(6, 8); // 2 tokens of debt
            let t1 = std::time::Instant::now();
            limits.admit(1).await; // 1 + 2 debt = 3 tokens from governor: ~300 ms
            let waited = t1.elapsed();
            assert!(waited >= Duration::from_millis(250) && waited < Duration::from_millis(900), "{waited:?}");
        });
    }
}
