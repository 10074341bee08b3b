//! Paths in a config file are relative to the file's folder, not to where `distill` runs: a
//! config and the data beside it work from any directory. [`resolve`] rewrites every path key
//! the user wrote; defaults (empty values, built-in data, `datasets/<name>`, `teacher-cache`)
//! are left alone. [`missing_inputs`] then names every input file or folder that does not exist,
//! as config problems with their keys, before any stage runs.
//!
//! Interpreter keys (`python`, `bwrap`) are commands: a bare name is looked up as usual, and only
//! a value with a `/` in it is a path.

use std::path::{Path, PathBuf};

use distill_core::config::ConfigProblem;

use crate::config::Config;

/// Rewrites the relative path keys of `cfg` to be relative to `base` (the config file's folder).
pub fn resolve(cfg: &mut Config, base: &Path) {
    let path = |s: &mut String| {
        if !s.is_empty() && Path::new(s.as_str()).is_relative() {
            *s = base.join(&*s).display().to_string();
        }
    };
    let path_buf = |p: &mut PathBuf| {
        if !p.as_os_str().is_empty() && p.is_relative() {
            *p = base.join(&*p);
        }
    };
    let command = |s: &mut String| {
        if s.contains('/') {
            path(s)
        }
    };
    let command_buf = |p: &mut PathBuf| {
        if p.to_string_lossy().contains('/') {
            path_buf(p)
        }
    };
    let model = |s: &mut String| {
        if !is_preset(s) {
            path(s)
        }
    };

    if let Some(w) = cfg.work_dir.as_mut() {
        path_buf(w);
    }
    path(&mut cfg.tokenizer.corpus);
    command(&mut cfg.tokenizer.python);
    for train in [&mut cfg.teacher_bootstrap.train, &mut cfg.train] {
        model(&mut train.model);
        path(&mut train.init_checkpoint);
        path(&mut train.tokenizer);
    }
    let p = &mut cfg.prompts;
    for s in [&mut p.templates_dir, &mut p.specs_file, &mut p.seed_tasks_file, &mut p.corpus.path, &mut p.decontamination.data_dir] {
        path(s);
    }
    p.user_files.iter_mut().for_each(path);
    command(&mut p.corpus.python);
    path(&mut cfg.teacher.cache_dir);
    path(&mut cfg.filter.decontamination.data_dir);
    command(&mut cfg.filter.python);
    path(&mut cfg.shards.tokenizer);
    path(&mut cfg.eval.data_dir);
    for sandbox in [&mut cfg.filter.sandbox, &mut cfg.eval.sandbox] {
        command_buf(&mut sandbox.python);
        command_buf(&mut sandbox.bwrap);
        path_buf(&mut sandbox.temp_root);
    }
    path(&mut cfg.serve.model_dir);
}

/// Input files and folders the config names that do not exist, each as a problem of its key.
/// Outputs (the work dir, the teacher cache, `[serve] model_dir`, which the train stage may
/// produce) are not inputs.
pub fn missing_inputs(cfg: &Config, file: &str) -> Vec<ConfigProblem> {
    let mut inputs: Vec<(String, &str)> = [
        ("prompts.templates_dir", &cfg.prompts.templates_dir),
        ("prompts.specs_file", &cfg.prompts.specs_file),
        ("prompts.seed_tasks_file", &cfg.prompts.seed_tasks_file),
        ("prompts.corpus.path", &cfg.prompts.corpus.path),
        ("prompts.decontamination.data_dir", &cfg.prompts.decontamination.data_dir),
        ("filter.decontamination.data_dir", &cfg.filter.decontamination.data_dir),
        ("shards.tokenizer", &cfg.shards.tokenizer),
        ("eval.data_dir", &cfg.eval.data_dir),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.as_str()))
    .collect();
    inputs.extend(cfg.prompts.user_files.iter().map(|f| ("prompts.user_files".to_string(), f.as_str())));
    if !is_glob(&cfg.tokenizer.corpus) {
        inputs.push(("tokenizer.corpus".into(), &cfg.tokenizer.corpus));
    }
    let mut trains = vec![("train", &cfg.train)];
    if cfg.local_teacher() {
        trains.push(("teacher_bootstrap.train", &cfg.teacher_bootstrap.train));
    }
    for (section, train) in trains {
        if !is_preset(&train.model) {
            inputs.push((format!("{section}.model"), &train.model));
        }
        inputs.push((format!("{section}.init_checkpoint"), &train.init_checkpoint));
        inputs.push((format!("{section}.tokenizer"), &train.tokenizer));
    }
    inputs
        .into_iter()
        .filter(|(_, value)| !value.is_empty() && !Path::new(value).exists())
        .map(|(key, value)| ConfigProblem {
            file: file.to_string(),
            line: None,
            message: format!("[{}] {}: '{value}' does not exist (a relative path is relative to the config file's folder)", section_of(&key), leaf_of(&key)),
            key,
        })
        .collect()
}

fn is_preset(model: &str) -> bool {
    distill_model::config::PRESETS.iter().any(|(name, _)| *name == model)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// `prompts.corpus.path` -> `prompts.corpus`; the table a key is written in.
fn section_of(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(section, _)| section)
}

fn leaf_of(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(_, leaf)| leaf)
}
