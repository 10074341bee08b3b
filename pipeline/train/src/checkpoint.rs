//! Checkpoints in the stage's scratch folder, enough to resume a run exactly:
//!
//! ```text
//! <scratch>/checkpoints/step-00000100/
//!     model.safetensors       weights (HF names)
//!     optimizer.safetensors   AdamW moments m.<name>, v.<name>
//!     state.json              step, AdamW update count, data position (epoch, batch),
//!                             RNG state, the full [train] config and model config
//! ```
//!
//! A checkpoint is built under a temporary name and renamed into place, so a folder named
//! `step-*` is always complete. After each save only the newest `keep_last` remain.
//!
//! RNG state: every random draw of a step (dropout masks) comes from an RNG seeded by
//! (seed, step, micro-batch), and the data order from (seed, epoch); so the seed, the step and
//! the data position *are* the RNG state, and `state.json` records them as such.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use distill_core::error::IoContext;

use crate::error::{Error, Result};

/// Where in the data the next micro-batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DataPosition {
    pub epoch: u64,
    /// Index of the next batch within the epoch's order.
    pub batch: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// How draws are made: `derived(seed, step, micro)`.
    pub scheme: String,
    pub seed: u64,
    /// The next step whose draws will be made.
    pub next_step: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimizer steps completed.
    pub step: u64,
    pub adam_t: u64,
    pub data: DataPosition,
    pub rng: RngState,
    pub tokens_seen: u64,
    /// The `[train]` section the run was started with (resume refuses a different one).
    pub train_config: serde_json::Value,
    /// The model's HF `config.json`.
    pub model_config: serde_json::Value,
}

pub fn checkpoints_dir(scratch: &Path) -> PathBuf {
    scratch.join("checkpoints")
}

fn step_dir(scratch: &Path, step: u64) -> PathBuf {
    checkpoints_dir(scratch).join(format!("step-{step:08}"))
}

/// Complete checkpoints, oldest first.
pub fn list(scratch: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(checkpoints_dir(scratch)) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse::<u64>().ok()?;
            e.path().join("state.json").exists().then(|| (step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The newest complete checkpoint.
pub fn latest(scratch: &Path) -> Option<(u64, PathBuf)> {
    list(scratch).pop()
}

/// Writes a checkpoint atomically and deletes all but the newest `keep_last`.
pub fn save(scratch: &Path, state: &CheckpointState, lm: &distill_model::TrainableLm, opt: &crate::optim::AdamW, keep_last: usize) -> Result<PathBuf> {
    let dest = step_dir(scratch, state.step);
    let tmp = checkpoints_dir(scratch).join(format!(".step-{:08}.tmp-{}", state.step, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    lm.save_weights(&tmp.join("model.safetensors"))?;
    distill_model::weights::write_safetensors(&tmp.join("optimizer.safetensors"), &opt.state(), &Default::default())?;
    distill_core::atomic::write_json(&tmp.join("state.json"), state)?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest).at(&dest)?;
    }
    std::fs::rename(&tmp, &dest).at(&dest)?;
    let all = list(scratch);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep_last.max(1))) {
        std::fs::remove_dir_all(old).at(old)?;
    }
    remove_leftovers(scratch).at(checkpoints_dir(scratch))?;
    Ok(dest)
}

/// Deletes what a run killed mid-save left: temporary folders, and `step-*` folders without
/// `state.json` (never counted as checkpoints, but they would take disk space forever).
fn remove_leftovers(scratch: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(checkpoints_dir(scratch))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let temporary = name.starts_with(".step-") && name.contains(".tmp-");
        let incomplete = name.starts_with("step-") && !entry.path().join("state.json").exists();
        if temporary || incomplete {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Reads a checkpoint's state and restores weights and optimizer moments.
pub fn load(dir: &Path, lm: &distill_model::TrainableLm, opt: &mut crate::optim::AdamW, device: &Device) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).at(&path)?;
    let state: CheckpointState = serde_json::from_str(&text).map_err(|e| distill_core::Error::json(&path, e))?;
    lm.load_weights(&dir.join("model.safetensors"))?;
    let moments_path = dir.join("optimizer.safetensors");
    let (moments, _) = distill_model::weights::read_safetensors(&moments_path, device)?;
    // The optimizer's own errors name a tensor, not the file it came from.
    opt.load_state(&moments, state.adam_t).map_err(|e| Error::CheckpointContent { path: moments_path, source: Box::new(e) })?;
    Ok(state)
}
