//! The teacher stage: answers every prompt with the teacher, paying for each distinct request
//! once, ever (see `distill-teacher-client` for the client, its cache and its limits).
//!
//! Reads `<work-dir>/prompts/prompts.jsonl` (or `--prompts FILE`), handles the prompts this
//! run owns (`--shard i/N`), and writes, all sorted by prompt id:
//!
//! - `responses.jsonl`: one `TeacherRecord` per answered prompt, *without* per-token
//!   log-probs: the human-readable view (prompt, answers, finish reasons, usage);
//! - `logprobs.frames`: per answered prompt, a frame (`distill_core::frames`) holding each
//!   sample's tokens, log-probs and top-k in the compact form of `distill_core::logprobs`
//!   (~50 bytes per teacher token at top-20, against ~1,300 as JSON);
//! - `failed.jsonl`: one `FailedPrompt` per prompt without an answer;
//! - `series.jsonl`: requests, cache hits, 429s, retries, tokens and cost over time, written
//!   live into the scratch folder while the stage runs ([`series`]);
//!
//! and returns the stats the runner writes to `stats.json` (with `transport = "batch"`, its
//! `batch` object counts the batches submitted, re-attached, completed, expired and failed,
//! the requests submitted, answered and failed, their tokens and cost at the batch price). Only requests the cache lacks are
//! sent; a re-run after a crash sends only what was not yet answered. The stage streams:
//! answers are written as they arrive, in id order, and memory holds the prompt ids and a
//! window of answers in flight, whatever the number of prompts.

pub mod input;
pub mod series;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use distill_core::frames::FrameWriter;
use distill_core::records::TeacherRecord;
use distill_core::{Result, ShardSpec, StageContext};
use distill_teacher_client::{BatchOptions, Plan, PromptOutcome, SamplingOverrides, TeacherClient};

pub use distill_teacher_client::TeacherConfig;
pub use input::{index_prompts, read_prompts, BadLine, PromptIndex};

/// Output format version of this stage (bump when its files change shape). 2: log-probs moved
/// from `responses.jsonl` to `logprobs.frames`.
pub const SCHEMA_VERSION: u32 = 2;

/// The answers' file, the log-probs' file and the failures' file.
pub const RESPONSES: &str = "responses.jsonl";
pub const LOGPROBS: &str = "logprobs.frames";
pub const FAILED: &str = "failed.jsonl";

/// The stage's command-line options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--prompts FILE`: read prompts from a user file instead of the prompts stage's output.
    pub prompts: Option<PathBuf>,
    /// `--strict`: a bad prompt line is fatal instead of counted and skipped.
    pub strict: bool,
    /// `--retry-failed`: re-send prompts whose non-retriable failure is cached.
    pub retry_failed: bool,
}

/// Where the prompts come from.
pub fn prompts_path(work_dir: &Path, opts: &RunOptions) -> PathBuf {
    opts.prompts.clone().unwrap_or_else(|| work_dir.join("prompts").join("prompts.jsonl"))
}

/// Streams prompts out of `index`, stopping the stream at the first read error (kept in
/// `error` for the caller).
fn stream_prompts<'a>(
    index: &'a PromptIndex,
    error: &'a std::cell::RefCell<Option<distill_core::Error>>,
) -> Result<impl Iterator<Item = distill_core::records::PromptRecord> + 'a> {
    Ok(index.prompts()?.map_while(move |p| match p {
        Ok(p) => Some(p),
        Err(e) => {
            error.borrow_mut().get_or_insert(e);
            None
        }
    }))
}

/// Runs the stage; see the crate docs. Stops with an error (exit code 1) when the server
/// refuses the key (401/403), the account has no quota, or the URL or model is wrong (404).
pub fn run(ctx: &StageContext, cfg: &TeacherConfig, opts: &RunOptions) -> Result<serde_json::Value> {
    cfg.settings("config")?;
    let path = prompts_path(ctx.work_dir, opts);
    let index = index_prompts(&path, opts.strict, ctx.shard)?;
    if !index.bad.is_empty() {
        tracing::warn!("{}: {} bad line(s) skipped (--strict makes them fatal)", path.display(), index.bad.len());
    }
    let client = TeacherClient::new(cfg)?;
    let mut responses = distill_core::jsonl::Writer::create(&ctx.out_dir.join(RESPONSES))?;
    let mut logprobs = FrameWriter::create(&ctx.out_dir.join(LOGPROBS))?;
    let mut failed = distill_core::jsonl::Writer::create(&ctx.out_dir.join(FAILED))?;
    let mut teacher_tokens = 0u64;
    let mut series = series::SeriesWriter::create(&ctx.scratch_dir, ctx.shard, client.live())?;
    let (mut completed, mut failed_n) = (0u64, 0u64);
    let read_error = std::cell::RefCell::new(None);
    let opts_batch = BatchOptions { progress: !ctx.quiet, retry_failed: opts.retry_failed };
    // Online: one pass. Batch: a first pass submits what the cache lacks and waits for the
    // batches, a second hands on every answer from the cache in id order.
    let prompts = || stream_prompts(&index, &read_error);
    let (s, job) = client.run_stream_by_transport(prompts, Some(index.len() as u64), &SamplingOverrides::default(), &opts_batch, |outcome| {
        match &outcome {
            PromptOutcome::Answered(_) => completed += 1,
            PromptOutcome::Failed(_) => failed_n += 1,
        }
        series.tick(completed, failed_n, client.live(), false)?;
        match outcome {
            PromptOutcome::Answered(mut record) => {
                let has_logprobs = record.samples.iter().any(|s| s.tokens.is_some());
                if has_logprobs {
                    teacher_tokens += record.samples.iter().filter_map(|s| s.tokens.as_ref()).map(|t| t.len() as u64).sum::<u64>();
                    logprobs.write(&record.id, &distill_core::logprobs::pack_samples(record.samples.iter().map(|s| s.tokens.as_deref())))?;
                }
                record.samples.iter_mut().for_each(|s| s.tokens = None);
                responses.write::<TeacherRecord>(&record)
            }
            PromptOutcome::Failed(f) => failed.write(&f),
        }
    })?;
    series.tick(completed, failed_n, client.live(), true)?;
    series.publish(&ctx.out_dir)?;
    if let Some(e) = read_error.into_inner() {
        return Err(e);
    }
    let bytes = |w: u64| if teacher_tokens == 0 { 0.0 } else { w as f64 / teacher_tokens as f64 };
    let logprobs_bytes = logprobs.bytes;
    responses.finish()?;
    logprobs.finish()?;
    failed.finish()?;
    if s.failed > 0 {
        tracing::warn!("{} prompt(s) failed: {:?} (see failed.jsonl; --retry-failed re-sends cached failures)", s.failed, s.failed_by_reason);
    }
    Ok(json!({
        "prompts": s.prompts,
        "completed": s.completed,
        "from_cache": s.from_cache,
        "requested": s.requested,
        "http_requests": s.http_requests,
        "failed": s.failed,
        "failed_by_reason": s.failed_by_reason,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "teacher_tokens_with_logprobs": teacher_tokens,
        "logprobs_bytes_per_token": bytes(logprobs_bytes),
        "cost_usd": s.cost_usd,
        "elapsed_secs": s.elapsed_secs,
        "rate_limited": s.rate_limited,
        "retries": s.retries,
        "usage_missing": s.usage_missing,
        "duplicates": s.duplicates,
        "bad_lines": index.bad.len(),
        "other_shards": index.other_shards,
        "transport": if job.is_some() { "batch" } else { "online" },
        "batch": job,
    }))
}

/// What `--dry-run` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub prompts_file: PathBuf,
    pub bad_lines: usize,
    /// Prompts left to other shards.
    pub other_shards: u64,
    /// `online` or `batch`; with `batch` the costs are at the batch price.
    pub transport: String,
    /// Fraction of the online price the costs are counted at (1, or `batch_discount`).
    pub price_factor: f64,
    /// `[teacher] max_cost_usd` (0 = no cap).
    pub max_cost_usd: f64,
    #[serde(flatten)]
    pub plan: Plan,
}

impl std::fmt::Display for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.plan;
        writeln!(f, "prompts file      {}", self.prompts_file.display())?;
        writeln!(f, "prompts           {} ({} bad lines, {} for other shards)", p.prompts, self.bad_lines, self.other_shards)?;
        writeln!(f, "cached            {}", p.cached)?;
        writeln!(f, "cached failures   {} (re-sent only with --retry-failed)", p.cached_failed)?;
        writeln!(f, "to request        {} ({} prompts share a request)", p.to_request, p.duplicates)?;
        if p.in_open_batches > 0 {
            writeln!(f, "in open batches   {} requests of an earlier run's batches (waited for, not submitted again)", p.in_open_batches)?;
        }
        writeln!(f, "prompt tokens     ~{}", p.projected_prompt_tokens)?;
        writeln!(
            f,
            "completion tokens at most {}{}",
            p.projected_completion_tokens_max,
            p.projected_completion_tokens_expected.map(|e| format!(", expected ~{e}")).unwrap_or_default()
        )?;
        write!(f, "cost              at most ${:.4}{}", p.projected_cost_usd_max, p.projected_cost_usd_expected.map(|e| format!(", expected ~${e:.4}")).unwrap_or_default())?;
        match self.transport.as_str() {
            "batch" => write!(f, "\ntransport         batch: prices x{} (batch_discount), answers within 24 hours", self.price_factor)?,
            _ => write!(f, "\ntransport         online")?,
        }
        if self.max_cost_usd > 0.0 && p.projected_cost_usd_max > self.max_cost_usd {
            let what = if self.transport == "batch" { "the run refuses to submit its batches" } else { "the run stops sending at the cap" };
            write!(f, "\nbudget            at most ${:.4} is over max_cost_usd ${}: {what}", p.projected_cost_usd_max, self.max_cost_usd)?;
        }
        Ok(())
    }
}

/// `--dry-run`: counts cached and to-request prompts and projects tokens and cost. Sends
/// nothing and writes no stage output (the cache folder is opened only if it exists).
pub fn dry_run(work_dir: &Path, cfg: &TeacherConfig, opts: &RunOptions, shard: Option<ShardSpec>) -> Result<DryRun> {
    let path = prompts_path(work_dir, opts);
    let index = index_prompts(&path, opts.strict, shard)?;
    let read_error = std::cell::RefCell::new(None);
    let plan = distill_teacher_client::dry_run(cfg, stream_prompts(&index, &read_error)?, &SamplingOverrides::default(), opts.retry_failed)?;
    if let Some(e) = read_error.into_inner() {
        return Err(e);
    }
    let settings = cfg.settings("config")?;
    let batch = settings.transport == distill_teacher_client::Transport::Batch;
    Ok(DryRun {
        prompts_file: path,
        bad_lines: index.bad.len(),
        other_shards: index.other_shards,
        transport: if batch { "batch" } else { "online" }.into(),
        price_factor: if batch { settings.batch_discount } else { 1.0 },
        max_cost_usd: settings.max_cost_usd,
        plan,
    })
}
