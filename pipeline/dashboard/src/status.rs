//! The DAG and each stage's state, as `distill status` computes it (the runner's own
//! fingerprints and reasons, nothing re-implemented here), plus whether a stage is running now
//! and how far it got.
//!
//! A stage runs in `<work-dir>/.<stage>.tmp-<pid>/` until it publishes (see
//! `distill_core::atomic`), whoever started it (this dashboard's job, or `make distill` in a
//! terminal). A live process with that pid means "running"; progress is the steps logged so
//! far for a training stage (of `steps` in its config), else the bytes written so far.
//!
//! Computing the status reloads the config and hashes what changed, about a second; answers
//! are cached for [`TTL`] so that many clients polling cost one computation.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distill_core::StageState;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::error::{join_error, ApiResult};
use crate::Pipeline;

pub const TTL: Duration = Duration::from_secs(1);

/// The temporary folder and pid of a stage being written now, if its process is alive.
pub fn running(work_dir: &Path, stage: &str) -> Option<(std::path::PathBuf, u32)> {
    let prefix = format!(".{stage}.tmp-");
    std::fs::read_dir(work_dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then(|| (e.path(), pid))
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// How far a running stage got.
fn progress(work_dir: &Path, stage: &str, config: &Value, staged: &Path) -> Value {
    let steps = config.get("steps").or_else(|| config.pointer("/train/steps")).and_then(Value::as_u64);
    if let Some(total) = steps {
        let done = crate::metrics::read_all(work_dir, stage).ok().and_then(|m| m.iter().filter_map(|l| l.get("step").and_then(Value::as_u64)).max());
        if let Some(done) = done {
            return json!({"unit": "steps", "done": done, "total": total, "fraction": done as f64 / total.max(1) as f64});
        }
    }
    json!({"unit": "bytes written", "done": dir_bytes(staged)})
}

fn compute(pipeline: &dyn Pipeline) -> distill_core::Result<Value> {
    let runner = pipeline.runner()?;
    let statuses = runner.status()?;
    let work_dir = runner.work_dir();
    let stages: Vec<Value> = runner
        .defs()
        .iter()
        .zip(&statuses)
        .map(|(def, st)| {
            let (state, reasons) = match &st.state {
                StageState::UpToDate => ("up_to_date", Vec::new()),
                StageState::Stale(why) => ("stale", why.clone()),
                StageState::NeverRun => ("never_run", Vec::new()),
            };
            let run = running(work_dir, def.name).map(|(staged, pid)| json!({"pid": pid, "progress": progress(work_dir, def.name, &def.config, &staged)}));
            json!({
                "name": def.name,
                "deps": def.deps,
                "state": if run.is_some() { "running" } else { state },
                "last_state": state,
                "reasons": reasons,
                "running": run,
                "last_elapsed_secs": st.last_elapsed_secs,
                "fingerprint": st.fingerprint,
                "has_stats": work_dir.join(def.name).join("stats.json").is_file(),
            })
        })
        .collect();
    Ok(json!({"work_dir": work_dir, "stages": stages}))
}

/// The status, computed at most once per [`TTL`].
#[derive(Clone)]
pub struct StatusCache {
    pipeline: Arc<dyn Pipeline>,
    last: Arc<Mutex<Option<(Instant, Value)>>>,
}

impl StatusCache {
    pub fn new(pipeline: Arc<dyn Pipeline>) -> Self {
        StatusCache { pipeline, last: Arc::new(Mutex::new(None)) }
    }

    pub async fn get(&self) -> ApiResult<Value> {
        // Held across the computation: concurrent callers wait for it instead of repeating it.
        let mut last = self.last.lock().await;
        if let Some((at, v)) = &*last {
            if at.elapsed() < TTL {
                return Ok(v.clone());
            }
        }
        let pipeline = self.pipeline.clone();
        let v = tokio::task::spawn_blocking(move || compute(pipeline.as_ref())).await.map_err(join_error)??;
        *last = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    /// The stage names of the DAG (for validating names in paths and bodies).
    pub async fn stage_names(&self) -> ApiResult<Vec<String>> {
        let v = self.get().await?;
        Ok(v["stages"].as_array().map(|a| a.iter().filter_map(|s| s["name"].as_str().map(str::to_string)).collect()).unwrap_or_default())
    }
}
