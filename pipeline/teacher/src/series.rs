//! The stage's time series: requests, cache hits, rate limiting, tokens and cost over time.
//!
//! While the stage runs it appends one JSON line at most every [`EVERY`] (and one at the end)
//! to `<work-dir>/.scratch/teacher/series.jsonl`, truncated when a run starts, so the
//! dashboard can draw the run while it runs. At the end the file is copied into the stage's
//! output folder (atomically, like every output) and so published with it: a killed run
//! leaves only the scratch file, never a half-written published one. Every counter in a line
//! is cumulative since the run started, so each is monotone over the file.
//!
//! A sharded run (`--shard i/N`, processes side by side sharing the scratch folder) writes
//! `series-<i>-of-<N>.jsonl` instead, in both places, so shards neither clobber each other's
//! file nor get concatenated into one non-monotone series when their parts are merged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use distill_core::error::IoContext;
use distill_core::{Result, ShardSpec};
use distill_teacher_client::Live;

/// The series' file name (in the scratch folder while running, then in the output folder).
pub const SERIES: &str = "series.jsonl";

/// The series' file name for a run of `shard` ([`SERIES`] when not sharded).
pub fn file_name(shard: Option<ShardSpec>) -> String {
    match shard {
        None => SERIES.to_string(),
        Some(s) => format!("series-{}-of-{}.jsonl", s.index, s.count),
    }
}

/// Least time between two lines.
pub const EVERY: Duration = Duration::from_secs(1);

/// One line of the series.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the stage started.
    pub t: f64,
    /// Prompts handed on (answered or failed).
    pub prompts_done: u64,
    pub completed: u64,
    pub failed: u64,
    /// Totals of the client since the stage started (see [`Live`]).
    #[serde(flatten)]
    pub live: Live,
}

/// Appends [`Point`]s to the scratch file.
pub struct SeriesWriter {
    path: PathBuf,
    file: std::fs::File,
    t0: Instant,
    last: Option<Instant>,
    /// The client's totals when the stage started (the client may have run batches before).
    base: Live,
}

impl SeriesWriter {
    /// Starts the series at `<scratch_dir>/<file_name(shard)>` (truncating an earlier run's).
    pub fn create(scratch_dir: &Path, shard: Option<ShardSpec>, base: Live) -> Result<SeriesWriter> {
        std::fs::create_dir_all(scratch_dir).at(scratch_dir)?;
        let path = scratch_dir.join(file_name(shard));
        let file = std::fs::File::create(&path).at(&path)?;
        Ok(SeriesWriter { path, file, t0: Instant::now(), last: None, base })
    }

    /// Appends a line if [`EVERY`] has passed since the last one (or `force`).
    pub fn tick(&mut self, completed: u64, failed: u64, live: Live, force: bool) -> Result<()> {
        let now = Instant::now();
        if !force && self.last.is_some_and(|l| now.duration_since(l) < EVERY) {
            return Ok(());
        }
        self.last = Some(now);
        let b = &self.base;
        let live = Live {
            from_cache: live.from_cache - b.from_cache,
            requested: live.requested - b.requested,
            http_requests: live.http_requests - b.http_requests,
            rate_limited: live.rate_limited - b.rate_limited,
            retries: live.retries - b.retries,
            new_prompt_tokens: live.new_prompt_tokens - b.new_prompt_tokens,
            new_completion_tokens: live.new_completion_tokens - b.new_completion_tokens,
            cost_usd: (live.cost_usd - b.cost_usd).max(0.0),
        };
        let point = Point { t: self.t0.elapsed().as_secs_f64(), prompts_done: completed + failed, completed, failed, live };
        let mut line = serde_json::to_vec(&point).map_err(|e| distill_core::Error::Other(format!("{}: {e}", self.path.display())))?;
        line.push(b'\n');
        self.file.write_all(&line).at(&self.path)
    }

    /// Copies the series into `out_dir` (atomically), to be published with the stage.
    pub fn publish(self, out_dir: &Path) -> Result<()> {
        drop(self.file);
        let bytes = std::fs::read(&self.path).at(&self.path)?;
        let name = self.path.file_name().expect("created with a file name");
        distill_core::atomic::write_file(&out_dir.join(name), &bytes)
    }
}
