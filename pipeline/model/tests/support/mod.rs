//! Seeded distillation targets for the loss tests (shared by `head_loss.rs` and the GPU tests).

use candle_core::{Device, Tensor};
use distill_model::loss::{ChunkRows, KdTargets, TokenCounts};

/// Targets for `n` rows over a vocabulary of `v`, top-`k`, with the awkward cases in them: rows
/// listing fewer than k tokens, rows without soft labels or without a hard label, and, with
/// `events`, two multi-token chunks (rows 2-4 and 8-9), whose later rows carry no soft labels.
pub fn seeded_targets(n: usize, v: usize, k: usize, events: bool, dev: &Device) -> KdTargets {
    assert!(n >= 10 && v > k);
    let (interior, start): (Vec<u32>, Vec<u32>) = if events { (vec![3, 4, 9], vec![2, 2, 8]) } else { (vec![], vec![]) };
    let mut ids = vec![0u32; n * k];
    let mut logprobs = vec![0f32; n * k];
    let mut listed = vec![0f32; n * k];
    for r in 0..n {
        // Row r lists k - (r % 3) tokens with probabilities 0.5^(j+1) * 0.9, the rest in the tail.
        for j in 0..k - r % 3 {
            ids[r * k + j] = ((r * 7 + j * 13 + 1) % v) as u32;
            logprobs[r * k + j] = (0.9 * 0.5f32.powi(j as i32 + 1)).ln();
            listed[r * k + j] = 1.0;
        }
    }
    let sampled: Vec<u32> = (0..n).map(|r| ((r * 31 + 5) % v) as u32).collect();
    let kd_mask: Vec<f32> = (0..n).map(|r| if r % 5 == 4 || interior.contains(&(r as u32)) { 0.0 } else { 1.0 }).collect();
    let ce_mask: Vec<f32> = (0..n).map(|r| if r == 0 { 0.0 } else { 1.0 }).collect();
    let counts = TokenCounts { kd: kd_mask.iter().sum::<f32>() as f64, ce: ce_mask.iter().sum::<f32>() as f64 };
    KdTargets {
        topk_ids: Tensor::from_vec(ids, (n, k), dev).unwrap(),
        topk_logprobs: Tensor::from_vec(logprobs, (n, k), dev).unwrap(),
        topk_mask: Some(Tensor::from_vec(listed, (n, k), dev).unwrap()),
        sampled: Tensor::from_vec(sampled, n, dev).unwrap(),
        kd_mask: Tensor::from_vec(kd_mask, n, dev).unwrap(),
        ce_mask: Tensor::from_vec(ce_mask, n, dev).unwrap(),
        chunks: ChunkRows::new(interior, start, dev).unwrap(),
        counts,
    }
}
