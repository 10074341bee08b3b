//! `distill init [DIR]`: a commented starter config for a teacher and a student preset.
//!
//! The config is the shipped one for that teacher (`configs/*.toml`, compiled in, comments and
//! all), with `[train] model` set to the chosen preset. An existing file is never overwritten.

use std::path::{Path, PathBuf};

use distill_core::{Error, Result};

/// Where the teacher runs: one shipped config each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TeacherKind {
    /// An API model at api.openai.com (or any OpenAI-compatible service).
    Openai,
    /// A self-hosted model behind vLLM's OpenAI-compatible server.
    Vllm,
    /// A self-hosted GGUF model behind llama.cpp's `llama-server`.
    Llamacpp,
    /// A model served by Ollama.
    Ollama,
    /// The offline default: a small teacher trained and served on this machine.
    Local,
}

impl TeacherKind {
    fn shipped_config(self) -> &'static str {
        match self {
            TeacherKind::Openai => include_str!("../../../configs/openai.toml"),
            TeacherKind::Vllm => include_str!("../../../configs/vllm.toml"),
            TeacherKind::Llamacpp => include_str!("../../../configs/llamacpp.toml"),
            TeacherKind::Ollama => include_str!("../../../configs/ollama.toml"),
            TeacherKind::Local => crate::config::BUILTIN_DEFAULT,
        }
    }
}

/// The starter config's text for `teacher` and the student preset `student`.
pub fn starter_config(teacher: TeacherKind, student: &str) -> Result<String> {
    if distill_model::config::ModelConfig::preset(student).is_err() {
        let names: Vec<&str> = distill_model::config::PRESETS.iter().map(|(n, _)| *n).collect();
        return Err(Error::Usage(format!("--student {student}: no such model preset; choose one of {}", names.join(", "))));
    }
    let shipped = teacher.shipped_config();
    let model_line = format!("model = \"{student}\"            # the student: a preset of configs/models/, or an HF config.json");
    let mut lines: Vec<String> = shipped.lines().map(str::to_string).collect();
    match lines.iter().position(|l| l.trim() == "[train]") {
        Some(header) => {
            // Replace the section's `model` key, or add one right under the header.
            let end = lines[header + 1..].iter().position(|l| l.trim_start().starts_with('[')).map_or(lines.len(), |i| header + 1 + i);
            match lines[header + 1..end].iter().position(|l| l.trim_start().starts_with("model ") || l.trim_start().starts_with("model=")) {
                Some(i) => lines[header + 1 + i] = model_line,
                None => lines.insert(header + 1, model_line),
            }
        }
        None => lines.extend(["".to_string(), "[train]".to_string(), model_line]),
    }
    Ok(format!("# Written by `distill init`; every key not set here has its default (see the README).\n{}\n", lines.join("\n")))
}

/// Writes `dir/distill.toml`; returns its path. Refuses to overwrite a file.
pub fn write(dir: &Path, teacher: TeacherKind, student: &str) -> Result<PathBuf> {
    let text = starter_config(teacher, student)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("distill.toml");
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Usage(format!("{} already exists; nothing was written (remove it, or give `distill init` another folder)", path.display())))
        }
        Err(e) => return Err(Error::io(&path, e)),
    };
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

/// What to do next, for the config at `path`.
pub fn next_steps(path: &Path, teacher: TeacherKind) -> String {
    let key = teacher.shipped_config().lines().find_map(|l| l.trim().strip_prefix("api_key_env").map(|v| v.trim_start_matches([' ', '=']).trim().trim_matches('"').to_string()));
    let mut out = format!("wrote {}\nnext:\n", path.display());
    if let Some(key) = key {
        out += &format!("  export {key}=...             # the teacher's API key (read from the environment only)\n");
    }
    out += &format!("  distill --config {} status   # checks the config, lists the stages\n", path.display());
    out += &format!("  distill --config {} run      # runs them\n", path.display());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_student_preset_lands_in_the_train_section_once() {
        for teacher in [TeacherKind::Openai, TeacherKind::Local] {
            let text = starter_config(teacher, "gpt2-124m").unwrap();
            let parsed: toml::Table = toml::from_str(&text).unwrap();
            assert_eq!(parsed["train"]["model"].as_str(), Some("gpt2-124m"), "{teacher:?}");
            assert_eq!(text.matches("[train]").count(), 1);
        }
        assert!(starter_config(TeacherKind::Vllm, "no-such-model").unwrap_err().to_string().contains("choose one of"));
    }
}
