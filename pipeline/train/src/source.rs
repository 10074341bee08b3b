//! Where training examples come from, a window at a time, so that memory does not depend on
//! the size of the data set (issue #15).
//!
//! A [`Source`] is a numbered set of examples that can be read by index. Each epoch it is cut
//! into *windows*: for shards, the row groups in an order shuffled by (seed, epoch), taken in
//! turn until a window holds at least [`WINDOW_ROWS`] rows; a window is loaded (its row groups
//! decoded), batched by [`crate::batch::epoch_batches`] seeded by (seed, window, epoch), and
//! dropped when its batches are used. So the order is still a pure function of (seed, epoch,
//! the shards), a run resumed at (epoch, batch) sees exactly the batches an uninterrupted run
//! would ([`crate::batch::batch_count`] skips whole windows without reading them), and memory
//! holds one window of rows. A set of at most [`WINDOW_ROWS`] rows is one window: it trains in
//! the order an in-memory set would.
//!
//! [`ShardData::open`] reads every row once before training (streaming, a row group at a
//! time, on the Arrow arrays: [`data::check_batch`]) to check it and keep its place (8 bytes a
//! row): bad rows are counted and left out, as before.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use distill_core::error::IoContext;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::{self, Example};
use crate::error::{Error, Result};

/// Rows a window holds at least (unless the set is smaller).
pub const WINDOW_ROWS: usize = 1024;

/// A numbered set of examples, read a window at a time.
pub trait Source: Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The windows of an epoch (lists of indices, ascending within a window); `None`: the
    /// fixed order used for evaluation.
    fn windows(&self, seed: u64, epoch: Option<u64>) -> Vec<Vec<usize>>;

    /// The examples at `indices`, in that order.
    fn load(&self, indices: &[usize]) -> Result<Vec<Example>>;
}

/// Examples already in memory (packed documents, synthetic benchmark data): one window.
impl Source for Vec<Example> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn windows(&self, _seed: u64, _epoch: Option<u64>) -> Vec<Vec<usize>> {
        vec![(0..self.as_slice().len()).collect()]
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        Ok(indices.iter().map(|&i| self[i].clone()).collect())
    }
}

/// One row group of one file, and the rows of a split in it.
#[derive(Debug, Clone)]
struct Group {
    file: u32,
    index: u32,
    /// Indices into the split's rows.
    first: u32,
    count: u32,
}

/// The rows of one split across the shard files.
#[derive(Debug, Default)]
pub struct ShardSplit {
    files: Vec<(PathBuf, ArrowReaderMetadata)>,
    /// Per row: its group, its position within the row group.
    rows: Vec<(u32, u32)>,
    groups: Vec<Group>,
    max_len: usize,
}

/// The train and validation rows of a shards folder, checked, with what was left out.
#[derive(Debug, Default)]
pub struct ShardData {
    pub train: ShardSplit,
    pub validation: ShardSplit,
    /// Rows left out, with the reason (one bad row never stops training).
    pub skipped: Vec<String>,
    /// Rows longer than the model's context, cut to it when loaded.
    pub truncated: usize,
    /// Training rows with no position the loss trains on within the context (the prompt fills
    /// it, or the loss mask is empty): they cost steps and teach nothing.
    pub untrained: usize,
}

fn open_metadata(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).at(path)?;
    ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|source| Error::Parquet { path: path.to_path_buf(), source })
}

/// Decodes row group `index` of a file whose metadata is `meta`.
fn read_group(path: &Path, meta: &ArrowReaderMetadata, index: usize) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).at(path)?;
    let rows = meta.metadata().row_group(index).num_rows().max(1) as usize;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone()).with_row_groups(vec![index]).with_batch_size(rows);
    let reader = builder.build().map_err(|source| Error::Parquet { path: path.to_path_buf(), source })?;
    reader.map(|b| b.map_err(|source| Error::Arrow { path: path.to_path_buf(), source })).collect()
}

impl ShardData {
    /// Checks every row of `files` (see the module docs). `max_len`: the model's context;
    /// `vocab`: its vocabulary (rows with a larger id are left out).
    pub fn open(files: &[PathBuf], max_len: usize, vocab: usize) -> Result<Self> {
        let mut d = ShardData::default();
        for split in [&mut d.train, &mut d.validation] {
            split.max_len = max_len;
        }
        for (f, path) in files.iter().enumerate() {
            let meta = open_metadata(path)?;
            for split in [&mut d.train, &mut d.validation] {
                split.files.push((path.clone(), meta.clone()));
            }
            for g in 0..meta.metadata().num_row_groups() {
                let (train_first, val_first) = (d.train.rows.len() as u32, d.validation.rows.len() as u32);
                let mut row_in_group = 0u32;
                for batch in read_group(path, &meta, g)? {
                    let rows = data::check_batch(&batch, vocab).map_err(|m| Error::Shard { path: path.clone(), message: m })?;
                    for row in rows {
                        let r = row_in_group;
                        row_in_group += 1;
                        let checked = match row {
                            Ok(c) => c,
                            Err(why) => {
                                d.skipped.push(why);
                                continue;
                            }
                        };
                        d.truncated += usize::from(checked.len > max_len);
                        d.untrained += usize::from(checked.split == data::Split::Train && checked.first_trained >= checked.len.min(max_len));
                        let target = match checked.split {
                            data::Split::Train => &mut d.train,
                            data::Split::Validation => &mut d.validation,
                        };
                        let group = target.groups.len() as u32;
                        target.rows.push((group, r));
                    }
                }
                for (split, first) in [(&mut d.train, train_first), (&mut d.validation, val_first)] {
                    let count = split.rows.len() as u32 - first;
                    if count > 0 {
                        split.groups.push(Group { file: f as u32, index: g as u32, first, count });
                    }
                }
            }
        }
        Ok(d)
    }
}

impl Source for ShardSplit {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn windows(&self, seed: u64, epoch: Option<u64>) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        if let Some(e) = epoch {
            order.shuffle(&mut StdRng::seed_from_u64(seed ^ e.wrapping_add(1).wrapping_mul(0xD6E8_FEB8_6659_FD93)));
        }
        let mut windows = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for g in order {
            let gr = &self.groups[g];
            current.extend(gr.first as usize..(gr.first + gr.count) as usize);
            if current.len() >= WINDOW_ROWS {
                current.sort_unstable();
                windows.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            current.sort_unstable();
            windows.push(current);
        }
        windows
    }

    fn load(&self, indices: &[usize]) -> Result<Vec<Example>> {
        // Each needed row group is decoded once; rows come out in the order asked for.
        let mut needed: Vec<u32> = indices.iter().map(|&i| self.rows[i].0).collect();
        needed.sort_unstable();
        needed.dedup();
        let mut decoded: std::collections::HashMap<u32, Vec<Option<Example>>> = std::collections::HashMap::new();
        for g in needed {
            let gr = &self.groups[g as usize];
            let (path, meta) = &self.files[gr.file as usize];
            let mut rows = Vec::new();
            for batch in read_group(path, meta, gr.index as usize)? {
                rows.extend(data::read_batch(&batch).map_err(|m| Error::Shard { path: path.clone(), message: m })?.into_iter().map(|r| r.ok().map(|(e, _)| e)));
            }
            decoded.insert(g, rows);
        }
        indices
            .iter()
            .map(|&i| {
                let (g, r) = self.rows[i];
                let mut ex = decoded.get_mut(&g).and_then(|rows| rows.get_mut(r as usize)).and_then(Option::take).ok_or_else(|| {
                    let path = &self.files[self.groups[g as usize].file as usize].0;
                    Error::Shard { path: path.clone(), message: "a row checked before training is gone (was the file replaced?); run the shards stage again".into() }
                })?;
                ex.truncate(self.max_len);
                Ok(ex)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_examples_are_one_window() {
        let v: Vec<Example> = (0..5).map(|i| Example::plain(format!("e{i}"), vec![1, 2, 3])).collect();
        assert_eq!(v.windows(1, Some(3)), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(v.load(&[4, 0]).unwrap().iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["e4", "e0"]);
    }
}
