//! The records stages exchange through files. Each stage reads its inputs from
//! `<work-dir>/<upstream>/` and writes its own under `<work-dir>/<stage>/`:
//!
//! | file | record | written by | read by |
//! |---|---|---|---|
//! | `prompts/prompts.jsonl` | [`PromptRecord`] | prompts | teacher |
//! | `teacher/responses.jsonl` | [`TeacherRecord`] without per-token log-probs | teacher | filter |
//! | `teacher/logprobs.frames` | per record: each sample's [`TokenLogprob`]s ([`crate::logprobs::pack_samples`]) | teacher | shards |
//! | `teacher/failed.jsonl` | [`FailedPrompt`] | teacher | (users) |
//! | `filter/kept.jsonl` | [`KeptSample`] (the decision and scores, no log-probs) | filter | shards |
//! | `filter/exclusions.jsonl` | [`Exclusion`] | filter | (users) |
//! | `shards/*.parquet` | columns in [`shard_columns`] | shards | train |
//!
//! Teacher files are sorted by prompt id; the filter's files and the shards' rows by prompt id,
//! then sample index. So outputs are byte-identical across runs, shard parts merge by a
//! streaming k-way merge, and a stage joins two upstream files in one pass (the shards stage
//! reads `kept.jsonl` beside `logprobs.frames`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One chat message (`role` is `system`, `user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// A task prompt: chat (`messages`) or completion (`prompt`), exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Stable id: for generated prompts the first 16 hex digits of sha256 of the content.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Provenance and tags: `generator`, `template`/`seed`, `task_type`, `language`,
    /// `difficulty`, and anything a user file carries. Never part of the teacher request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

impl PromptRecord {
    /// Checks that exactly one of `messages` / `prompt` is present and non-empty.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("missing or empty \"id\"".into());
        }
        match (&self.messages, &self.prompt) {
            (Some(m), None) if !m.is_empty() => Ok(()),
            (None, Some(p)) if !p.is_empty() => Ok(()),
            (Some(_), Some(_)) => Err("has both \"messages\" and \"prompt\"; give one".into()),
            _ => Err("needs a non-empty \"messages\" list (chat) or \"prompt\" string (completions)".into()),
        }
    }

    /// The prompt as plain text (chat messages joined), for dedup and decontamination.
    pub fn text(&self) -> String {
        match (&self.messages, &self.prompt) {
            (Some(m), _) => m.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        }
    }
}

/// One alternative at a position: the token text, its UTF-8 bytes when the server gave them,
/// and its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    pub logprob: f32,
}

/// One sampled token with its log-probability and the teacher's top-k at that position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    pub logprob: f32,
    #[serde(default)]
    pub top: Vec<TopLogprob>,
}

/// One of the `n` answers to a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherSample {
    pub text: String,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Present when the request asked for logprobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenLogprob>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The teacher's answers to one prompt (`teacher/responses.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherRecord {
    /// The prompt's id.
    pub id: String,
    pub prompt: PromptRecord,
    /// Teacher model name as the server reported it (or as configured).
    pub model: String,
    /// `chat` or `completions`.
    pub endpoint: String,
    /// Sampling temperature the answers (and their log-probs) were captured at.
    pub temperature: f32,
    pub samples: Vec<TeacherSample>,
    pub usage: Usage,
}

/// A prompt the teacher stage could not get an answer for (`teacher/failed.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedPrompt {
    pub id: String,
    /// Short machine-readable reason (`bad_request`, `retries_exhausted`, ...).
    pub reason: String,
    /// The server's message or the last error, for a person.
    pub message: String,
}

/// One teacher sample that passed every filter (`filter/kept.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptSample {
    /// `<prompt id>#<sample index>`.
    pub id: String,
    pub prompt_id: String,
    pub prompt: PromptRecord,
    pub model: String,
    pub temperature: f32,
    /// The answer exactly as the teacher wrote it (what the student learns to write).
    pub completion: String,
    pub finish_reason: Option<String>,
    /// The code extracted from the answer.
    pub code: String,
    /// Filter scores (`pass_rate`, `agreement`, ...), stored as shard columns.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// Which of the teacher-written tests this sample passed (self-consistency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_vector: Vec<bool>,
}

/// Why a record was dropped (`<stage>/exclusions.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exclusion {
    pub id: String,
    /// The filter that dropped it.
    pub filter: String,
    /// Short reason, counted in `stats.json`.
    pub reason: String,
    /// Details for a person (the benchmark task matched, the overlapping span, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Column names of the Parquet shards (schema version [`shard_columns::SCHEMA_VERSION`]).
///
/// Names only: the column types are written down once, in `distill_shards::schema::schema`
/// (what the shards stage writes and the trainer checks what it reads against), and README.md's
/// table, held to that schema by a test, says what each column means.
pub mod shard_columns {
    /// 2: cross-tokenizer chunk events and per-row coverage (`chunk_starts`, `chunk_lengths`,
    /// `soft_label_byte_share`, `teacher_mass_captured`); the trainer still reads version 1.
    /// 3: fill-in-the-middle rows (`fim`); the trainer reads versions 1 and 2 as before.
    pub const SCHEMA_VERSION: u32 = 3;
    pub const ROW_ID: &str = "row_id";
    pub const PROMPT_ID: &str = "prompt_id";
    pub const PROMPT_TEXT: &str = "prompt_text";
    pub const COMPLETION_TEXT: &str = "completion_text";
    /// Student token ids of prompt + completion.
    pub const INPUT_IDS: &str = "input_ids";
    /// 1 on completion tokens (the positions that carry loss).
    pub const LOSS_MASK: &str = "loss_mask";
    /// Per input position, the teacher's top-k as student ids (empty off-completion).
    pub const TEACHER_TOPK_IDS: &str = "teacher_topk_ids";
    /// Matching log-probs.
    pub const TEACHER_TOPK_LOGPROBS: &str = "teacher_topk_logprobs";
    /// Log-prob of the token actually sampled.
    pub const TEACHER_TOKEN_LOGPROB: &str = "teacher_token_logprob";
    /// 1 - sum(exp(top-k log-probs)), the probability outside the top-k.
    pub const TAIL_MASS: &str = "tail_mass";
    /// True when soft labels could not be aligned and only the hard label is usable.
    pub const HARD_LABEL_ONLY: &str = "hard_label_only";
    /// How the teacher's tokens were mapped onto the student's (`exact`, or why not).
    pub const ALIGNMENT: &str = "alignment";
    pub const SPLIT: &str = "split";
    /// Number of prompt positions.
    pub const PROMPT_TOKENS: &str = "prompt_tokens";
    /// Which teacher-written tests the sample passed.
    pub const PASS_VECTOR: &str = "pass_vector";
    /// Positions holding the events of a chunk of several student tokens (cross-tokenizer).
    pub const CHUNK_STARTS: &str = "chunk_starts";
    /// Student tokens of each such chunk.
    pub const CHUNK_LENGTHS: &str = "chunk_lengths";
    /// Share of the completion's bytes spelled by positions with soft labels.
    pub const SOFT_LABEL_BYTE_SHARE: &str = "soft_label_byte_share";
    /// Mean teacher probability listed at the positions with soft labels.
    pub const TEACHER_MASS_CAPTURED: &str = "teacher_mass_captured";
    /// `none` for a left-to-right row, `psm` / `spm` for a fill-in-the-middle row.
    pub const FIM: &str = "fim";
    /// Prefix of the one column per filter score (`score_pass_rate`, ...).
    pub const SCORE_PREFIX: &str = "score_";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_records_need_exactly_one_form() {
        let chat: PromptRecord = serde_json::from_str(r#"{"id":"a","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert!(chat.validate().is_ok());
        let completion: PromptRecord = serde_json::from_str(r#"{"id":"b","prompt":"def f():"}"#).unwrap();
        assert!(completion.validate().is_ok());
        let neither: PromptRecord = serde_json::from_str(r#"{"id":"c"}"#).unwrap();
        assert!(neither.validate().unwrap_err().contains("messages"));
        let both: PromptRecord = serde_json::from_str(r#"{"id":"d","prompt":"x","messages":[{"role":"user","content":"y"}]}"#).unwrap();
        assert!(both.validate().unwrap_err().contains("both"));
    }
}
