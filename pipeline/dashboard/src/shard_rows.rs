//! Shard rows, paged by row group: a page opens each Parquet file it touches, finds the row
//! groups that hold its rows from the footer, and decodes only those groups' rows of the
//! columns asked for (a row selection skips the rest of a group).
//!
//! A listing gives the light columns of each row; one row in full adds its tokens as the
//! student's tokenizer spells them, each with the teacher's top-k (student ids and text) and
//! log-probs, for the sample browser.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, BooleanArray, Float32Array, Float64Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt8Array};
use arrow_schema::DataType;
use distill_core::error::IoContext;
use distill_core::records::shard_columns as col;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;
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

/// A JSON value of one cell (the types the shard schema uses).
fn cell(a: &dyn Array, row: usize) -> Value {
    if a.is_null(row) {
        return Value::Null;
    }
    let any = a.as_any();
    match a.data_type() {
        DataType::Utf8 => json!(any.downcast_ref::<StringArray>().map(|x| x.value(row))),
        DataType::Boolean => json!(any.downcast_ref::<BooleanArray>().map(|x| x.value(row))),
        DataType::UInt8 => json!(any.downcast_ref::<UInt8Array>().map(|x| x.value(row))),
        DataType::UInt32 => json!(any.downcast_ref::<UInt32Array>().map(|x| x.value(row))),
        DataType::Float32 => json!(any.downcast_ref::<Float32Array>().map(|x| x.value(row))),
        DataType::Float64 => json!(any.downcast_ref::<Float64Array>().map(|x| x.value(row))),
        DataType::List(_) => match any.downcast_ref::<ListArray>() {
            Some(l) => {
                let values = l.value(row);
                Value::Array((0..values.len()).map(|i| cell(values.as_ref(), i)).collect())
            }
            None => Value::Null,
        },
        other => json!(format!("({other} not shown)")),
    }
}

/// Rows `[offset, offset + limit)` of the files in order, with the columns `columns` selects.
/// Blocking.
fn read_rows(paths: &[PathBuf], offset: usize, limit: usize, columns: &dyn Fn(&str) -> bool) -> ApiResult<(usize, Vec<(String, RecordBatch)>)> {
    let mut total = 0usize;
    let mut batches = Vec::new();
    let end = offset + limit;
    for path in paths {
        let file = File::open(path).at(path)?;
        // With the page index the row selection skips whole pages of the per-position columns
        // (a row group of them is tens of megabytes) instead of decoding and dropping them.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).map_err(|e| bad(path, e))?;
        let groups: Vec<usize> = builder.metadata().row_groups().iter().map(|g| g.num_rows() as usize).collect();
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
        let indices: Vec<usize> = builder.schema().fields().iter().enumerate().filter(|(_, f)| columns(f.name())).map(|(i, _)| i).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
        let selection = RowSelection::from(vec![RowSelector::skip(skip), RowSelector::select(hi - lo)]);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for batch in builder.with_row_groups(chosen).with_projection(mask).with_row_selection(selection).build().map_err(|e| bad(path, e))? {
            batches.push((name.clone(), batch.map_err(|e| bad(path, e))?));
        }
    }
    Ok((total, batches))
}

fn light(name: &str) -> bool {
    LIGHT.contains(&name) || name.starts_with(col::SCORE_PREFIX)
}

/// A page of rows of a split: `{total, offset, limit, rows: [{index, file, row_id, ...,
/// tokens}]}`. Blocking.
pub fn page(work_dir: &Path, split: Option<&str>, offset: usize, limit: usize) -> ApiResult<Value> {
    let paths = files(work_dir, split)?;
    let (total, batches) = read_rows(&paths, offset, limit, &light)?;
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

    fn text(&self, id: &Value) -> &str {
        id.as_u64().and_then(|i| self.texts.get(i as usize)).map(String::as_str).unwrap_or("")
    }
}

/// One row in full, its tokens spelled with `vocab` when given. Blocking.
pub fn row(work_dir: &Path, split: Option<&str>, index: usize, vocab: Option<&Vocab>) -> ApiResult<Value> {
    let paths = files(work_dir, split)?;
    let (total, batches) = read_rows(&paths, index, 1, &|_| true)?;
    let Some((file, batch)) = batches.into_iter().find(|(_, b)| b.num_rows() > 0) else {
        return Err(ApiError::not_found(format!(
            "row {index} is past the end: the {} has {total} rows",
            split.map(|s| format!("{s} split")).unwrap_or_else(|| "shards folder".into())
        )));
    };
    let mut row = serde_json::Map::new();
    row.insert("index".into(), json!(index));
    row.insert("file".into(), json!(file));
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        row.insert(field.name().clone(), cell(column.as_ref(), 0));
    }
    if let Some(vocab) = vocab {
        let text = |id: &Value| vocab.text(id);
        let ids: Vec<Value> = row.get(col::INPUT_IDS).and_then(Value::as_array).cloned().unwrap_or_default();
        row.insert("token_text".into(), Value::Array(ids.iter().map(|i| json!(text(i))).collect()));
        let topk: Vec<Value> = row.get(col::TEACHER_TOPK_IDS).and_then(Value::as_array).cloned().unwrap_or_default();
        let topk_text: Vec<Value> = topk.iter().map(|pos| Value::Array(pos.as_array().map(|a| a.iter().map(|i| json!(text(i))).collect()).unwrap_or_default())).collect();
        row.insert("teacher_topk_text".into(), Value::Array(topk_text));
    }
    Ok(Value::Object(row))
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
