//! The teacher's requests, cache hits, rate limiting, tokens and cost over time.
//!
//! The teacher stage appends a line of cumulative counters to
//! `<work-dir>/.scratch/<stage>/series.jsonl` at most every second while it runs and publishes
//! the file with its outputs (see `distill_teacher::series`); like the training metrics
//! ([`crate::metrics::live_file_named`]) the live file is the scratch one when it is at least
//! as new as the published one. A run of hours has tens of thousands of lines: the answer is
//! thinned to at most `max_points` evenly spaced ones (the first and the last always kept),
//! which is all a chart can show.
//!
//! A sharded run (`distill teacher --shard i/N` on several machines or side by side) writes
//! `series-<i>-of-<N>.jsonl` instead: in the shared scratch folder while it runs, in its part
//! folder (`<stage>.parts/<i>-of-<N>/`) when done, and in the stage folder once the parts are
//! merged. Each shard's `t` counts from that shard's own start (the processes share no clock),
//! so they are not summed: the answer has one series per shard, each from its newest copy.
//! Whichever of the plain series and the shards' was written last is the one shown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use distill_report::snapshot::{shard_of, thin};
use serde_json::Value;

/// The series' file name, as the teacher stage writes it.
pub const SERIES: &str = "series.jsonl";

/// Points returned when the client does not say.
pub const DEFAULT_POINTS: usize = 2000;

/// Most points a client may ask for.
pub const MAX_POINTS: usize = 20_000;

/// One series: the shard it belongs to (`None` for a run that was not sharded), its lines in
/// the file, and the points kept.
#[derive(Debug, serde::Serialize)]
pub struct Series {
    pub shard: Option<String>,
    pub lines: usize,
    pub points: Vec<Value>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The newest copy of each shard's series: in the scratch folder, the stage folder and its
/// part folders.
fn shard_files(work_dir: &Path, stage: &str) -> BTreeMap<String, (SystemTime, PathBuf)> {
    let mut dirs = vec![work_dir.join(".scratch").join(stage), work_dir.join(stage)];
    if let Ok(parts) = std::fs::read_dir(work_dir.join(format!("{stage}.parts"))) {
        dirs.extend(parts.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    let mut out: BTreeMap<String, (SystemTime, PathBuf)> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let (Some(shard), Some(t)) = (shard_of(&name), modified(&e.path())) else { continue };
            if out.get(&shard).is_none_or(|(seen, _)| t > *seen) {
                out.insert(shard, (t, e.path()));
            }
        }
    }
    out
}

fn read_series(path: &Path, shard: Option<String>, max_points: usize) -> distill_core::Result<Series> {
    let (lines, _) = distill_core::jsonl::read_lenient(path)?;
    Ok(Series { shard, lines: lines.len(), points: thin(lines, max_points) })
}

/// The series of `stage` so far, each thinned to `max_points`: the plain one, or one per shard
/// when a sharded run wrote last (see the module docs). Empty if it never ran with a series.
pub fn read(work_dir: &Path, stage: &str, max_points: usize) -> distill_core::Result<Vec<Series>> {
    let plain = crate::metrics::live_file_named(work_dir, stage, SERIES);
    let shards = shard_files(work_dir, stage);
    let newest_shard = shards.values().map(|(t, _)| *t).max();
    match (plain, newest_shard) {
        (Some(p), newest) if newest.is_none_or(|n| modified(&p).is_some_and(|t| t >= n)) => Ok(vec![read_series(&p, None, max_points)?]),
        (_, Some(_)) => shards.into_iter().map(|(shard, (_, path))| read_series(&path, Some(shard), max_points)).collect(),
        _ => Ok(Vec::new()),
    }
}
