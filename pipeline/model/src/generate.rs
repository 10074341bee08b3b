//! Batched generation with a KV cache: greedy or temperature / top-k / top-p sampling, seeded,
//! stopping on end-of-sequence ids, token stop sequences or a caller's test, and returning
//! every generated token's log-probability and the top alternatives.
//!
//! The batch is run by [`Decoder`](crate::decode::Decoder): prompts left-padded to one batch and
//! processed in one call (prefill), then one token per unfinished row a step, finished rows
//! dropped from the batch and the cache. This module decides each row's tokens and stops.
//!
//! Log-probabilities are those of the distribution sampled from, before top-k / top-p
//! truncation: `log_softmax(logits / T)` for `T > 0`, `log_softmax(logits)` for greedy. This is
//! the "capture temperature" the distillation losses correct for.
//!
//! Each row draws from its own RNG seeded by `(seed, row)`, so results do not depend on the
//! batch size, and `n` samples of a prompt are the same prompt given `n` times.

use candle_core::{Tensor, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::decode::Decoder;
use crate::error::{Error, Result};
use crate::model::CausalLm;

#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0 = off).
    pub top_p: f32,
    pub seed: u64,
    /// End-of-sequence ids: generation of a row stops there; the id is not returned.
    pub stop_token_ids: Vec<u32>,
    /// Token sequences that stop a row; the matched tokens are not returned.
    pub stop_sequences: Vec<Vec<u32>>,
    /// How many alternatives (token id, log-prob) to report per generated token.
    pub top_logprobs: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams { max_new_tokens: 128, temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, stop_token_ids: Vec::new(), stop_sequences: Vec::new(), top_logprobs: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence id, a stop sequence or the caller's stop test.
    Stop,
    /// `max_new_tokens` reached (or the model's context is full).
    Length,
}

impl FinishReason {
    /// OpenAI's spelling (`stop` / `length`).
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One row's continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// Log-probability of each returned token.
    pub logprobs: Vec<f32>,
    /// Per returned token, the `top_logprobs` most likely (token id, log-prob), best first.
    pub top_logprobs: Vec<Vec<(u32, f32)>>,
    pub finish_reason: FinishReason,
}

/// Generates a continuation for every prompt (see the module docs).
pub fn generate(model: &CausalLm, prompts: &[Vec<u32>], params: &GenerateParams) -> Result<Vec<Generated>> {
    generate_with_stop(model, prompts, params, &mut |_, _| false)
}

/// Like [`generate`], with `stop(row, tokens_so_far)` consulted after every token (for text
/// stop sequences that need the tokenizer; the tokens stay in the output).
pub fn generate_with_stop(model: &CausalLm, prompts: &[Vec<u32>], params: &GenerateParams, stop: &mut dyn FnMut(usize, &[u32]) -> bool) -> Result<Vec<Generated>> {
    if prompts.iter().any(Vec::is_empty) {
        return Err(Error::Invalid("generation needs at least one prompt token per row".into()));
    }
    if !(params.temperature >= 0.0 && params.top_p > 0.0 && params.top_p <= 1.0) {
        return Err(Error::Invalid("temperature must be >= 0 and top_p in (0, 1]".into()));
    }
    let mut out: Vec<Generated> = prompts.iter().map(|_| Generated { tokens: vec![], logprobs: vec![], top_logprobs: vec![], finish_reason: FinishReason::Length }).collect();
    if prompts.is_empty() || params.max_new_tokens == 0 {
        return Ok(out);
    }
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let room = model.config().max_positions().saturating_sub(max_len);
    let max_new = params.max_new_tokens.min(room);
    if max_new == 0 {
        return Ok(out);
    }
    let mut rngs: Vec<StdRng> = (0..prompts.len()).map(|r| StdRng::seed_from_u64(row_seed(params.seed, r))).collect();

    let prompts: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let mut batch = Decoder::new(model, &prompts)?;
    for step in 0..max_new {
        let logits = batch.logits()?;
        let mut next = Vec::new(); // (row, token) of the rows that continue
        for (&row, row_logits) in batch.rows().iter().zip(&logits) {
            let (token, lp, top) = choose(row_logits, params, &mut rngs[row]);
            let g = &mut out[row];
            if params.stop_token_ids.contains(&token) {
                g.finish_reason = FinishReason::Stop;
                continue;
            }
            g.tokens.push(token);
            g.logprobs.push(lp);
            g.top_logprobs.push(top);
            if let Some(n) = params.stop_sequences.iter().filter(|s| !s.is_empty()).find(|s| g.tokens.ends_with(s)).map(Vec::len) {
                let keep = g.tokens.len() - n;
                g.tokens.truncate(keep);
                g.logprobs.truncate(keep);
                g.top_logprobs.truncate(keep);
                g.finish_reason = FinishReason::Stop;
                continue;
            }
            if stop(row, &g.tokens) {
                g.finish_reason = FinishReason::Stop;
                continue;
            }
            if step + 1 < max_new {
                next.push((row, token));
            }
        }
        if next.is_empty() {
            break;
        }
        batch.step(&next)?;
    }
    Ok(out)
}

fn row_seed(seed: u64, row: usize) -> u64 {
    seed ^ (row as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Picks the next token from one row's logits; returns (token, its log-prob, top list).
///
/// Only the candidates that matter are ordered (a partial selection of the best `m`), so a
/// step costs O(V) rather than a full O(V log V) sort, unless top-p alone asks for all of them.
fn choose(logits: &[f32], p: &GenerateParams, rng: &mut StdRng) -> (u32, f32, Vec<(u32, f32)>) {
    let t = if p.temperature > 0.0 { p.temperature } else { 1.0 };
    let lp = log_softmax(logits, t);
    let sampling = p.temperature > 0.0;
    let mut m = p.top_logprobs.max(1);
    if sampling {
        m = m.max(match (p.top_k, p.top_p < 1.0) {
            (0, true) | (0, false) => lp.len(),
            (k, _) => k,
        });
    }
    // Best first; ties broken by the lower id so results are deterministic.
    let better = |a: &usize, b: &usize| lp[*b].total_cmp(&lp[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..lp.len()).collect();
    let m = m.min(order.len());
    if m < order.len() {
        order.select_nth_unstable_by(m - 1, better);
        order.truncate(m);
    }
    order.sort_by(better);
    let top = order.iter().take(p.top_logprobs).map(|&i| (i as u32, lp[i])).collect();
    let token = if !sampling {
        order[0]
    } else {
        let mut keep = if p.top_k > 0 { p.top_k.min(order.len()) } else { order.len() };
        if p.top_p < 1.0 {
            let mut cum = 0.0f64;
            let mut n = 0;
            for &i in &order[..keep] {
                cum += (lp[i] as f64).exp();
                n += 1;
                if cum >= p.top_p as f64 {
                    break;
                }
            }
            keep = n.max(1);
        }
        let probs: Vec<f64> = order[..keep].iter().map(|&i| (lp[i] as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        let mut u = rng.random::<f64>() * total;
        let mut pick = order[keep - 1];
        for (j, q) in probs.iter().enumerate() {
            if u < *q {
                pick = order[j];
                break;
            }
            u -= q;
        }
        pick
    };
    (token as u32, lp[token], top)
}

/// `log_softmax(x / t)` in f64 for accuracy, returned as f32.
pub fn log_softmax(x: &[f32], t: f32) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let t = t as f64;
    let lse = x.iter().map(|&v| ((v as f64 - max) / t).exp()).sum::<f64>().ln();
    x.iter().map(|&v| ((v as f64 - max) / t - lse) as f32).collect()
}

/// Log-probabilities (B, T, V) of next tokens, from logits: a convenience for scoring.
pub fn log_probs(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}
