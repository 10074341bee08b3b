//! Shard-writing throughput: synthetic kept samples (real stdlib code as completions, top-20
//! soft labels at every completion token) -> Parquet, ours vs pyarrow writing the same table.
//!
//! `cargo bench -p distill-shards` (env `SHARD_BENCH_ROWS`, default 4000). Prints rows/s and MB/s
//! of Parquet written for: the whole stage (tokenize + align + write), writing alone, and
//! pyarrow's `pq.write_table` of the same table with the same zstd level and row groups
//! (`benches/shards_pyarrow.py`), with the ratio.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use distill_core::records::{KeptSample, PromptRecord, TokenLogprob, TopLogprob};
use distill_shards::{build_row, Sample, ShardFile, ShardsConfig, StudentTokenizer};
use distill_tokenizer::config::{ENDOFTEXT, PAD};
use distill_tokenizer::train::{train_byte_level, BpeSpec};

const TOPK: usize = 20;

fn stdlib_text(max_bytes: usize) -> Vec<String> {
    let out = Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_paths()['stdlib'])"]).output().expect("python3");
    let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut files: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "py")).collect();
    files.sort();
    let mut texts = Vec::new();
    let mut total = 0;
    for f in files {
        if let Ok(t) = std::fs::read_to_string(&f) {
            total += t.len();
            texts.push(t);
            if total > max_bytes {
                break;
            }
        }
    }
    texts
}

/// The tokenizer stage's kind of tokenizer, at its default size, trained on `corpus`.
fn tokenizer(dir: &Path, corpus: &[String]) -> StudentTokenizer {
    let spec = BpeSpec { vocab_size: 4096, min_frequency: 2, special_tokens: &[ENDOFTEXT, PAD], max_token_length: None };
    let path = dir.join("tokenizer.json");
    train_byte_level(corpus.iter(), &spec).unwrap().save(&path, false).unwrap();
    StudentTokenizer::load(&path).unwrap()
}

/// Samples whose completions are consecutive ~1.5 KB pieces of stdlib code, with the sampled
/// token and 19 other vocabulary tokens as the top-20 (pseudo-random, fixed seed).
fn samples(tok: &StudentTokenizer, corpus: &[String], n: usize) -> Vec<Sample> {
    let text: String = corpus.concat();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(n);
    let mut pos = 0;
    for i in 0..n {
        let mut end = (pos + 1500).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let completion = text[pos..end].to_string();
        pos = if end + 1500 >= text.len() { 0 } else { end };
        let ids = tok.encode(&completion).unwrap();
        let tokens: Vec<TokenLogprob> = ids
            .iter()
            .map(|&id| {
                let bytes = tok.bytes(id).to_vec();
                let mut top = vec![TopLogprob { token: String::from_utf8_lossy(&bytes).into(), bytes: Some(bytes.clone()), logprob: -0.1 }];
                for j in 1..TOPK {
                    let alt = (next() % tok.vocab_size() as u64) as u32;
                    let b = tok.bytes(alt).to_vec();
                    top.push(TopLogprob { token: String::from_utf8_lossy(&b).into(), bytes: Some(b), logprob: -0.1 - 0.35 * j as f32 });
                }
                TokenLogprob { token: String::from_utf8_lossy(&bytes).into(), bytes: Some(bytes), logprob: -0.1, top }
            })
            .collect();
        let pid = format!("{:016x}", next());
        out.push((
            KeptSample {
                id: format!("{pid}#0"),
                prompt_id: pid.clone(),
                prompt: PromptRecord { id: pid, messages: None, prompt: Some(format!("# Task {i}: complete the module below.\n")), meta: Default::default() },
                model: "bench-teacher".into(),
                temperature: 0.8,
                completion: completion.clone(),
                finish_reason: Some("stop".into()),
                code: completion,
                scores: [("pass_rate".to_string(), 1.0), ("agreement".to_string(), 0.5)].into(),
                pass_vector: vec![true, true, false],
            },
            Some(distill_core::logprobs::FlatTokens::from_tokens(&tokens)),
        ));
    }
    out
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat: on a shared,
/// loaded machine wall time alone says little.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")"; ticks are 1/100 s on Linux.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn main() {
    let n: usize = std::env::var("SHARD_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let dir = tempfile::tempdir().unwrap();
    let corpus = stdlib_text(3_000_000);
    let tok = tokenizer(dir.path(), &corpus);
    let kept = samples(&tok, &corpus, n);
    let cfg = ShardsConfig { tokenizer: dir.path().join("tokenizer.json").display().to_string(), validation_fraction: 0.0, max_seq_len: 0, ..Default::default() };
    let settings = cfg.settings("bench", dir.path()).unwrap();

    // 1. The whole stage minus reading JSONL: tokenize, align, write.
    let out1 = dir.path().join("stage");
    let (t, c) = (Instant::now(), cpu_secs());
    let scores = vec!["agreement".to_string(), "pass_rate".to_string()];
    let written = distill_shards::write_shards(kept.iter().cloned().map(Ok), &scores, &tok, &settings, &out1, true).unwrap();
    let (stage_secs, stage_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let bytes: u64 = written.manifest.files.iter().map(|f| f.bytes).sum();
    let positions: u64 = written.manifest.files.iter().map(|f| f.positions).sum();
    let soft: u64 = written.manifest.files.iter().map(|f| f.soft_label_positions).sum();

    // 2. Writing alone, from prebuilt rows, into one file.
    let (t, c) = (Instant::now(), cpu_secs());
    let rows: Vec<_> = kept.iter().map(|(k, t)| build_row(k, t.as_ref(), &tok, &settings, "train").unwrap().unwrap()).collect();
    let (build_secs, build_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
    let rows: Vec<&distill_shards::Row> = rows.iter().collect();
    let schema = distill_shards::schema::schema(&scores);
    let opts = distill_shards::WriteOptions { row_group_rows: settings.row_group_rows, zstd_level: settings.zstd_level };
    let path = dir.path().join("one.parquet");
    let (mut best, mut best_cpu) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let (t, c) = (Instant::now(), cpu_secs());
        let mut file = ShardFile::create(dir.path(), "train", 0, &schema, &opts).unwrap();
        for group in rows.chunks(opts.row_group_rows) {
            file.write_row_group(group, &scores).unwrap();
        }
        file.finish(dir.path(), "one.parquet").unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min(cpu_secs() - c);
    }
    let one_bytes = std::fs::metadata(&path).unwrap().len();

    // 3. pyarrow writes the same table (read from our file) with the same settings.
    let script = distill_core::testing::repo_root().join("benches/shards_pyarrow.py");
    let py = distill_core::testing::reference_python();
    let o = Command::new(py).arg(&script).arg(&path).arg(settings.row_group_rows.to_string()).arg(settings.zstd_level.to_string()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let py_secs = r["secs"].as_f64().unwrap();
    let py_bytes = r["bytes"].as_f64().unwrap();

    let mb = |b: f64, s: f64| b / s / 1e6;
    println!("shard writing: {n} rows, {positions} positions ({soft} with top-{TOPK} soft labels), zstd({}), {} rows/row group", settings.zstd_level, settings.row_group_rows);
    println!("{:<40} {:>9} {:>9} {:>10} {:>10} {:>8}", "", "wall s", "cpu s", "rows/s", "MB/s out", "Mtok/s");
    let line = |name: &str, secs: f64, cpu: f64, b: f64| {
        let mbs = if b > 0.0 { format!("{:.1}", mb(b, secs)) } else { "-".into() };
        println!("{name:<40} {secs:>9.3} {cpu:>9.3} {:>10.0} {mbs:>10} {:>8.2}", n as f64 / secs, positions as f64 / secs / 1e6)
    };
    line("ours: stage (tokenize+align+write, 2 thr)", stage_secs, stage_cpu, bytes as f64);
    line("ours: tokenize+align only (1 thread)", build_secs, build_cpu, 0.0);
    line("ours: write only (best of 3)", best, best_cpu, one_bytes as f64);
    line("pyarrow 22 write_table (best of 3)", py_secs, r["cpu"].as_f64().unwrap_or(f64::NAN), py_bytes);
    println!("columns with dictionary pages in our file: {}", r["ours_dictionary_columns"]);
    println!("file size ours {:.1} MB, pyarrow {:.1} MB; write-time ratio ours/pyarrow = {:.2}x (lower is faster)", one_bytes as f64 / 1e6, py_bytes / 1e6, best / py_secs);
}
