//! Seeds from a local code corpus: whole function, method and class definitions of 1-15 lines.
//!
//! Parsing is done by Python's own `ast` module in a subprocess (`python/seeds.py`, embedded
//! in this crate), not by cutting lines: a seed is always a complete definition with its
//! decorators, and Python's parser knows every syntax corner that a hand-written one would
//! miss. The script also lists one-token mutation sites (found with `tokenize`, so strings and
//! comments are never changed) that `fix_bug` templates use to plant a bug.
//!
//! The default corpus is the standard library of the configured interpreter
//! (`sysconfig.get_paths()["stdlib"]`), which every machine with Python has.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::config::CorpusConfig;
use crate::error::{PromptsError, Result};
use crate::rng::Rng;

const SCRIPT: &str = include_str!("../python/seeds.py");

/// One definition from the corpus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Seed {
    /// Path relative to the corpus root.
    pub file: String,
    pub line: usize,
    pub end_line: usize,
    /// function | method | class
    pub kind: String,
    pub name: String,
    /// The source, dedented, decorators included.
    pub code: String,
    /// Header + docstring of a documented function ("" otherwise).
    pub stub: String,
    /// `[line, col, old, new]`: one-token bug sites (line 1-based in `code`, col in chars).
    pub mutations: Vec<(usize, usize, String, String)>,
}

impl Seed {
    /// `file:line` provenance.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// easy (<= 5 lines), medium (<= 10), hard.
    pub fn difficulty(&self) -> &'static str {
        match self.end_line + 1 - self.line {
            0..=5 => "easy",
            6..=10 => "medium",
            _ => "hard",
        }
    }

    /// The code with one mutation (chosen by `rng`) applied, and a description of it.
    pub fn buggy(&self, rng: &mut Rng) -> Option<(String, String)> {
        if self.mutations.is_empty() {
            return None;
        }
        let (line, col, old, new) = &self.mutations[rng.below(self.mutations.len())];
        let mut lines: Vec<String> = self.code.lines().map(String::from).collect();
        let target = lines.get_mut(line.checked_sub(1)?)?;
        let byte = target.char_indices().nth(*col).map(|(b, _)| b)?;
        if !target[byte..].starts_with(old.as_str()) {
            return None;
        }
        target.replace_range(byte..byte + old.len(), new);
        let mut code = lines.join("\n");
        code.push('\n');
        Some((code, format!("line {line}: '{old}' -> '{new}'")))
    }
}

/// What was read.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub root: PathBuf,
    /// Distinct seeds (by code), in file order.
    pub seeds: Vec<Seed>,
    pub files: usize,
    /// Files Python could not parse (skipped).
    pub skipped_files: usize,
}

/// The corpus root: the configured folder, or the interpreter's stdlib.
pub fn root(cfg: &CorpusConfig) -> Result<PathBuf> {
    if !cfg.path.is_empty() {
        return Ok(PathBuf::from(&cfg.path));
    }
    let out = Command::new(&cfg.python).args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"]).output().map_err(|e| PromptsError::Corpus {
        path: PathBuf::from(&cfg.python),
        message: format!("cannot run '{}' to find the standard library: {e}; set [prompts.corpus] python or path", cfg.python),
    })?;
    if !out.status.success() {
        return Err(PromptsError::Corpus { path: PathBuf::from(&cfg.python), message: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Reads every seed under the corpus root.
pub fn load(cfg: &CorpusConfig) -> Result<Corpus> {
    let root = root(cfg)?;
    check_readable(&root)?;
    let out = Command::new(&cfg.python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&root)
        .arg(cfg.min_lines.to_string())
        .arg(cfg.max_lines.to_string())
        .args(&cfg.exclude)
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .map_err(|e| PromptsError::Corpus { path: root.clone(), message: format!("cannot run '{}': {e}", cfg.python) })?;
    if !out.status.success() {
        return Err(PromptsError::Corpus { path: root.clone(), message: format!("the seed extractor failed: {}", String::from_utf8_lossy(&out.stderr).trim()) });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut corpus = Corpus { root: root.clone(), ..Default::default() };
    let mut seen = std::collections::HashSet::new();
    for line in stdout.lines() {
        if line.starts_with("{\"skipped_files\"") {
            #[derive(Deserialize)]
            struct Summary {
                skipped_files: usize,
                files: usize,
            }
            let s: Summary = serde_json::from_str(line).map_err(|e| PromptsError::Corpus { path: root.clone(), message: e.to_string() })?;
            corpus.files = s.files;
            corpus.skipped_files = s.skipped_files;
            continue;
        }
        let seed: Seed = serde_json::from_str(line).map_err(|e| PromptsError::Corpus { path: root.clone(), message: format!("bad seed from the extractor: {e}") })?;
        if seen.insert(seed.code.clone()) {
            corpus.seeds.push(seed);
        }
    }
    if corpus.files == 0 {
        return Err(PromptsError::Corpus { path: root, message: "no .py files found; point [prompts.corpus] path at a folder of Python sources".into() });
    }
    tracing::info!(root = %corpus.root.display(), files = corpus.files, seeds = corpus.seeds.len(), skipped = corpus.skipped_files, "corpus read");
    Ok(corpus)
}

fn check_readable(root: &Path) -> Result<()> {
    let meta = std::fs::metadata(root)
        .map_err(|e| PromptsError::Corpus { path: root.to_path_buf(), message: format!("cannot read it ({e}); set [prompts.corpus] path to a folder of Python sources") })?;
    if !meta.is_dir() {
        return Err(PromptsError::Corpus { path: root.to_path_buf(), message: "is not a folder; [prompts.corpus] path must name a folder".into() });
    }
    std::fs::read_dir(root).map_err(|e| PromptsError::Corpus { path: root.to_path_buf(), message: format!("cannot list it: {e}") })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_whole_definitions_with_bug_sites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        std::fs::write(
            dir.path().join("pkg/m.py"),
            "import os\n\n@staticmethod\ndef small(a, b):\n    \"\"\"Add.\"\"\"\n    return a + b if a < b else 0  # a < b in a comment\n\nclass Big:\n    def m(self):\n        return 'x < y'\n\ndef long():\n" .to_string()
                + &"    x = 1\n".repeat(20),
        )
        .unwrap();
        std::fs::write(dir.path().join("pkg/broken.py"), "def (:\n").unwrap();
        std::fs::write(dir.path().join("tests/t.py"), "def skipped(): pass\n").unwrap();
        let cfg = CorpusConfig { path: dir.path().to_string_lossy().into(), ..Default::default() };
        let c = load(&cfg).unwrap();
        assert_eq!((c.files, c.skipped_files), (2, 1));
        let names: Vec<(&str, &str)> = c.seeds.iter().map(|s| (s.name.as_str(), s.kind.as_str())).collect();
        assert_eq!(names, vec![("small", "function"), ("Big", "class"), ("m", "method")]);
        let small = &c.seeds[0];
        assert!(small.code.starts_with("@staticmethod\ndef small(a, b):"));
        assert_eq!(small.stub, "@staticmethod\ndef small(a, b):\n    \"\"\"Add.\"\"\"\n");
        // `+` and `<` in code are sites; the `<` in the comment and the string is not.
        let olds: Vec<&str> = small.mutations.iter().map(|m| m.2.as_str()).collect();
        assert_eq!(olds, vec!["+", "<", "0"]);
        assert!(c.seeds[2].mutations.is_empty());
        let (buggy, what) = small.buggy(&mut Rng::derive(1, "t")).unwrap();
        assert_ne!(buggy, small.code);
        assert!(what.starts_with("line 4"), "{what}");
    }

    #[test]
    fn the_default_corpus_is_the_interpreters_standard_library() {
        let r = root(&CorpusConfig::default()).unwrap();
        assert!(r.join("os.py").is_file() && r.join("json/__init__.py").is_file(), "{}", r.display());
    }

    #[test]
    fn an_unreadable_corpus_path_is_a_clear_error() {
        let cfg = CorpusConfig { path: "/no/such/folder".into(), ..Default::default() };
        let e = load(&cfg).unwrap_err().to_string();
        assert!(e.contains("/no/such/folder") && e.contains("[prompts.corpus] path"), "{e}");
    }
}
