//! Shared fixtures: a real Parquet shard set made from a real (small, random) teacher model's
//! generations and top-k log-probs, and a minimal `tokenizer.json`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, ListBuilder, StringBuilder, UInt32Builder, UInt8Builder};
use arrow_array::{ArrayRef, RecordBatch};
use candle_core::Device;
use distill_core::records::shard_columns as col;
use distill_model::config::ModelConfig;
use distill_model::{generate, GenerateParams, TrainableLm};

pub const VOCAB: usize = 512;

/// A WordLevel tokenizer.json with `VOCAB` tokens; id 0 is `<|endoftext|>`, 1 is `<|pad|>`.
pub fn write_tokenizer(path: &Path) {
    let mut vocab = serde_json::Map::new();
    for i in 0..VOCAB {
        let tok = match i {
            0 => "<|endoftext|>".to_string(),
            1 => "<|pad|>".to_string(),
            _ => format!("t{i}"),
        };
        vocab.insert(tok, serde_json::json!(i));
    }
    let tj = serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<|pad|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<|pad|>"}
    });
    std::fs::write(path, serde_json::to_string(&tj).unwrap()).unwrap();
}

/// One shard row.
pub struct Row {
    pub id: String,
    pub input_ids: Vec<u32>,
    pub loss_mask: Vec<u8>,
    pub topk_ids: Vec<Vec<u32>>,
    pub topk_lps: Vec<Vec<f32>>,
    pub hard: bool,
    pub split: &'static str,
}

/// Rows from a random llama-nano teacher: prompts of 3-8 tokens, 12 sampled tokens each at
/// temperature 1 with the teacher's top-5 log-probs at every completion position.
pub fn teacher_rows(n: usize, seed: u64) -> Vec<Row> {
    // A random teacher with a wide init, so its next-token distributions are peaked (a
    // student at the default init is nearly uniform, far from it in KL).
    let mut cfg = ModelConfig::preset("llama-nano").unwrap();
    if let ModelConfig::Llama(c) = &mut cfg {
        c.initializer_range = 0.3;
    }
    let teacher = TrainableLm::init(&cfg, &Device::Cpu, 1000 + seed).unwrap();
    let prompts: Vec<Vec<u32>> = (0..n).map(|i| (0..3 + i % 6).map(|j| 2 + ((i * 31 + j * 17) % 500) as u32).collect()).collect();
    let params = GenerateParams { max_new_tokens: 12, temperature: 1.0, seed, top_logprobs: 5, ..Default::default() };
    let gens = generate(&teacher.model, &prompts, &params).unwrap();
    prompts
        .into_iter()
        .zip(gens)
        .enumerate()
        .map(|(i, (p, g))| {
            let np = p.len();
            let mut input_ids = p;
            input_ids.extend(&g.tokens);
            let n = input_ids.len();
            let mut topk_ids = vec![vec![]; n];
            let mut topk_lps = vec![vec![]; n];
            for (j, top) in g.top_logprobs.iter().enumerate() {
                topk_ids[np + j] = top.iter().map(|t| t.0).collect();
                topk_lps[np + j] = top.iter().map(|t| t.1).collect();
            }
            Row {
                id: format!("p{i:04}#0"),
                input_ids,
                loss_mask: (0..n).map(|k| u8::from(k >= np)).collect(),
                topk_ids,
                topk_lps,
                hard: false,
                split: if i % 5 == 4 { "validation" } else { "train" },
            }
        })
        .collect()
}

/// Writes rows as a Parquet file with the shard columns the trainer reads (and the text ones).
pub fn write_shard(path: &Path, rows: &[Row]) {
    write_shard_in_groups(path, rows, rows.len().max(1));
}

/// [`write_shard`] with a row group every `group_rows` rows.
pub fn write_shard_in_groups(path: &Path, rows: &[Row], group_rows: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut w: Option<parquet::arrow::ArrowWriter<std::fs::File>> = None;
    let mut file = Some(file);
    for chunk in rows.chunks(group_rows) {
        let batch = record_batch(chunk);
        let writer = w.get_or_insert_with(|| parquet::arrow::ArrowWriter::try_new(file.take().unwrap(), batch.schema(), None).unwrap());
        writer.write(&batch).unwrap();
        writer.flush().unwrap();
    }
    w.unwrap().close().unwrap();
}

fn record_batch(rows: &[Row]) -> RecordBatch {
    let mut row_id = StringBuilder::new();
    let mut prompt_id = StringBuilder::new();
    let mut text = StringBuilder::new();
    let mut ids = ListBuilder::new(UInt32Builder::new());
    let mut mask = ListBuilder::new(UInt8Builder::new());
    let mut tk_ids = ListBuilder::new(ListBuilder::new(UInt32Builder::new()));
    let mut tk_lps = ListBuilder::new(ListBuilder::new(Float32Builder::new()));
    let mut tail = ListBuilder::new(Float32Builder::new());
    let mut hard = BooleanBuilder::new();
    let mut split = StringBuilder::new();
    for r in rows {
        row_id.append_value(&r.id);
        prompt_id.append_value(r.id.split('#').next().unwrap());
        text.append_value("");
        ids.values().append_slice(&r.input_ids);
        ids.append(true);
        mask.values().append_slice(&r.loss_mask);
        mask.append(true);
        for (k, l) in r.topk_ids.iter().zip(&r.topk_lps) {
            tk_ids.values().values().append_slice(k);
            tk_ids.values().append(true);
            tk_lps.values().values().append_slice(l);
            tk_lps.values().append(true);
            let t = if l.is_empty() { 0.0 } else { (1.0 - l.iter().map(|x| x.exp()).sum::<f32>()).max(0.0) };
            tail.values().append_value(t);
        }
        tk_ids.append(true);
        tk_lps.append(true);
        tail.append(true);
        hard.append_value(r.hard);
        split.append_value(r.split);
    }
    let cols: Vec<(&str, ArrayRef)> = vec![
        (col::ROW_ID, Arc::new(row_id.finish())),
        (col::PROMPT_ID, Arc::new(prompt_id.finish())),
        (col::COMPLETION_TEXT, Arc::new(text.finish())),
        (col::INPUT_IDS, Arc::new(ids.finish())),
        (col::LOSS_MASK, Arc::new(mask.finish())),
        (col::TEACHER_TOPK_IDS, Arc::new(tk_ids.finish())),
        (col::TEACHER_TOPK_LOGPROBS, Arc::new(tk_lps.finish())),
        (col::TAIL_MASS, Arc::new(tail.finish())),
        (col::HARD_LABEL_ONLY, Arc::new(hard.finish())),
        (col::SPLIT, Arc::new(split.finish())),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

/// A work dir with `shards/` (two files + manifest) and `tokenizer/tokenizer.json`.
pub fn work_dir(n_rows: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tokenizer");
    std::fs::create_dir_all(&tok).unwrap();
    write_tokenizer(&tok.join("tokenizer.json"));
    let shards = dir.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    let rows = teacher_rows(n_rows, 3);
    let (a, b) = rows.split_at(n_rows / 2);
    write_shard(&shards.join("part-00000.parquet"), a);
    write_shard(&shards.join("part-00001.parquet"), b);
    let manifest = serde_json::json!({
        "tokenizer_path": tok.join("tokenizer.json").display().to_string(),
        "capture_temperature": 1.0,
        "vocab_size": VOCAB,
    });
    std::fs::write(shards.join("shard_manifest.json"), manifest.to_string()).unwrap();
    dir
}
