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
    /// Where stage outputs go (relative to the config file; default `datasets/<name>` in the
    /// current directory).
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

/// The offline default, compiled in: what runs without `--config` where there is no
/// `configs/default.toml`.
pub const BUILTIN_DEFAULT: &str = include_str!("../../../configs/default.toml");
const DEFAULT_FILE: &str = "configs/default.toml";

/// The config file a command runs with.
pub struct ConfigFile {
    /// The path as the user gave it, for messages.
    pub name: String,
    /// Its text (for the line numbers of problems).
    pub text: String,
    /// The folder its relative paths are relative to.
    pub dir: PathBuf,
    /// The file's stem: the run's name when the config sets none.
    pub stem: String,
}

impl ConfigFile {
    /// `--config FILE`; without it `configs/default.toml` when the current directory has one (a
    /// checkout), else the built-in copy of it.
    pub fn open(flag: Option<&Path>) -> distill_core::Result<ConfigFile> {
        let path = match flag {
            Some(path) if !path.is_file() => {
                return Err(distill_core::Error::Usage(format!(
                    "{}: no such config file (give one with --config FILE, or write a starter config with `distill init`)",
                    path.display()
                )))
            }
            Some(path) => path,
            None if Path::new(DEFAULT_FILE).is_file() => Path::new(DEFAULT_FILE),
            None => return Ok(ConfigFile { name: format!("{DEFAULT_FILE} (built in)"), text: BUILTIN_DEFAULT.to_string(), dir: PathBuf::new(), stem: "default".into() }),
        };
        let text = std::fs::read_to_string(path).map_err(|e| distill_core::Error::io(path, e))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into());
        Ok(ConfigFile { name: path.display().to_string(), text, dir: path.parent().map(Path::to_path_buf).unwrap_or_default(), stem })
    }
}

impl Config {
    /// Parses `file` (every TOML-layer problem at once) and resolves its relative paths
    /// against the file's folder. The run's name defaults to the file's stem.
    pub fn load(file: &ConfigFile) -> distill_core::Result<Config> {
        let mut cfg: Config = distill_core::config::parse(&file.text, &file.name)?;
        if cfg.name.is_empty() {
            cfg.name = file.stem.clone();
        }
        crate::paths::resolve(&mut cfg, &file.dir);
        Ok(cfg)
    }

    /// `--work-dir`, else the config's `work_dir`, else `datasets/<name>`.
    pub fn work_dir(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf).or_else(|| self.work_dir.clone()).unwrap_or_else(|| PathBuf::from("datasets").join(&self.name))
    }

    /// Converts every section into the runtime settings its stage will use, so that range and
    /// cross-field problems of all sections, and input paths that do not exist, are reported at
    /// once, each with its line in `file`, before any stage runs (the TOML layer was checked by
    /// [`Config::load`]).
    pub fn check(&self, file: &ConfigFile, work_dir: &Path) -> distill_core::Result<()> {
        let name = file.name.clone();
        let mut problems = crate::paths::missing_inputs(self, &name);
        let mut collect = |r: distill_core::Result<()>, key_prefix: Option<&str>| -> distill_core::Result<()> {
            match r {
                Ok(()) => Ok(()),
                Err(distill_core::Error::Config { problems: p }) => {
                    // The bootstrap's [train] settings live under [teacher_bootstrap.train].
                    problems.extend(p.into_iter().map(|mut p| {
                        if let Some(prefix) = key_prefix {
                            p.key = format!("{prefix}.{}", p.key);
                        }
                        p
                    }));
                    Ok(())
                }
                Err(other) => Err(other),
            }
        };
        collect(self.tokenizer.settings(&name).map(drop), None)?;
        if self.local_teacher() {
            collect(self.teacher_bootstrap.check(&name), None)?;
            collect(self.teacher_bootstrap.train.settings(&name, None).map(drop), Some("teacher_bootstrap"))?;
        }
        collect(self.prompts.settings().map(drop), None)?;
        // The local teacher's name exists once it is trained: a placeholder stands in.
        collect(crate::local_teacher::unserved_config(self, "local").settings(&name).map(drop), None)?;
        collect(self.filter.settings(&name).map(drop), None)?;
        collect(self.shards.settings(&name, work_dir).map(drop), None)?;
        collect(self.train.settings(&name, None).map(drop), None)?;
        collect(self.eval.settings(&name).map(drop), None)?;
        let mut serve = self.serve_config(work_dir);
        // The API key is read from the environment when `distill serve` starts, not to check a config.
        serve.api_key_env.clear();
        collect(serve.settings(&name).map(drop), None)?;
        if problems.is_empty() {
            return Ok(());
        }
        distill_core::config::locate(&mut problems, &file.text, &name);
        Err(distill_core::Error::Config { problems })
    }

    /// `[serve]`, its model folder defaulting to the trained student of `work_dir`.
    pub fn serve_config(&self, work_dir: &Path) -> distill_serve::ServeConfig {
        let mut serve = self.serve.clone();
        if serve.model_dir.is_empty() {
            serve.model_dir = crate::stages::student_dir(work_dir).display().to_string();
        }
        serve
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
