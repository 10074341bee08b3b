//! The `[shards]` config section and its validated runtime form.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `[shards]`: how kept samples become Parquet shards.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardsConfig {
    /// The student's `tokenizer.json`. Empty: the tokenizer stage's output
    /// (`<work-dir>/tokenizer/tokenizer.json`).
    pub tokenizer: String,
    /// Rows per Parquet row group (the unit a reader loads at once).
    pub row_group_rows: usize,
    /// Rows per file; a split with more rows is written as several files.
    pub rows_per_file: usize,
    /// Fraction of prompts (not samples: every answer to a prompt goes to the same split) in
    /// the `validation` split.
    pub validation_fraction: f64,
    /// Salt of the split hash; change it to draw a different split.
    pub split_seed: u64,
    /// zstd compression level (1-22). Default 1: on the scale benchmark's shards (dictionary
    /// ids and byte-stream-split floats) level 3 wrote 0.4% more bytes and cost the stage 12%
    /// more CPU time.
    pub zstd_level: i32,
    /// Longest row in student tokens (prompt + completion); longer rows are left out and
    /// counted. 0 = no limit.
    pub max_seq_len: usize,
    /// Keep at most this many soft labels per position, most probable first (0 = all).
    pub max_topk: usize,
    /// Cross-tokenizer chunks of more teacher or student tokens than this are trained on the
    /// hard label (1 = only 1:1 chunks get soft labels).
    pub max_chunk_tokens: usize,
    /// Append `eos_token` after completions that ended naturally (`finish_reason = "stop"`), as
    /// a hard-label position, so the student learns to stop.
    pub append_eos: bool,
    /// The end-of-text token of the student tokenizer.
    pub eos_token: String,
    /// Text put between a chat prompt's messages and the completion (completion-style prompts
    /// are used exactly as written).
    pub chat_separator: String,
    /// Share of training rows (0-1) turned into fill-in-the-middle rows (see `fim.rs`); 0 = off.
    /// Validation rows stay left to right, so held-out losses compare across rates.
    pub fim_rate: f64,
    /// Share of FIM rows in suffix-prefix-middle order; the rest are prefix-suffix-middle.
    pub fim_spm_rate: f64,
    /// Where the middle's two ends fall: "chars" (any character of the completion) or "lines"
    /// (line starts: the middle is whole lines).
    pub fim_split: String,
    /// Salt of the per-row FIM draws; change it to draw other rows and split points.
    pub fim_seed: u64,
    /// The student tokenizer's FIM special tokens: prefix, suffix, middle.
    pub fim_tokens: [String; 3],
}

impl Default for ShardsConfig {
    fn default() -> Self {
        ShardsConfig {
            tokenizer: String::new(),
            row_group_rows: 512,
            rows_per_file: 20_000,
            validation_fraction: 0.05,
            split_seed: 0,
            zstd_level: 1,
            max_seq_len: 2048,
            max_topk: 0,
            max_chunk_tokens: 8,
            append_eos: true,
            eos_token: "<|endoftext|>".into(),
            chat_separator: "\n".into(),
            fim_rate: 0.0,
            fim_spm_rate: 0.5,
            fim_split: "chars".into(),
            fim_seed: 0,
            fim_tokens: ["<|fim_prefix|>".into(), "<|fim_suffix|>".into(), "<|fim_middle|>".into()],
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tokenizer: PathBuf,
    pub row_group_rows: usize,
    pub rows_per_file: usize,
    pub validation_fraction: f64,
    pub split_seed: u64,
    pub zstd_level: i32,
    pub max_seq_len: Option<usize>,
    pub max_topk: Option<usize>,
    pub max_chunk_tokens: usize,
    pub eos_token: Option<String>,
    pub chat_separator: String,
    /// `None` when no row is turned into FIM (`fim_rate = 0`).
    pub fim: Option<FimSettings>,
}

impl ShardsConfig {
    /// Checks the section, reporting every problem with its key; relative paths and the
    /// default tokenizer resolve against `work_dir`.
    pub fn settings(&self, file: &str, work_dir: &Path) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            if let distill_core::Error::Config { problems: p } = distill_core::Error::config_value(file, None, &format!("shards.{key}"), format!("[shards] {key}: {msg}")) {
                problems.extend(p);
            }
        };
        if self.row_group_rows == 0 {
            bad("row_group_rows", "must be at least 1".into());
        }
        if self.rows_per_file == 0 {
            bad("rows_per_file", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            bad("validation_fraction", format!("{} is outside [0, 1)", self.validation_fraction));
        }
        if !(1..=22).contains(&self.zstd_level) {
            bad("zstd_level", format!("{} is outside 1..=22", self.zstd_level));
        }
        if self.max_chunk_tokens == 0 {
            bad("max_chunk_tokens", "must be at least 1".into());
        }
        if self.append_eos && self.eos_token.is_empty() {
            bad("eos_token", "is empty while append_eos = true".into());
        }
        for (key, v) in [("fim_rate", self.fim_rate), ("fim_spm_rate", self.fim_spm_rate)] {
            if !(0.0..=1.0).contains(&v) {
                bad(key, format!("{v} is outside [0, 1]"));
            }
        }
        let split = match self.fim_split.as_str() {
            "chars" => Some(FimSplit::Chars),
            "lines" => Some(FimSplit::Lines),
            other => {
                bad("fim_split", format!("'{other}' is neither \"chars\" nor \"lines\""));
                None
            }
        };
        if self.fim_rate > 0.0 && !self.append_eos {
            // The middle must end with a token the model learns to stop at.
            bad("fim_rate", "FIM rows end their middle with eos_token: set append_eos = true, or fim_rate = 0".into());
        }
        if self.fim_rate > 0.0 && self.fim_tokens.iter().any(String::is_empty) {
            bad("fim_tokens", "give the three FIM special tokens of the student tokenizer (prefix, suffix, middle)".into());
        }
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        let tokenizer = if self.tokenizer.is_empty() { work_dir.join("tokenizer").join("tokenizer.json") } else { PathBuf::from(&self.tokenizer) };
        Ok(Settings {
            tokenizer,
            row_group_rows: self.row_group_rows,
            rows_per_file: self.rows_per_file,
            validation_fraction: self.validation_fraction,
            split_seed: self.split_seed,
            zstd_level: self.zstd_level,
            max_seq_len: (self.max_seq_len > 0).then_some(self.max_seq_len),
            max_topk: (self.max_topk > 0).then_some(self.max_topk),
            max_chunk_tokens: self.max_chunk_tokens,
            eos_token: self.append_eos.then(|| self.eos_token.clone()),
            chat_separator: self.chat_separator.clone(),
            fim: (self.fim_rate > 0.0).then(|| FimSettings {
                rate: self.fim_rate,
                spm_rate: self.fim_spm_rate,
                split: split.expect("checked above"),
                seed: self.fim_seed,
                tokens: self.fim_tokens.clone(),
            }),
        })
    }
}

/// Where a FIM middle's ends may fall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimSplit {
    Chars,
    Lines,
}

/// Validated FIM settings (`[shards] fim_*`).
#[derive(Debug, Clone)]
pub struct FimSettings {
    pub rate: f64,
    pub spm_rate: f64,
    pub split: FimSplit,
    pub seed: u64,
    /// Prefix, suffix and middle token spellings.
    pub tokens: [String; 3],
}

/// `train` or `validation` for a prompt: `sha256(seed, prompt id)` read as a number in [0, 1)
/// below `fraction` means validation. Depends only on the prompt id, so adding prompts never
/// moves an old one to the other split.
pub fn split_of(prompt_id: &str, seed: u64, fraction: f64) -> &'static str {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(prompt_id.as_bytes());
    let x = u64::from_be_bytes(h.finalize()[..8].try_into().expect("32-byte digest"));
    if (x as f64 / 2f64.powi(64)) < fraction {
        "validation"
    } else {
        "train"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_all_reported() {
        let cfg = ShardsConfig { row_group_rows: 0, validation_fraction: 1.5, zstd_level: 0, ..Default::default() };
        let err = cfg.settings("c.toml", Path::new("/w")).unwrap_err().to_string();
        assert_eq!(err.lines().count(), 3, "{err}");
        assert!(err.contains("validation_fraction: 1.5"), "{err}");
        let cfg = ShardsConfig { fim_rate: 1.5, fim_split: "words".into(), ..Default::default() };
        let err = cfg.settings("c.toml", Path::new("/w")).unwrap_err().to_string();
        assert!(err.contains("fim_rate: 1.5 is outside [0, 1]") && err.contains("fim_split: 'words'"), "{err}");
        let cfg = ShardsConfig { fim_rate: 0.5, append_eos: false, ..Default::default() };
        assert!(cfg.settings("c.toml", Path::new("/w")).unwrap_err().to_string().contains("append_eos = true"));
        let on = ShardsConfig { fim_rate: 0.5, fim_split: "lines".into(), ..Default::default() }.settings("c.toml", Path::new("/w")).unwrap();
        assert_eq!(on.fim.map(|f| f.split), Some(FimSplit::Lines));
        assert!(ShardsConfig::default().settings("c.toml", Path::new("/w")).unwrap().fim.is_none(), "FIM is off unless asked for");
    }

    #[test]
    fn the_split_is_by_prompt_and_near_the_fraction() {
        let n = 4000;
        let val = (0..n).filter(|i| split_of(&format!("p{i}"), 7, 0.1) == "validation").count();
        assert!((300..500).contains(&val), "{val}");
        assert_eq!(split_of("abc", 7, 0.1), split_of("abc", 7, 0.1));
        assert_eq!(split_of("abc", 7, 0.0), "train");
        let moved = (0..n).filter(|i| split_of(&format!("p{i}"), 7, 0.1) != split_of(&format!("p{i}"), 8, 0.1)).count();
        assert!(moved > 0, "the seed changes the split");
    }
}
