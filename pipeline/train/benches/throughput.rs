//! CPU throughput of the trainer and of KV-cache generation on the `nano` preset.
//!
//! `cargo bench -p distill-train --bench throughput` (add `--profile dev` for a quick run with
//! the workspace's optimised candle). Prints a table: training tokens/s (KD top-20 + CE, the
//! full step: forward, loss, backward, clip, AdamW), and generation tokens/s with the KV cache
//! against recomputing the whole sequence every step (the speed-up the cache buys).
//! The PyTorch side-by-side comparison is the GPU benchmark's (it needs torch + CUDA).

use std::time::Instant;

use candle_core::{Device, Tensor};
use distill_model::config::ModelConfig;
use distill_model::{generate, GenerateParams, TrainableLm};
use distill_train::data::{Dataset, Example};
use distill_train::trainer::{train, TrainRun};
use distill_train::TrainConfig;

fn synthetic(n: usize, len: usize, vocab: u32, k: usize, seed: u64) -> Vec<Example> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    (0..n)
        .map(|i| {
            let ids: Vec<u32> = (0..len).map(|_| next() % vocab).collect();
            let topk_ids: Vec<Vec<u32>> = (0..len).map(|_| (0..k).map(|_| next() % vocab).collect()).collect();
            // Log-probs of a geometric-ish distribution over the k listed tokens.
            let lps: Vec<f32> = (0..k).map(|j| -0.7 - 0.3 * j as f32).collect();
            Example {
                id: format!("{i:06}"),
                input_ids: ids,
                loss_mask: (0..len).map(|p| u8::from(p >= len / 4)).collect(),
                topk_ids,
                topk_logprobs: vec![lps; len],
                hard_label_only: false,
                chunks: Vec::new(),
            }
        })
        .collect()
}

fn main() {
    let device = Device::Cpu;
    let cfg = ModelConfig::preset("nano").unwrap();
    let (batch, seq, steps) = (8usize, 256usize, 6u64);
    let lm = TrainableLm::init(&cfg, &device, 0).unwrap();
    let data = Dataset { train: synthetic(batch * (steps as usize + 2), seq, cfg.vocab_size() as u32, 20, 1), validation: vec![], skipped: vec![] };
    let mut tc = TrainConfig { model: "nano".into(), batch_size: batch, seq_len: seq, steps, checkpoint_every: 0, eval_every: 0, ..Default::default() };
    tc.optimizer.warmup_steps = 1;
    let settings = tc.settings("bench", Some(1.0)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let run = TrainRun { settings: &settings, train_config: serde_json::to_value(&tc).unwrap(), scratch_dir: scratch.path(), quiet: true, resume: false, stop_after: None };
    let report = train(&lm, &data.train, &data.validation, &run).unwrap();

    // Generation: 8 prompts of 32 tokens, 64 new tokens, greedy.
    let prompts: Vec<Vec<u32>> = (0..8u32).map(|r| (0..32).map(|i| (r * 131 + i * 7) % 8000 + 5).collect()).collect();
    let params = GenerateParams { max_new_tokens: 64, ..Default::default() };
    let t0 = Instant::now();
    let out = generate(&lm.model, &prompts, &params).unwrap();
    let cached = t0.elapsed().as_secs_f64();
    let new_tokens: usize = out.iter().map(|g| g.tokens.len()).sum();
    // The same continuation without a cache: the full sequence re-run for every new token.
    let t0 = Instant::now();
    let mut seqs = prompts.clone();
    for _ in 0..64 {
        let ids = Tensor::new(seqs.clone(), &device).unwrap();
        let logits = lm.model.forward(&ids).unwrap();
        let last = logits.narrow(1, seqs[0].len() - 1, 1).unwrap().squeeze(1).unwrap().argmax(1).unwrap().to_vec1::<u32>().unwrap();
        for (s, t) in seqs.iter_mut().zip(last) {
            s.push(t);
        }
    }
    let uncached = t0.elapsed().as_secs_f64();

    println!("distill-train throughput, CPU, preset nano ({} params), {} threads", cfg.num_params(), std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    println!("| what | setting | tokens | seconds | tokens/s |");
    println!("|---|---|---:|---:|---:|");
    println!("| train step (KD top-20 + CE) | batch {batch} x seq {seq}, {steps} steps | {} | {:.2} | {:.0} |", report.tokens, report.elapsed_secs, report.tokens_per_sec);
    println!("| generate, KV cache | 8 x (32 + 64) greedy | {new_tokens} | {cached:.2} | {:.0} |", new_tokens as f64 / cached);
    println!("| generate, no cache (recompute) | same | {} | {uncached:.2} | {:.0} |", 8 * 64, (8 * 64) as f64 / uncached);
    println!("KV-cache speed-up: {:.1}x", uncached / cached * new_tokens as f64 / (8 * 64) as f64);
}
