//! The `train` stage: Parquet shards with the teacher's soft labels in, a distilled student out.
//!
//! - [`run`]: the stage (`distill train`): reads `<work>/shards/*.parquet` and
//!   `shard_manifest.json`, trains ([`trainer`]), writes an HF model folder ([`export`]) with
//!   `metrics.jsonl` and `loss_curve.png`; checkpoints go to the stage's scratch folder and
//!   `--resume` continues from the newest one.
//! - [`train_documents`]: the same loop on raw token-id documents with plain cross-entropy
//!   (language-model pretraining; the offline default's teacher bootstrap).
//! - [`param_count`]: what `distill train --print-params` prints.
//!
//! Config: [`TrainConfig`] (`[train]`, with `[train.loss]` and `[train.optimizer]`).

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod export;
pub mod optim;
pub mod schedule;
pub mod source;
pub mod trainer;

use std::path::{Path, PathBuf};

use distill_core::StageContext;
use distill_model::{AttentionBackward, ModelConfig, TrainableLm};
use serde_json::{json, Value};

pub use config::{LossConfig, OptimizerConfig, Settings, TrainConfig};
pub use error::{Error, Result};
pub use trainer::{EvalResult, TrainReport};

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--resume`: continue from the newest checkpoint in the scratch folder.
    pub resume: bool,
    /// Stop after this many steps (a checkpoint is written there), as if interrupted.
    pub stop_after: Option<u64>,
    /// The config file's name, for error messages.
    pub config_file: String,
}

/// The model config a `[train]` section describes: the preset / config path, or the init
/// checkpoint's, with the vocabulary and special ids taken from the tokenizer for fresh models.
pub fn model_config(cfg: &TrainConfig, tokenizer: Option<&export::TokenizerInfo>) -> Result<ModelConfig> {
    if !cfg.init_checkpoint.is_empty() {
        return Ok(ModelConfig::from_file(Path::new(&cfg.init_checkpoint))?);
    }
    let mut mc = ModelConfig::resolve(&cfg.model)?;
    if let (true, Some(t)) = (cfg.vocab_from_tokenizer, tokenizer) {
        mc.set_vocab_size(t.vocab_size);
        mc.set_special_tokens(t.bos.or(t.eos), t.eos);
    }
    Ok(mc)
}

/// `distill train --print-params`: the model config and its parameter count (closed form,
/// equal to the built model's; tied embeddings counted once).
pub fn param_count(cfg: &TrainConfig, tokenizer: Option<&Path>) -> Result<(ModelConfig, usize)> {
    let info = tokenizer.filter(|p| p.exists()).map(export::tokenizer_info).transpose()?;
    let mc = model_config(cfg, info.as_ref())?;
    let n = mc.num_params();
    Ok((mc, n))
}

/// Builds the student: the init checkpoint's weights, or a fresh seeded init.
pub fn build_model(cfg: &TrainConfig, tokenizer: Option<&export::TokenizerInfo>, device: &candle_core::Device) -> Result<TrainableLm> {
    let mut lm = if !cfg.init_checkpoint.is_empty() {
        TrainableLm::from_hf_dir(Path::new(&cfg.init_checkpoint), device)?
    } else {
        TrainableLm::init(&model_config(cfg, tokenizer)?, device, cfg.seed)?
    };
    if !cfg.recompute_attention {
        lm.model.set_attention_backward(AttentionBackward::KeepProbs);
    }
    lm.model.set_flash_attention(cfg.flash_attention);
    Ok(lm)
}

fn resolve_tokenizer(cfg: &TrainConfig, manifest: &Value, work_dir: &Path) -> Result<PathBuf> {
    let named = if !cfg.tokenizer.is_empty() { cfg.tokenizer.clone() } else { manifest["tokenizer_path"].as_str().unwrap_or_default().to_string() };
    if named.is_empty() {
        let default = work_dir.join("tokenizer").join("tokenizer.json");
        return Ok(default);
    }
    let p = PathBuf::from(&named);
    Ok(if p.is_relative() && !p.exists() { work_dir.join(p) } else { p })
}

/// `distill train --bench STEPS`: times the trainer on synthetic top-`k` data of this config's
/// shapes (see [`bench`]); the model is a fresh init (or `init_checkpoint`).
pub fn bench_config(cfg: &TrainConfig, config_file: &str, k: usize, warmup: usize, steps: usize) -> distill_core::Result<bench::BenchReport> {
    let settings = cfg.settings(config_file, None)?;
    let device = trainer::device(&settings.device)?;
    let lm = build_model(cfg, None, &device)?;
    Ok(bench::bench(&lm, &settings, k, warmup, steps)?)
}

/// Output format version of this stage (bump when its files change shape).
pub const SCHEMA_VERSION: u32 = 1;

/// The `train` stage (see the crate docs). Returns the stats the runner stores.
pub fn run(ctx: &StageContext, cfg: &TrainConfig, opts: &RunOptions) -> distill_core::Result<Value> {
    let shards = ctx.input_dir("shards");
    let manifest: Value = std::fs::read_to_string(shards.join("shard_manifest.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
    let settings = cfg.settings(&opts.config_file, manifest["capture_temperature"].as_f64())?;
    let tokenizer = resolve_tokenizer(cfg, &manifest, ctx.work_dir)?;
    let tok = export::tokenizer_info(&tokenizer)?;
    let device = trainer::device(&settings.device)?;
    let lm = build_model(cfg, Some(&tok), &device)?;
    let mc = lm.model.config();
    let max_len = settings.seq_len.min(mc.max_positions());
    let data = source::ShardData::open(&data::shard_files(&shards)?, max_len, mc.vocab_size())?;
    let train_rows = source::Source::len(&data.train);
    if data.untrained > 0 {
        tracing::warn!(
            "{} of {} training rows have no trained position within the first {max_len} tokens (their prompt fills the context, or their loss mask is empty): they cost steps and teach nothing; raise [train] seq_len, or lower [shards] max_seq_len so that the shards stage leaves them out",
            data.untrained,
            train_rows
        );
    }
    let prepared = Prepared { train: &data.train, validation: &data.validation, skipped: &data.skipped, truncated: data.truncated, untrained: data.untrained };
    Ok(train_and_export(&lm, prepared, cfg, &settings, &tokenizer, tok.pad, &ctx.out_dir, &ctx.scratch_dir, ctx.quiet, opts)?)
}

/// Training data checked and ready: the two splits and what was left out or cut.
struct Prepared<'a> {
    train: &'a dyn source::Source,
    validation: &'a dyn source::Source,
    skipped: &'a [String],
    truncated: usize,
    /// Training rows with no trained position within the context.
    untrained: usize,
}

/// Trains on raw token-id documents with cross-entropy (no teacher): documents are packed
/// into `seq_len` windows separated by the tokenizer's end-of-text id; every 20th window is
/// held out. Same loop, checkpoints, resume and export as [`run`].
#[allow(clippy::too_many_arguments)]
pub fn train_documents(docs: &[Vec<u32>], cfg: &TrainConfig, tokenizer: &Path, out_dir: &Path, scratch_dir: &Path, quiet: bool, opts: &RunOptions) -> distill_core::Result<Value> {
    let settings = cfg.settings(&opts.config_file, None)?;
    let tok = export::tokenizer_info(tokenizer)?;
    let device = trainer::device(&settings.device)?;
    let lm = build_model(cfg, Some(&tok), &device)?;
    let seq = settings.seq_len.min(lm.model.config().max_positions());
    let mut data = data::pack_documents(docs, seq, tok.eos, 20);
    data::drop_out_of_vocab(&mut data, lm.model.config().vocab_size());
    let prepared = Prepared { train: &data.train, validation: &data.validation, skipped: &data.skipped, truncated: 0, untrained: 0 };
    Ok(train_and_export(&lm, prepared, cfg, &settings, tokenizer, tok.pad, out_dir, scratch_dir, quiet, opts)?)
}

#[allow(clippy::too_many_arguments)]
fn train_and_export(
    lm: &TrainableLm,
    data: Prepared,
    cfg: &TrainConfig,
    settings: &Settings,
    tokenizer: &Path,
    pad: Option<u32>,
    out_dir: &Path,
    scratch_dir: &Path,
    quiet: bool,
    opts: &RunOptions,
) -> Result<Value> {
    let mc = lm.model.config();
    for s in data.skipped.iter().take(5) {
        tracing::warn!("skipped row {s}");
    }
    let train_config = serde_json::to_value(cfg).map_err(Error::ConfigJson)?;
    let run = trainer::TrainRun { settings, train_config, scratch_dir, quiet, resume: opts.resume, stop_after: opts.stop_after };
    let report = trainer::train(lm, data.train, data.validation, &run)?;
    let metrics = std::fs::read_to_string(scratch_dir.join(trainer::METRICS_FILE)).unwrap_or_default();
    if report.completed {
        export::write_hf_folder(lm, tokenizer, pad, out_dir)?;
    }
    distill_core::atomic::write_file(&out_dir.join(trainer::METRICS_FILE), metrics.as_bytes())?;
    export::loss_curve(&metrics, &out_dir.join("loss_curve.png"))?;
    Ok(json!({
        "model_type": mc.to_json()["model_type"],
        "params": lm.num_params(),
        "steps": report.steps,
        "completed": report.completed,
        "resumed_from": report.resumed_from,
        "tokens": report.tokens,
        "tokens_per_sec": report.tokens_per_sec,
        "train_elapsed_secs": report.elapsed_secs,
        "final_train_loss": report.final_train_loss,
        "val_kd": report.last_eval.map(|e| e.kd),
        "val_ce": report.last_eval.map(|e| e.ce),
        "train_examples": data.train.len(),
        "validation_examples": data.validation.len(),
        "skipped_rows": data.skipped.len(),
        "truncated_rows": data.truncated,
        "untrained_rows": data.untrained,
        "capture_temperature": settings.loss.capture_temperature,
    }))
}
