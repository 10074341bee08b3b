//! From a kept teacher sample to one training row: student token ids, loss mask, and the
//! teacher's top-k soft labels mapped onto student ids.
//!
//! Positions: entry `i` of every per-position list describes the distribution of `input_ids[i]`
//! given `input_ids[..i]` (so the trainer pairs it with the student's logits at `i - 1`).
//! Prompt positions carry no labels (`loss_mask` 0, empty top-k, log-prob and tail 0).
//!
//! Alignment (teacher tokens -> student tokens, compared by their bytes):
//! 1. The teacher's tokens should spell the completion byte for byte. Where they do not (a
//!    special token the text lacks, a replacement character for split UTF-8), the common prefix
//!    and suffix keep their tokens and the span between is trained on the hard label
//!    ([`crate::chunks::overlay`]); with nothing in common the row is `teacher_bytes_mismatch`.
//! 2. If the student's tokenization of the completion has the same boundaries (token `i` of
//!    both spells the same bytes), every position takes its teacher position (`exact`). If it
//!    does not, but every teacher token is itself exactly one student token, the teacher's own
//!    segmentation becomes the student's input ids (`exact_teacher_tokens`): a sampling model
//!    often emits a valid but non-canonical split ("de" + "f" where BPE would write "def"), and
//!    with a shared vocabulary those ids are the very positions the teacher's top-k describe.
//! 3. Otherwise the two are walked by byte offset into chunks ([`crate::chunks::walk`]), and the
//!    row is `chunks` if any chunk got soft labels (else `boundaries_differ`):
//!    - a 1:1 chunk (one teacher token spelling one student token after the same bytes) takes
//!      that teacher position's labels, as with a shared tokenizer;
//!    - an m:n chunk of at most `max_chunk_tokens` tokens on either side gets *chunk events* at
//!      its first student position: entry 0 is the chunk itself, whose teacher log-prob is the
//!      sum of its teacher tokens' log-probs (the trainer adds the student's log-probs of the
//!      chunk's later tokens to entry 0; `chunk_starts` / `chunk_lengths` say where), then the
//!      teacher's alternatives at the chunk's first position that are exactly one student token
//!      and neither a prefix of the chunk's bytes nor prefixed by them (events disjoint from the
//!      chunk); the tail is the rest. The chunk's later positions and longer chunks are trained
//!      on the hard label alone. (Approximate likelihood matching: Minixhofer et al. 2025.)
//! 4. At each 1:1 position every top-k alternative whose bytes are exactly one student token
//!    becomes `(student id, log-prob)`; the sampled token is always included (its log-prob is
//!    known even when it was outside the top-k); the rest of the probability is the tail:
//!    `tail_mass = max(0, 1 - sum_j exp(logprob_j))`.
//!
//! A row without teacher log-probs, or whose labels cannot be aligned anywhere, is *hard-label
//! only*: its completion is still trained with cross-entropy on the teacher's text, never with
//! misaligned soft labels. With a shared tokenizer step 2 always holds, so every row with
//! log-probs is exact. Coverage per row: `soft_label_bytes` (completion bytes spelled by
//! positions with soft labels) and `teacher_mass_captured` (mean listed teacher probability over
//! those positions).

use std::collections::BTreeMap;
use std::ops::Range;

use distill_core::logprobs::FlatTokens;
use distill_core::records::KeptSample;

use crate::chunks;
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
    /// Positions holding an m:n chunk's events, and the chunk's student tokens (>= 2 each).
    pub chunk_starts: Vec<u32>,
    pub chunk_lengths: Vec<u32>,
    pub hard_label_only: bool,
    /// `exact`, `exact_teacher_tokens`, `chunks` (soft labels at some positions), or why the
    /// soft labels were not usable.
    pub alignment: &'static str,
    /// Completion bytes spelled by positions with soft labels (not a column: the manifest's
    /// coverage figure).
    pub soft_label_bytes: usize,
    /// Mean over positions with soft labels of the teacher probability their events list (0
    /// without soft labels).
    pub teacher_mass_captured: f32,
    pub split: &'static str,
    pub teacher_model: String,
    pub temperature: f32,
    pub scores: BTreeMap<String, f64>,
    pub pass_vector: Vec<bool>,
    /// [`FIM_NONE`] for a left-to-right row, else the FIM order (`psm` or `spm`, see
    /// [`crate::fim`]).
    pub fim: &'static str,
}

/// The `fim` column of a left-to-right row.
pub const FIM_NONE: &str = "none";

impl Row {
    pub fn positions(&self) -> usize {
        self.input_ids.len()
    }

    /// Positions with soft labels.
    pub fn soft_label_positions(&self) -> usize {
        self.topk_offsets.windows(2).filter(|w| w[1] > w[0]).count()
    }

    /// Share of the completion's bytes spelled by positions with soft labels.
    pub fn soft_label_byte_share(&self) -> f32 {
        if self.completion_text.is_empty() {
            0.0
        } else {
            self.soft_label_bytes as f32 / self.completion_text.len() as f32
        }
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
/// prompt id). A training row that the FIM draw picks becomes a fill-in-the-middle row
/// ([`crate::fim`]).
pub fn build_row(s: &KeptSample, tokens: Option<&FlatTokens>, tok: &StudentTokenizer, settings: &Settings, split: &'static str) -> Result<Result<Row, Skip>> {
    if s.completion.is_empty() {
        return Ok(Err(Skip::EmptyCompletion));
    }
    let prompt_text = match &s.prompt.messages {
        Some(_) => format!("{}{}", s.prompt.text(), settings.chat_separator),
        None => s.prompt.prompt.clone().unwrap_or_default(),
    };
    if let Some(plan) = settings.fim.as_ref().filter(|_| split == "train").and_then(|f| crate::fim::plan(&s.id, &s.completion, f)) {
        return crate::fim::build_fim_row(s, tokens, tok, settings, split, prompt_text, &plan);
    }
    let prompt_ids = tok.encode(&prompt_text)?;
    let canonical_ids = tok.encode(&s.completion)?;
    let eos = match (&settings.eos_token, s.finish_reason.as_deref()) {
        (Some(t), Some("stop")) => tok.token_to_id(t),
        _ => None,
    };
    let (completion_ids, labels, alignment) = match align(&s.completion, &canonical_ids, tokens, tok, settings.max_chunk_tokens) {
        Ok(a) => (a.ids, Some((a.teacher, a.string_ids, a.labels)), a.how),
        Err(reason) => (canonical_ids, None, reason),
    };
    let total = prompt_ids.len() + completion_ids.len() + usize::from(eos.is_some());
    if let Some(max) = settings.max_seq_len.filter(|&m| total > m) {
        return Ok(Err(Skip::TooLong { tokens: total, max }));
    }
    let mut row = new_row(s, prompt_text, s.completion.clone(), total, split, labels.is_none(), alignment);
    for &id in &prompt_ids {
        push_unlabelled(&mut row, id, 0);
    }
    row.prompt_tokens = prompt_ids.len() as u32;
    push_labelled(&mut row, &completion_ids, labels, &s.completion, settings);
    if let Some(id) = eos {
        push_unlabelled(&mut row, id, 1);
    }
    Ok(Ok(row))
}

/// An empty row of `s` (positions are pushed after), `total` positions long.
pub(crate) fn new_row(s: &KeptSample, prompt_text: String, completion_text: String, total: usize, split: &'static str, hard_label_only: bool, alignment: &'static str) -> Row {
    Row {
        row_id: s.id.clone(),
        prompt_id: s.prompt_id.clone(),
        prompt_text,
        completion_text,
        input_ids: Vec::with_capacity(total),
        loss_mask: Vec::with_capacity(total),
        prompt_tokens: 0,
        topk_offsets: {
            let mut o = Vec::with_capacity(total + 1);
            o.push(0);
            o
        },
        topk_ids: Vec::new(),
        topk_logprobs: Vec::new(),
        token_logprob: Vec::with_capacity(total),
        tail_mass: Vec::with_capacity(total),
        chunk_starts: Vec::new(),
        chunk_lengths: Vec::new(),
        hard_label_only,
        alignment,
        soft_label_bytes: 0,
        teacher_mass_captured: 0.0,
        split,
        teacher_model: s.model.clone(),
        temperature: s.temperature,
        scores: s.scores.clone(),
        pass_vector: s.pass_vector.clone(),
        fim: FIM_NONE,
    }
}

/// A position without soft labels: context (`mask` 0) or trained on the hard label (`mask` 1).
pub(crate) fn push_unlabelled(row: &mut Row, id: u32, mask: u8) {
    row.input_ids.push(id);
    row.loss_mask.push(mask);
    row.token_logprob.push(0.0);
    row.tail_mass.push(0.0);
    row.topk_offsets.push(row.topk_ids.len() as u32);
}

/// The teacher's tokens, the student id of each of their strings, and each student position's
/// [`Label`] (`None`: position `j` takes teacher position `j`).
pub(crate) type Labels<'t> = (&'t FlatTokens, Vec<Option<u32>>, Option<Vec<Label>>);

/// Pushes the completion positions `ids` (all with loss), with their soft labels where `labels`
/// gives them; `completion` is the text that [`Label::Chunk`] byte ranges index.
pub(crate) fn push_labelled(row: &mut Row, ids: &[u32], labels: Option<Labels>, completion: &str, settings: &Settings) {
    let Some((teacher, string_ids, labels)) = labels else {
        ids.iter().for_each(|&id| push_unlabelled(row, id, 1));
        return;
    };
    let mut pairs: Vec<(u32, f32)> = Vec::with_capacity(32);
    let (mut mass_sum, mut labelled) = (0f64, 0usize);
    for (j, &id) in ids.iter().enumerate() {
        let label = labels.as_ref().map_or(Label::Token(j as u32), |v| v[j].clone());
        let (token_logprob, bytes) = match label {
            Label::Hard => {
                push_unlabelled(row, id, 1);
                continue;
            }
            Label::Token(p) => {
                let p = p as usize;
                let token_logprob = teacher.sampled_entry(p).1.min(0.0);
                soft_labels(teacher.top_entries(p), &string_ids, id, token_logprob, settings.max_topk, &mut pairs);
                (token_logprob, teacher.sampled(p).0.len())
            }
            Label::Chunk { teacher: t, bytes, student_len } => {
                let chunk = &completion.as_bytes()[bytes.start as usize..bytes.end as usize];
                let logprob: f32 = t.clone().map(|p| teacher.sampled_entry(p as usize).1.min(0.0)).sum();
                chunk_events(teacher, t.start as usize, &string_ids, chunk, id, logprob, settings.max_topk, &mut pairs);
                if student_len > 1 {
                    row.chunk_starts.push(row.input_ids.len() as u32);
                    row.chunk_lengths.push(student_len);
                }
                (logprob, chunk.len())
            }
        };
        let mass: f32 = pairs.iter().map(|(_, lp)| lp.exp()).sum();
        mass_sum += mass.min(1.0) as f64;
        labelled += 1;
        row.soft_label_bytes += bytes;
        row.input_ids.push(id);
        row.loss_mask.push(1);
        row.token_logprob.push(token_logprob);
        row.tail_mass.push((1.0 - mass).max(0.0));
        row.topk_ids.extend(pairs.iter().map(|&(i, _)| i));
        row.topk_logprobs.extend(pairs.iter().map(|&(_, lp)| lp));
        row.topk_offsets.push(row.topk_ids.len() as u32);
    }
    row.teacher_mass_captured = if labelled > 0 { (mass_sum / labelled as f64) as f32 } else { 0.0 };
}

/// What a completion position is trained on (module docs, step 3).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Label {
    /// The teacher's distribution at this teacher position.
    Token(u32),
    /// The first position of an m:n chunk: events from teacher positions `teacher` over
    /// completion bytes `bytes`, the chunk spanning `student_len` student tokens.
    Chunk { teacher: Range<u32>, bytes: Range<u32>, student_len: u32 },
    /// The hard label alone (a later position of a chunk, or one without usable labels).
    Hard,
}

/// A completion whose teacher tokens can label it: the completion's student ids, the teacher's
/// tokens, the student id of each of their strings, each student position's [`Label`] (no
/// list: position `j` takes teacher position `j`, as with `exact` and `exact_teacher_tokens`),
/// and how they were aligned.
pub(crate) struct Aligned<'t> {
    pub ids: Vec<u32>,
    pub teacher: &'t FlatTokens,
    pub string_ids: Vec<Option<u32>>,
    pub labels: Option<Vec<Label>>,
    pub how: &'static str,
}

/// The teacher's tokens if they can label anything: present, with finite log-probs.
pub(crate) fn checked_teacher(teacher: Option<&FlatTokens>) -> Result<&FlatTokens, &'static str> {
    let teacher = teacher.filter(|t| !t.is_empty()).ok_or("no_teacher_logprobs")?;
    if !(0..teacher.len()).all(|p| teacher.sampled_entry(p).1.is_finite()) {
        return Err("bad_teacher_logprob");
    }
    Ok(teacher)
}

/// The student id of each distinct string of the teacher's sample (one vocabulary lookup per
/// string, not per entry).
pub(crate) fn string_ids(teacher: &FlatTokens, tok: &StudentTokenizer) -> Vec<Option<u32>> {
    (0..teacher.string_count() as u32).map(|s| tok.id(teacher.string(s))).collect()
}

/// The module docs' steps 1-3; `Err` names why no label can be used.
fn align<'t>(completion: &str, canonical: &[u32], teacher: Option<&'t FlatTokens>, tok: &StudentTokenizer, max_chunk_tokens: usize) -> Result<Aligned<'t>, &'static str> {
    let teacher = checked_teacher(teacher)?;
    let n = teacher.len();
    let mut rest = completion.as_bytes();
    let spells_completion = (0..n).all(|p| match rest.strip_prefix(teacher.sampled(p).0) {
        Some(r) => {
            rest = r;
            true
        }
        None => false,
    }) && rest.is_empty();
    let string_ids = string_ids(teacher, tok);
    if spells_completion {
        if n == canonical.len() && canonical.iter().enumerate().all(|(p, &id)| tok.bytes(id) == teacher.sampled(p).0) {
            return Ok(Aligned { ids: canonical.to_vec(), teacher, string_ids, labels: None, how: "exact" });
        }
        if let Some(ids) = (0..n).map(|p| string_ids[teacher.sampled_entry(p).0 as usize]).collect::<Option<Vec<u32>>>() {
            return Ok(Aligned { ids, teacher, string_ids, labels: None, how: "exact_teacher_tokens" });
        }
    }
    let overlay = chunks::overlay((0..n).map(|p| teacher.sampled(p).0), completion.as_bytes()).ok_or("teacher_bytes_mismatch")?;
    let student_lens: Vec<usize> = canonical.iter().map(|&id| tok.bytes(id).len()).collect();
    let labels = chunk_labels(&overlay, &student_lens, 0, max_chunk_tokens);
    if labels.iter().all(|l| *l == Label::Hard) {
        return Err(if spells_completion { "boundaries_differ" } else { "teacher_bytes_mismatch" });
    }
    Ok(Aligned { ids: canonical.to_vec(), teacher, string_ids, labels: Some(labels), how: "chunks" })
}

/// Step 3: the label of each student token (byte lengths `student_lens`, the first starting at
/// completion byte `base`) walked against the teacher tokens of `overlay`, which spell the same
/// bytes.
pub(crate) fn chunk_labels(overlay: &chunks::Overlay, student_lens: &[usize], base: usize, max_chunk_tokens: usize) -> Vec<Label> {
    let mut labels = vec![Label::Hard; student_lens.len()];
    let mut at = base;
    for c in chunks::walk(&overlay.lens, student_lens) {
        let bytes = at..at + student_lens[c.student.clone()].iter().sum::<usize>();
        at = bytes.end;
        let usable = c.meets && !c.teacher.is_empty() && !c.student.is_empty() && overlay.spells[c.teacher.clone()].iter().all(|&s| s);
        if !usable || c.teacher.len().max(c.student.len()) > max_chunk_tokens {
            continue;
        }
        let t = overlay.teacher_of[c.teacher.start].start as u32..overlay.teacher_of[c.teacher.end - 1].end as u32;
        labels[c.student.start] =
            if c.is_one_to_one() { Label::Token(t.start) } else { Label::Chunk { teacher: t, bytes: bytes.start as u32..bytes.end as u32, student_len: c.student.len() as u32 } };
    }
    labels
}

/// Step 3's chunk events into `pairs`: entry 0 is the chunk (student id `first`, the student's
/// first token of it; teacher log-prob `logprob`), then the teacher's alternatives at position
/// `p` that are exactly one student token and neither a prefix of `chunk` nor prefixed by it,
/// most probable first; at most `max_topk` in all.
#[allow(clippy::too_many_arguments)]
fn chunk_events(teacher: &FlatTokens, p: usize, string_ids: &[Option<u32>], chunk: &[u8], first: u32, logprob: f32, max_topk: Option<usize>, pairs: &mut Vec<(u32, f32)>) {
    pairs.clear();
    pairs.push((first, logprob));
    SEEN.with_borrow_mut(|seen| {
        seen.clear();
        seen.insert(first);
        for &(string, lp) in teacher.top_entries(p) {
            let alt = teacher.string(string);
            if !lp.is_finite() || alt.is_empty() || chunk.starts_with(alt) || alt.starts_with(chunk) {
                continue;
            }
            if let Some(id) = string_ids[string as usize] {
                if seen.insert(id) {
                    pairs.push((id, lp.min(0.0)));
                }
            }
        }
    });
    pairs[1..].sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = max_topk {
        pairs.truncate(k.max(1));
    }
}

/// Step 4 at one position into `pairs`: every alternative that is exactly one student token as
/// `(student id, log-prob)`, the sampled token `sampled` always among them, most probable
/// first, at most `max_topk`.
fn soft_labels(top: &[(u32, f32)], string_ids: &[Option<u32>], sampled: u32, token_logprob: f32, max_topk: Option<usize>, pairs: &mut Vec<(u32, f32)>) {
    pairs.clear();
    SEEN.with_borrow_mut(|seen| {
        seen.clear();
        for &(string, lp) in top {
            // -inf carries no mass and NaN no information: both belong to the tail.
            if !lp.is_finite() {
                continue;
            }
            if let Some(id) = string_ids[string as usize] {
                if seen.insert(id) {
                    pairs.push((id, lp.min(0.0)));
                }
            }
        }
        if seen.insert(sampled) {
            pairs.push((sampled, token_logprob));
        }
    });
    // Most probable first; ties keep the teacher's order (stable sort).
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = max_topk {
        pairs.truncate(k);
    }
}

thread_local! {
    /// The student ids one position's soft labels or chunk events already hold (the shards
    /// stage builds rows on rayon's threads).
    static SEEN: std::cell::RefCell<IdSet> = std::cell::RefCell::new(IdSet::default());
}

/// A set of student ids emptied in O(1): `stamp[id] == now` marks a member, and `clear` moves
/// `now` on. Checking a position's ~20 alternatives against each other by scanning the pairs
/// was ~k^2 / 2 comparisons a position.
#[derive(Default)]
struct IdSet {
    stamp: Vec<u32>,
    now: u32,
}

impl IdSet {
    fn clear(&mut self) {
        self.now = self.now.wrapping_add(1);
        if self.now == 0 {
            self.stamp.fill(0);
            self.now = 1;
        }
    }

    /// Whether `id` was not yet in the set (and now is).
    fn insert(&mut self, id: u32) -> bool {
        let i = id as usize;
        if i >= self.stamp.len() {
            self.stamp.resize(i + 1, 0);
        }
        let new = self.stamp[i] != self.now;
        self.stamp[i] = self.now;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two teacher strings that are the same student token, and the sampled token listed
    /// again: each student id once, at its first (most probable) entry; the set of ids seen
    /// empties between positions.
    #[test]
    fn soft_labels_hold_each_student_id_once() {
        // Teacher strings 0..5 as student ids: 7, 7, 9, none, 3.
        let string_ids = [Some(7), Some(7), Some(9), None, Some(3)];
        let top = [(0, -0.5f32), (1, -1.0), (2, -2.0), (3, -2.5), (4, -3.0)];
        let mut pairs = Vec::new();
        for _ in 0..2 {
            soft_labels(&top, &string_ids, 9, -2.0, None, &mut pairs);
            assert_eq!(pairs, vec![(7, -0.5), (9, -2.0), (3, -3.0)]);
        }
        soft_labels(&top[2..], &string_ids, 7, -0.7, Some(2), &mut pairs);
        assert_eq!(pairs, vec![(7, -0.7), (9, -2.0)]);
    }
}
