//! The whole config file: a few run-wide keys and one section per stage. Each section's type
//! lives in its stage's crate; this file only assembles them. Loading reports every problem
//! at once (see `distill_core::config`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[teacher] base_url = "local"`: the offline default's teacher, the `teacher-bootstrap`
/// model served by `distill serve` on loopback while the stages that need it run.
pub const LOCAL_TEACHER: &str = "local";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Name of the run; the work dir defaults to `datasets/<name>`.
    pub name: String,
    /// Where stage outputs go (relative to the current directory).
    pub work_dir: Option<PathBuf>,
    pub tokenizer: distill_tokenizer::TokenizerConfig,
    pub teacher_bootstrap: distill_teacher_bootstrap::TeacherBootstrapConfig,
    pub prompts: distill_prompts::PromptsConfig,
    pub teacher: distill_teacher::TeacherConfig,
    pub filter: distill_filter::FilterConfig,
    pub shards: distill_shards::ShardsConfig,
    pub train: distill_train::TrainConfig,
    pub train_baseline: TrainBaselineConfig,
    pub eval: distill_eval::EvalConfig,
    pub report: distill_report::ReportConfig,
    /// `distill serve`, and the local teacher's server.
    pub serve: distill_serve::ServeConfig,
}

impl Config {
    /// Loads `path`; the file name in messages is the path as the user gave it.
    pub fn load(path: &Path) -> distill_core::Result<Config> {
        if !path.is_file() {
            return Err(distill_core::Error::Usage(format!("{}: no such config file (give one with --config FILE; the offline default is configs/default.toml)", path.display())));
        }
        let mut cfg: Config = distill_core::config::load(path)?;
        if cfg.name.is_empty() {
            cfg.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into());
        }
        Ok(cfg)
    }

    /// `--work-dir`, else the config's `work_dir`, else `datasets/<name>`.
    pub fn work_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf).or_else(|| self.work_dir.clone()).unwrap_or_else(|| PathBuf::from("datasets").join(&self.name))
    }

    /// Whether the teacher is the offline default's local model.
    pub fn local_teacher(&self) -> bool {
        self.teacher.base_url == LOCAL_TEACHER
    }
}

/// `[train_baseline]`: "does distillation help?" When enabled, the `train-baseline` stage trains
/// the same student on the same shards for the same steps with cross-entropy only (no soft
/// labels), and the report puts its held-out KL to the teacher and NLL beside the KD run's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainBaselineConfig {
    pub enabled: bool,
}
