//! Length-bucketed batches and their tensors.
//!
//! Order: each epoch the examples are shuffled by an RNG seeded with (seed, epoch), cut into
//! pools of `50 * batch_size`, each pool sorted by length and cut into batches (so a batch holds
//! similar lengths and little padding), and the batches shuffled again. The order is a pure
//! function of (seed, epoch, lengths): a run resumed at (epoch, batch index) sees exactly the
//! batches an uninterrupted run would.
//!
//! Tensors: a batch of B sequences right-padded to T gives `ids` (B, T) and targets for the
//! N = B (T - 1) logit rows that predict positions 1..T (see `distill_model::loss`): row
//! (b, i) pairs logits at i with the labels of token i + 1. Padding rows have both masks 0.

use candle_core::{Device, Tensor};
use distill_model::loss::{ChunkRows, KdTargets, TokenCounts};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::Example;
use crate::error::Result;

/// Examples per length-sorting pool, in batches.
const POOL_BATCHES: usize = 50;

/// The batches (lists of example indices) of one epoch.
pub fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_add(1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let bs = batch_size.max(1);
    let mut batches = Vec::new();
    for pool in order.chunks(bs * POOL_BATCHES) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| (lengths[i], i));
        batches.extend(pool.chunks(bs).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// How many batches [`epoch_batches`] makes of `n` examples (without looking at them).
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    let bs = batch_size.max(1);
    let pool = bs * POOL_BATCHES;
    (n / pool) * POOL_BATCHES + (n % pool).div_ceil(bs)
}

/// The seed of window `w` of an epoch: window 0 keeps the run's seed, so a data set of one
/// window is batched exactly as an in-memory one.
pub fn window_seed(seed: u64, window: usize) -> u64 {
    seed ^ (window as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One batch as tensors.
pub struct Batch {
    /// (B, T) u32 input ids, right-padded with 0.
    pub ids: Tensor,
    pub targets: KdTargets,
    /// Real (unpadded) tokens in the batch, for tokens/s.
    pub tokens: usize,
}

impl Batch {
    pub fn new(examples: &[&Example], device: &Device) -> Result<Self> {
        let b = examples.len();
        let t = examples.iter().map(|e| e.len()).max().unwrap_or(2).max(2);
        let k = examples.iter().flat_map(|e| e.topk_ids.iter().map(Vec::len)).max().unwrap_or(0).max(1);
        let n = b * (t - 1);
        let mut ids = vec![0u32; b * t];
        let mut sampled = vec![0u32; n];
        let mut kd_mask = vec![0f32; n];
        let mut ce_mask = vec![0f32; n];
        let mut topk_ids = vec![0u32; n * k];
        let mut topk_lps = vec![0f32; n * k];
        let mut topk_mask = vec![0f32; n * k];
        let (mut chunk_interior, mut chunk_start) = (Vec::new(), Vec::new());
        let mut tokens = 0;
        for (bi, e) in examples.iter().enumerate() {
            tokens += e.len();
            ids[bi * t..bi * t + e.len()].copy_from_slice(&e.input_ids);
            for p in 1..e.len() {
                let row = bi * (t - 1) + (p - 1);
                sampled[row] = e.input_ids[p];
                let counts = e.loss_mask[p] != 0;
                ce_mask[row] = if counts { 1.0 } else { 0.0 };
                let listed = &e.topk_ids[p];
                if counts && !e.hard_label_only && !listed.is_empty() {
                    kd_mask[row] = 1.0;
                    for (j, (&id, &lp)) in listed.iter().zip(&e.topk_logprobs[p]).enumerate() {
                        topk_ids[row * k + j] = id;
                        topk_lps[row * k + j] = lp;
                        topk_mask[row * k + j] = 1.0;
                    }
                }
            }
            if !e.hard_label_only {
                for &(start, len) in &e.chunks {
                    let first = bi * (t - 1) + start as usize - 1;
                    chunk_interior.extend((first + 1..first + len as usize).map(|r| r as u32));
                    chunk_start.extend(std::iter::repeat_n(first as u32, len as usize - 1));
                }
            }
        }
        let counts = TokenCounts { kd: kd_mask.iter().sum::<f32>() as f64, ce: ce_mask.iter().sum::<f32>() as f64 };
        let targets = KdTargets {
            topk_ids: Tensor::from_vec(topk_ids, (n, k), device)?,
            topk_logprobs: Tensor::from_vec(topk_lps, (n, k), device)?,
            topk_mask: Some(Tensor::from_vec(topk_mask, (n, k), device)?),
            sampled: Tensor::from_vec(sampled, n, device)?,
            kd_mask: Tensor::from_vec(kd_mask, n, device)?,
            ce_mask: Tensor::from_vec(ce_mask, n, device)?,
            chunks: ChunkRows::new(chunk_interior, chunk_start, device)?,
            counts,
        };
        Ok(Batch { ids: Tensor::from_vec(ids, (b, t), device)?, targets, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_example_once_and_depend_only_on_seed_and_epoch() {
        let lengths: Vec<usize> = (0..103).map(|i| 5 + (i * 37) % 60).collect();
        let a = epoch_batches(&lengths, 4, 7, 0);
        assert_eq!(a, epoch_batches(&lengths, 4, 7, 0));
        assert_ne!(a, epoch_batches(&lengths, 4, 7, 1));
        let mut all: Vec<usize> = a.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..103).collect::<Vec<_>>());
        // Bucketing: within a batch lengths are close (pool of 103 sorted, 4 per batch).
        let spread: usize = a.iter().map(|b| b.iter().map(|&i| lengths[i]).max().unwrap() - b.iter().map(|&i| lengths[i]).min().unwrap()).max().unwrap();
        assert!(spread <= 6, "spread {spread}");
        for (n, bs) in [(103, 4), (0, 4), (1, 1), (200, 4), (201, 4), (1000, 3), (7, 10)] {
            assert_eq!(batch_count(n, bs), epoch_batches(&vec![1; n], bs, 1, 0).len(), "n {n} bs {bs}");
        }
    }

    #[test]
    fn targets_pair_token_t_with_logits_t_minus_1() {
        let e = Example {
            id: "a".into(),
            input_ids: vec![10, 11, 12, 13],
            loss_mask: vec![0, 0, 1, 1],
            topk_ids: vec![vec![], vec![], vec![12, 5], vec![13]],
            topk_logprobs: vec![vec![], vec![], vec![-0.1, -2.5], vec![-0.01]],
            hard_label_only: false,
            chunks: Vec::new(),
        };
        let short = Example::plain("b".into(), vec![7, 8]);
        let b = Batch::new(&[&e, &short], &Device::Cpu).unwrap();
        assert_eq!(b.ids.to_vec2::<u32>().unwrap(), vec![vec![10, 11, 12, 13], vec![7, 8, 0, 0]]);
        let t = &b.targets;
        // Rows 0..3 are sequence a (logits at 0, 1, 2), rows 3..6 sequence b.
        assert_eq!(t.sampled.to_vec1::<u32>().unwrap(), vec![11, 12, 13, 8, 0, 0]);
        assert_eq!(t.ce_mask.to_vec1::<f32>().unwrap(), vec![0., 1., 1., 1., 0., 0.]);
        assert_eq!(t.kd_mask.to_vec1::<f32>().unwrap(), vec![0., 1., 1., 0., 0., 0.]);
        assert_eq!(t.topk_ids.to_vec2::<u32>().unwrap()[1], vec![12, 5]);
        assert_eq!(t.topk_ids.to_vec2::<u32>().unwrap()[2], vec![13, 0]);
        assert_eq!(t.topk_mask.as_ref().unwrap().to_vec2::<f32>().unwrap()[2], vec![1., 0.]);
        assert_eq!(b.tokens, 6);
        assert_eq!(b.targets.counts, TokenCounts { kd: 2.0, ce: 3.0 });
    }
}
