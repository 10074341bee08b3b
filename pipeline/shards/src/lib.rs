//! The `shards` stage: `filter/kept.jsonl` + `teacher/logprobs.frames` -> Parquet shards with
//! student token ids, a loss mask and the teacher's top-k soft labels aligned to the student
//! tokenizer.
//!
//! Outputs in the stage folder:
//! - `train-NNNNN-of-MMMMM.parquet`, `validation-NNNNN-of-MMMMM.parquet` (zstd; schema in
//!   [`schema`]; rows in the kept samples' order: prompt id, then sample index; one record
//!   batch per row group);
//! - `shard_manifest.json` ([`manifest::ShardManifest`]): row counts, sha256 per file, schema
//!   version and columns, tokenizer hash, teacher model, capture temperature, alignment counts.
//!
//! The stage streams: kept samples are read in order and joined with their prompt's frame of
//! log-probs in the same pass (both files are in prompt id order), rows are built a batch at a
//! time (in parallel) and written row group by row group, and the score columns come from a
//! first pass over `kept.jsonl` that reads only the score names. Memory is a batch of rows and
//! one open file per split, whatever the number of samples.
//!
//! A share of the training rows (`[shards] fim_rate`) becomes fill-in-the-middle rows: see
//! [`fim`].
//!
//! Alignment rules are in [`align`]. Same inputs, tokenizer and config give byte-identical
//! files.

pub mod align;
pub mod ascii_bpe;
pub mod chunks;
pub mod config;
pub mod error;
pub mod fim;
pub mod manifest;
pub mod schema;
pub mod vocab;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use distill_core::frames::{Frame, FrameReader};
use distill_core::logprobs::FlatTokens;
use distill_core::records::KeptSample;
use distill_core::StageContext;
use rayon::prelude::*;

pub use align::{build_row, Row, Skip};
pub use config::{split_of, Settings, ShardsConfig};
pub use error::{Error, Result};
pub use manifest::ShardManifest;
pub use vocab::StudentTokenizer;
pub use writer::{FileInfo, ShardFile, WriteOptions};

/// Samples whose rows are built together (in parallel) before they are written.
const BATCH_SAMPLES: usize = 512;

/// A kept sample with its teacher tokens (log-probs and top-k), when the teacher sent them.
pub type Sample = (KeptSample, Option<FlatTokens>);

/// What [`write_shards`] did.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: ShardManifest,
    pub skipped: BTreeMap<String, usize>,
}

/// Runs the stage: reads `filter/kept.jsonl` and `teacher/logprobs.frames`, writes shards and
/// `shard_manifest.json` into `ctx.out_dir`, returns stats (rows per split, alignment counts,
/// skipped records by reason).
pub fn run(ctx: &StageContext, cfg: &ShardsConfig) -> distill_core::Result<serde_json::Value> {
    let settings = cfg.settings("[shards]", ctx.work_dir)?;
    let tok = StudentTokenizer::load(&settings.tokenizer)?;
    let kept = ctx.input_dir("filter").join("kept.jsonl");
    let frames = ctx.input_dir("teacher").join("logprobs.frames");
    let t0 = std::time::Instant::now();
    let score_names = score_names(&kept)?;
    let malformed = std::cell::Cell::new(0usize);
    let samples = joined(&kept, &frames, &malformed)?;
    let written = write_shards(samples, &score_names, &tok, &settings, &ctx.out_dir, ctx.quiet)?;
    let m = &written.manifest;
    let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
    let positions: u64 = m.files.iter().map(|f| f.positions).sum();
    let soft: u64 = m.files.iter().map(|f| f.soft_label_positions).sum();
    let mut skipped = written.skipped.clone();
    if malformed.get() > 0 {
        skipped.insert("malformed_line".into(), malformed.get());
    }
    Ok(serde_json::json!({
        "rows": m.rows,
        "total_rows": m.total_rows,
        "files": m.files.len(),
        "bytes": bytes,
        "tokens": positions,
        "soft_label_positions": soft,
        "alignment": m.alignment,
        "hard_label_only_rows": m.hard_label_only_rows,
        "soft_label_byte_share": (m.completion_bytes > 0).then(|| m.soft_label_bytes as f64 / m.completion_bytes as f64),
        "teacher_mass_captured": m.teacher_mass_captured,
        "fim_rows": m.fim_rows,
        "skipped": skipped,
        "write_secs": t0.elapsed().as_secs_f64(),
    }))
}

/// The score names of every kept sample (a first pass that keeps only the names).
pub fn score_names(kept: &Path) -> distill_core::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Scores {
        #[serde(default)]
        scores: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let mut names = BTreeSet::new();
    for r in distill_core::jsonl::records::<Scores>(kept)? {
        if let Ok(s) = r? {
            names.extend(s.scores.into_keys());
        }
    }
    Ok(names.into_iter().collect())
}

/// The kept samples of `kept` (in file order), each with its tokens from `frames` (a merge join
/// on the prompt id; both files are in prompt id order). A malformed line is logged, counted in
/// `malformed` and skipped.
pub fn joined<'a>(kept: &Path, frames: &Path, malformed: &'a std::cell::Cell<usize>) -> distill_core::Result<impl Iterator<Item = distill_core::Result<Sample>> + 'a> {
    let kept_path = kept.to_path_buf();
    let mut records = distill_core::jsonl::records::<KeptSample>(kept)?;
    let mut frames = Frames::open(frames)?;
    Ok(std::iter::from_fn(move || loop {
        let k = match records.next()? {
            Err(e) => return Some(Err(e)),
            Ok(Err(b)) => {
                tracing::warn!("{}:{}: skipped a malformed record: {}", kept_path.display(), b.line, b.message);
                malformed.set(malformed.get() + 1);
                continue;
            }
            Ok(Ok(k)) => k,
        };
        let index = k.id.rsplit_once('#').and_then(|(_, i)| i.parse::<usize>().ok());
        return Some(frames.tokens(&k.prompt_id, index).map(|t| (k, t)));
    }))
}

/// `teacher/logprobs.frames`, read forward as the kept samples ask for their prompts.
struct Frames {
    path: PathBuf,
    reader: Option<FrameReader>,
    current: Option<Frame>,
}

impl Frames {
    fn open(path: &Path) -> distill_core::Result<Self> {
        // A teacher run without log-probs writes no frames: every row is then hard-label only.
        let reader = if path.exists() { Some(FrameReader::open(path)?) } else { None };
        Ok(Frames { path: path.to_path_buf(), reader, current: None })
    }

    /// Sample `index` of the prompt's tokens; prompts must be asked for in id order.
    fn tokens(&mut self, prompt_id: &str, index: Option<usize>) -> distill_core::Result<Option<FlatTokens>> {
        let Some(reader) = self.reader.as_mut() else { return Ok(None) };
        while self.current.as_ref().is_none_or(|f| f.id.as_str() < prompt_id) {
            match reader.next_frame()? {
                Some(f) => self.current = Some(f),
                None => {
                    self.current = None;
                    return Ok(None);
                }
            }
        }
        match (&self.current, index) {
            (Some(f), Some(i)) if f.id == prompt_id => distill_core::logprobs::unpack_sample_flat(&f.payload, i)
                .map_err(|e| distill_core::Error::Other(format!("{}: prompt '{prompt_id}': {e}; re-run the teacher stage (--force)", self.path.display()))),
            _ => Ok(None),
        }
    }
}

/// The files of one split being written.
struct SplitFiles {
    name: &'static str,
    done: Vec<ShardFile>,
    open: Option<ShardFile>,
    /// Rows waiting for a full row group.
    pending: Vec<Row>,
    rows: usize,
}

/// Everything [`write_shards`] accumulates besides the files.
#[derive(Default)]
struct Tally {
    skipped: BTreeMap<String, usize>,
    teacher_models: BTreeSet<String>,
    temperatures: BTreeSet<String>,
    alignment: BTreeMap<String, usize>,
    hard_label_only: usize,
    completion_bytes: u64,
    soft_label_bytes: u64,
    /// Sum of the listed teacher mass over positions with soft labels, and their number.
    teacher_mass: f64,
    soft_label_positions: u64,
    fim_rows: BTreeMap<String, usize>,
}

/// Tokenizes and aligns `samples` (in order), writes the Parquet files and the manifest into
/// `out_dir`. `score_names` are the score columns (sorted); a sample's other scores are dropped.
pub fn write_shards(
    samples: impl Iterator<Item = distill_core::Result<Sample>>,
    score_names: &[String],
    tok: &StudentTokenizer,
    s: &Settings,
    out_dir: &Path,
    quiet: bool,
) -> distill_core::Result<Written> {
    std::fs::create_dir_all(out_dir).map_err(|e| distill_core::Error::io(out_dir, e))?;
    let schema = schema::schema(score_names);
    let opts = WriteOptions { row_group_rows: s.row_group_rows, zstd_level: s.zstd_level };
    let mut splits = [("train", SplitFiles::new("train")), ("validation", SplitFiles::new("validation"))];
    let mut tally = Tally::default();
    let bar = distill_core::progress::bar(0, "shards", quiet);
    let mut batch: Vec<Sample> = Vec::with_capacity(BATCH_SAMPLES);
    let mut last_id: Option<String> = None;
    let mut samples = samples.peekable();
    while samples.peek().is_some() {
        batch.clear();
        while batch.len() < BATCH_SAMPLES {
            let Some(next) = samples.next() else { break };
            let sample = next?;
            if last_id.as_deref() == Some(sample.0.id.as_str()) {
                *tally.skipped.entry("duplicate_id".into()).or_default() += 1;
                continue;
            }
            last_id = Some(sample.0.id.clone());
            batch.push(sample);
        }
        let built: Vec<Result<std::result::Result<Row, Skip>>> =
            batch.par_iter().map(|(k, tokens)| build_row(k, tokens.as_ref(), tok, s, split_of(&k.prompt_id, s.split_seed, s.validation_fraction))).collect();
        for ((k, _), r) in batch.iter().zip(built) {
            match r? {
                Ok(row) => {
                    tally.count(&row);
                    let split = &mut splits.iter_mut().find(|(n, _)| *n == row.split).expect("rows are train or validation").1;
                    split.push(row, out_dir, &schema, score_names, &opts, s.rows_per_file)?;
                }
                Err(skip) => {
                    let reason = match skip {
                        Skip::TooLong { tokens, max } => {
                            tracing::debug!(id = %k.id, tokens, max, "longer than max_seq_len, left out");
                            "too_long"
                        }
                        Skip::EmptyCompletion => "empty_completion",
                    };
                    *tally.skipped.entry(reason.into()).or_default() += 1;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut files = Vec::new();
    let mut counts = BTreeMap::new();
    for (name, split) in splits {
        counts.insert(name.to_string(), split.rows);
        files.extend(split.finish(out_dir, &schema, score_names, &opts)?);
    }
    let temps: Vec<f32> = tally.temperatures.iter().filter_map(|t| t.parse().ok()).collect();
    let teacher_models: Vec<String> = tally.teacher_models.into_iter().collect();
    let manifest = ShardManifest {
        schema_version: schema::SCHEMA_VERSION,
        columns: schema::describe(&schema),
        score_names: score_names.to_vec(),
        files,
        total_rows: counts.values().sum(),
        rows: counts,
        tokenizer_path: tok.path.display().to_string(),
        tokenizer_sha256: tok.sha256.clone(),
        vocab_size: tok.vocab_size(),
        teacher_model: (teacher_models.len() == 1).then(|| teacher_models[0].clone()),
        teacher_models,
        capture_temperature: (temps.len() == 1).then(|| temps[0]),
        capture_temperatures: temps,
        alignment: tally.alignment,
        hard_label_only_rows: tally.hard_label_only,
        completion_bytes: tally.completion_bytes,
        soft_label_bytes: tally.soft_label_bytes,
        teacher_mass_captured: (tally.soft_label_positions > 0).then(|| tally.teacher_mass / tally.soft_label_positions as f64),
        row_group_rows: s.row_group_rows,
        compression: format!("zstd({})", s.zstd_level),
        validation_fraction: s.validation_fraction,
        split_seed: s.split_seed,
        fim_rows: tally.fim_rows,
    };
    distill_core::atomic::write_json(&out_dir.join(manifest::FILE_NAME), &manifest)?;
    Ok(Written { manifest, skipped: tally.skipped })
}

impl Tally {
    fn count(&mut self, row: &Row) {
        if !self.teacher_models.contains(&row.teacher_model) {
            self.teacher_models.insert(row.teacher_model.clone());
        }
        self.temperatures.insert(format!("{:?}", row.temperature));
        *self.alignment.entry(row.alignment.to_string()).or_default() += 1;
        self.hard_label_only += usize::from(row.hard_label_only);
        self.completion_bytes += row.completion_text.len() as u64;
        self.soft_label_bytes += row.soft_label_bytes as u64;
        let labelled = row.soft_label_positions() as u64;
        self.teacher_mass += row.teacher_mass_captured as f64 * labelled as f64;
        self.soft_label_positions += labelled;
        if row.fim != align::FIM_NONE {
            *self.fim_rows.entry(row.fim.to_string()).or_default() += 1;
        }
    }
}

impl SplitFiles {
    fn new(name: &'static str) -> Self {
        SplitFiles { name, done: Vec::new(), open: None, pending: Vec::new(), rows: 0 }
    }

    /// Adds a row; writes a row group when one is full, and starts a new file when the open one
    /// holds `rows_per_file` rows.
    fn push(&mut self, row: Row, dir: &Path, schema: &SchemaRef, scores: &[String], o: &WriteOptions, rows_per_file: usize) -> Result<()> {
        self.pending.push(row);
        self.rows += 1;
        let room = rows_per_file - self.open.as_ref().map_or(0, ShardFile::rows);
        if self.pending.len() >= o.row_group_rows.min(room) {
            self.flush(dir, schema, scores, o)?;
            if self.open.as_ref().is_some_and(|f| f.rows() >= rows_per_file) {
                self.done.push(self.open.take().expect("checked above"));
            }
        }
        Ok(())
    }

    fn flush(&mut self, dir: &Path, schema: &SchemaRef, scores: &[String], o: &WriteOptions) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            self.open = Some(ShardFile::create(dir, self.name, self.done.len(), schema, o)?);
        }
        let rows: Vec<&Row> = self.pending.iter().collect();
        self.open.as_mut().expect("opened above").write_row_group(&rows, scores)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and gives every file its final name.
    fn finish(mut self, dir: &Path, schema: &SchemaRef, scores: &[String], o: &WriteOptions) -> Result<Vec<FileInfo>> {
        self.flush(dir, schema, scores, o)?;
        self.done.extend(self.open.take());
        let count = self.done.len();
        self.done.into_iter().enumerate().map(|(i, f)| f.finish(dir, &writer::file_name(self.name, i, count))).collect()
    }
}
