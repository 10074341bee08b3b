//! The shards -> train contract: the real shards stage turns kept samples and teacher
//! log-probs into Parquet shards, and the trainer's own reader (`ShardData::open`, then
//! `Source::load`, as `distill train` does) gets back exactly what the stage was given: token
//! ids, loss mask, top-k ids and log-probs, the hard-label flag and the split. The columns the
//! trainer does not read are checked too, straight from the files, against the same inputs and
//! the one schema (`distill_shards::schema`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use distill_core::records::shard_columns as col;
use distill_core::records::{ChatMessage, KeptSample, PromptRecord, TokenLogprob, TopLogprob};
use distill_core::StageContext;
use distill_shards::{split_of, ShardsConfig, StudentTokenizer};
use distill_tokenizer::config::{ENDOFTEXT, PAD};
use distill_tokenizer::train::{train_byte_level, BpeSpec};
use distill_train::data::{shard_files, Example};
use distill_train::source::{ShardData, Source};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const CODE: &str = "def add(a, b):\n    return a + b\n\nclass Stack:\n    def push(self, x):\n        self.items.append(x)\n\nfor i in range(10):\n    print(i, add(i, i))\n";
const COMPLETIONS: [&str; 2] = ["def add(a, b):\n    return a + b\n", "for i in range(3):\n    print(i)\n"];
const PROMPTS: usize = 12;
const VALIDATION_FRACTION: f64 = 0.4;
/// An alternative no student token spells: its mass belongs to the tail.
const FOREIGN: &str = "\u{1F600}qzxv";

/// A real byte-level BPE trained on a little code, through the tokenizer stage's own builder.
fn train_tokenizer(path: &Path) {
    let spec = BpeSpec { vocab_size: 400, min_frequency: 1, special_tokens: &[ENDOFTEXT, PAD], max_token_length: None };
    train_byte_level([CODE, CODE].iter(), &spec).unwrap().save(path, false).unwrap();
}

/// Log-probs on the teacher codec's 1/1024-nat grid, so they travel without rounding.
fn lp(units: usize) -> f32 {
    -(units as f32) / 1024.0
}

/// What one kept sample must come back as.
struct Expected {
    example: Example,
    split: &'static str,
    prompt_id: String,
    prompt_text: String,
    completion: String,
    token_logprob: Vec<f32>,
    tail_mass: Vec<f32>,
    alignment: &'static str,
    prompt_tokens: u32,
    pass_vector: Vec<bool>,
    scores: BTreeMap<String, f64>,
}

/// Prompt `i`, sample `k`, and what the shards must hold for it. Every fourth prompt is a chat
/// prompt, every fourth has no teacher log-probs (a hard-label row), every fourth stopped at
/// the length limit (no end-of-text appended); position `j`'s log-probs differ with `j`, so a
/// shifted or reordered position shows.
fn sample(tok: &StudentTokenizer, i: usize, k: usize) -> (KeptSample, Option<Vec<TokenLogprob>>, Expected) {
    let prompt_id = format!("p{i:02}");
    let completion = COMPLETIONS[(i + k) % 2].to_string();
    let (prompt, prompt_text) = if i % 4 == 1 {
        let messages = vec![ChatMessage { role: "system".into(), content: "You write Python.".into() }, ChatMessage { role: "user".into(), content: format!("task {i}") }];
        (PromptRecord { id: prompt_id.clone(), messages: Some(messages), prompt: None, meta: Default::default() }, format!("You write Python.\ntask {i}\n"))
    } else {
        let text = format!("# task {i}\n");
        (PromptRecord { id: prompt_id.clone(), messages: None, prompt: Some(text.clone()), meta: Default::default() }, text)
    };
    let with_logprobs = i % 4 != 2;
    let stopped = i % 4 != 3;
    let mut scores = BTreeMap::from([("pass_rate".to_string(), 0.25 * k as f64 + i as f64 / 100.0)]);
    if i.is_multiple_of(2) {
        scores.insert("agreement".into(), i as f64 / 7.0);
    }
    let pass_vector = vec![true, k == 1, i.is_multiple_of(3)];
    let kept = KeptSample {
        id: format!("{prompt_id}#{k}"),
        prompt_id: prompt_id.clone(),
        prompt,
        model: "teacher-x".into(),
        temperature: 0.7,
        completion: completion.clone(),
        finish_reason: Some(if stopped { "stop" } else { "length" }.into()),
        code: completion.clone(),
        scores: scores.clone(),
        pass_vector: pass_vector.clone(),
    };

    let prompt_ids = tok.encode(&prompt_text).unwrap();
    let completion_ids = tok.encode(&completion).unwrap();
    let other = tok.encode(" return").unwrap()[0];
    let alt = |bytes: &[u8], logprob: f32| TopLogprob { token: String::from_utf8_lossy(bytes).into_owned(), bytes: Some(bytes.to_vec()), logprob };
    let teacher: Vec<TokenLogprob> = completion_ids
        .iter()
        .enumerate()
        .map(|(j, &id)| {
            let bytes = tok.bytes(id);
            let mut top = vec![alt(bytes, lp(16 + j))];
            if id != other {
                top.push(alt(tok.bytes(other), lp(2048 + j)));
            }
            top.push(alt(FOREIGN.as_bytes(), lp(3072)));
            TokenLogprob { token: String::from_utf8_lossy(bytes).into_owned(), bytes: Some(bytes.to_vec()), logprob: lp(16 + j), top }
        })
        .collect();

    // Prompt positions carry nothing; completion positions the loss and (with log-probs) the
    // teacher's alternatives that are student tokens, most probable first; the end-of-text
    // after a stopped answer the loss only.
    let mut ex = Example {
        id: kept.id.clone(),
        input_ids: prompt_ids.clone(),
        loss_mask: vec![0; prompt_ids.len()],
        topk_ids: vec![vec![]; prompt_ids.len()],
        topk_logprobs: vec![vec![]; prompt_ids.len()],
        hard_label_only: !with_logprobs,
        chunks: Vec::new(),
    };
    let (mut token_logprob, mut tail_mass) = (vec![0.0; prompt_ids.len()], vec![0.0; prompt_ids.len()]);
    for (j, &id) in completion_ids.iter().enumerate() {
        ex.input_ids.push(id);
        ex.loss_mask.push(1);
        let (ids, lps) = match (with_logprobs, id == other) {
            (false, _) => (vec![], vec![]),
            (true, true) => (vec![id], vec![lp(16 + j)]),
            (true, false) => (vec![id, other], vec![lp(16 + j), lp(2048 + j)]),
        };
        token_logprob.push(if with_logprobs { lp(16 + j) } else { 0.0 });
        tail_mass.push(if with_logprobs { (1.0 - lps.iter().map(|x| x.exp()).sum::<f32>()).max(0.0) } else { 0.0 });
        ex.topk_ids.push(ids);
        ex.topk_logprobs.push(lps);
    }
    if stopped {
        ex.input_ids.push(tok.token_to_id("<|endoftext|>").unwrap());
        ex.loss_mask.push(1);
        ex.topk_ids.push(vec![]);
        ex.topk_logprobs.push(vec![]);
        token_logprob.push(0.0);
        tail_mass.push(0.0);
    }
    let expected = Expected {
        example: ex,
        split: split_of(&prompt_id, 0, VALIDATION_FRACTION),
        prompt_id,
        prompt_text,
        completion,
        token_logprob,
        tail_mass,
        alignment: if with_logprobs { "exact" } else { "no_teacher_logprobs" },
        prompt_tokens: prompt_ids.len() as u32,
        pass_vector,
        scores,
    };
    (kept, with_logprobs.then_some(teacher), expected)
}

/// Writes the stage's inputs as the filter and teacher stages do (kept samples in prompt id then
/// sample order, one frame of log-probs per prompt), runs the real stage, and returns its folder.
fn run_shards(work: &Path, tokenizer: &Path, samples: &[(&KeptSample, Option<&[TokenLogprob]>)]) -> PathBuf {
    fs::create_dir_all(work.join("filter")).unwrap();
    let kept: Vec<&KeptSample> = samples.iter().map(|s| s.0).collect();
    distill_core::jsonl::write(&work.join("filter/kept.jsonl"), &kept).unwrap();
    let mut frames = distill_core::frames::FrameWriter::create(&work.join("teacher/logprobs.frames")).unwrap();
    for prompt in samples.chunk_by(|a, b| a.0.prompt_id == b.0.prompt_id) {
        frames.write(&prompt[0].0.prompt_id, &distill_core::logprobs::pack_samples(prompt.iter().map(|s| s.1))).unwrap();
    }
    frames.finish().unwrap();
    let out = work.join("shards");
    fs::create_dir_all(&out).unwrap();
    // Small files and row groups, so the trainer's reader crosses both.
    let cfg = ShardsConfig { tokenizer: tokenizer.display().to_string(), validation_fraction: VALIDATION_FRACTION, rows_per_file: 5, row_group_rows: 2, ..Default::default() };
    let ctx = StageContext { stage: "shards", work_dir: work, out_dir: out.clone(), scratch_dir: work.join(".scratch"), shard: None, quiet: true };
    let stats = distill_shards::run(&ctx, &cfg).unwrap();
    assert_eq!(stats["total_rows"], samples.len(), "{stats}");
    out
}

#[test]
fn the_trainer_reads_back_every_column_the_shards_stage_writes() {
    let work = tempfile::tempdir().unwrap();
    let tokenizer = work.path().join("tokenizer.json");
    train_tokenizer(&tokenizer);
    let tok = StudentTokenizer::load(&tokenizer).unwrap();
    let samples: Vec<_> = (0..PROMPTS).flat_map(|i| [0, 1].map(|k| sample(&tok, i, k))).collect();
    let out = run_shards(work.path(), &tokenizer, &samples.iter().map(|s| (&s.0, s.1.as_deref())).collect::<Vec<_>>());
    let expected: BTreeMap<&str, &Expected> = samples.iter().map(|s| (s.0.id.as_str(), &s.2)).collect();

    // What the trainer sees: every row checked and kept, in its split, equal to the inputs.
    let files = shard_files(&out).unwrap();
    assert!(files.len() > 2, "several files: {files:?}");
    let data = ShardData::open(&files, 1 << 16, tok.vocab_size()).unwrap();
    assert!(data.skipped.is_empty(), "{:?}", data.skipped);
    assert_eq!(data.truncated, 0);
    assert_eq!(data.untrained, 0, "every row has a completion to train on");

    // With a context that ends before some rows' first trained position, those rows teach
    // nothing: counted (the train stage warns and reports `untrained_rows`).
    let first_trained = |w: &Expected| {
        let m = &w.example.loss_mask;
        (1..m.len()).find(|&p| m[p] != 0).unwrap_or(m.len())
    };
    let train_rows: Vec<&Expected> = expected.values().copied().filter(|w| w.split == "train").collect();
    let cut = train_rows.iter().map(|w| first_trained(w)).max().unwrap();
    let want = train_rows.iter().filter(|w| first_trained(w) >= w.example.loss_mask.len().min(cut)).count();
    let short = ShardData::open(&files, cut, tok.vocab_size()).unwrap();
    assert!(want > 0, "the rows whose prompt is longest are cut before their completion");
    assert_eq!(short.untrained, want, "context {cut}: {} of {} training rows", want, train_rows.len());
    let mut seen = 0;
    for (split, source) in [("train", &data.train), ("validation", &data.validation)] {
        assert!(!source.is_empty(), "the {split} split has rows");
        for ex in source.load(&(0..source.len()).collect::<Vec<_>>()).unwrap() {
            let want = expected[ex.id.as_str()];
            assert_eq!(want.split, split, "{}", ex.id);
            assert_eq!(ex, want.example, "{} as the trainer reads it", ex.id);
            seen += 1;
        }
    }
    assert_eq!(seen, samples.len());

    // The columns the trainer leaves alone, straight from the files.
    let score_names = vec!["agreement".to_string(), "pass_rate".to_string()];
    let schema = distill_shards::schema::schema(&score_names);
    let mut rows = 0;
    for path in &files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
        assert_eq!(reader.schema().fields(), schema.fields(), "{} has the one schema", path.display());
        for batch in reader.build().unwrap() {
            rows += check_other_columns(&batch.unwrap(), &expected);
        }
    }
    assert_eq!(rows, samples.len());
}

/// Checks the columns the trainer does not read against `expected`; returns the row count.
fn check_other_columns(batch: &RecordBatch, expected: &BTreeMap<&str, &Expected>) -> usize {
    let column = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
    let text = |name: &str, r: usize| column(name).as_string::<i32>().value(r).to_string();
    let floats = |name: &str, r: usize| column(name).as_list::<i32>().value(r).as_primitive::<Float32Type>().values().to_vec();
    for r in 0..batch.num_rows() {
        let id = text(col::ROW_ID, r);
        let want = expected[id.as_str()];
        assert_eq!(text(col::PROMPT_ID, r), want.prompt_id);
        assert_eq!(text(col::PROMPT_TEXT, r), want.prompt_text);
        assert_eq!(text(col::COMPLETION_TEXT, r), want.completion);
        assert_eq!(text(col::ALIGNMENT, r), want.alignment, "{id}");
        assert_eq!(text(col::SPLIT, r), want.split);
        assert_eq!(floats(col::TEACHER_TOKEN_LOGPROB, r), want.token_logprob, "{id}");
        let tail = floats(col::TAIL_MASS, r);
        assert_eq!(tail.len(), want.tail_mass.len());
        assert!(tail.iter().zip(&want.tail_mass).all(|(a, b)| (a - b).abs() < 1e-6), "{id}: tail mass {tail:?}, want {:?}", want.tail_mass);
        assert_eq!(column(col::PROMPT_TOKENS).as_primitive::<UInt32Type>().value(r), want.prompt_tokens);
        let pass = column(col::PASS_VECTOR).as_list::<i32>().value(r);
        assert_eq!(pass.as_boolean().iter().map(Option::unwrap).collect::<Vec<_>>(), want.pass_vector);
        // A shared tokenizer: no chunks; every completion byte soft-labelled, or none.
        for name in [col::CHUNK_STARTS, col::CHUNK_LENGTHS] {
            assert!(column(name).as_list::<i32>().value(r).is_empty(), "{id}: {name}");
        }
        let share = column(col::SOFT_LABEL_BYTE_SHARE).as_primitive::<Float32Type>().value(r);
        let labelled: Vec<f32> = want.tail_mass.iter().zip(&want.example.topk_ids).filter(|(_, k)| !k.is_empty()).map(|(t, _)| 1.0 - t).collect();
        assert_eq!(share, if labelled.is_empty() { 0.0 } else { 1.0 }, "{id}");
        let mass = column(col::TEACHER_MASS_CAPTURED).as_primitive::<Float32Type>().value(r);
        let want_mass = if labelled.is_empty() { 0.0 } else { labelled.iter().sum::<f32>() / labelled.len() as f32 };
        assert!((mass - want_mass).abs() < 1e-5, "{id}: teacher mass {mass} vs {want_mass}");
        for name in ["agreement", "pass_rate"] {
            let scores = column(&format!("{}{name}", col::SCORE_PREFIX)).as_primitive::<Float64Type>().clone();
            let got = (!scores.is_null(r)).then(|| scores.value(r));
            assert_eq!(got, want.scores.get(name).copied(), "{id}: score {name}");
        }
    }
    batch.num_rows()
}

/// A teacher of another tokenizer: the chunks the shards stage writes reach the trainer's
/// examples unchanged, pass its checks, and become the batch's chunk rows (each later row of a
/// chunk pointing at the chunk's first row).
#[test]
fn chunks_from_a_teacher_of_another_tokenizer_reach_the_trainers_batches() {
    let work = tempfile::tempdir().unwrap();
    let tokenizer = work.path().join("tokenizer.json");
    train_tokenizer(&tokenizer);
    let tok = StudentTokenizer::load(&tokenizer).unwrap();
    // The teacher's tokens are the student's taken two at a time: chunks of one teacher token
    // and two student tokens.
    let samples: Vec<(KeptSample, Vec<TokenLogprob>)> = (0..4)
        .map(|i| {
            let (kept, _, _) = sample(&tok, i * 4 + 1 - i % 2, 0);
            let ids = tok.encode(&kept.completion).unwrap();
            let tokens = ids
                .chunks(2)
                .enumerate()
                .map(|(j, pair)| {
                    let bytes: Vec<u8> = pair.iter().flat_map(|&id| tok.bytes(id).to_vec()).collect();
                    let alt = |b: &[u8], units| TopLogprob { token: String::from_utf8_lossy(b).into_owned(), bytes: Some(b.to_vec()), logprob: lp(units) };
                    TokenLogprob {
                        token: String::from_utf8_lossy(&bytes).into_owned(),
                        bytes: Some(bytes.clone()),
                        logprob: lp(16 + j),
                        top: vec![alt(&bytes, 16 + j), alt(b"(", 3000)],
                    }
                })
                .collect();
            (kept, tokens)
        })
        .collect();
    let out = run_shards(work.path(), &tokenizer, &samples.iter().map(|(k, t)| (k, Some(t.as_slice()))).collect::<Vec<_>>());

    // The chunk columns, straight from the files.
    let mut written: BTreeMap<String, Vec<(u32, u32)>> = BTreeMap::new();
    for path in shard_files(&out).unwrap() {
        for batch in ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).unwrap()).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let list = |name: &str, r: usize| batch.column_by_name(name).unwrap().as_list::<i32>().value(r).as_primitive::<UInt32Type>().values().to_vec();
            for r in 0..batch.num_rows() {
                let id = batch.column_by_name(col::ROW_ID).unwrap().as_string::<i32>().value(r).to_string();
                written.insert(id, list(col::CHUNK_STARTS, r).into_iter().zip(list(col::CHUNK_LENGTHS, r)).collect());
            }
        }
    }
    assert!(written.values().any(|c| !c.is_empty()), "the two tokenizers make multi-token chunks: {written:?}");
    // A file of schema version 1 (no chunk or coverage columns) still reads, without chunks.
    for path in shard_files(&out).unwrap() {
        for batch in ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&path).unwrap()).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let v2 = [col::CHUNK_STARTS, col::CHUNK_LENGTHS, col::SOFT_LABEL_BYTE_SHARE, col::TEACHER_MASS_CAPTURED];
            let keep: Vec<usize> = batch.schema().fields().iter().enumerate().filter(|(_, f)| !v2.contains(&f.name().as_str())).map(|(i, _)| i).collect();
            let (now, v1) = (distill_train::data::read_batch(&batch).unwrap(), distill_train::data::read_batch(&batch.project(&keep).unwrap()).unwrap());
            for (a, b) in now.into_iter().zip(v1) {
                let ((mut a, _), (b, _)) = (a.unwrap(), b.unwrap());
                assert!(b.chunks.is_empty());
                a.chunks.clear();
                assert_eq!(a, b);
            }
        }
    }

    let data = ShardData::open(&shard_files(&out).unwrap(), 1 << 16, tok.vocab_size()).unwrap();
    assert!(data.skipped.is_empty(), "{:?}", data.skipped);
    let mut examples = Vec::new();
    for source in [&data.train, &data.validation] {
        examples.extend(source.load(&(0..source.len()).collect::<Vec<_>>()).unwrap());
    }
    assert_eq!(examples.len(), 4);
    for ex in &examples {
        assert_eq!(ex.chunks, written[&ex.id], "{}", ex.id);
    }
    let refs: Vec<&Example> = examples.iter().collect();
    let batch = distill_train::batch::Batch::new(&refs, &candle_core::Device::Cpu).unwrap();
    let t = refs.iter().map(|e| e.len()).max().unwrap();
    let mut want_interior = Vec::new();
    let mut want_start = Vec::new();
    for (b, ex) in refs.iter().enumerate() {
        for &(start, len) in &ex.chunks {
            let first = (b * (t - 1) + start as usize - 1) as u32;
            for r in 1..len {
                want_interior.push(first + r);
                want_start.push(first);
            }
        }
    }
    let rows = batch.targets.chunks.as_ref().expect("chunk rows");
    assert_eq!(rows.interior.to_vec1::<u32>().unwrap(), want_interior);
    assert_eq!(rows.start.to_vec1::<u32>().unwrap(), want_start);
    // The chunks' later rows have no soft labels of their own, but train on the hard label.
    let kd = batch.targets.kd_mask.to_vec1::<f32>().unwrap();
    let ce = batch.targets.ce_mask.to_vec1::<f32>().unwrap();
    assert!(want_interior.iter().all(|&r| kd[r as usize] == 0.0 && ce[r as usize] == 1.0));
    assert!(want_start.iter().all(|&r| kd[r as usize] == 1.0));
}
