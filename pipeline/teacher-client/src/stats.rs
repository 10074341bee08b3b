//! Counters of one batch and the dry-run plan.

use std::collections::BTreeMap;

use serde::Serialize;

/// What one batch did. `prompt_tokens` / `completion_tokens` cover every answer returned
/// (cached or new); `cost_usd` is what this run spent on new requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchStats {
    /// Prompts given.
    pub prompts: u64,
    /// Prompts with an answer.
    pub completed: u64,
    /// Prompts answered from the cache (including negative entries reported as failed).
    pub from_cache: u64,
    /// Distinct requests sent this run (each counted once however often it was retried).
    pub requested: u64,
    /// HTTP requests sent, retries included.
    pub http_requests: u64,
    /// Prompts without an answer.
    pub failed: u64,
    pub failed_by_reason: BTreeMap<String, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Dollars spent this run (from reported usage and the configured prices).
    pub cost_usd: f64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Retries made.
    pub retries: u64,
    /// Answers whose server reported no usage (their tokens are counted as 0).
    pub usage_missing: u64,
    /// Prompts that shared a request with an earlier prompt of the batch (same content).
    pub duplicates: u64,
    pub elapsed_secs: f64,
}

/// The client's running totals since it was created, readable while a batch runs (the
/// teacher stage samples them into its time series).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Live {
    /// Prompts answered from the cache.
    pub from_cache: u64,
    /// Distinct requests sent.
    pub requested: u64,
    /// HTTP requests sent, retries included.
    pub http_requests: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    pub retries: u64,
    /// Tokens of the answers bought (not those from the cache).
    pub new_prompt_tokens: u64,
    pub new_completion_tokens: u64,
    /// Dollars spent.
    pub cost_usd: f64,
}

/// What a run would do, without sending anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub prompts: u64,
    /// Prompts whose answer is cached.
    pub cached: u64,
    /// Prompts with a cached non-retriable failure (re-sent only with `--retry-failed`).
    pub cached_failed: u64,
    /// Distinct requests a run would send.
    pub to_request: u64,
    pub duplicates: u64,
    /// Prompts that are not valid requests.
    pub invalid: u64,
    /// Estimated prompt tokens of the requests to send (bytes / 4).
    pub projected_prompt_tokens: u64,
    /// Completion tokens at most (`n * max_tokens` per request).
    pub projected_completion_tokens_max: u64,
    /// Dollars at most.
    pub projected_cost_usd_max: f64,
    /// Completion tokens expected from the cached answers' average, when any are cached.
    pub projected_completion_tokens_expected: Option<u64>,
    pub projected_cost_usd_expected: Option<f64>,
    /// `transport = "batch"`: requests held by batches of an earlier (killed) run, which the
    /// next run waits for instead of submitting (not in `to_request` or the projections).
    #[serde(skip_serializing_if = "is_zero")]
    pub in_open_batches: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Dollars for a number of prompt and completion tokens.
pub fn cost(prompt_tokens: u64, completion_tokens: u64, price_in_per_mtok: f64, price_out_per_mtok: f64) -> f64 {
    (prompt_tokens as f64 * price_in_per_mtok + completion_tokens as f64 * price_out_per_mtok) / 1e6
}
