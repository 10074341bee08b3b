//! The exported HF folder loads in `transformers` (torch, CPU) and gives the same logits as
//! candle, within 1e-4, for each model family: Llama (with Llama-3 rope scaling), Qwen2 (q/k/v
//! biases, untied head) and GPT-2. The reference script is `tests/fixtures/hf_logits.py`.
//!
//! Weights are perturbed away from the init (norm gains, biases and a wide spread on every
//! matrix), so every tensor matters and the logits are O(1), not the near-zero logits of a
//! fresh 0.02-init model, where any two implementations agree trivially.

mod common;

use std::process::Command;

use candle_core::{Device, Tensor};
use distill_model::config::{ModelConfig, RopeScaling};
use distill_model::TrainableLm;
use distill_train::export::write_hf_folder;

const IDS: [[u32; 12]; 2] = [[5, 6, 7, 300, 2, 9, 10, 11, 400, 12, 13, 14], [100, 99, 98, 97, 3, 4, 200, 201, 202, 0, 7, 8]];

/// Adds seeded uniform noise of `spread` to every matrix (0.2 to 1-D tensors: gains and biases).
fn perturb(lm: &TrainableLm, spread: f32) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for (_, var) in lm.vars() {
        let t = var.as_tensor();
        let spread: f32 = if t.rank() == 1 { 0.2 } else { spread };
        let noise: Vec<f32> = (0..t.elem_count()).map(|_| rng.random_range(-spread..spread)).collect();
        let noise = Tensor::from_vec(noise, t.shape(), &Device::Cpu).unwrap();
        var.set(&(t + noise).unwrap()).unwrap();
    }
}

fn transformers_logits(dir: &std::path::Path) -> (String, Vec<Vec<Vec<f32>>>) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_logits.py");
    let ids = serde_json::to_string(&IDS).unwrap();
    let out = Command::new(distill_core::testing::reference_python()).arg(&script).arg(dir).arg(&ids).output().unwrap();
    assert!(out.status.success(), "hf_logits.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["model_class"].as_str().unwrap().to_string(), serde_json::from_value(v["logits"].clone()).unwrap())
}

/// `spread` keeps the logits O(1-10): wide enough to tell implementations apart, small enough
/// that f32 rounding (which differs between CPUs' SIMD paths) stays well under 1e-4.
fn check(name: &str, cfg: ModelConfig, expect_class: &str, spread: f32) {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tokenizer.json");
    common::write_tokenizer(&tok);
    let lm = TrainableLm::init(&cfg, &Device::Cpu, 7).unwrap();
    perturb(&lm, spread);
    let out = dir.path().join("hf");
    write_hf_folder(&lm, &tok, Some(1), &out).unwrap();

    let ids = Tensor::new(&IDS, &Device::Cpu).unwrap();
    let ours: Vec<Vec<Vec<f32>>> = lm.model.forward(&ids).unwrap().to_vec3().unwrap();
    let (class, theirs) = transformers_logits(&out);
    assert_eq!(class, expect_class, "{name}");

    let (mut max_diff, mut max_abs) = (0f32, 0f32);
    for (a, b) in ours.iter().flatten().flatten().zip(theirs.iter().flatten().flatten()) {
        max_diff = max_diff.max((a - b).abs());
        max_abs = max_abs.max(b.abs());
    }
    assert_eq!(ours.iter().flatten().flatten().count(), theirs.iter().flatten().flatten().count(), "{name}: logits shape");
    assert!(max_abs > 1.0, "{name}: logits too small to tell implementations apart (max |logit| {max_abs})");
    assert!(max_diff < 1e-4, "{name}: candle and transformers differ by {max_diff} (max |logit| {max_abs})");
    eprintln!("{name}: max |candle - transformers| = {max_diff:.2e}, max |logit| = {max_abs:.2}");
}

#[test]
fn llama_with_llama3_rope_scaling_matches_transformers() {
    let mut cfg = ModelConfig::preset("llama-nano").unwrap();
    if let ModelConfig::Llama(c) = &mut cfg {
        c.rope_scaling = Some(RopeScaling { rope_type: "llama3".into(), factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8 });
    }
    check("llama-nano", cfg, "LlamaForCausalLM", 0.5);
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2-nano", ModelConfig::preset("qwen2-nano").unwrap(), "Qwen2ForCausalLM", 0.5);
}

#[test]
fn gpt2_matches_transformers() {
    check("nano", ModelConfig::preset("nano").unwrap(), "GPT2LMHeadModel", 0.25);
}
