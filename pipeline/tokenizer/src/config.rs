//! The `[tokenizer]` config section and its validated runtime form (two layers: the TOML struct
//! keeps what the user wrote, [`TokenizerConfig::settings`] checks it once and reports every
//! problem with its key).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[tokenizer]`: how the student's byte-level BPE tokenizer is trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Training text: empty means the standard library source of `python`; otherwise a folder
    /// (searched recursively for `extensions`) or a glob such as `src/**/*.py`.
    pub corpus: String,
    /// Interpreter asked for its standard library path when `corpus` is empty.
    pub python: String,
    /// File name endings that count as source files when `corpus` is a folder.
    pub extensions: Vec<String>,
    /// Path components to skip (test suites, vendored packages, caches).
    pub exclude: Vec<String>,
    /// Total bytes of text to train on; files are taken in a fixed pseudo-random order (by the
    /// sha256 of their relative path) until the next one would pass the cap. 0 = no cap.
    pub max_corpus_bytes: u64,
    /// Files larger than this are skipped (generated tables, data blobs). 0 = no limit.
    pub max_file_bytes: u64,
    /// Size of the vocabulary, special tokens and the 256 byte symbols included.
    pub vocab_size: usize,
    /// A pair must occur at least this often to be merged.
    pub min_frequency: u64,
    /// Longest token, in characters of the byte-level alphabet (0 = unlimited).
    pub max_token_length: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            corpus: String::new(),
            python: "python3".into(),
            extensions: vec![".py".into()],
            exclude: ["test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3"].map(String::from).to_vec(),
            max_corpus_bytes: 8_000_000,
            max_file_bytes: 400_000,
            vocab_size: 4096,
            min_frequency: 2,
            max_token_length: 32,
        }
    }
}

/// Where the corpus comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CorpusSource {
    /// The standard library of this interpreter.
    Stdlib { python: String },
    /// A folder, searched recursively.
    Dir(PathBuf),
    /// A glob pattern (`*`, `?`, `**`) over paths.
    Glob(String),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: CorpusSource,
    pub extensions: Vec<String>,
    pub exclude: Vec<String>,
    pub max_corpus_bytes: Option<u64>,
    pub max_file_bytes: Option<u64>,
    pub vocab_size: usize,
    pub min_frequency: u64,
    pub max_token_length: Option<usize>,
}

/// The special tokens every trained tokenizer carries, in id order (ids 0..5).
pub const SPECIAL_TOKENS: [&str; 5] = [ENDOFTEXT, PAD, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX];
pub const ENDOFTEXT: &str = "<|endoftext|>";
pub const PAD: &str = "<|pad|>";
pub const FIM_PREFIX: &str = "<|fim_prefix|>";
pub const FIM_MIDDLE: &str = "<|fim_middle|>";
pub const FIM_SUFFIX: &str = "<|fim_suffix|>";

/// 256 byte symbols plus the special tokens: the smallest vocabulary that can encode anything.
pub const MIN_VOCAB: usize = 256 + SPECIAL_TOKENS.len();

impl TokenizerConfig {
    /// Checks the section; `file` names the config in messages. Every problem is reported.
    pub fn settings(&self, file: &str) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            if let distill_core::Error::Config { problems: p } = distill_core::Error::config_value(file, None, &format!("tokenizer.{key}"), format!("[tokenizer] {key}: {msg}")) {
                problems.extend(p);
            }
        };
        if self.vocab_size < MIN_VOCAB {
            bad("vocab_size", format!("{} is too small: at least {MIN_VOCAB} (256 bytes + {} special tokens)", self.vocab_size, SPECIAL_TOKENS.len()));
        }
        if self.vocab_size > 1 << 24 {
            bad("vocab_size", format!("{} is too large (at most {})", self.vocab_size, 1 << 24));
        }
        if self.corpus.trim().is_empty() && self.python.trim().is_empty() {
            bad("python", "is empty, and corpus is empty too: name an interpreter or a corpus folder".into());
        }
        if self.extensions.iter().any(|e| e.is_empty()) {
            bad("extensions", "contains an empty string (it would match every file)".into());
        }
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        let corpus = self.corpus.trim();
        let source = if corpus.is_empty() {
            CorpusSource::Stdlib { python: self.python.clone() }
        } else if corpus.contains(['*', '?']) {
            CorpusSource::Glob(corpus.to_string())
        } else {
            CorpusSource::Dir(PathBuf::from(corpus))
        };
        let nonzero = |x: u64| (x > 0).then_some(x);
        Ok(Settings {
            source,
            extensions: self.extensions.clone(),
            exclude: self.exclude.clone(),
            max_corpus_bytes: nonzero(self.max_corpus_bytes),
            max_file_bytes: nonzero(self.max_file_bytes),
            vocab_size: self.vocab_size,
            min_frequency: self.min_frequency,
            max_token_length: (self.max_token_length > 0).then_some(self.max_token_length),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let cfg = TokenizerConfig { vocab_size: 10, extensions: vec![String::new()], ..Default::default() };
        let err = cfg.settings("c.toml").unwrap_err().to_string();
        assert!(err.contains("vocab_size: 10 is too small"), "{err}");
        assert!(err.contains("extensions"), "{err}");
        assert_eq!(err.lines().count(), 2, "{err}");
    }

    #[test]
    fn the_corpus_kind_follows_the_text() {
        let s = |c: &str| TokenizerConfig { corpus: c.into(), ..Default::default() }.settings("c").unwrap().source;
        assert_eq!(s(""), CorpusSource::Stdlib { python: "python3".into() });
        assert_eq!(s("src/**/*.py"), CorpusSource::Glob("src/**/*.py".into()));
        assert_eq!(s("src"), CorpusSource::Dir("src".into()));
    }

    #[test]
    fn the_section_parses_from_toml_with_defaults() {
        #[derive(Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Doc {
            tokenizer: TokenizerConfig,
        }
        let d: Doc = distill_core::config::parse("[tokenizer]\nvocab_size = 1000\n", "t.toml").unwrap();
        assert_eq!(d.tokenizer.vocab_size, 1000);
        assert_eq!(d.tokenizer.python, "python3");
    }
}
