//! The chunked LM head and loss (`head_loss`) against the loss on the whole logits, on the CPU
//! in f32: the same total, terms and gradients (hidden rows and head matrix) for every loss
//! term, temperature, chunk size, a step-wide denominator, and chunk boundaries that must move
//! past a teacher's multi-token chunk. (The GPU's bf16 path is checked against this one in
//! `tests/cuda_kernels.rs`.)

mod support;

use candle_core::{DType, Device, Tensor, Var};
use distill_model::head_loss::{distill_loss_chunked, HeadRows};
use distill_model::loss::{self, ChunkRows, LossWeights, TokenCounts};
use distill_model::weights::normal_tensor;

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

#[test]
fn chunked_head_and_loss_match_the_loss_on_whole_logits() {
    let dev = Device::Cpu;
    let (n, c, v, k) = (23, 16, 97, 5);
    let hidden = Var::from_tensor(&normal_tensor((n, c), 1.0, 1, &dev).unwrap()).unwrap();
    let weight = Var::from_tensor(&normal_tensor((v, c), 0.7, 2, &dev).unwrap()).unwrap();
    let rows = HeadRows { hidden: hidden.as_tensor().clone(), weight: weight.as_tensor().clone() };
    let cases = [
        LossWeights { kd: 1.0, ..Default::default() },
        LossWeights { kd: 1.0, ce: 0.5, ..Default::default() },
        LossWeights { kd: 0.3, reverse_kl: 0.7, jsd: 0.4, jsd_beta: 0.3, ce: 0.2, temperature: 2.0, capture_temperature: 1.0 },
        LossWeights { kd: 0.0, ce: 1.0, ..Default::default() },
    ];
    let mut compared = 0;
    for events in [false, true] {
        let targets = support::seeded_targets(n, v, k, events, &dev);
        for w in &cases {
            for over in [None, Some(TokenCounts { kd: 40.0, ce: 50.0 })] {
                let whole = loss::distill_loss_over(&rows.logits().unwrap(), &targets, w, true, over).unwrap();
                let want = whole.total.backward().unwrap();
                for chunk_rows in [0, 1, 3, 4, 7, 64] {
                    let what = format!("{w:?} events={events} over={over:?} chunk_rows={chunk_rows}");
                    let got = distill_loss_chunked(&rows, &targets, w, true, over, chunk_rows).unwrap();
                    let d = max_diff(&got.total, &whole.total);
                    assert!(d <= 1e-5 * max_abs(&whole.total).max(1.0), "{what}: total differs by {d}");
                    let d = max_diff(&got.terms, &whole.terms);
                    assert!(d <= 1e-5 * max_abs(&whole.terms).max(1.0), "{what}: terms differ by {d}");
                    assert_eq!((got.kd_tokens, got.ce_tokens), (whole.kd_tokens, whole.ce_tokens));
                    let grads = got.total.backward().unwrap();
                    for (name, x) in [("hidden", &hidden), ("weight", &weight)] {
                        let (a, b) = (grads.get(x.as_tensor()).unwrap(), want.get(x.as_tensor()).unwrap());
                        let scale = max_abs(b);
                        assert!(scale > 1e-4, "{what}: the {name} gradient is not trivially zero");
                        assert!(max_diff(a, b) <= 2e-5 * scale, "{what}: d{name} differs by {} (scale {scale})", max_diff(a, b));
                    }
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 2 * 4 * 2 * 6);
}

/// A 12-row head (C = 8, V = 40) on seeded trainable weights: the vars and their rows.
fn small_head(seed: u64) -> (Var, Var, HeadRows) {
    let dev = Device::Cpu;
    let hidden = Var::from_tensor(&normal_tensor((12, 8), 1.0, seed, &dev).unwrap()).unwrap();
    let weight = Var::from_tensor(&normal_tensor((40, 8), 1.0, seed + 1, &dev).unwrap()).unwrap();
    let rows = HeadRows { hidden: hidden.as_tensor().clone(), weight: weight.as_tensor().clone() };
    (hidden, weight, rows)
}

#[test]
fn a_loss_on_detached_rows_prepares_no_gradient() {
    let (_, _, rows) = small_head(3);
    let targets = support::seeded_targets(12, 40, 3, false, &Device::Cpu);
    let w = LossWeights { kd: 1.0, ce: 1.0, ..Default::default() };
    let tracked = distill_loss_chunked(&rows, &targets, &w, true, None, 5).unwrap();
    let detached = distill_loss_chunked(&rows.detach(), &targets, &w, true, None, 5).unwrap();
    assert!(tracked.total.track_op() && !detached.total.track_op());
    assert_eq!(tracked.total.to_scalar::<f32>().unwrap(), detached.total.to_scalar::<f32>().unwrap());
    assert_eq!(tracked.terms.to_vec1::<f32>().unwrap(), detached.terms.to_vec1::<f32>().unwrap());
}

#[test]
fn chunk_boundaries_move_past_a_multi_token_chunk_and_rows_renumber_its_events() {
    let dev = Device::Cpu;
    // Chunks at rows 2-4 and 8-9.
    let events = ChunkRows::new(vec![3, 4, 9], vec![2, 2, 8], &dev).unwrap().unwrap();
    let moved: Vec<usize> = (0..12).map(|b| events.boundary_at_or_after(b)).collect();
    assert_eq!(moved, vec![0, 1, 2, 5, 5, 5, 6, 7, 8, 10, 10, 11]);
    let targets = support::seeded_targets(12, 40, 3, true, &dev);
    let tail = targets.rows(5, 7).unwrap();
    let chunks = tail.chunks.expect("rows 8-9 are a chunk");
    assert_eq!((chunks.interior.to_vec1::<u32>().unwrap(), chunks.start.to_vec1::<u32>().unwrap()), (vec![4], vec![3]));
    assert!(targets.rows(5, 3).unwrap().chunks.is_none());
    let err = targets.rows(0, 4).err().expect("rows 0..4 split the chunk at rows 2-4").to_string();
    assert!(err.contains("split a multi-token chunk"), "{err}");
    assert_eq!(tail.topk_ids.to_dtype(DType::F32).unwrap().dims(), &[7, 3]);
}

#[test]
fn the_gradients_scale_with_the_losss_incoming_gradient() {
    let (hidden, weight, rows) = small_head(5);
    let targets = support::seeded_targets(12, 40, 3, false, &Device::Cpu);
    let w = LossWeights { kd: 1.0, ce: 1.0, ..Default::default() };
    let root = distill_loss_chunked(&rows, &targets, &w, false, None, 5).unwrap().total.backward().unwrap();
    let scaled = (distill_loss_chunked(&rows, &targets, &w, false, None, 5).unwrap().total * -2.5).unwrap().backward().unwrap();
    for x in [&hidden, &weight] {
        let (a, b) = (scaled.get(x.as_tensor()).unwrap(), root.get(x.as_tensor()).unwrap());
        assert!(max_diff(a, &(b * -2.5).unwrap()) <= 1e-6 * max_abs(b), "not scaled by -2.5");
    }
}
