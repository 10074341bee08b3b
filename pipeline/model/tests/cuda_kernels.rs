//! The project's CUDA kernels against the CPU path, values and gradients. Each public op that
//! picks a kernel on a CUDA tensor (RMSNorm, SwiGLU, bias and residual adds, embedding,
//! grouped-query attention with its recomputing backward, tiled (flash) attention, the
//! vocabulary log-softmax + gather, the chunked LM head and loss with its in-place cuBLAS
//! accumulation, RoPE) runs here twice on the same seeded inputs: on the CPU (the reference:
//! composed candle ops, or the one-pass f32 CPU kernels tested against them) and on the GPU.
//!
//! Built only with the `cuda` feature and run on a GPU machine (`make cuda` builds the test
//! executable, `benches/gpu/test.sh` runs it); CI has no GPU. Tolerances: f32 1e-5 of the
//! largest reference value for values (2e-5 for gradients, which sum over more terms); bf16
//! inputs 2e-2 for values and 5e-2 for gradients (bf16 keeps 8 bits of mantissa; the kernels
//! accumulate in f32 as the CPU path does).
#![cfg(feature = "cuda")]

mod support;

use candle_core::{DType, Device, Tensor, Var};
use distill_model::head_loss::{distill_loss_chunked, HeadRows};
use distill_model::loss::LossWeights;
use distill_model::weights::normal_tensor;
use distill_model::{fused, nn, recompute, AttentionBackward};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (these tests run on the GPU machine)")
}

/// Largest |a - b| relative to the largest |b|, both read back as f32.
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.to_device(&Device::Cpu).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "shapes differ");
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "the reference is all zeros: nothing is being compared");
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn tolerance(dtype: DType) -> (f32, f32) {
    match dtype {
        DType::F32 => (1e-5, 2e-5),
        _ => (2e-2, 5e-2),
    }
}

/// Seeded inputs in `dtype` as a trainable var on `dev` (the same values on both devices).
fn input(shape: &[usize], std: f64, seed: u64, dtype: DType, dev: &Device) -> Var {
    Var::from_tensor(&normal_tensor(shape, std, seed, &Device::Cpu).unwrap().to_dtype(dtype).unwrap().to_device(dev).unwrap()).unwrap()
}

/// Runs `op` on the CPU and the GPU on seeded inputs of `shapes`, and compares the outputs and
/// the gradients of `sum(out * w)` for a seeded `w` with respect to every input.
fn check(name: &str, dtype: DType, shapes: &[(&[usize], f64)], op: impl Fn(&[Tensor]) -> Tensor) {
    let (tol_value, tol_grad) = tolerance(dtype);
    let run = |dev: &Device| {
        let vars: Vec<Var> = shapes.iter().enumerate().map(|(i, (s, std))| input(s, *std, 100 + i as u64, dtype, dev)).collect();
        let out = op(&vars.iter().map(|v| v.as_tensor().clone()).collect::<Vec<_>>());
        let w = normal_tensor(out.shape(), 1.0, 7, &Device::Cpu).unwrap().to_dtype(out.dtype()).unwrap().to_device(dev).unwrap();
        let grads = (&out * &w).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().backward().unwrap();
        let g: Vec<Tensor> = vars.iter().map(|v| grads.get(v.as_tensor()).expect("every input gets a gradient").clone()).collect();
        (out, g)
    };
    let (cpu_out, cpu_grads) = run(&Device::Cpu);
    let (gpu_out, gpu_grads) = run(&gpu());
    assert!(gpu_out.device().is_cuda());
    let d = rel_diff(&gpu_out, &cpu_out);
    eprintln!("{name} {dtype:?}: output rel diff {d:.2e}");
    assert!(d <= tol_value, "{name} {dtype:?}: output differs by {d:.2e} (relative)");
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        let d = rel_diff(g, c);
        eprintln!("{name} {dtype:?}: grad {i} rel diff {d:.2e}");
        assert!(d <= tol_grad, "{name} {dtype:?}: gradient of input {i} differs by {d:.2e} (relative)");
    }
}

#[test]
fn rms_norm_kernel_matches_the_cpu_path() {
    for dtype in [DType::F32, DType::BF16] {
        // A width that is not a multiple of the block size, and one past it.
        for c in [200, 896, 1030] {
            check("rms_norm", dtype, &[(&[3, 17, c], 2.0), (&[c], 1.0)], |t| fused::rms_norm(&t[0], &t[1], 1e-6).unwrap());
        }
    }
}

#[test]
fn swiglu_kernel_matches_the_cpu_path() {
    for dtype in [DType::F32, DType::BF16] {
        check("swiglu", dtype, &[(&[4, 33, 607], 2.0), (&[4, 33, 607], 1.0)], |t| fused::swiglu(&t[0], &t[1]).unwrap());
    }
}

#[test]
fn bias_and_residual_add_kernels_match_the_cpu_path() {
    let picks_kernel = |a: &[usize], b: &[usize], dtype: DType| {
        let (a, b) = (input(a, 1.0, 1, dtype, &gpu()), input(b, 1.0, 2, dtype, &gpu()));
        distill_model::cuda_kernels::add::add_rows(&a, &b).unwrap().is_some()
    };
    for dtype in [DType::F32, DType::BF16] {
        // A bias over rows at Qwen2.5-0.5B's q and k/v widths, and a residual of a's shape.
        for (a, b) in [(&[4, 33, 896][..], &[896][..]), (&[2, 300, 128], &[128]), (&[4, 33, 896], &[4, 33, 896])] {
            assert!(picks_kernel(a, b, dtype), "{a:?} + {b:?} {dtype:?} runs the kernel");
            check(&format!("add_rows {a:?} + {b:?}"), dtype, &[(a, 1.0), (b, 1.0)], |t| fused::add_rows(&t[0], &t[1]).unwrap());
        }
        // A width the 16-byte vector does not divide: candle's broadcast add on both devices.
        assert!(!picks_kernel(&[3, 5, 607], &[607], dtype));
        check("add_rows width 607", dtype, &[(&[3, 5, 607], 1.0), (&[607], 1.0)], |t| fused::add_rows(&t[0], &t[1]).unwrap());
    }
}

#[test]
fn embedding_kernel_scatter_adds_repeated_rows_like_the_cpu_path() {
    for dtype in [DType::F32, DType::BF16] {
        let run = |dev: &Device| {
            let w = input(&[300, 96], 1.0, 3, dtype, dev);
            // Ids repeat (7 appears five times) so the backward must add, not overwrite.
            let ids: Vec<u32> = (0..70u32).map(|i| if i % 14 == 0 { 7 } else { (i * 37) % 300 }).collect();
            let ids = Tensor::from_vec(ids, (2, 35), dev).unwrap();
            let y = fused::embedding(w.as_tensor(), &ids).unwrap(); // (2, 35, 96)
            let g = normal_tensor(y.shape(), 1.0, 9, &Device::Cpu).unwrap().to_dtype(dtype).unwrap().to_device(dev).unwrap();
            let grads = (&y * &g).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().backward().unwrap();
            (y, grads.get(w.as_tensor()).unwrap().clone())
        };
        let ((cy, cg), (gy, gg)) = (run(&Device::Cpu), run(&gpu()));
        assert_eq!(rel_diff(&gy, &cy), 0.0, "{dtype:?}: a lookup is a copy");
        let d = rel_diff(&gg, &cg);
        assert!(d <= tolerance(dtype).1, "{dtype:?}: embedding gradient differs by {d:.2e}");
    }
}

#[test]
fn grouped_query_attention_kernels_match_the_cpu_path() {
    // 6 query heads over 2 key/value heads, T = 37 (not a multiple of any block size), D = 64.
    let (b, h, g, t, d) = (2, 6, 2, 37, 64);
    let causal = |dev: &Device| nn::causal_mask(t, dev).unwrap();
    // Key padding too: the second sequence's first 5 positions are left padding.
    let padded = |dev: &Device| {
        let valid: Vec<Vec<u8>> = vec![vec![1; t], (0..t).map(|i| u8::from(i >= 5)).collect()];
        nn::attention_mask(&valid, 0, t, dev).unwrap()
    };
    for dtype in [DType::F32, DType::BF16] {
        for (mask_name, mask) in [("causal", &causal as &dyn Fn(&Device) -> Tensor), ("padded", &padded)] {
            let shapes: [(&[usize], f64); 3] = [(&[b, h, t, d], 1.0), (&[b, g, t, d], 1.0), (&[b, g, t, d], 1.0)];
            for backward in [AttentionBackward::KeepProbs, AttentionBackward::Recompute] {
                check(&format!("attention ({mask_name}, {backward:?})"), dtype, &shapes, |x| recompute::attention(&x[0], &x[1], &x[2], &mask(x[0].device()), backward).unwrap());
            }
        }
    }
}

#[test]
fn flash_attention_kernels_match_the_cpu_path() {
    // bf16 on the GPU against the composed f32 attention on the CPU, in the projections'
    // (B, T, heads, D) layout: grouped-query heads, sequences shorter than a tile, one past a
    // whole number of tiles, and several full tiles; head sizes 64 and 128.
    for (h, g, t, d) in [(6, 2, 37, 64), (4, 4, 130, 128), (14, 2, 256, 64), (12, 2, 193, 128)] {
        let shapes: [(&[usize], f64); 3] = [(&[2, t, h, d], 1.0), (&[2, t, g, d], 1.0), (&[2, t, g, d], 1.0)];
        check(&format!("flash attention (H {h}, G {g}, T {t}, D {d})"), DType::BF16, &shapes, |x| {
            if x[0].device().is_cuda() {
                return recompute::flash_attention(&x[0], &x[1], &x[2]).unwrap();
            }
            let bhtd = |y: &Tensor| y.to_dtype(DType::F32).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
            let mask = nn::causal_mask(t, &Device::Cpu).unwrap();
            let y = recompute::attention(&bhtd(&x[0]), &bhtd(&x[1]), &bhtd(&x[2]), &mask, AttentionBackward::Recompute).unwrap();
            y.transpose(1, 2).unwrap().contiguous().unwrap().to_dtype(DType::BF16).unwrap()
        });
    }
}

#[test]
fn flash_attention_agrees_with_the_composed_gpu_path() {
    // The same bf16 inputs through both GPU paths (the composed one is already checked
    // against the CPU above), at the benchmark's head shape and a sequence of 16 tiles.
    let (b, h, g, t, d) = (2, 14, 2, 1024, 64);
    let dev = gpu();
    let x: Vec<Var> = [h, g, g].iter().enumerate().map(|(i, &n)| input(&[b, t, n, d], 1.0, 40 + i as u64, DType::BF16, &dev)).collect();
    let w = normal_tensor(&[b, t, h, d], 1.0, 44, &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap().to_device(&dev).unwrap();
    let run = |flash: bool| {
        let (q, k, v) = (x[0].as_tensor(), x[1].as_tensor(), x[2].as_tensor());
        let y = if flash {
            recompute::flash_attention(q, k, v).unwrap()
        } else {
            let bhtd = |y: &Tensor| y.transpose(1, 2).unwrap().contiguous().unwrap();
            let mask = nn::causal_mask(t, &dev).unwrap();
            recompute::attention(&bhtd(q), &bhtd(k), &bhtd(v), &mask, AttentionBackward::Recompute).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
        };
        let grads = (&y * &w).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().backward().unwrap();
        (y, x.iter().map(|v| grads.get(v.as_tensor()).unwrap().clone()).collect::<Vec<_>>())
    };
    let ((fy, fg), (cy, cg)) = (run(true), run(false));
    let d = rel_diff(&fy, &cy);
    eprintln!("flash vs composed (GPU, bf16): output rel diff {d:.2e}");
    assert!(d <= 2e-2, "outputs differ by {d:.2e}");
    for (i, (a, c)) in fg.iter().zip(&cg).enumerate() {
        let d = rel_diff(a, c);
        eprintln!("flash vs composed (GPU, bf16): grad {i} rel diff {d:.2e}");
        assert!(d <= 5e-2, "gradient of input {i} differs by {d:.2e}");
    }
}

#[test]
fn vocabulary_log_softmax_gather_kernel_matches_the_cpu_path() {
    // A vocabulary wider than a block's stride, J = 21 gathered ids per row (top-20 + sampled).
    let (n, v, j) = (33, 5003, 21);
    let ids: Vec<u32> = (0..n * j).map(|i| ((i * 7919) % v) as u32).collect();
    for dtype in [DType::F32, DType::BF16] {
        check("log_softmax_gather", dtype, &[(&[n, v], 3.0)], |z| {
            let ids = Tensor::from_vec(ids.clone(), (n, j), z[0].device()).unwrap();
            recompute::log_softmax_gather(&z[0], &ids).unwrap()
        });
    }
}

#[test]
fn chunked_lm_head_and_loss_match_the_cpu_path() {
    // 70 rows in chunks of 16 (the last one short, the first three accumulated in place into
    // the head's gradient by cuBLAS), and all at once; top-20 KD + CE at T = 1 (the fused
    // log-softmax path) and reverse KL + JSD at T = 2.
    let (n, c, v, k) = (70, 64, 5003, 20);
    let cases = [LossWeights { kd: 1.0, ce: 0.5, ..Default::default() }, LossWeights { kd: 0.5, reverse_kl: 0.5, jsd: 0.5, ce: 0.2, temperature: 2.0, ..Default::default() }];
    for dtype in [DType::F32, DType::BF16] {
        for (i, w) in cases.iter().enumerate() {
            for chunk_rows in [16, 0] {
                check(&format!("head_loss case {i} chunk_rows {chunk_rows}"), dtype, &[(&[n, c], 1.0), (&[v, c], 0.3)], |x| {
                    let targets = support::seeded_targets(n, v, k, true, x[0].device());
                    let rows = HeadRows { hidden: x[0].clone(), weight: x[1].clone() };
                    distill_loss_chunked(&rows, &targets, w, false, None, chunk_rows).unwrap().total
                });
            }
        }
    }
}

#[test]
fn rope_matches_the_cpu_path() {
    let (t, d) = (29, 64);
    let angles = normal_tensor((t, d / 2), 2.0, 5, &Device::Cpu).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        check("rope", dtype, &[(&[2, 4, t, d], 1.0)], |x| {
            let dev = x[0].device();
            let (cos, sin) = (angles.cos().unwrap().to_dtype(dtype).unwrap().to_device(dev).unwrap(), angles.sin().unwrap().to_dtype(dtype).unwrap().to_device(dev).unwrap());
            recompute::rope(&x[0], &cos, &sin).unwrap()
        });
    }
}
