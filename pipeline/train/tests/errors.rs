//! The trainer's errors keep their cause: the message names the file and the fix, and
//! `source()` is the underlying error (the `io::Error`, the Parquet error), also after the
//! error crosses into `distill_core::Error` at the stage boundary.

mod common;

use std::error::Error as _;

use distill_core::StageContext;
use distill_train::data::shard_files;
use distill_train::source::ShardData;
use distill_train::{run, train_documents, RunOptions, TrainConfig};

fn opts() -> RunOptions {
    RunOptions { config_file: "test.toml".into(), ..Default::default() }
}

/// The `io::Error` somewhere in `e`'s chain of causes.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = c.source();
    }
    None
}

#[test]
fn a_missing_tokenizer_keeps_its_io_error_through_the_stage_boundary() {
    let work = tempfile::tempdir().unwrap();
    let tokenizer = work.path().join("nowhere/tokenizer.json");
    let cfg = TrainConfig { tokenizer: tokenizer.display().to_string(), ..Default::default() };
    let ctx = StageContext { stage: "train", work_dir: work.path(), out_dir: work.path().join("out"), scratch_dir: work.path().join("scratch"), shard: None, quiet: true };
    let err: distill_core::Error = run(&ctx, &cfg, &opts()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&tokenizer.display().to_string()) && msg.contains("set [train] tokenizer"), "{msg}");
    assert_eq!(io_cause(&err).map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound), "{err:?}");
}

#[test]
fn a_missing_shards_folder_is_an_io_error_with_its_path_and_the_fix() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("shards");
    let err = shard_files(&dir).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: {} (run the shards stage first)", dir.display(), err.source().unwrap()));
    assert_eq!(err.source().and_then(|s| s.downcast_ref::<std::io::Error>()).map(std::io::Error::kind), Some(std::io::ErrorKind::NotFound));
}

#[test]
fn a_damaged_shard_keeps_the_parquet_error() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("train-00000-of-00001.parquet");
    std::fs::write(&path, b"not parquet at all").unwrap();
    let err = ShardData::open(std::slice::from_ref(&path), 64, 512).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: ", path.display())), "{err}");
    assert!(err.source().unwrap().downcast_ref::<parquet::errors::ParquetError>().is_some(), "{err:?}");
}

/// I/O in the training loop goes through core's `.at(path)`: a scratch "folder" that is a file.
#[test]
fn an_unwritable_scratch_folder_is_named_with_its_io_error() {
    let work = tempfile::tempdir().unwrap();
    let tok = work.path().join("tokenizer.json");
    common::write_tokenizer(&tok);
    let scratch = work.path().join("scratch");
    std::fs::write(&scratch, b"a file where the folder should be").unwrap();
    let docs: Vec<Vec<u32>> = (0..8).map(|d| (0..20).map(|i| 2 + (d + i) % 40).collect()).collect();
    let cfg = TrainConfig { model: "llama-nano".into(), steps: 1, seq_len: 16, batch_size: 2, ..Default::default() };
    let err = train_documents(&docs, &cfg, &tok, &work.path().join("out"), &scratch, true, &opts()).unwrap_err();
    assert!(err.to_string().starts_with(&format!("{}: ", scratch.display())), "{err}");
    assert!(io_cause(&err).is_some(), "{err:?}");
}
