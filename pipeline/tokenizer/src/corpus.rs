//! Choosing the training text: which files, in which order, and a digest that changes exactly
//! when the chosen text changes.
//!
//! Candidates are the files under the corpus root (or matching the glob) with one of the
//! configured extensions and no excluded path component. They are ordered by
//! `sha256(relative path)` — a fixed pseudo-random order, so a byte cap takes an unbiased sample
//! of the whole tree (alphabetical order would take only the packages starting with `a`..`e`) and
//! the same files on every machine that has the same tree. Files are taken in that order until the
//! next one would pass `max_corpus_bytes`; files that are not UTF-8 are skipped and counted.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_core::digest::sha256_hex;
use distill_core::error::IoContext;
use sha2::{Digest, Sha256};

use crate::config::{CorpusSource, Settings};
use crate::error::{Error, Result};

/// One chosen file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CorpusFile {
    /// Path relative to the corpus root, `/`-separated.
    pub rel: String,
    pub bytes: u64,
    /// sha256 of the contents.
    pub sha256: String,
    #[serde(skip)]
    pub path: PathBuf,
}

/// The chosen files and what was left out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Corpus {
    pub root: PathBuf,
    pub files: Vec<CorpusFile>,
    pub total_bytes: u64,
    /// Candidates not taken because the byte cap was reached.
    pub over_cap: usize,
    /// Candidates larger than `max_file_bytes`.
    pub too_large: usize,
    /// Candidates that are not UTF-8 text.
    pub not_utf8: usize,
}

/// The root folder of a corpus source (asks Python for its stdlib path when needed).
pub fn root_of(source: &CorpusSource) -> Result<PathBuf> {
    match source {
        CorpusSource::Dir(d) => Ok(d.clone()),
        CorpusSource::Glob(g) => Ok(glob_base(g)),
        CorpusSource::Stdlib { python } => {
            let out = Command::new(python)
                .args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"])
                .output()
                .map_err(|e| Error::Stdlib { python: python.clone(), message: e.to_string() })?;
            if !out.status.success() {
                let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
                return Err(Error::Stdlib { python: python.clone(), message });
            }
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
    }
}

/// Selects the corpus files per the module docs, reading each once (for UTF-8 and its digest).
pub fn select(settings: &Settings) -> Result<Corpus> {
    let root = root_of(&settings.source)?;
    let mut candidates = Vec::new();
    let by_extension = !matches!(settings.source, CorpusSource::Glob(_));
    walk(&root, &root, settings, by_extension, &mut candidates)?;
    if let CorpusSource::Glob(pattern) = &settings.source {
        let base_len = glob_base(pattern).components().count();
        let rest: Vec<&str> = pattern.split('/').skip(base_len).collect();
        let rest = rest.join("/");
        candidates.retain(|(rel, _)| glob_match(&rest, rel));
    }
    candidates.sort_by_cached_key(|(rel, _)| (Sha256::digest(rel.as_bytes()), rel.clone()));
    let mut corpus = Corpus { root: root.clone(), files: Vec::new(), total_bytes: 0, over_cap: 0, too_large: 0, not_utf8: 0 };
    for (rel, path) in candidates {
        let size = fs::metadata(&path).at(&path)?.len();
        if settings.max_file_bytes.is_some_and(|m| size > m) {
            corpus.too_large += 1;
            continue;
        }
        if settings.max_corpus_bytes.is_some_and(|cap| corpus.total_bytes + size > cap) {
            corpus.over_cap += 1;
            continue;
        }
        let bytes = fs::read(&path).at(&path)?;
        if std::str::from_utf8(&bytes).is_err() {
            corpus.not_utf8 += 1;
            continue;
        }
        corpus.total_bytes += bytes.len() as u64;
        corpus.files.push(CorpusFile { rel, bytes: bytes.len() as u64, sha256: sha256_hex(&bytes), path });
    }
    if corpus.files.is_empty() {
        let corpus_name = match &settings.source {
            CorpusSource::Stdlib { .. } => root.display().to_string(),
            CorpusSource::Dir(d) => d.display().to_string(),
            CorpusSource::Glob(g) => g.clone(),
        };
        return Err(Error::EmptyCorpus { corpus: corpus_name, extensions: settings.extensions.clone() });
    }
    Ok(corpus)
}

/// A digest of the selected corpus: relative paths, sizes and content hashes, in training
/// order. The runner puts it in the tokenizer stage's `external` inputs, so editing, adding or
/// removing a corpus file (or a different Python) makes the stage stale.
pub fn corpus_digest(settings: &Settings) -> Result<String> {
    Ok(select(settings)?.digest())
}

impl Corpus {
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            // Length-prefixed, so no two different lists hash the same.
            h.update((f.rel.len() as u64).to_le_bytes());
            h.update(f.rel.as_bytes());
            h.update(f.bytes.to_le_bytes());
            h.update(f.sha256.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// The text of every file, in training order.
    pub fn texts(&self) -> Result<Vec<String>> {
        self.files
            .iter()
            .map(|f| {
                let bytes = fs::read(&f.path).at(&f.path)?;
                String::from_utf8(bytes).map_err(|e| Error::Core(distill_core::Error::Other(format!("{}: changed while reading: {e}", f.path.display()))))
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, s: &Settings, by_extension: bool, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir).at(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if s.exclude.contains(&name) || name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(root, &path, s, by_extension, out)?;
        } else if ft.is_file() && (!by_extension || s.extensions.iter().any(|x| name.ends_with(x.as_str()))) {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// The folder part of a glob before its first wildcard (`src/pkg/**/*.py` -> `src/pkg`).
fn glob_base(pattern: &str) -> PathBuf {
    let parts: Vec<&str> = pattern.split('/').take_while(|p| !p.contains(['*', '?'])).collect();
    let base = parts.join("/");
    if base.is_empty() && !pattern.starts_with('/') {
        PathBuf::from(".")
    } else if base.is_empty() {
        PathBuf::from("/")
    } else {
        PathBuf::from(base)
    }
}

/// Matches a `/`-separated path against a glob: `?` one character, `*` any run within a
/// segment, `**` any number of whole segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|k| match_segments(rest, &segs[k..])),
        Some((p, rest)) => segs.split_first().is_some_and(|(s, srest)| match_one(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)),
    }
}

fn match_one(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((b'*', pr)), _) => match_one(pr, s) || (!s.is_empty() && match_one(p, &s[1..])),
        (Some((b'?', pr)), Some((_, sr))) => match_one(pr, sr),
        (Some((a, pr)), Some((b, sr))) => a == b && match_one(pr, sr),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segments_and_double_stars() {
        assert!(glob_match("**/*.py", "a/b/c.py"));
        assert!(glob_match("**/*.py", "c.py"));
        assert!(glob_match("a/*/c?.py", "a/x/c1.py"));
        assert!(!glob_match("a/*/c?.py", "a/x/y/c1.py"));
        assert!(!glob_match("*.py", "a/c.py"));
        assert!(!glob_match("*.py", "c.pyc"));
        assert_eq!(glob_base("src/pkg/**/*.py"), PathBuf::from("src/pkg"));
        assert_eq!(glob_base("*.py"), PathBuf::from("."));
    }
}
