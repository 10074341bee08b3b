//! From a kept teacher sample to one training row: student token ids, loss mask, and the
//! teacher's top-k soft labels mapped onto student ids.
//!
//! Positions: entry `i` of every per-position list describes the distribution of `input_ids[i]`
//! given `input_ids[..i]` (so the trainer pairs it with the student's logits at `i - 1`).
//! Prompt positions carry no labels (`loss_mask` 0, empty top-k, log-prob and tail 0).
//!
//! Alignment (teacher tokens -> student tokens, compared by their bytes):
//! 1. The teacher's tokens must spell the completion byte for byte; else `teacher_bytes_mismatch`.
//! 2. The student's tokenization of the completion must have the same boundaries: token `i` of
//!    both spells the same bytes (`exact`). If it does not, but every teacher token is itself
//!    exactly one student token, the teacher's own segmentation becomes the student's input ids
//!    (`exact_teacher_tokens`): a sampling model often emits a valid but non-canonical split
//!    ("de" + "f" where BPE would write "def"), and with a shared vocabulary those ids are the
//!    very positions the teacher's top-k describe. Otherwise the two are walked by byte offset
//!    into chunks (`chunks.rs`): a student position that is a 1:1 chunk (the same bytes as one
//!    teacher token, after the same bytes) keeps the soft labels of that teacher position, the
//!    others are trained on the hard label alone (`chunks`). A row without any 1:1 chunk is
//!    `boundaries_differ`.
//! 3. Then at each labelled completion position every top-k alternative whose bytes are exactly one
//!    student token becomes `(student id, log-prob)`; the sampled token is always included (its
//!    log-prob is known even when it was outside the top-k); the rest of the probability is the
//!    tail: `tail_mass = max(0, 1 - sum_j exp(logprob_j))`.
//!
//! A row that fails 1 or 2, or has no teacher log-probs, is *hard-label only*: its completion is
//! still trained with cross-entropy on the teacher's text, never with misaligned soft labels.
//! With a shared tokenizer step 2 always holds, so every row with log-probs is exact.
//! `Row::soft_label_bytes` counts the completion bytes whose positions carry soft labels.

use std::collections::BTreeMap;

use distill_core::logprobs::FlatTokens;
use distill_core::records::KeptSample;

use crate::config::Settings;
use crate::error::Result;
use crate::vocab::StudentTokenizer;

/// One row of a shard, with the nested lists flattened (offsets, as Arrow stores them).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub row_id: String,
    pub prompt_id: String,
    pub prompt_text: String,
    pub completion_text: String,
    pub input_ids: Vec<u32>,
    pub loss_mask: Vec<u8>,
    /// Number of prompt tokens (completion starts at this position).
    pub prompt_tokens: u32,
    /// `topk_offsets[i]..topk_offsets[i + 1]` index position `i`'s labels; len = positions + 1.
    pub topk_offsets: Vec<u32>,
    pub topk_ids: Vec<u32>,
    pub topk_logprobs: Vec<f32>,
    pub token_logprob: Vec<f32>,
    pub tail_mass: Vec<f32>,
    pub hard_label_only: bool,
    /// `exact`, `exact_teacher_tokens`, `chunks` (soft labels at some positions), or why the
    /// soft labels were not usable.
    pub alignment: &'static str,
    /// Completion bytes spelled by positions with soft labels (not a column: the manifest's
    /// coverage figure).
    pub soft_label_bytes: usize,
    pub split: &'static str,
    pub teacher_model: String,
    pub temperature: f32,
    pub scores: BTreeMap<String, f64>,
    pub pass_vector: Vec<bool>,
}

impl Row {
    pub fn positions(&self) -> usize {
        self.input_ids.len()
    }

    /// Labels at position `i`: (ids, log-probs).
    pub fn topk_at(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.topk_offsets[i] as usize, self.topk_offsets[i + 1] as usize);
        (&self.topk_ids[a..b], &self.topk_logprobs[a..b])
    }
}

/// Why a sample produced no row.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    TooLong { tokens: usize, max: usize },
    EmptyCompletion,
}

/// Builds the row for `s`, whose teacher tokens are `tokens` (`split` already decided by
/// prompt id).
pub fn build_row(s: &KeptSample, tokens: Option<&FlatTokens>, tok: &StudentTokenizer, settings: &Settings, split: &'static str) -> Result<Result<Row, Skip>> {
    if s.completion.is_empty() {
        return Ok(Err(Skip::EmptyCompletion));
    }
    let prompt_text = match &s.prompt.messages {
        Some(_) => format!("{}{}", s.prompt.text(), settings.chat_separator),
        None => s.prompt.prompt.clone().unwrap_or_default(),
    };
    let prompt_ids = tok.encode(&prompt_text)?;
    let canonical_ids = tok.encode(&s.completion)?;
    let eos = match (&settings.eos_token, s.finish_reason.as_deref()) {
        (Some(t), Some("stop")) => tok.token_to_id(t),
        _ => None,
    };
    let (completion_ids, labels, alignment) = match align(&s.completion, &canonical_ids, tokens, tok) {
        Ok(a) => (a.ids, Some((a.teacher, a.string_ids, a.positions)), a.how),
        Err(reason) => (canonical_ids, None, reason),
    };
    let total = prompt_ids.len() + completion_ids.len() + usize::from(eos.is_some());
    if let Some(max) = settings.max_seq_len.filter(|&m| total > m) {
        return Ok(Err(Skip::TooLong { tokens: total, max }));
    }

    let mut row = Row {
        row_id: s.id.clone(),
        prompt_id: s.prompt_id.clone(),
        prompt_text,
        completion_text: s.completion.clone(),
        input_ids: Vec::with_capacity(total),
        loss_mask: Vec::with_capacity(total),
        prompt_tokens: prompt_ids.len() as u32,
        topk_offsets: Vec::with_capacity(total + 1),
        topk_ids: Vec::new(),
        topk_logprobs: Vec::new(),
        token_logprob: Vec::with_capacity(total),
        tail_mass: Vec::with_capacity(total),
        hard_label_only: labels.is_none(),
        alignment,
        soft_label_bytes: 0,
        split,
        teacher_model: s.model.clone(),
        temperature: s.temperature,
        scores: s.scores.clone(),
        pass_vector: s.pass_vector.clone(),
    };
    row.topk_offsets.push(0);
    let push_empty = |row: &mut Row, id: u32, mask: u8| {
        row.input_ids.push(id);
        row.loss_mask.push(mask);
        row.token_logprob.push(0.0);
        row.tail_mass.push(0.0);
        row.topk_offsets.push(row.topk_ids.len() as u32);
    };
    for &id in &prompt_ids {
        push_empty(&mut row, id, 0);
    }
    match labels {
        Some((teacher, string_ids, positions)) => {
            let mut pairs: Vec<(u32, f32)> = Vec::with_capacity(32);
            for (j, &id) in completion_ids.iter().enumerate() {
                let at = positions.as_ref().map_or(Some(j as u32), |v| v[j]);
                let Some(p) = at else {
                    push_empty(&mut row, id, 1);
                    continue;
                };
                let p = p as usize;
                row.soft_label_bytes += teacher.sampled(p).0.len();
                let token_logprob = teacher.sampled_entry(p).1.min(0.0);
                soft_labels(teacher.top_entries(p), &string_ids, id, token_logprob, settings.max_topk, &mut pairs);
                let mass: f32 = pairs.iter().map(|(_, lp)| lp.exp()).sum();
                row.input_ids.push(id);
                row.loss_mask.push(1);
                row.token_logprob.push(token_logprob);
                row.tail_mass.push((1.0 - mass).max(0.0));
                row.topk_ids.extend(pairs.iter().map(|&(i, _)| i));
                row.topk_logprobs.extend(pairs.iter().map(|&(_, lp)| lp));
                row.topk_offsets.push(row.topk_ids.len() as u32);
            }
        }
        None => completion_ids.iter().for_each(|&id| push_empty(&mut row, id, 1)),
    }
    if let Some(id) = eos {
        push_empty(&mut row, id, 1);
    }
    Ok(Ok(row))
}

/// A completion whose teacher tokens can label it: the completion's student ids, the teacher's
/// tokens, the student id of each of their strings, for each student position the teacher
/// position whose labels it takes (`None`: hard label only; no list: position `j` takes teacher
/// position `j`, as with `exact` and `exact_teacher_tokens`), and how they were aligned.
struct Aligned<'t> {
    ids: Vec<u32>,
    teacher: &'t FlatTokens,
    string_ids: Vec<Option<u32>>,
    positions: Option<Vec<Option<u32>>>,
    how: &'static str,
}

/// The module docs' steps 1-2; `Err` names why the labels cannot be used.
fn align<'t>(completion: &str, canonical: &[u32], teacher: Option<&'t FlatTokens>, tok: &StudentTokenizer) -> Result<Aligned<'t>, &'static str> {
    let teacher = teacher.filter(|t| !t.is_empty()).ok_or("no_teacher_logprobs")?;
    let n = teacher.len();
    let mut rest = completion.as_bytes();
    let spells_completion = (0..n).all(|p| match rest.strip_prefix(teacher.sampled(p).0) {
        Some(r) => {
            rest = r;
            true
        }
        None => false,
    }) && rest.is_empty();
    if !spells_completion {
        return Err("teacher_bytes_mismatch");
    }
    // One vocabulary lookup per distinct string of the sample, not per entry.
    let string_ids: Vec<Option<u32>> = (0..teacher.string_count() as u32).map(|s| tok.id(teacher.string(s))).collect();
    let same_boundaries = n == canonical.len() && canonical.iter().enumerate().all(|(p, &id)| tok.bytes(id) == teacher.sampled(p).0);
    if !(0..n).all(|p| teacher.sampled_entry(p).1.is_finite()) {
        return Err("bad_teacher_logprob");
    }
    let (ids, positions, how) = if same_boundaries {
        (canonical.to_vec(), None, "exact")
    } else if let Some(ids) = (0..n).map(|p| string_ids[teacher.sampled_entry(p).0 as usize]).collect::<Option<Vec<u32>>>() {
        (ids, None, "exact_teacher_tokens")
    } else {
        let teacher_lens: Vec<usize> = (0..n).map(|p| teacher.sampled(p).0.len()).collect();
        let student_lens: Vec<usize> = canonical.iter().map(|&id| tok.bytes(id).len()).collect();
        let positions = crate::chunks::one_to_one(&teacher_lens, &student_lens);
        if positions.iter().all(Option::is_none) {
            return Err("boundaries_differ");
        }
        (canonical.to_vec(), Some(positions), "chunks")
    };
    Ok(Aligned { ids, teacher, string_ids, positions, how })
}

/// Step 3 at one position into `pairs`: every alternative that is exactly one student token as
/// `(student id, log-prob)`, the sampled token `sampled` always among them, most probable
/// first, at most `max_topk`.
fn soft_labels(top: &[(u32, f32)], string_ids: &[Option<u32>], sampled: u32, token_logprob: f32, max_topk: Option<usize>, pairs: &mut Vec<(u32, f32)>) {
    pairs.clear();
    for &(string, lp) in top {
        // -inf carries no mass and NaN no information: both belong to the tail.
        if !lp.is_finite() {
            continue;
        }
        if let Some(id) = string_ids[string as usize] {
            if !pairs.iter().any(|(i, _)| *i == id) {
                pairs.push((id, lp.min(0.0)));
            }
        }
    }
    if !pairs.iter().any(|(i, _)| *i == sampled) {
        pairs.push((sampled, token_logprob));
    }
    // Most probable first; ties keep the teacher's order (stable sort).
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = max_topk {
        pairs.truncate(k);
    }
}
