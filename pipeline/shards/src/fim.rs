//! Fill-in-the-middle rows (Bavarian et al. 2022, "Efficient Training of Language Models to
//! Fill in the Middle"): a share of the training rows is cut into prefix, middle and suffix
//! and rearranged so that the student learns to write the middle given both sides.
//!
//! For a sample with prompt `P` and completion `C`, two cut points `a <= b` are drawn in `C`
//! (at any character, or at line starts: `[shards] fim_split`); prefix = `P + C[..a]`,
//! middle = `C[a..b]`, suffix = `C[b..]`. Each piece is tokenized on its own (as at inference,
//! where the editor hands over the two sides as text), and the row is, with `<pre>`, `<suf>`,
//! `<mid>` the tokenizer's FIM special tokens and `<eot>` its end-of-text:
//!
//! - PSM: `<pre> prefix <suf> suffix <mid> middle <eot>`
//! - SPM: `<pre> <suf> suffix <mid> prefix middle <eot>` (the variant of the FIM paper's
//!   appendix that StarCoder and Code Llama train on: prefix and middle stay adjacent).
//!
//! Loss: the middle and the `<eot>` after it carry the loss; every other position (the special
//! tokens, prefix and suffix) is context, loss mask 0. Why masked rather than hard-labelled:
//! the teacher's distribution describes a token given the text *before* it in the original
//! completion. In these rows the suffix follows the prefix with the middle missing (PSM) or
//! comes first (SPM), so no teacher label describes it, and a hard label would train the
//! student to continue text that was cut apart; the prompt part of the prefix is masked in
//! every row anyway. The FIM paper trains on all tokens because it pre-trains on raw
//! documents; here a row is a teacher answer, and the share of rows left to right
//! (`1 - fim_rate`) keeps the left-to-right signal.
//!
//! Soft labels on the middle: a middle position keeps the teacher's top-k of the teacher
//! position that spells the same bytes after the same text, so its left context is the same as
//! the teacher's (the suffix is extra information the teacher did not condition on; its
//! distribution is the best left-to-right estimate, and the hard label, the teacher's own
//! token, is consistent with the suffix). Where a cut falls inside a teacher token, that
//! token's distribution is over tokens starting before the cut, so the piece of it inside the
//! middle is re-tokenized and trained on the hard label ([`crate::chunks::Overlay::crop`]).
//! Whole teacher tokens inside the middle are kept as the student's ids when each is one
//! student token (as `exact_teacher_tokens` does for whole completions); otherwise the middle's
//! canonical tokens are walked against the teacher's by byte offset (chunks, `align.rs`).
//!
//! The `<eot>` after the middle is always appended (the middle always ends where the suffix
//! begins): it is how the student learns to stop infilling.
//!
//! Determinism: whether a row is FIM, its order and its cut points are drawn from
//! `sha256(fim_seed, row id)`, so they depend on neither the batch nor the other rows, and
//! reruns are byte-identical. Validation rows are never turned into FIM rows, so held-out
//! losses stay comparable across `fim_rate` settings.

use std::ops::Range;

use distill_core::logprobs::FlatTokens;
use distill_core::records::KeptSample;
use sha2::{Digest, Sha256};

use crate::align::{checked_teacher, chunk_labels, new_row, push_labelled, push_unlabelled, string_ids, Label, Labels, Row, Skip};
use crate::chunks::{self, Overlay};
use crate::config::{FimSettings, FimSplit, Settings};
use crate::error::{Error, Result};
use crate::vocab::StudentTokenizer;

/// The `fim` column of a prefix-suffix-middle row.
pub const PSM: &str = "psm";
/// The `fim` column of a suffix-prefix-middle row.
pub const SPM: &str = "spm";

/// What the FIM draw decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// [`PSM`] or [`SPM`].
    pub mode: &'static str,
    /// The middle's bytes in the completion (on character boundaries).
    pub middle: Range<usize>,
}

/// Four uniform draws in `[0, 2^64)` from `sha256("fim", seed, row id)`.
fn draws(seed: u64, row_id: &str) -> [u64; 4] {
    let mut h = Sha256::new();
    h.update(b"fim");
    h.update(seed.to_le_bytes());
    h.update(row_id.as_bytes());
    let d = h.finalize();
    std::array::from_fn(|i| u64::from_be_bytes(d[i * 8..i * 8 + 8].try_into().expect("32-byte digest")))
}

fn unit(x: u64) -> f64 {
    x as f64 / 2f64.powi(64)
}

/// Where a middle may begin or end in `text`: every character boundary, or every line start
/// (and the end of the text), ascending.
pub fn cut_points(text: &str, split: FimSplit) -> Vec<usize> {
    let mut points: Vec<usize> = match split {
        FimSplit::Chars => text.char_indices().map(|(i, _)| i).collect(),
        FimSplit::Lines => std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1).filter(|&i| i < text.len())).collect(),
    };
    points.push(text.len());
    points.dedup();
    points
}

/// The FIM draw of row `row_id` (completion `completion`): `None` leaves the row left to
/// right. The two cut points are drawn uniformly from [`cut_points`] and sorted, as in the FIM
/// paper (the middle may be empty: then the row teaches that nothing is missing).
pub fn plan(row_id: &str, completion: &str, f: &FimSettings) -> Option<Plan> {
    let [take, order, x, y] = draws(f.seed, row_id);
    if unit(take) >= f.rate {
        return None;
    }
    let points = cut_points(completion, f.split);
    let n = points.len() as u64;
    let (i, j) = ((x % n) as usize, (y % n) as usize);
    let middle = points[i.min(j)]..points[i.max(j)];
    Some(Plan { mode: if unit(order) < f.spm_rate { SPM } else { PSM }, middle })
}

/// The FIM row of `s` under `plan` (module docs).
pub(crate) fn build_fim_row(
    s: &KeptSample,
    tokens: Option<&FlatTokens>,
    tok: &StudentTokenizer,
    settings: &Settings,
    split: &'static str,
    prompt_text: String,
    plan: &Plan,
) -> Result<std::result::Result<Row, Skip>> {
    let f = settings.fim.as_ref().expect("a plan comes from FIM settings");
    let special = |t: &str, key: &str| {
        tok.token_to_id(t).ok_or_else(|| Error::Tokenizer {
            path: tok.path.clone(),
            message: format!("has no token '{t}' ([shards] {key}): set {key} to the student tokenizer's spelling, or fim_rate = 0"),
        })
    };
    let [pre, suf, mid] = [special(&f.tokens[0], "fim_tokens")?, special(&f.tokens[1], "fim_tokens")?, special(&f.tokens[2], "fim_tokens")?];
    let eos = special(settings.eos_token.as_deref().expect("FIM settings require append_eos"), "eos_token")?;
    let c = &s.completion;
    let prefix_ids = tok.encode(&format!("{prompt_text}{}", &c[..plan.middle.start]))?;
    let suffix_ids = tok.encode(&c[plan.middle.end..])?;
    let (middle_ids, labels, how) = align_middle(c, plan.middle.clone(), tokens, tok, settings.max_chunk_tokens)?;
    let total = prefix_ids.len() + suffix_ids.len() + middle_ids.len() + 4;
    if let Some(max) = settings.max_seq_len.filter(|&m| total > m) {
        return Ok(Err(Skip::TooLong { tokens: total, max }));
    }
    let mut row = new_row(s, prompt_text, c[plan.middle.clone()].to_string(), total, split, labels.is_none(), how);
    row.fim = plan.mode;
    let context = |row: &mut Row, ids: &[u32]| ids.iter().for_each(|&id| push_unlabelled(row, id, 0));
    if plan.mode == PSM {
        context(&mut row, &[pre]);
        context(&mut row, &prefix_ids);
        context(&mut row, &[suf]);
        context(&mut row, &suffix_ids);
        context(&mut row, &[mid]);
    } else {
        context(&mut row, &[pre, suf]);
        context(&mut row, &suffix_ids);
        context(&mut row, &[mid]);
        context(&mut row, &prefix_ids);
    }
    row.prompt_tokens = row.input_ids.len() as u32;
    push_labelled(&mut row, &middle_ids, labels, c, settings);
    push_unlabelled(&mut row, eos, 1);
    Ok(Ok(row))
}

/// The middle's student ids, their labels where the teacher's tokens give them, and how they
/// were aligned (the manifest's alignment names; `empty_middle` for an empty middle).
fn align_middle<'t>(
    completion: &str,
    span: Range<usize>,
    tokens: Option<&'t FlatTokens>,
    tok: &StudentTokenizer,
    max_chunk_tokens: usize,
) -> Result<(Vec<u32>, Option<Labels<'t>>, &'static str)> {
    let canonical = tok.encode(&completion[span.clone()])?;
    if span.is_empty() {
        return Ok((canonical, None, "empty_middle"));
    }
    let teacher = match checked_teacher(tokens) {
        Ok(t) => t,
        Err(reason) => return Ok((canonical, None, reason)),
    };
    let Some(overlay) = chunks::overlay((0..teacher.len()).map(|p| teacher.sampled(p).0), completion.as_bytes()) else {
        return Ok((canonical, None, "teacher_bytes_mismatch"));
    };
    let cropped = overlay.crop(span.clone());
    let ids_of = string_ids(teacher, tok);
    if let Some((ids, labels)) = teacher_segmentation(&cropped, teacher, &ids_of, completion, span.start, tok)? {
        let how = if ids == canonical && labels.iter().all(|l| matches!(l, Label::Token(_))) { "exact" } else { "exact_teacher_tokens" };
        return Ok((ids, Some((teacher, ids_of, Some(labels))), how));
    }
    let student_lens: Vec<usize> = canonical.iter().map(|&id| tok.bytes(id).len()).collect();
    let labels = chunk_labels(&cropped, &student_lens, span.start, max_chunk_tokens);
    if labels.iter().all(|l| *l == Label::Hard) {
        return Ok((canonical, None, "boundaries_differ"));
    }
    Ok((canonical, Some((teacher, ids_of, Some(labels))), "chunks"))
}

/// The middle spelled by the teacher's own tokens where they lie wholly inside it (each must
/// be one student token: else `None`), with the pieces of cut tokens (or of a span the teacher
/// did not spell) tokenized by the student and hard-labelled. `None` also when such a piece is
/// not valid UTF-8 on its own (a cut inside a character's bytes).
fn teacher_segmentation(
    cropped: &Overlay,
    teacher: &FlatTokens,
    ids_of: &[Option<u32>],
    completion: &str,
    start: usize,
    tok: &StudentTokenizer,
) -> Result<Option<(Vec<u32>, Vec<Label>)>> {
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    let mut at = start;
    for ((&len, t), &spells) in cropped.lens.iter().zip(&cropped.teacher_of).zip(&cropped.spells) {
        let bytes = at..at + len;
        at = bytes.end;
        if spells && t.len() == 1 {
            let Some(id) = ids_of[teacher.sampled_entry(t.start).0 as usize] else { return Ok(None) };
            ids.push(id);
            labels.push(Label::Token(t.start as u32));
        } else {
            let Ok(piece) = std::str::from_utf8(&completion.as_bytes()[bytes]) else { return Ok(None) };
            let piece_ids = tok.encode(piece)?;
            labels.extend(std::iter::repeat_n(Label::Hard, piece_ids.len()));
            ids.extend(piece_ids);
        }
    }
    Ok(Some((ids, labels)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: f64, split: FimSplit) -> FimSettings {
        FimSettings { rate, spm_rate: 0.5, split, seed: 3, tokens: ["<|fim_prefix|>".into(), "<|fim_suffix|>".into(), "<|fim_middle|>".into()] }
    }

    #[test]
    fn cut_points_are_character_boundaries_or_line_starts() {
        assert_eq!(cut_points("aé\nb", FimSplit::Chars), vec![0, 1, 3, 4, 5]);
        assert_eq!(cut_points("x = 1\ny = 2\n", FimSplit::Lines), vec![0, 6, 12]);
        assert_eq!(cut_points("x = 1\ny", FimSplit::Lines), vec![0, 6, 7]);
        assert_eq!(cut_points("", FimSplit::Lines), vec![0]);
    }

    #[test]
    fn the_draw_follows_the_rates_and_is_a_function_of_the_row_id() {
        let text = "def f(x):\n    y = x + 1\n    return y\n";
        let f = settings(0.3, FimSplit::Lines);
        let plans: Vec<Option<Plan>> = (0..4000).map(|i| plan(&format!("p{i}#0"), text, &f)).collect();
        let fim = plans.iter().flatten().count();
        assert!((1050..1350).contains(&fim), "{fim} of 4000 at rate 0.3");
        let spm = plans.iter().flatten().filter(|p| p.mode == SPM).count();
        assert!((fim * 2 / 5..fim * 3 / 5).contains(&spm), "{spm} of {fim} at spm rate 0.5");
        let starts = cut_points(text, FimSplit::Lines);
        for p in plans.iter().flatten() {
            assert!(p.middle.start <= p.middle.end && starts.contains(&p.middle.start) && starts.contains(&p.middle.end), "{p:?}");
        }
        assert!(plans.iter().flatten().any(|p| p.middle.is_empty()) && plans.iter().flatten().any(|p| p.middle == (0..text.len())));
        assert_eq!(plan("p7#1", text, &f), plan("p7#1", text, &f));
        assert!(plan("p7#1", text, &settings(0.0, FimSplit::Chars)).is_none());
        assert!(plan("p7#1", text, &settings(1.0, FimSplit::Chars)).is_some());
        let other_seed = FimSettings { seed: 4, ..settings(1.0, FimSplit::Chars) };
        assert!((0..50).any(|i| plan(&format!("q{i}"), text, &other_seed) != plan(&format!("q{i}"), text, &settings(1.0, FimSplit::Chars))));
    }
}
