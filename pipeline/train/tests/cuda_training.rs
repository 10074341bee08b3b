//! The trainer on CUDA against the CPU: the fused AdamW kernel with the device-side global-norm
//! clip, and whole optimizer steps (forward, loss, backward, clip, AdamW, gradient
//! accumulation) of a small Qwen2 student in f32 and in bf16 over f32 master weights.
//!
//! Built only with the `cuda` feature and run on a GPU machine (`make cuda` builds the test
//! executable, `benches/gpu/test.sh` runs it); CI has no GPU.
#![cfg(feature = "cuda")]

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use distill_core::StageContext;
use distill_model::weights::normal_tensor;
use distill_train::optim::{clip_global_norm, AdamW, AdamWParams};
use distill_train::{run, RunOptions, TrainConfig};

fn gpu() -> Device {
    Device::new_cuda(0).expect("a CUDA device (these tests run on the GPU machine)")
}

/// Parameters named so that both decay groups are present, and three steps of seeded grads in
/// `grad_dtype`; with bf16 grads the optimizer keeps bf16 compute copies, checked to equal the
/// masters cast to bf16 after every update.
fn adamw_run(dev: &Device, max_norm: f64, grad_dtype: DType) -> (Vec<Vec<f32>>, Vec<f64>) {
    let names = ["model.layers.0.mlp.up_proj.weight", "model.layers.0.input_layernorm.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias"];
    let shapes: [&[usize]; 4] = [&[64, 48], &[48], &[100, 48], &[48]];
    let params: Vec<(String, Var)> = names
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(i, (n, s))| (n.to_string(), Var::from_tensor(&normal_tensor(s, 0.5, i as u64, &Device::Cpu).unwrap().to_device(dev).unwrap()).unwrap()))
        .collect();
    let hp = AdamWParams { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = AdamW::new(params.clone(), hp).unwrap();
    let mut norms = Vec::new();
    for step in 0..3u64 {
        let copies = (grad_dtype == DType::BF16).then(|| opt.compute_copies(DType::BF16).unwrap());
        let mut grads: HashMap<String, Tensor> = params
            .iter()
            .enumerate()
            .map(|(i, (n, p))| (n.clone(), normal_tensor(p.shape(), 2.0, 1000 + 10 * step + i as u64, &Device::Cpu).unwrap().to_dtype(grad_dtype).unwrap().to_device(dev).unwrap()))
            .collect();
        let norm = clip_global_norm(&mut grads, max_norm).unwrap();
        opt.step_clipped(&grads, 1e-2, &norm).unwrap();
        norms.push(norm.value().unwrap());
        for ((name, p), (_, copy)) in params.iter().zip(copies.iter().flatten()) {
            let want = p.as_tensor().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = copy.as_tensor().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got, want, "{name}: the bf16 compute copy is not the updated master cast to bf16 (step {step}, {:?})", dev.location());
        }
    }
    let values = params.iter().map(|(_, p)| p.as_tensor().flatten_all().unwrap().to_device(&Device::Cpu).unwrap().to_vec1::<f32>().unwrap()).collect();
    (values, norms)
}

#[test]
fn fused_adamw_with_device_side_clipping_matches_the_cpu_optimizer() {
    // Grads of norm ~ 230: clipping to 1.0 scales them; 0 turns clipping off. bf16 grads (the
    // compute copies' backward) are read as bf16 by the norm and the update, which rewrites the
    // copies in the same kernel.
    for grad_dtype in [DType::F32, DType::BF16] {
        for max_norm in [1.0, 0.0] {
            let (cpu, cpu_norms) = adamw_run(&Device::Cpu, max_norm, grad_dtype);
            let (cuda, cuda_norms) = adamw_run(&gpu(), max_norm, grad_dtype);
            for (a, b) in cpu_norms.iter().zip(&cuda_norms) {
                assert!(*a > 100.0 && (a - b).abs() < 1e-4 * a, "{grad_dtype:?} grads, max_norm {max_norm}: grad norm {b} on CUDA vs {a} on the CPU");
            }
            for (i, (a, b)) in cpu.iter().zip(&cuda).enumerate() {
                let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                eprintln!("adamw, {grad_dtype:?} grads, max_norm {max_norm}: parameter {i} within {diff:e} of the CPU after 3 updates");
                assert!(diff < 1e-6, "{grad_dtype:?} grads, max_norm {max_norm}: parameter {i} differs by {diff} after 3 updates");
            }
        }
    }
}

fn bench_losses(device: &str, dtype: &str, grad_accum: usize) -> Vec<f64> {
    model_losses("qwen2-nano", device, dtype, grad_accum, true)
}

fn model_losses(model: &str, device: &str, dtype: &str, grad_accum: usize, flash_attention: bool) -> Vec<f64> {
    let mut cfg = TrainConfig {
        model: model.into(),
        flash_attention,
        vocab_from_tokenizer: false,
        batch_size: 4,
        grad_accum,
        seq_len: 128,
        device: device.into(),
        dtype: dtype.into(),
        ..Default::default()
    };
    cfg.loss.kd = 1.0;
    cfg.loss.ce = 1.0;
    cfg.loss.capture_temperature = 1.0;
    distill_train::bench_config(&cfg, "test.toml", 20, 1, 3).unwrap().losses
}

#[test]
fn optimizer_steps_on_cuda_give_the_cpu_losses() {
    for grad_accum in [1, 2] {
        let cpu = bench_losses("cpu", "f32", grad_accum);
        let f32_gpu = bench_losses("cuda", "f32", grad_accum);
        let bf16_gpu = bench_losses("cuda", "bf16", grad_accum);
        eprintln!("grad_accum {grad_accum}: cpu {cpu:?}\n  cuda f32 {f32_gpu:?}\n  cuda bf16 {bf16_gpu:?}");
        assert_eq!(cpu.len(), 4);
        for i in 0..cpu.len() {
            assert!((f32_gpu[i] - cpu[i]).abs() < 1e-5 * cpu[i], "grad_accum {grad_accum}, step {i}: CUDA f32 loss {} vs CPU {}", f32_gpu[i], cpu[i]);
            assert!((bf16_gpu[i] - cpu[i]).abs() < 1e-3 * cpu[i], "grad_accum {grad_accum}, step {i}: CUDA bf16 loss {} vs CPU {}", bf16_gpu[i], cpu[i]);
        }
    }
}

#[test]
fn flash_attention_steps_give_the_cpu_losses() {
    // A Qwen2 of head size 64 (4 query heads over 2 key/value heads), where the tiled kernels
    // take attention over in bf16; the sequence (128) is two tiles.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(include_str!("../../../configs/models/qwen2-nano.json")).unwrap();
    cfg["hidden_size"] = 256.into();
    cfg["intermediate_size"] = 512.into();
    let path = dir.path().join("config.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let model = path.to_str().unwrap();
    let cpu = model_losses(model, "cpu", "f32", 1, true);
    let flash = model_losses(model, "cuda", "bf16", 1, true);
    let composed = model_losses(model, "cuda", "bf16", 1, false);
    eprintln!("head size 64: cpu {cpu:?}\n  cuda bf16 flash {flash:?}\n  cuda bf16 composed {composed:?}");
    for i in 0..cpu.len() {
        assert!((flash[i] - cpu[i]).abs() < 1e-3 * cpu[i], "step {i}: flash bf16 loss {} vs CPU {}", flash[i], cpu[i]);
        assert!((composed[i] - cpu[i]).abs() < 1e-3 * cpu[i], "step {i}: composed bf16 loss {} vs CPU {}", composed[i], cpu[i]);
    }
    assert!(cpu.windows(2).any(|w| w[0] != w[1]), "the losses move: training happens");
}

/// The logged train losses of a run of the train stage.
fn train_losses(out_dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["kind"] == "train").map(|v| v["loss"].as_f64().unwrap()).collect()
}

/// A bf16 run stopped after a checkpoint and resumed: the optimizer's bf16 compute copies are
/// cast afresh from the loaded f32 masters, so the resumed steps log the uninterrupted run's
/// losses (within the GPU's run-to-run noise: the embedding backward adds with atomics).
#[test]
fn a_resumed_bf16_run_logs_the_uninterrupted_runs_losses() {
    let work = common::work_dir(24);
    for grad_accum in [1, 2] {
        let mut cfg = TrainConfig {
            model: "qwen2-nano".into(),
            steps: 6,
            batch_size: 4,
            grad_accum,
            seq_len: 64,
            checkpoint_every: 3,
            eval_every: 0,
            log_every: 1,
            device: "cuda".into(),
            dtype: "bf16".into(),
            ..Default::default()
        };
        cfg.optimizer.lr = 3e-3;
        let ctx = |out: &str| StageContext {
            stage: "train",
            work_dir: work.path(),
            out_dir: work.path().join(out),
            scratch_dir: work.path().join(".scratch").join(out),
            shard: None,
            quiet: true,
        };
        let opts = |resume: bool, stop_after: Option<u64>| RunOptions { resume, stop_after, config_file: "test.toml".into() };
        let (whole, parts) = (ctx(&format!("whole-{grad_accum}")), ctx(&format!("parts-{grad_accum}")));
        run(&whole, &cfg, &opts(false, None)).unwrap();
        assert_eq!(run(&parts, &cfg, &opts(false, Some(3))).unwrap()["completed"], false);
        assert_eq!(run(&parts, &cfg, &opts(true, None)).unwrap()["resumed_from"], 3);
        let (a, b) = (train_losses(&whole.out_dir), train_losses(&parts.out_dir));
        eprintln!("grad_accum {grad_accum} resume: uninterrupted {a:?}\n  resumed {b:?}");
        assert_eq!(a.len(), 6);
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * x.abs(), "grad_accum {grad_accum}, step {i}: resumed loss {y} vs uninterrupted {x}");
        }
    }
}
