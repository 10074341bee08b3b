//! Training examples: read from the shards stage's Parquet files (a row group at a time, see
//! [`crate::source`]), or packed from raw token streams (language-model pretraining, the
//! teacher bootstrap).
//!
//! An [`Example`] is one sequence with per-position labels. Entry `i` of every per-position list
//! describes `input_ids[i]` given `input_ids[..i]` (the shards' convention); the batcher pairs it
//! with the logits at position `i - 1`.

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type, UInt8Type};
use arrow_array::{Array, BooleanArray, ListArray, RecordBatch, StringArray};
use distill_core::records::shard_columns as col;
use distill_shards::schema as shard_schema;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub input_ids: Vec<u32>,
    /// 1 where the token carries loss (completion tokens).
    pub loss_mask: Vec<u8>,
    /// Per position, the teacher's top-k (ids, log-probs); empty where there is no soft label.
    pub topk_ids: Vec<Vec<u32>>,
    pub topk_logprobs: Vec<Vec<f32>>,
    /// Soft labels unusable: train on the tokens only.
    pub hard_label_only: bool,
    /// Chunks of several student tokens whose events sit at their first position (a teacher of
    /// another tokenizer): `(first position, tokens)`, in order, not overlapping.
    pub chunks: Vec<(u32, u32)>,
}

impl Example {
    /// A hard-label example: every position after the first carries loss, no soft labels.
    pub fn plain(id: String, input_ids: Vec<u32>) -> Self {
        let n = input_ids.len();
        let mut loss_mask = vec![1u8; n];
        if n > 0 {
            loss_mask[0] = 0; // nothing predicts the first token
        }
        Example { id, input_ids, loss_mask, topk_ids: vec![vec![]; n], topk_logprobs: vec![vec![]; n], hard_label_only: true, chunks: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Keeps the first `n` positions.
    pub fn truncate(&mut self, n: usize) {
        self.input_ids.truncate(n);
        self.loss_mask.truncate(n);
        self.topk_ids.truncate(n);
        self.topk_logprobs.truncate(n);
        self.chunks.retain(|&(start, len)| (start + len) as usize <= n);
    }
}

/// Train and validation examples.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    /// Rows skipped as malformed, with the reason (reported in stats; one bad row never stops
    /// training).
    pub skipped: Vec<String>,
}

/// Every `*.parquet` file in `dir`, sorted by name.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::ShardsFolder { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "parquet")).collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::NoShards { path: dir.to_path_buf() });
    }
    Ok(files)
}

/// Which split a shard row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
}

/// The columns the trainer reads (the text, score and diagnostic columns it leaves alone).
const READ: [&str; 7] = [col::ROW_ID, col::SPLIT, col::HARD_LABEL_ONLY, col::INPUT_IDS, col::LOSS_MASK, col::TEACHER_TOPK_IDS, col::TEACHER_TOPK_LOGPROBS];

/// Columns of schema version 2 the trainer reads when a file has them (version 1 has no chunks).
const READ_CHUNKS: [&str; 2] = [col::CHUNK_STARTS, col::CHUNK_LENGTHS];

/// The columns the trainer reads, cast to the types [`distill_shards::schema`] gives them.
struct Columns<'a> {
    row_id: &'a StringArray,
    split: &'a StringArray,
    hard_label_only: &'a BooleanArray,
    input_ids: &'a ListArray,
    loss_mask: &'a ListArray,
    topk_ids: &'a ListArray,
    topk_logprobs: &'a ListArray,
    /// `(chunk_starts, chunk_lengths)` when the file has them.
    chunks: Option<(&'a ListArray, &'a ListArray)>,
}

impl<'a> Columns<'a> {
    /// Checks the batch's schema against the shards' ([`distill_shards::schema::check`]), then
    /// casts. `Err`: the batch is not a shard (a column missing, or of another type).
    fn of(batch: &'a RecordBatch) -> std::result::Result<Self, String> {
        shard_schema::check(batch.schema_ref(), &READ)?;
        let has_chunks = batch.schema_ref().column_with_name(col::CHUNK_STARTS).is_some();
        if has_chunks {
            shard_schema::check(batch.schema_ref(), &READ_CHUNKS)?;
        }
        let column = |name: &str| batch.column_by_name(name).map(|c| c.as_ref()).ok_or_else(|| mismatch(name));
        let list = |name: &str| column(name)?.as_list_opt::<i32>().ok_or_else(|| mismatch(name));
        Ok(Columns {
            row_id: column(col::ROW_ID)?.as_string_opt::<i32>().ok_or_else(|| mismatch(col::ROW_ID))?,
            split: column(col::SPLIT)?.as_string_opt::<i32>().ok_or_else(|| mismatch(col::SPLIT))?,
            hard_label_only: column(col::HARD_LABEL_ONLY)?.as_boolean_opt().ok_or_else(|| mismatch(col::HARD_LABEL_ONLY))?,
            input_ids: list(col::INPUT_IDS)?,
            loss_mask: list(col::LOSS_MASK)?,
            topk_ids: list(col::TEACHER_TOPK_IDS)?,
            topk_logprobs: list(col::TEACHER_TOPK_LOGPROBS)?,
            chunks: if has_chunks { Some((list(col::CHUNK_STARTS)?, list(col::CHUNK_LENGTHS)?)) } else { None },
        })
    }

    /// Row `r`'s chunks as `(first position, tokens)`.
    fn chunks(&self, r: usize) -> std::result::Result<Vec<(u32, u32)>, String> {
        let Some((starts, lengths)) = self.chunks else { return Ok(Vec::new()) };
        let values = |l: &ListArray, name: &str| l.value(r).as_primitive_opt::<UInt32Type>().map(|a| a.values().to_vec()).ok_or_else(|| mismatch(name));
        let (starts, lengths) = (values(starts, col::CHUNK_STARTS)?, values(lengths, col::CHUNK_LENGTHS)?);
        if starts.len() != lengths.len() {
            return Err(format!("{} chunk starts but {} chunk lengths", starts.len(), lengths.len()));
        }
        Ok(starts.into_iter().zip(lengths).collect())
    }
}

/// A cast that the schema check should have made safe failed (the casts here and the types in
/// [`distill_shards::schema`] disagree): an error, not a panic, like any other bad shard.
fn mismatch(name: &str) -> String {
    format!("column '{name}' does not have the type the shards stage writes (re-run the shards stage)")
}

/// A shard row read back: the example and its split, or why it is left out.
pub type RowRead = std::result::Result<(Example, Split), String>;

/// The rows of a record batch: each an example and its split, or why it is left out (a
/// malformed row never stops training). `Err`: the batch itself is not a shard.
pub fn read_batch(batch: &RecordBatch) -> std::result::Result<Vec<RowRead>, String> {
    let c = Columns::of(batch)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let id = c.row_id.value(r).to_string();
        let tokens: Vec<u32> = c.input_ids.value(r).as_primitive_opt::<UInt32Type>().ok_or_else(|| mismatch(col::INPUT_IDS))?.values().to_vec();
        let mask: Vec<u8> = c.loss_mask.value(r).as_primitive_opt::<UInt8Type>().ok_or_else(|| mismatch(col::LOSS_MASK))?.values().to_vec();
        let tk = c.topk_ids.value(r);
        let tk = tk.as_list_opt::<i32>().ok_or_else(|| mismatch(col::TEACHER_TOPK_IDS))?;
        let tl = c.topk_logprobs.value(r);
        let tl = tl.as_list_opt::<i32>().ok_or_else(|| mismatch(col::TEACHER_TOPK_LOGPROBS))?;
        let mut k_ids = Vec::with_capacity(tk.len());
        let mut k_lps = Vec::with_capacity(tl.len());
        for p in 0..tk.len() {
            k_ids.push(tk.value(p).as_primitive_opt::<UInt32Type>().ok_or_else(|| mismatch(col::TEACHER_TOPK_IDS))?.values().to_vec());
        }
        for p in 0..tl.len() {
            k_lps.push(tl.value(p).as_primitive_opt::<Float32Type>().ok_or_else(|| mismatch(col::TEACHER_TOPK_LOGPROBS))?.values().to_vec());
        }
        // A row whose chunk lists do not pair up is left out like any other malformed row.
        let (chunks, unpaired) = match c.chunks(r) {
            Ok(chunks) => (chunks, None),
            Err(why) => (Vec::new(), Some(why)),
        };
        let ex = Example { id: id.clone(), input_ids: tokens, loss_mask: mask, topk_ids: k_ids, topk_logprobs: k_lps, hard_label_only: c.hard_label_only.value(r), chunks };
        let checked = match unpaired {
            Some(why) => Err(why),
            None => check(&ex),
        };
        out.push(match (checked, c.split.value(r)) {
            (Err(why), _) => Err(format!("{id}: {why}")),
            (Ok(()), "train") => Ok((ex, Split::Train)),
            (Ok(()), "validation") => Ok((ex, Split::Validation)),
            (Ok(()), other) => Err(format!("{id}: unknown split '{other}'")),
        });
    }
    Ok(out)
}

/// What the check before training keeps of a row: its length, split, and the first position
/// the loss trains on (`input_ids[p]` given `input_ids[..p]`, `p >= 1`; `len` when none).
pub struct Checked {
    pub len: usize,
    pub split: Split,
    pub first_trained: usize,
}

/// The rows of a record batch checked as [`read_batch`] and the vocabulary would check them,
/// on the Arrow arrays themselves (offsets and values; no example is built): each row's length
/// and split, or why it is left out.
pub fn check_batch(batch: &RecordBatch, vocab: usize) -> std::result::Result<Vec<std::result::Result<Checked, String>>, String> {
    let columns = Columns::of(batch)?;
    let Columns { row_id: ids, split, input_ids, loss_mask, topk_ids, topk_logprobs: topk_lps, .. } = columns;
    let tokens = input_ids.values().as_primitive_opt::<UInt32Type>().ok_or_else(|| mismatch(col::INPUT_IDS))?.values();
    let inner_ids = topk_ids.values().as_list_opt::<i32>().ok_or_else(|| mismatch(col::TEACHER_TOPK_IDS))?;
    let inner_lps = topk_lps.values().as_list_opt::<i32>().ok_or_else(|| mismatch(col::TEACHER_TOPK_LOGPROBS))?;
    let listed = inner_ids.values().as_primitive_opt::<UInt32Type>().ok_or_else(|| mismatch(col::TEACHER_TOPK_IDS))?.values();
    let (id_offsets, lp_offsets) = (inner_ids.value_offsets(), inner_lps.value_offsets());
    let mask = loss_mask.values().as_primitive_opt::<UInt8Type>().ok_or_else(|| mismatch(col::LOSS_MASK))?.values();
    let span = |l: &ListArray, r: usize| (l.value_offsets()[r] as usize, l.value_offsets()[r + 1] as usize);
    let mut out = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let id = ids.value(r);
        let (a, b) = span(input_ids, r);
        let n = b - a;
        let lens = [span(loss_mask, r), span(topk_ids, r), span(topk_lps, r)].map(|(x, y)| y - x);
        let (pa, pb) = span(topk_ids, r);
        let (qa, _) = span(topk_lps, r);
        let why = if n < 2 {
            Some("fewer than 2 tokens".to_string())
        } else if lens.iter().any(|&l| l != n) {
            Some(format!("per-position lists differ in length (input_ids {n}, loss_mask {}, topk_ids {}, topk_logprobs {})", lens[0], lens[1], lens[2]))
        } else if let Some(p) = (0..n).find(|&p| id_offsets[pa + p + 1] - id_offsets[pa + p] != lp_offsets[qa + p + 1] - lp_offsets[qa + p]) {
            let k = |o: &[i32]| o[p + 1] - o[p];
            Some(format!("position {p}: {} top-k ids but {} log-probs", k(&id_offsets[pa..]), k(&lp_offsets[qa..])))
        } else {
            let listed_k = |p: usize| (id_offsets[pa + p + 1] - id_offsets[pa + p]) as usize;
            let listed = &listed[id_offsets[pa] as usize..id_offsets[pb] as usize];
            let out_of_vocab = tokens[a..b].iter().chain(listed).find(|&&t| t as usize >= vocab).map(|bad| format!("token id {bad} >= vocabulary size {vocab}"));
            out_of_vocab.or_else(|| columns.chunks(r).and_then(|c| check_chunks(&c, n, listed_k)).err())
        };
        let first_trained = || {
            let m = &mask[span(loss_mask, r).0..][..n];
            (1..n).find(|&p| m[p] != 0).unwrap_or(n)
        };
        out.push(match (why, split.value(r)) {
            (Some(why), _) => Err(format!("{id}: {why}")),
            (None, "train") => Ok(Checked { len: n, split: Split::Train, first_trained: first_trained() }),
            (None, "validation") => Ok(Checked { len: n, split: Split::Validation, first_trained: first_trained() }),
            (None, other) => Err(format!("{id}: unknown split '{other}'")),
        });
    }
    Ok(out)
}

/// A row's per-position lists must line up.
fn check(ex: &Example) -> std::result::Result<(), String> {
    let n = ex.input_ids.len();
    if n < 2 {
        return Err("fewer than 2 tokens".into());
    }
    if ex.loss_mask.len() != n || ex.topk_ids.len() != n || ex.topk_logprobs.len() != n {
        return Err(format!(
            "per-position lists differ in length (input_ids {n}, loss_mask {}, topk_ids {}, topk_logprobs {})",
            ex.loss_mask.len(),
            ex.topk_ids.len(),
            ex.topk_logprobs.len()
        ));
    }
    if let Some(p) = (0..n).find(|&p| ex.topk_ids[p].len() != ex.topk_logprobs[p].len()) {
        return Err(format!("position {p}: {} top-k ids but {} log-probs", ex.topk_ids[p].len(), ex.topk_logprobs[p].len()));
    }
    check_chunks(&ex.chunks, n, |p| ex.topk_ids[p].len())
}

/// Chunks must lie inside the row in order, span at least 2 positions after position 0, have
/// events at their first position and none at the others. `listed(p)`: labels at position `p`.
fn check_chunks(chunks: &[(u32, u32)], n: usize, listed: impl Fn(usize) -> usize) -> std::result::Result<(), String> {
    let mut free_from = 1usize;
    for &(start, len) in chunks {
        let (start, len) = (start as usize, len as usize);
        let why = if len < 2 {
            Some("spans fewer than 2 positions")
        } else if start < free_from || start + len > n {
            Some("overlaps another chunk, the first position or the row's end")
        } else if listed(start) == 0 {
            Some("has no events at its first position")
        } else if (start + 1..start + len).any(|p| listed(p) > 0) {
            Some("has labels inside it")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!("chunk at position {start} of {len} tokens {why}"));
        }
        free_from = start + len;
    }
    Ok(())
}

/// Checks every id against the vocabulary; rows with an id out of range are moved to `skipped`.
pub fn drop_out_of_vocab(ds: &mut Dataset, vocab: usize) {
    let bad = |e: &Example| e.input_ids.iter().chain(e.topk_ids.iter().flatten()).any(|&t| t as usize >= vocab);
    for list in [&mut ds.train, &mut ds.validation] {
        let (keep, drop): (Vec<Example>, Vec<Example>) = std::mem::take(list).into_iter().partition(|e| !bad(e));
        ds.skipped.extend(drop.into_iter().map(|e| format!("{}: token id >= vocabulary size {vocab}", e.id)));
        *list = keep;
    }
}

/// Packs documents into sequences of `seq_len` tokens for language-model training: documents
/// are concatenated with `separator` (end of text) between them and cut into consecutive
/// windows; the last partial window is kept if it has at least 2 tokens. Every position but
/// the first of each window carries loss. Every `val_every`-th window (0 = none) goes to
/// validation, so the split is deterministic.
pub fn pack_documents(docs: &[Vec<u32>], seq_len: usize, separator: Option<u32>, val_every: usize) -> Dataset {
    let mut stream: Vec<u32> = Vec::with_capacity(docs.iter().map(|d| d.len() + 1).sum());
    for d in docs.iter().filter(|d| !d.is_empty()) {
        stream.extend_from_slice(d);
        if let Some(s) = separator {
            stream.push(s);
        }
    }
    let mut ds = Dataset::default();
    for (i, w) in stream.chunks(seq_len.max(2)).enumerate() {
        if w.len() < 2 {
            continue;
        }
        let ex = Example::plain(format!("window-{i:08}"), w.to_vec());
        if val_every > 0 && i % val_every == val_every - 1 {
            ds.validation.push(ex);
        } else {
            ds.train.push(ex);
        }
    }
    ds
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{Int64Builder, ListBuilder};
    use arrow_array::{ArrayRef, BooleanArray, StringArray};

    use super::*;

    /// A batch whose `input_ids` are 64-bit (a file from another writer): not read as a shard,
    /// and the message names the column, both types and the fix.
    #[test]
    fn a_column_of_another_type_than_the_shards_write_is_refused_by_name() {
        let mut ids = ListBuilder::new(Int64Builder::new());
        ids.values().append_slice(&[1, 2, 3]);
        ids.append(true);
        let cols: Vec<(&str, ArrayRef)> = vec![
            (col::ROW_ID, Arc::new(StringArray::from(vec!["p#0"]))),
            (col::SPLIT, Arc::new(StringArray::from(vec!["train"]))),
            (col::HARD_LABEL_ONLY, Arc::new(BooleanArray::from(vec![false]))),
            (col::INPUT_IDS, Arc::new(ids.finish())),
        ];
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let want = "column 'input_ids' is list<Int64>, the shards stage writes list<uint32> (re-run the shards stage)";
        assert_eq!(read_batch(&batch).err().as_deref(), Some(want));
        assert_eq!(check_batch(&batch, 10).err().as_deref(), Some(want));
    }

    #[test]
    fn chunks_must_lie_inside_the_row_with_events_only_at_their_first_position() {
        let listed = |p: usize| usize::from(p == 2 || p == 6);
        assert_eq!(check_chunks(&[(2, 3), (6, 2)], 8, listed), Ok(()));
        let err = |chunks: &[(u32, u32)]| check_chunks(chunks, 8, listed).unwrap_err();
        assert_eq!(err(&[(2, 1)]), "chunk at position 2 of 1 tokens spans fewer than 2 positions");
        assert!(err(&[(2, 3), (3, 2)]).contains("overlaps"));
        assert!(err(&[(6, 3)]).contains("overlaps"), "past the row's end");
        assert!(err(&[(0, 2)]).contains("overlaps"), "position 0 has no logits before it");
        assert_eq!(err(&[(3, 2)]), "chunk at position 3 of 2 tokens has no events at its first position");
        assert_eq!(err(&[(2, 5)]), "chunk at position 2 of 5 tokens has labels inside it");
    }
}
