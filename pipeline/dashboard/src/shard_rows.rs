//! Shard rows, paged by row group: a page opens each Parquet file it touches, finds the row
//! groups that hold its rows from the footer, and decodes only those groups' rows of the
//! columns asked for (a row selection with the page index skips the other pages of a group).
//!
//! A listing gives the light columns of each row; one row in full adds its tokens as the
//! student's tokenizer spells them, each with the teacher's top-k (student ids and text) and
//! log-probs, for the sample browser, and the trained student's probabilities when asked
//! ([`crate::student`]).
//!
//! One full row at the scale of issue #15 (4,000 rows of ~1,000 positions, top-20) costs:
//! decoding its pages (~1 MB of top-k per column a page, the floor without rewriting the
//! shards), the footer and page index (parsed once per file and kept, [`ShardMeta`]), and
//! the JSON. The JSON is written straight from the Arrow arrays ([`Cell`]): building a
//! `serde_json::Value` per number and printing each f32 widened to f64 (`-0.10000000149011612`)
//! was a third of the request and half the bytes.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt8Array};
use arrow_schema::DataType;
use distill_core::error::IoContext;
use distill_core::records::shard_columns as col;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};

/// Columns of a listing (plus `tokens`, the length of `input_ids`, and every `score_*`).
const LIGHT: &[&str] =
    &[col::ROW_ID, col::PROMPT_ID, col::SPLIT, col::ALIGNMENT, col::PROMPT_TOKENS, col::HARD_LABEL_ONLY, col::SOFT_LABEL_BYTE_SHARE, col::TEACHER_MASS_CAPTURED, col::INPUT_IDS];

/// The shard files of a split (`train`, `validation`, or every file), sorted by name.
pub fn files(work_dir: &Path, split: Option<&str>) -> ApiResult<Vec<PathBuf>> {
    let dir = work_dir.join("shards");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Err(ApiError::not_found("shards/ does not exist yet: run the shards stage")) };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter(|p| split.is_none_or(|s| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{s}-")))))
        .collect();
    out.sort();
    Ok(out)
}

fn bad(path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("{}: cannot read shard: {e}; re-run the shards stage (--force)", path.display()))
}

/// The footer and page index of each shard file, parsed once (they are re-read when the file's
/// length or modification time changes: the shards stage rewrote it).
#[derive(Default, Clone)]
pub struct ShardMeta {
    inner: Arc<Mutex<HashMap<PathBuf, Parsed>>>,
}

/// A file's length and modification time, and its parsed footer.
type Parsed = (u64, Option<SystemTime>, ArrowReaderMetadata);

impl ShardMeta {
    fn get(&self, path: &Path, file: &File) -> ApiResult<ArrowReaderMetadata> {
        let m = file.metadata().at(path)?;
        let stamp = (m.len(), m.modified().ok());
        if let Some((len, modified, meta)) = self.inner.lock().expect("shard meta lock").get(path) {
            if (*len, *modified) == stamp {
                return Ok(meta.clone());
            }
        }
        // With the page index the row selection skips whole pages of the per-position columns
        // (a row group of them is tens of megabytes) instead of decoding and dropping them.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let meta = ArrowReaderMetadata::load(file, options).map_err(|e| bad(path, e))?;
        self.inner.lock().expect("shard meta lock").insert(path.to_path_buf(), (stamp.0, stamp.1, meta.clone()));
        Ok(meta)
    }
}

/// One cell of an Arrow array, serialised as JSON without building a `Value` (the types the
/// shard schema uses; f32 printed as f32).
pub struct Cell<'a>(pub &'a dyn Array, pub usize);

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (a, row) = (self.0, self.1);
        if a.is_null(row) {
            return s.serialize_none();
        }
        let any = a.as_any();
        match a.data_type() {
            DataType::Utf8 => any.downcast_ref::<StringArray>().map(|x| x.value(row)).serialize(s),
            DataType::Boolean => any.downcast_ref::<BooleanArray>().map(|x| x.value(row)).serialize(s),
            DataType::UInt8 => any.downcast_ref::<UInt8Array>().map(|x| x.value(row)).serialize(s),
            DataType::UInt32 => any.downcast_ref::<UInt32Array>().map(|x| x.value(row)).serialize(s),
            DataType::Float32 => any.downcast_ref::<Float32Array>().map(|x| x.value(row)).serialize(s),
            DataType::Float64 => any.downcast_ref::<Float64Array>().map(|x| x.value(row)).serialize(s),
            DataType::List(_) => match any.downcast_ref::<ListArray>() {
                Some(l) => {
                    let values = l.value(row);
                    let mut seq = s.serialize_seq(Some(values.len()))?;
                    for i in 0..values.len() {
                        seq.serialize_element(&Cell(values.as_ref(), i))?;
                    }
                    seq.end()
                }
                None => s.serialize_none(),
            },
            other => s.serialize_str(&format!("({other} not shown)")),
        }
    }
}

/// A JSON value of one cell.
fn cell(a: &dyn Array, row: usize) -> Value {
    serde_json::to_value(Cell(a, row)).unwrap_or(Value::Null)
}

/// The rows of one file that a request reads: its row groups and the selection within them.
struct Span {
    path: PathBuf,
    name: String,
    meta: ArrowReaderMetadata,
    groups: Vec<usize>,
    skip: usize,
    take: usize,
}

/// Where rows `[offset, offset + limit)` of the files (in order) are, and the files' total
/// number of rows (from the footers). Blocking.
fn plan(meta: &ShardMeta, paths: &[PathBuf], offset: usize, limit: usize) -> ApiResult<(usize, Vec<Span>)> {
    let mut total = 0usize;
    let mut spans = Vec::new();
    let end = offset + limit;
    for path in paths {
        let file = File::open(path).at(path)?;
        let m = meta.get(path, &file)?;
        let groups: Vec<usize> = m.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
        let file_rows: usize = groups.iter().sum();
        let (first, last) = (total, total + file_rows);
        total = last;
        if last <= offset || first >= end {
            continue;
        }
        // The row groups that hold [offset, end) of this file, and the rows within them.
        let (lo, hi) = (offset.saturating_sub(first), end.min(last) - first);
        let mut chosen = Vec::new();
        let mut group_start = 0usize;
        let mut skip = 0usize;
        for (g, &n) in groups.iter().enumerate() {
            if group_start + n > lo && group_start < hi {
                if chosen.is_empty() {
                    skip = lo - group_start;
                }
                chosen.push(g);
            }
            group_start += n;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        spans.push(Span { path: path.clone(), name, meta: m, groups: chosen, skip, take: hi - lo });
    }
    Ok((total, spans))
}

/// The columns `columns` selects of a span's rows. Blocking.
fn decode(span: &Span, columns: &dyn Fn(&str) -> bool) -> ApiResult<Vec<RecordBatch>> {
    let path = &span.path;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(File::open(path).at(path)?, span.meta.clone());
    let indices: Vec<usize> = builder.schema().fields().iter().enumerate().filter(|(_, f)| columns(f.name())).map(|(i, _)| i).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let selection = RowSelection::from(vec![RowSelector::skip(span.skip), RowSelector::select(span.take)]);
    let reader = builder.with_row_groups(span.groups.clone()).with_projection(mask).with_row_selection(selection).build().map_err(|e| bad(path, e))?;
    reader.map(|b| b.map_err(|e| bad(path, e))).collect()
}

/// Rows `[offset, offset + limit)` of the files in order, with the columns `columns` selects.
/// Blocking.
fn read_rows(meta: &ShardMeta, paths: &[PathBuf], offset: usize, limit: usize, columns: &dyn Fn(&str) -> bool) -> ApiResult<(usize, Vec<(String, RecordBatch)>)> {
    let (total, spans) = plan(meta, paths, offset, limit)?;
    let mut batches = Vec::new();
    for span in &spans {
        batches.extend(decode(span, columns)?.into_iter().map(|b| (span.name.clone(), b)));
    }
    Ok((total, batches))
}

/// The per-position columns of a full row, each decoded on its own thread (their pages are
/// ~1 MB each: decoding them one after the other was most of a full row's time), the rest
/// together on another.
const HEAVY: &[&[&str]] = &[&[col::TEACHER_TOPK_LOGPROBS], &[col::TEACHER_TOPK_IDS], &[col::TEACHER_TOKEN_LOGPROB, col::TAIL_MASS]];

fn light(name: &str) -> bool {
    LIGHT.contains(&name) || name.starts_with(col::SCORE_PREFIX)
}

/// A page of rows of a split: `{total, offset, limit, rows: [{index, file, row_id, ...,
/// tokens}]}`. Blocking.
pub fn page(meta: &ShardMeta, work_dir: &Path, split: Option<&str>, offset: usize, limit: usize) -> ApiResult<Value> {
    let paths = files(work_dir, split)?;
    let (total, batches) = read_rows(meta, &paths, offset, limit, &light)?;
    let mut rows = Vec::new();
    for (file, batch) in &batches {
        for r in 0..batch.num_rows() {
            let mut row = serde_json::Map::new();
            row.insert("index".into(), json!(offset + rows.len()));
            row.insert("file".into(), json!(file));
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                if field.name() == col::INPUT_IDS {
                    let n = column.as_any().downcast_ref::<ListArray>().map(|l| l.value_length(r)).unwrap_or(0);
                    row.insert("tokens".into(), json!(n));
                } else {
                    row.insert(field.name().clone(), cell(column.as_ref(), r));
                }
            }
            rows.push(Value::Object(row));
        }
    }
    Ok(json!({"split": split, "total": total, "offset": offset, "limit": limit, "rows": rows}))
}

/// The text of every id of a student vocabulary, decoded once (a row has thousands of ids
/// with their top-k; decoding each through the tokenizer's pipeline cost ~100 ms a row).
pub struct Vocab {
    texts: Vec<String>,
}

impl Vocab {
    pub fn new(tok: &tokenizers::Tokenizer) -> Vocab {
        let n = tok.get_vocab_size(true) as u32;
        Vocab { texts: (0..n).map(|id| tok.decode(&[id], false).unwrap_or_default()).collect() }
    }

    pub fn text(&self, id: u32) -> &str {
        self.texts.get(id as usize).map(String::as_str).unwrap_or("")
    }
}

/// The `u32` list in row 0 of `column` (empty when absent).
fn ids(column: Option<&dyn Array>) -> Vec<u32> {
    let list = column.and_then(|c| c.as_any().downcast_ref::<ListArray>().map(|l| l.value(0)));
    list.and_then(|v| v.as_any().downcast_ref::<UInt32Array>().map(|a| a.values().to_vec())).unwrap_or_default()
}

/// The list of `u32` lists (the top-k ids per position) in row 0 of `column`.
fn id_lists(column: Option<&dyn Array>) -> Vec<Vec<u32>> {
    let Some(outer) = column.and_then(|c| c.as_any().downcast_ref::<ListArray>().map(|l| l.value(0))) else { return Vec::new() };
    let Some(inner) = outer.as_any().downcast_ref::<ListArray>() else { return Vec::new() };
    (0..inner.len()).map(|i| inner.value(i).as_any().downcast_ref::<UInt32Array>().map(|a| a.values().to_vec()).unwrap_or_default()).collect()
}

/// One shard row in full, read: its columns in schema order, and the ids the extras are
/// computed from.
pub struct FullRow {
    pub index: usize,
    pub file: String,
    columns: Vec<(String, ArrayRef)>,
    pub input_ids: Vec<u32>,
    pub topk_ids: Vec<Vec<u32>>,
}

/// Reads row `index` of a split in full. Blocking.
pub fn read_row(meta: &ShardMeta, work_dir: &Path, split: Option<&str>, index: usize) -> ApiResult<FullRow> {
    let paths = files(work_dir, split)?;
    let (total, spans) = plan(meta, &paths, index, 1)?;
    let Some(span) = spans.into_iter().find(|s| s.take > 0) else {
        return Err(ApiError::not_found(format!(
            "row {index} is past the end: the {} has {total} rows",
            split.map(|s| format!("{s} split")).unwrap_or_else(|| "shards folder".into())
        )));
    };
    let rest = |name: &str| !HEAVY.iter().any(|g| g.contains(&name));
    let parts: Vec<ApiResult<Vec<RecordBatch>>> = std::thread::scope(|scope| {
        let span = &span;
        let threads: Vec<_> = HEAVY.iter().map(|g| scope.spawn(move || decode(span, &|name| g.contains(&name)))).collect();
        let mut out = vec![decode(span, &rest)];
        out.extend(threads.into_iter().map(|t| t.join().unwrap_or_else(|_| Err(ApiError::internal("a shard decoding thread panicked")))));
        out
    });
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    for part in parts {
        for batch in part? {
            if batch.num_rows() > 0 {
                columns.extend(batch.schema().fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), c.clone())));
            }
        }
    }
    let order: Vec<String> = span.meta.schema().fields().iter().map(|f| f.name().clone()).collect();
    columns.sort_by_key(|(name, _)| order.iter().position(|n| n == name));
    let find = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, c)| c.as_ref());
    let (input_ids, topk_ids) = (ids(find(col::INPUT_IDS)), id_lists(find(col::TEACHER_TOPK_IDS)));
    Ok(FullRow { index, file: span.name, columns, input_ids, topk_ids })
}

/// A row as the API returns it: every column, the token texts when a vocabulary is given, and
/// the student's probabilities when computed.
pub struct RowJson<'a> {
    pub row: &'a FullRow,
    pub vocab: Option<&'a Vocab>,
    pub student: Option<&'a crate::student::StudentScores>,
}

/// The texts of a list of ids.
struct Texts<'a>(&'a Vocab, &'a [u32]);

impl Serialize for Texts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.1.iter().map(|&i| self.0.text(i)))
    }
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.row;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("index", &r.index)?;
        m.serialize_entry("file", &r.file)?;
        for (name, column) in &r.columns {
            m.serialize_entry(name, &Cell(column.as_ref(), 0))?;
        }
        if let Some(v) = self.vocab {
            m.serialize_entry("token_text", &Texts(v, &r.input_ids))?;
            let topk: Vec<Texts> = r.topk_ids.iter().map(|ids| Texts(v, ids)).collect();
            m.serialize_entry("teacher_topk_text", &topk)?;
        }
        if let Some(st) = self.student {
            m.serialize_entry("student", &st.json(self.vocab))?;
        }
        m.end()
    }
}

/// The student tokenizer of the shards: `[shards] tokenizer` from the shards manifest's config
/// when set, else the tokenizer stage's. `None` when there is none (rows show ids only).
pub fn load_vocab(work_dir: &Path) -> Option<Vocab> {
    let configured = distill_core::manifest::Manifest::read(&work_dir.join("shards"))
        .ok()
        .flatten()
        .and_then(|m| m.config.get("tokenizer").and_then(Value::as_str).map(str::to_string))
        .filter(|s| !s.is_empty());
    let path = configured.map(PathBuf::from).unwrap_or_else(|| work_dir.join("tokenizer/tokenizer.json"));
    let tok = tokenizers::Tokenizer::from_file(&path).map_err(|e| tracing::warn!("{}: {e}; shard rows are shown as ids", path.display())).ok()?;
    Some(Vocab::new(&tok))
}
