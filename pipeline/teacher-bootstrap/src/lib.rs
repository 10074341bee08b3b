//! The `teacher-bootstrap` stage (offline default only): trains a small teacher language model
//! with plain next-token cross-entropy on the same code corpus the `tokenizer` stage trained
//! on, and writes it as an HF model folder (`config.json`, `model.safetensors`,
//! `tokenizer.json`, `generation_config.json`, `metrics.jsonl`, `loss_curve.png`).
//!
//! `distill serve` then serves this folder on loopback as the teacher, so the whole pipeline
//! runs offline with real HTTP, a real limiter and a real cache. By default teacher and student
//! share one tokenizer (their soft labels align exactly); `tokenizer_vocab_size` gives the
//! teacher a byte-level BPE of its own, trained on the same corpus, so the offline pipeline
//! exercises cross-tokenizer alignment as an API teacher of another model family would. It uses the trainer's own loop
//! ([`distill_train::train_documents`]): same optimizer, schedule, checkpoints and resume.
//!
//! Reads `<work-dir>/tokenizer/corpus.json` (the files, with their sha256) and
//! `<work-dir>/tokenizer/tokenizer.json`. A corpus file that changed since the tokenizer
//! stage read it is an error that says to re-run that stage.

use std::path::{Path, PathBuf};

use distill_core::error::{Error, IoContext};
use distill_core::StageContext;
use distill_tokenizer::config::{MIN_VOCAB, SPECIAL_TOKENS};
use distill_tokenizer::train::{train_byte_level, BpeSpec};
use serde::{Deserialize, Serialize};

/// `[teacher_bootstrap]`: the small local teacher of the offline default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherBootstrapConfig {
    /// Bytes of the tokenizer's corpus to train on, in the corpus's order (0 = all of it).
    pub max_corpus_bytes: u64,
    /// Entries of the teacher's own byte-level BPE, trained on every other file of the same
    /// corpus (so its merges differ from the student's); 0 = the tokenizer stage's tokenizer,
    /// shared with the student.
    pub tokenizer_vocab_size: usize,
    /// The training run: the same keys as `[train]` (model preset, steps, optimizer, ...).
    /// The loss is forced to cross-entropy only: there is no teacher for the teacher.
    pub train: distill_train::TrainConfig,
}

impl Default for TeacherBootstrapConfig {
    fn default() -> Self {
        let mut train = distill_train::TrainConfig { model: "small".into(), steps: 300, seq_len: 256, ..Default::default() };
        train.loss.kd = 0.0;
        train.loss.ce = 1.0;
        TeacherBootstrapConfig { max_corpus_bytes: 0, tokenizer_vocab_size: 0, train }
    }
}

impl TeacherBootstrapConfig {
    /// The keys of this section that `[teacher_bootstrap.train]`'s own check does not cover.
    pub fn check(&self, file: &str) -> distill_core::Result<()> {
        let v = self.tokenizer_vocab_size;
        if v != 0 && v < MIN_VOCAB {
            let msg = format!("[teacher_bootstrap] tokenizer_vocab_size: {v} is below {MIN_VOCAB} (256 bytes and the special tokens); use 0 to share the student's tokenizer");
            return Err(Error::config_value(file, None, "teacher_bootstrap.tokenizer_vocab_size", msg));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct CorpusFile {
    rel: String,
    sha256: String,
}

#[derive(Deserialize)]
struct Corpus {
    root: PathBuf,
    files: Vec<CorpusFile>,
}

/// Reads the corpus files the tokenizer stage recorded, checking each is unchanged.
fn read_corpus(tokenizer_dir: &Path, max_bytes: u64) -> distill_core::Result<Vec<String>> {
    let listing = tokenizer_dir.join("corpus.json");
    let text = std::fs::read_to_string(&listing).at(&listing)?;
    let corpus: Corpus = serde_json::from_str(&text).map_err(|e| Error::json(&listing, e))?;
    let mut texts = Vec::new();
    let mut total = 0u64;
    for f in &corpus.files {
        let path = corpus.root.join(&f.rel);
        let bytes = std::fs::read(&path).at(&path)?;
        if distill_core::digest::sha256_hex(&bytes) != f.sha256 {
            return Err(Error::Other(format!("{}: changed since the tokenizer stage read it; run `distill tokenizer --force` first", path.display())));
        }
        total += bytes.len() as u64;
        if max_bytes > 0 && total > max_bytes {
            break;
        }
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(texts)
}

/// Output format version of this stage (bump when its files change shape).
pub const SCHEMA_VERSION: u32 = 1;

/// Runs the stage (see the crate docs).
pub fn run(ctx: &StageContext, cfg: &TeacherBootstrapConfig, config_file: &str) -> distill_core::Result<serde_json::Value> {
    let mut train = cfg.train.clone();
    train.loss.kd = 0.0;
    train.loss.reverse_kl = 0.0;
    train.loss.jsd = 0.0;
    train.loss.ce = 1.0;
    let tokenizer_dir = ctx.input_dir("tokenizer");
    let texts = read_corpus(&tokenizer_dir, cfg.max_corpus_bytes)?;
    let tokenizer_path = if cfg.tokenizer_vocab_size == 0 {
        tokenizer_dir.join("tokenizer.json")
    } else {
        // Learned from every other file of the corpus: the same corpus would give the student's
        // merges again, truncated or extended, where another model family's tokenizer differs
        // in which merges it has. min_frequency 2: a pair seen once is no merge to learn.
        let spec = BpeSpec { vocab_size: cfg.tokenizer_vocab_size, min_frequency: 2, special_tokens: &SPECIAL_TOKENS, max_token_length: None };
        let own = train_byte_level(texts.iter().skip(1).step_by(2), &spec).map_err(|e| Error::Other(format!("training the teacher's tokenizer: {e}")))?;
        std::fs::create_dir_all(&ctx.scratch_dir).at(&ctx.scratch_dir)?;
        let path = ctx.scratch_dir.join("teacher-tokenizer.json");
        own.save(&path, false).map_err(|e| Error::Other(format!("{}: cannot write the teacher's tokenizer: {e}", path.display())))?;
        path
    };
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| Error::Other(format!("{}: cannot load tokenizer: {e}", tokenizer_path.display())))?;
    let encodings = tokenizer.encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), false).map_err(|e| Error::Other(format!("tokenizing the corpus: {e}")))?;
    let docs: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
    let corpus_tokens: usize = docs.iter().map(Vec::len).sum();
    tracing::info!(documents = docs.len(), tokens = corpus_tokens, "teacher-bootstrap corpus tokenized");
    let opts = distill_train::RunOptions { config_file: config_file.to_string(), ..Default::default() };
    let mut stats = distill_train::train_documents(&docs, &train, &tokenizer_path, &ctx.out_dir, &ctx.scratch_dir, ctx.quiet, &opts)?;
    if let serde_json::Value::Object(m) = &mut stats {
        m.insert("corpus_documents".into(), docs.len().into());
        m.insert("corpus_tokens".into(), corpus_tokens.into());
        m.insert("own_tokenizer".into(), (cfg.tokenizer_vocab_size > 0).into());
    }
    Ok(stats)
}
