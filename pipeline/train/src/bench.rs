//! `distill train --bench N`: times N optimizer steps of the real trainer (the same
//! [`optimizer_step`] the train stage runs: forward, f32 loss, backward, clipping, AdamW) for a
//! `[train]` config, on synthetic distillation data of exactly its shapes, so no shards are
//! needed. `benches/gpu/` runs it beside the PyTorch reference.
//!
//! Each synthetic sequence is `seq_len` tokens: a `prompt_len` prompt (no loss), then
//! completion tokens, each with a teacher top-`k` (k distinct ids, log-probs of a random
//! distribution over k + 1 categories, so the tail bucket has mass) and the sampled token.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checkpoint::DataPosition;
use crate::config::Settings;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::optim::AdamW;
use crate::trainer::{optimizer_step, optimizer_step_timed, Feeder, PhaseTimes};
use distill_model::TrainableLm;

/// What was timed.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub implementation: String,
    pub device: String,
    pub dtype: String,
    pub params: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub seq_len: usize,
    pub topk: usize,
    pub warmup_steps: usize,
    /// Seconds per timed step (after warmup), device synchronised.
    pub step_secs: Vec<f64>,
    pub tokens_per_step: u64,
    /// Tokens per second at the median step time.
    pub tokens_per_sec: f64,
    /// Losses of every step (warmup included): a smoke check that training moves.
    pub losses: Vec<f64>,
    /// Seconds per phase of one extra step run with a device synchronisation after each phase
    /// (not part of the timed steps).
    pub phase_secs: PhaseTimes,
}

/// `n` synthetic sequences (see the module docs), deterministic for `seed`.
pub fn synthetic_examples(n: usize, seq_len: usize, prompt_len: usize, k: usize, vocab: usize, seed: u64) -> Vec<Example> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let mut ids = Vec::with_capacity(seq_len);
            let (mut mask, mut top_ids, mut top_lps) = (vec![0u8; seq_len], vec![vec![]; seq_len], vec![vec![]; seq_len]);
            for p in 0..seq_len {
                if p < prompt_len.min(seq_len - 1).max(1) {
                    ids.push(rng.random_range(0..vocab as u32));
                    continue;
                }
                let listed: Vec<u32> = sample(&mut rng, vocab, k.min(vocab)).into_iter().map(|x| x as u32).collect();
                // Log-probs of a random distribution over the k listed tokens and the tail (whose
                // logit is fixed at 2, so it always keeps some mass).
                let mut logits: Vec<f64> = (0..listed.len()).map(|_| rng.random_range(-4.0..4.0)).collect();
                logits.push(2.0);
                let lse = logits.iter().map(|x| x.exp()).sum::<f64>().ln();
                top_lps[p] = logits[..listed.len()].iter().map(|x| (x - lse) as f32).collect();
                ids.push(listed[0]);
                top_ids[p] = listed;
                mask[p] = 1;
            }
            Example { id: format!("synthetic-{i}"), input_ids: ids, loss_mask: mask, topk_ids: top_ids, topk_logprobs: top_lps, hard_label_only: false, chunks: Vec::new() }
        })
        .collect()
}

/// Runs `warmup + steps` optimizer steps of `lm` under `s` on synthetic top-`k` data and
/// reports the timed ones.
pub fn bench(lm: &TrainableLm, s: &Settings, k: usize, warmup: usize, steps: usize) -> Result<BenchReport> {
    if steps == 0 {
        return Err(Error::BenchWithoutSteps);
    }
    let device = lm.model.device().clone();
    let vocab = lm.model.config().vocab_size();
    let per_step = s.batch_size * s.grad_accum;
    let data = synthetic_examples(per_step * 4, s.seq_len, s.seq_len / 16, k, vocab, s.seed);
    let mut feeder = Feeder::new(&data, s.batch_size, s.seed, DataPosition::default())?;
    let mut opt = AdamW::new(lm.vars(), s.adamw)?;
    let (mut step_secs, mut losses, mut tokens_per_step) = (Vec::new(), Vec::new(), 0);
    for step in 0..(warmup + steps) as u64 {
        let t0 = Instant::now();
        // Every timed step builds the next one's batches while the device works, as in training.
        let out = optimizer_step(lm, &mut opt, &mut feeder, s, step, true)?;
        device.synchronize()?;
        let secs = t0.elapsed().as_secs_f64();
        tracing::info!(step, loss = out.total, secs, "bench step");
        losses.push(out.total);
        if step as usize >= warmup {
            step_secs.push(secs);
            tokens_per_step = out.tokens;
        }
    }
    let mut phase_secs = PhaseTimes::new();
    let step = (warmup + steps) as u64;
    optimizer_step_timed(lm, &mut opt, &mut feeder, s, step, true, Some(&mut phase_secs))?;
    let mut sorted = step_secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Ok(BenchReport {
        implementation: "distill (candle)".into(),
        device: s.device.clone(),
        dtype: if s.bf16 { "bf16".into() } else { "f32".into() },
        params: lm.num_params(),
        batch_size: s.batch_size,
        grad_accum: s.grad_accum,
        seq_len: s.seq_len,
        topk: k,
        warmup_steps: warmup,
        step_secs,
        tokens_per_step,
        tokens_per_sec: tokens_per_step as f64 / median,
        losses,
        phase_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_rows_have_the_shapes_and_a_tail_with_mass() {
        let ex = synthetic_examples(3, 64, 4, 20, 500, 1);
        assert_eq!(ex, synthetic_examples(3, 64, 4, 20, 500, 1));
        for e in &ex {
            assert_eq!(e.len(), 64);
            assert_eq!(e.loss_mask.iter().filter(|&&m| m == 1).count(), 60);
            for p in 4..64 {
                let mut ids = e.topk_ids[p].clone();
                assert_eq!(ids.len(), 20);
                assert_eq!(e.input_ids[p], ids[0]);
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), 20, "top-k ids are distinct");
                let mass: f32 = e.topk_logprobs[p].iter().map(|x| x.exp()).sum();
                assert!(mass < 0.995 && mass > 0.0, "tail mass {}", 1.0 - mass);
            }
        }
    }
}
