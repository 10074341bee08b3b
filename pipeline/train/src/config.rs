//! The `[train]` section of the TOML config and its validated runtime form.

use serde::{Deserialize, Serialize};

use distill_model::loss::LossWeights;

use crate::optim::AdamWParams;
use crate::schedule::Schedule;

/// `[train]`: what to train, on what loss, for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Student architecture: a preset (`nano`, `small`, `medium`, `gpt2-124m`, `llama-1b`,
    /// `llama-7b`, `llama-nano`, `qwen2-nano`) or a path to an HF `config.json` / model folder.
    pub model: String,
    /// Optional HF model folder (`config.json` + `model.safetensors`) to start from instead of
    /// a random init; its config then replaces `model`.
    pub init_checkpoint: String,
    /// Set the model's vocabulary size to the tokenizer's (fresh models only).
    pub vocab_from_tokenizer: bool,
    /// The student `tokenizer.json`. Empty: the one the shards were made with
    /// (`tokenizer_path` in `shards/shard_manifest.json`).
    pub tokenizer: String,
    pub loss: LossConfig,
    pub optimizer: OptimizerConfig,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (effective batch = batch_size * grad_accum).
    pub grad_accum: usize,
    /// Longest sequence in tokens; longer examples are truncated (at most the model's context).
    pub seq_len: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Held-out KD and CE loss every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// Validation batches per evaluation (0 = the whole validation split).
    pub eval_batches: usize,
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Checkpoints kept in the scratch folder (older ones are deleted).
    pub keep_last: usize,
    /// Training metrics line every this many steps.
    pub log_every: u64,
    /// Seed for init, data order and dropout.
    pub seed: u64,
    /// `cpu` or `cuda` (`cuda:N` for another GPU; needs the `cuda` build).
    pub device: String,
    /// Compute dtype: `f32`, or `bf16` on CUDA (master weights and loss stay f32).
    pub dtype: String,
    /// Recompute attention's probabilities in the backward pass (true, memory linear in
    /// seq_len) or keep them from the forward pass (false: batch_size x heads x seq_len^2 values
    /// per layer, 5.6 GB in bf16 for a Qwen2.5-0.5B student at 2 x 2048, and one q k^T and
    /// softmax less per layer, about 10 ms of a 107 ms H100 step by the kernel profile). Same
    /// results, bit for bit.
    pub recompute_attention: bool,
    /// Causal attention through the project's tiled CUDA kernels (flash attention 2: no
    /// (T, T) tensor, no head split/merge copies) where they apply: CUDA, `dtype = "bf16"`,
    /// Llama/Qwen2 students with head size 64 or 128. Elsewhere, or when false, attention is
    /// the composed path that `recompute_attention` configures.
    pub flash_attention: bool,
    /// Activation checkpointing per transformer block: keep only each block's input between
    /// the forward and the backward pass and run the block again there (one more forward of
    /// the model per step, for activations of one block instead of all; same gradients:
    /// `distill_model::checkpoint`).
    pub activation_checkpointing: bool,
    /// Rows (tokens) of the LM head and the loss computed at a time: the (tokens, vocabulary)
    /// logits and their gradient exist one chunk at a time, with no matmul recomputed (0: all
    /// rows at once; same values up to float summation order: `distill_model::head_loss`).
    /// Unset: 2,048 on CUDA; all at once on the CPU, where the chunks' buffers, freed and
    /// allocated again per chunk, cost more page faults than the memory they save (the scale
    /// benchmark's nano training: 7.0 M faults against 3.5 M, 22.9 s against 18.6 s).
    pub head_chunk_rows: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: "nano".into(),
            init_checkpoint: String::new(),
            vocab_from_tokenizer: true,
            tokenizer: String::new(),
            loss: LossConfig::default(),
            optimizer: OptimizerConfig::default(),
            batch_size: 8,
            grad_accum: 1,
            seq_len: 512,
            steps: 200,
            eval_every: 50,
            eval_batches: 0,
            checkpoint_every: 100,
            keep_last: 2,
            log_every: 10,
            seed: 0,
            device: "cpu".into(),
            dtype: "f32".into(),
            recompute_attention: true,
            flash_attention: true,
            activation_checkpointing: false,
            head_chunk_rows: None,
        }
    }
}

/// `[train.loss]`: `kd * FKL + reverse_kl * RKL + jsd * JSD(jsd_beta)` (times T^2) `+ ce * CE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of forward KL(teacher || student) on the top-k + tail distribution.
    pub kd: f64,
    /// Weight of cross-entropy on the teacher's sampled tokens.
    pub ce: f64,
    /// Weight of reverse KL(student || teacher).
    pub reverse_kl: f64,
    /// Weight of the generalized JSD.
    pub jsd: f64,
    /// JSD's beta: 0 = forward KL, 1 = reverse KL (TRL's convention).
    pub jsd_beta: f64,
    /// Distillation temperature T.
    pub temperature: f64,
    /// Temperature the teacher's log-probs were captured at. 0: take it from the shards
    /// manifest (`capture_temperature`), else 1.
    pub capture_temperature: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig { kd: 1.0, ce: 0.1, reverse_kl: 0.0, jsd: 0.0, jsd_beta: 0.5, temperature: 1.0, capture_temperature: 0.0 }
    }
}

/// `[train.optimizer]`: AdamW and the warmup + cosine schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Floor the cosine decays to.
    pub min_lr: f64,
    pub warmup_steps: u64,
    /// Decoupled weight decay (not on biases, norms, embeddings).
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip (0 = off).
    pub grad_clip: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { lr: 1e-3, min_lr: 1e-4, warmup_steps: 20, weight_decay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, grad_clip: 1.0 }
    }
}

/// Validated settings the trainer runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub loss: LossWeights,
    pub adamw: AdamWParams,
    pub schedule: Schedule,
    pub grad_clip: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub seq_len: usize,
    pub steps: u64,
    pub eval_every: u64,
    pub eval_batches: usize,
    pub checkpoint_every: u64,
    pub keep_last: usize,
    pub log_every: u64,
    pub seed: u64,
    pub device: String,
    pub bf16: bool,
    pub activation_checkpointing: bool,
    /// 0: all rows at once (the config's value, or its device's default).
    pub head_chunk_rows: usize,
}

// NaN fails both (written as positive checks so that NaN is rejected, not accepted).
fn positive(x: f64) -> bool {
    x > 0.0
}
fn non_negative(x: f64) -> bool {
    x >= 0.0
}

impl TrainConfig {
    /// Checks every value, reporting all problems at once as `Error::Config` naming
    /// `train.<key>`; `capture_t` is the shards' capture temperature when known.
    pub fn settings(&self, file: &str, capture_t: Option<f64>) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            problems.push(distill_core::config::ConfigProblem { file: file.to_string(), line: None, key: format!("train.{key}"), message: format!("train.{key}: {msg}") })
        };
        let l = &self.loss;
        for (k, v) in [("loss.kd", l.kd), ("loss.ce", l.ce), ("loss.reverse_kl", l.reverse_kl), ("loss.jsd", l.jsd)] {
            if !(v >= 0.0 && v.is_finite()) {
                bad(k, format!("must be a finite number >= 0, got {v}"));
            }
        }
        if l.kd + l.ce + l.reverse_kl + l.jsd <= 0.0 {
            bad("loss", "every loss weight is 0: set kd, ce, reverse_kl or jsd above 0".into());
        }
        if !(0.0..=1.0).contains(&l.jsd_beta) {
            bad("loss.jsd_beta", format!("must be in [0, 1], got {}", l.jsd_beta));
        }
        if !positive(l.temperature) {
            bad("loss.temperature", format!("must be > 0, got {}", l.temperature));
        }
        if !non_negative(l.capture_temperature) {
            bad("loss.capture_temperature", "must be >= 0 (0 = from the shards manifest)".into());
        }
        let o = &self.optimizer;
        if !positive(o.lr) || !non_negative(o.min_lr) || o.min_lr > o.lr {
            bad("optimizer.lr", format!("need lr > 0 and 0 <= min_lr <= lr, got lr {} min_lr {}", o.lr, o.min_lr));
        }
        if !(0.0..1.0).contains(&o.beta1) || !(0.0..1.0).contains(&o.beta2) {
            bad("optimizer.beta1", "beta1 and beta2 must be in [0, 1)".into());
        }
        if !positive(o.eps) || !non_negative(o.weight_decay) || !non_negative(o.grad_clip) {
            bad("optimizer.eps", "eps must be > 0, weight_decay and grad_clip >= 0".into());
        }
        for (k, v) in [("batch_size", self.batch_size), ("grad_accum", self.grad_accum), ("keep_last", self.keep_last)] {
            if v == 0 {
                bad(k, "must be at least 1".into());
            }
        }
        if self.seq_len < 2 {
            bad("seq_len", "must be at least 2".into());
        }
        if self.steps == 0 {
            bad("steps", "must be at least 1".into());
        }
        let cuda = self.device == "cuda" || self.device.starts_with("cuda:");
        if self.device != "cpu" && !cuda {
            bad("device", format!("'{}' is not a device: use \"cpu\" or \"cuda\" (\"cuda:N\")", self.device));
        }
        let bf16 = match self.dtype.as_str() {
            "f32" => false,
            "bf16" if cuda => true,
            "bf16" => {
                bad("dtype", "bf16 is for CUDA; use \"f32\" on the CPU".into());
                false
            }
            other => {
                bad("dtype", format!("'{other}' is not supported: use \"f32\" or \"bf16\""));
                false
            }
        };
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        let capture_temperature = if l.capture_temperature > 0.0 { l.capture_temperature } else { capture_t.filter(|t| *t > 0.0).unwrap_or(1.0) };
        Ok(Settings {
            loss: LossWeights { kd: l.kd, reverse_kl: l.reverse_kl, jsd: l.jsd, jsd_beta: l.jsd_beta, ce: l.ce, temperature: l.temperature, capture_temperature },
            adamw: AdamWParams { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weight_decay: o.weight_decay },
            schedule: Schedule { lr: o.lr, min_lr: o.min_lr, warmup_steps: o.warmup_steps, total_steps: self.steps },
            grad_clip: o.grad_clip,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            seq_len: self.seq_len,
            steps: self.steps,
            eval_every: self.eval_every,
            eval_batches: self.eval_batches,
            checkpoint_every: self.checkpoint_every,
            keep_last: self.keep_last,
            log_every: self.log_every.max(1),
            seed: self.seed,
            device: self.device.clone(),
            bf16,
            activation_checkpointing: self.activation_checkpointing,
            head_chunk_rows: self.head_chunk_rows.unwrap_or(if self.device.starts_with("cuda") { 2048 } else { 0 }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_problem_is_reported() {
        let s = TrainConfig::default().settings("c.toml", Some(0.7)).unwrap();
        assert_eq!(s.loss.capture_temperature, 0.7);
        let mut c = TrainConfig::default();
        c.loss.temperature = 0.0;
        c.batch_size = 0;
        c.device = "tpu".into();
        c.loss.jsd_beta = 2.0;
        let err = c.settings("c.toml", None).unwrap_err();
        let text = err.to_string();
        for key in ["train.loss.temperature", "train.batch_size", "train.device", "train.loss.jsd_beta"] {
            assert!(text.contains(key), "{key} missing in {text}");
        }
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_lm_head_is_chunked_by_default_on_cuda_only_and_as_set_anywhere() {
        let on = |device: &str, rows: Option<usize>| {
            TrainConfig { device: device.into(), head_chunk_rows: rows, ..TrainConfig::default() }.settings("c.toml", None).unwrap().head_chunk_rows
        };
        assert_eq!((on("cpu", None), on("cuda", None), on("cuda:1", None)), (0, 2048, 2048));
        assert_eq!((on("cpu", Some(512)), on("cuda", Some(0))), (512, 0));
    }

    #[test]
    fn the_section_parses_from_toml_with_unknown_keys_named() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Doc {
            train: TrainConfig,
        }
        let doc: Doc = distill_core::config::parse("[train]\nmodel = \"small\"\nsteps = 5\n[train.loss]\nkd = 0.5\n", "t.toml").unwrap();
        assert_eq!(doc.train.model, "small");
        assert_eq!(doc.train.loss.kd, 0.5);
        let err = distill_core::config::parse::<Doc>("[train.optimizer]\nlearning_rate = 1\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml:2") && err.contains("learning_rate"), "{err}");
    }
}
