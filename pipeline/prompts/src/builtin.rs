//! The default prompt data compiled into the binary: the templates of `prompts/templates/`, the
//! problem specs and the Self-Instruct seed tasks. An installed `distill` needs none of these
//! files on disk; a config names its own with `templates_dir`, `specs_file`, `seed_tasks_file`.
//!
//! A built-in file keeps its repository path as its name, so records and stage fingerprints
//! are the same as when the file is read from a checkout.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::error::{PromptsError, Result};

/// A data file compiled in: its repository path and its text.
pub struct BuiltinFile {
    pub path: &'static str,
    pub text: &'static str,
}

/// Every `*.toml` of `prompts/templates/` (a test checks the list against the folder).
pub const TEMPLATES: [BuiltinFile; 2] = [
    BuiltinFile { path: "prompts/templates/other_languages.toml", text: include_str!("../../../prompts/templates/other_languages.toml") },
    BuiltinFile { path: "prompts/templates/python.toml", text: include_str!("../../../prompts/templates/python.toml") },
];
pub const SPECS: BuiltinFile = BuiltinFile { path: "prompts/specs.jsonl", text: include_str!("../../../prompts/specs.jsonl") };
pub const SEED_TASKS: BuiltinFile = BuiltinFile { path: "prompts/seed_tasks.jsonl", text: include_str!("../../../prompts/seed_tasks.jsonl") };

/// A data file's name (for messages, record origins and digests) and its text.
pub struct DataText {
    pub path: PathBuf,
    pub text: Cow<'static, str>,
}

impl DataText {
    pub fn read(path: &Path) -> Result<DataText> {
        let text = std::fs::read_to_string(path).map_err(|e| PromptsError::io(path, e))?;
        Ok(DataText { path: path.to_path_buf(), text: Cow::Owned(text) })
    }

    pub fn builtin(file: &BuiltinFile) -> DataText {
        DataText { path: PathBuf::from(file.path), text: Cow::Borrowed(file.text) }
    }

    /// The configured file, or the built-in one when none is configured.
    pub fn configured(path: Option<&Path>, default: &BuiltinFile) -> Result<DataText> {
        path.map_or_else(|| Ok(DataText::builtin(default)), DataText::read)
    }
}

/// The templates folder's files: the `*.toml` under `dir` sorted by name, or the built-in ones.
pub fn template_files(dir: Option<&Path>) -> Result<Vec<DataText>> {
    let Some(dir) = dir else { return Ok(TEMPLATES.iter().map(DataText::builtin).collect()) };
    let entries = std::fs::read_dir(dir).map_err(|e| PromptsError::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    files.iter().map(|f| DataText::read(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_are_the_repository_files() {
        let root = distill_core::testing::repo_root();
        let on_disk = template_files(Some(&root.join("prompts/templates"))).unwrap();
        let names: Vec<_> = on_disk.iter().map(|f| f.path.strip_prefix(&root).unwrap().to_path_buf()).collect();
        assert_eq!(names, TEMPLATES.iter().map(|f| PathBuf::from(f.path)).collect::<Vec<_>>(), "a template file was added or removed: list it in TEMPLATES");
        for f in TEMPLATES.iter().chain([&SPECS, &SEED_TASKS]) {
            assert_eq!(std::fs::read_to_string(root.join(f.path)).unwrap(), f.text, "{}", f.path);
        }
    }
}
