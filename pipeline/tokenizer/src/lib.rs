//! The `tokenizer` stage: trains the student's byte-level BPE tokenizer on a local code corpus
//! (by default the Python standard library's source) and writes `tokenizer.json`.
//!
//! Outputs in the stage folder:
//! - `tokenizer.json`: HF `tokenizers` format; special tokens `<|endoftext|>` (0), `<|pad|>` (1),
//!   `<|fim_prefix|>` (2), `<|fim_middle|>` (3), `<|fim_suffix|>` (4);
//! - `corpus.json`: the files trained on (relative path, bytes, sha256) in training order.
//!
//! The runner should put [`corpus_digest`] into the stage's `external` inputs so that a changed
//! corpus makes the stage stale.

pub mod config;
pub mod corpus;
pub mod error;
pub mod train;

use std::time::Instant;

use distill_core::StageContext;

pub use config::{CorpusSource, Settings, TokenizerConfig, SPECIAL_TOKENS};
pub use corpus::{Corpus, CorpusFile};
pub use error::{Error, Result};

/// Output file name of the trained tokenizer.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Output format version of this stage (bump when its files change shape).
pub const SCHEMA_VERSION: u32 = 1;

/// Digest of the corpus this config selects (see [`corpus::corpus_digest`]); `file` names the
/// config in error messages.
pub fn corpus_digest(cfg: &TokenizerConfig, file: &str) -> distill_core::Result<String> {
    let settings = cfg.settings(file)?;
    Ok(corpus::corpus_digest(&settings)?)
}

/// Runs the stage: selects the corpus, trains, writes `tokenizer.json` and `corpus.json`
/// atomically into `ctx.out_dir`, and returns stats.
pub fn run(ctx: &StageContext, cfg: &TokenizerConfig) -> distill_core::Result<serde_json::Value> {
    let settings = cfg.settings("[tokenizer]")?;
    let t0 = Instant::now();
    let corpus = corpus::select(&settings)?;
    tracing::info!(files = corpus.files.len(), bytes = corpus.total_bytes, root = %corpus.root.display(), "tokenizer corpus selected");
    let texts = corpus.texts()?;
    let t_train = Instant::now();
    let tokenizer = train::train(&texts, &settings)?;
    let train_secs = t_train.elapsed().as_secs_f64();
    let json = train::to_json(&tokenizer)?;
    let out = ctx.out_dir.join(TOKENIZER_FILE);
    distill_core::atomic::write_file(&out, json.as_bytes())?;
    distill_core::atomic::write_json(&ctx.out_dir.join("corpus.json"), &corpus)?;
    // Compression measured on a bounded slice of the corpus: enough for a stable figure.
    let sample: Vec<String> = texts.iter().take(64).cloned().collect();
    let bpt = train::bytes_per_token(&tokenizer, &sample)?;
    Ok(serde_json::json!({
        "corpus_root": corpus.root.display().to_string(),
        "corpus_digest": corpus.digest(),
        "files": corpus.files.len(),
        "bytes": corpus.total_bytes,
        "skipped_over_cap": corpus.over_cap,
        "skipped_too_large": corpus.too_large,
        "skipped_not_utf8": corpus.not_utf8,
        "vocab_size": tokenizer.get_vocab_size(true),
        "bytes_per_token": bpt,
        "train_secs": train_secs,
        "total_secs": t0.elapsed().as_secs_f64(),
        "tokenizer_sha256": distill_core::digest::sha256_hex(json.as_bytes()),
    }))
}
