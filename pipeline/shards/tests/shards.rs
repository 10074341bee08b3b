//! The shards stage on real tokenizers and real Parquet files, read back with pyarrow.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

mod common;

use common::*;
use distill_core::records::{TokenLogprob, TopLogprob};
use distill_shards::{ShardsConfig, StudentTokenizer};
use distill_tokenizer::config::{ENDOFTEXT, PAD};
use distill_tokenizer::train::{train_byte_level, BpeSpec};

#[test]
fn a_shared_tokenizer_gives_exact_soft_labels_that_pyarrow_reads_back() {
    let s = setup();
    let tok = StudentTokenizer::load(&s.shared).unwrap();
    let completions = ["def add(a, b):\n    return a + b\n", "class Stack:\n    def push(self, x):\n        self.items.append(x)\n"];
    let samples: Vec<Sample> = (0..24)
        .map(|i| {
            let c = completions[i % 2];
            sample(&format!("p{}", i / 2), i % 2, c, Some(teacher_tokens(&tok, c)))
        })
        .collect();
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.34, ..Default::default() };
    let (out, stats) = run_stage(s.work.path(), &samples, &cfg);
    assert_eq!(stats["total_rows"], 24, "{stats}");
    assert_eq!(stats["alignment"]["exact"], 24, "{stats}");
    assert_eq!(stats["hard_label_only_rows"], 0);
    let m = manifest(&out);
    assert_eq!(m.teacher_model.as_deref(), Some("teacher-x"));
    assert_eq!(m.capture_temperature, Some(0.7));
    assert_eq!(m.tokenizer_sha256, distill_core::digest::sha256_file(&s.shared).unwrap());
    assert_eq!(m.score_names, vec!["pass_rate"]);

    let py = read_back(&out);
    let files = py["files"].as_object().unwrap();
    assert_eq!(files.len(), m.files.len());
    let mut total = 0;
    let mut splits_of_prompt: BTreeMap<String, String> = BTreeMap::new();
    for f in &m.files {
        let pf = &files[&f.path];
        assert_eq!(pf["sha256"], f.sha256.as_str(), "manifest hash of {}", f.path);
        assert_eq!(pf["rows"], f.rows);
        assert_eq!(pf["compression"], "ZSTD");
        let schema = &pf["schema"];
        assert_eq!(schema["input_ids"], "list<element: uint32 not null>");
        assert_eq!(schema["loss_mask"], "list<element: uint8 not null>");
        assert_eq!(schema["teacher_topk_ids"], "list<element: list<element: uint32 not null> not null>");
        assert_eq!(schema["teacher_topk_logprobs"], "list<element: list<element: float not null> not null>");
        assert_eq!(schema["tail_mass"], "list<element: float not null>");
        assert_eq!(schema["hard_label_only"], "bool");
        assert_eq!(schema["score_pass_rate"], "double");
        for row in pf["rows_data"].as_array().unwrap() {
            total += 1;
            let prompt_id = row["prompt_id"].as_str().unwrap().to_string();
            let split = row["split"].as_str().unwrap().to_string();
            assert_eq!(split, f.split);
            if let Some(prev) = splits_of_prompt.insert(prompt_id, split.clone()) {
                assert_eq!(prev, split, "a prompt's samples must share a split");
            }
            let completion = row["completion_text"].as_str().unwrap();
            let ids: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
            let mask: Vec<u8> = serde_json::from_value(row["loss_mask"].clone()).unwrap();
            let prompt_ids = tok.encode("# add two numbers\n").unwrap();
            let comp_ids = tok.encode(completion).unwrap();
            let eos = tok.token_to_id("<|endoftext|>").unwrap();
            assert_eq!(ids, [prompt_ids.clone(), comp_ids.clone(), vec![eos]].concat());
            assert_eq!(row["prompt_tokens"], prompt_ids.len());
            assert_eq!(mask.iter().filter(|&&m| m == 1).count(), comp_ids.len() + 1);
            assert!(mask[..prompt_ids.len()].iter().all(|&m| m == 0));
            let topk: Vec<Vec<u32>> = serde_json::from_value(row["teacher_topk_ids"].clone()).unwrap();
            let lps: Vec<Vec<f32>> = serde_json::from_value(row["teacher_topk_logprobs"].clone()).unwrap();
            let tails: Vec<f32> = serde_json::from_value(row["tail_mass"].clone()).unwrap();
            let other = tok.encode(" return").unwrap()[0];
            for (j, &id) in comp_ids.iter().enumerate() {
                let p = prompt_ids.len() + j;
                // Sampled token first, then the other real token; the emoji alternative is no
                // student token, so its mass is in the tail.
                if id == other {
                    assert_eq!(topk[p], vec![id]);
                    assert!((tails[p] - (1.0 - (-0.25f32).exp())).abs() < 1e-6);
                } else {
                    assert_eq!(topk[p], vec![id, other]);
                    assert_eq!(lps[p], vec![-0.25, -2.0]);
                    assert!((tails[p] - (1.0 - (-0.25f32).exp() - (-2.0f32).exp())).abs() < 1e-6, "{}", tails[p]);
                }
            }
            assert!(topk[..prompt_ids.len()].iter().all(Vec::is_empty));
            assert!(topk.last().unwrap().is_empty(), "the appended end-of-text has no soft label");
            assert_eq!(row["hard_label_only"], false);
            assert_eq!(row["alignment"], "exact");
            let pass: Vec<bool> = serde_json::from_value(row["pass_vector"].clone()).unwrap();
            assert_eq!(pass.len(), 2);
        }
    }
    assert_eq!(total, 24);
    assert_eq!(m.rows.values().sum::<usize>(), 24);
    assert!(m.rows["train"] > 0 && m.rows["validation"] > 0, "both splits drawn: {:?}", m.rows);
    assert_eq!(m.rows["validation"] % 2, 0, "a prompt's two samples share a split");
}

#[test]
fn rows_without_usable_labels_fall_back_to_hard_labels_and_are_counted() {
    let s = setup();
    let teacher = StudentTokenizer::load(&s.different).unwrap();
    let student = StudentTokenizer::load(&s.shared).unwrap();
    let c = "def add(a, b):\n    return a + b\n";
    assert_ne!(teacher.encode(c).unwrap().len(), student.encode(c).unwrap().len(), "the two tokenizers must split differently");
    // A teacher token the student's vocabulary lacks (the whole answer as one token): one chunk
    // of more student tokens than `max_chunk_tokens`, so no position can carry soft labels.
    let mut foreign = teacher_tokens(&teacher, c);
    let merged: Vec<u8> = foreign.drain(..).flat_map(|t| t.bytes.unwrap()).collect();
    assert!(student.id(&merged).is_none(), "the merged token must be outside the student's vocabulary");
    assert!(student.encode(c).unwrap().len() > ShardsConfig::default().max_chunk_tokens);
    let top = vec![TopLogprob { token: String::from_utf8_lossy(&merged).into_owned(), bytes: Some(merged.clone()), logprob: -0.25 }];
    foreign.insert(0, TokenLogprob { token: String::from_utf8_lossy(&merged).into_owned(), bytes: Some(merged), logprob: -0.25, top });
    let mut samples = vec![sample("p1", 0, c, Some(foreign)), sample("p2", 0, c, Some(teacher_tokens(&student, c))), sample("p3", 0, c, None)];
    // Teacher tokens that spell something else entirely.
    samples.push(sample("p4", 0, c, Some(teacher_tokens(&student, "XYZ"))));
    // Teacher tokens that spell the completion but for one span (a server that normalised
    // whitespace): the tokens before and after it keep their labels.
    samples.push(sample("p5", 0, c, Some(teacher_tokens(&student, "def add(a,b):\n    return a + b\n"))));
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.0, ..Default::default() };
    let (out, stats) = run_stage(s.work.path(), &samples, &cfg);
    assert_eq!(stats["hard_label_only_rows"], 3, "{stats}");
    let m = manifest(&out);
    let want: BTreeMap<String, usize> =
        [("boundaries_differ", 1), ("chunks", 1), ("exact", 1), ("no_teacher_logprobs", 1), ("teacher_bytes_mismatch", 1)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(m.alignment, want);
    let py = read_back(&out);
    let rows = py["files"]["train-00000-of-00001.parquet"]["rows_data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let labelled = r["row_id"] == "p2#0" || r["row_id"] == "p5#0";
        assert_eq!(r["hard_label_only"], !labelled);
        let topk: Vec<Vec<u32>> = serde_json::from_value(r["teacher_topk_ids"].clone()).unwrap();
        assert_eq!(topk.iter().any(|t| !t.is_empty()), labelled, "hard-label rows carry no soft labels");
        let mask: Vec<u8> = serde_json::from_value(r["loss_mask"].clone()).unwrap();
        assert!(mask.contains(&1), "hard-label rows still train on the completion");
        let share = r["soft_label_byte_share"].as_f64().unwrap();
        if r["row_id"] == "p5#0" {
            // "def add(a," and " b):\n    return a + b\n" keep labels; the tokens around the
            // missing space do not.
            let first = r["prompt_tokens"].as_u64().unwrap() as usize;
            let comp = student.encode(c).unwrap();
            let text_of = |range: std::ops::Range<usize>| range.map(|j| String::from_utf8_lossy(student.bytes(comp[j])).into_owned()).collect::<String>();
            let labelled: Vec<usize> = (0..comp.len()).filter(|&j| !topk[first + j].is_empty()).collect();
            assert!(share > 0.5 && share < 1.0, "{share}");
            assert!(text_of(0..1).starts_with("def") && labelled.contains(&0), "{labelled:?}");
            assert!(labelled.contains(&(comp.len() - 1)), "the common suffix keeps its labels: {labelled:?}");
        } else {
            assert_eq!(share, if labelled { 1.0 } else { 0.0 });
        }
    }
}

/// What the alignment oracle expects at one student token: its byte length, and, when it starts
/// a chunk that gets labels, the chunk's teacher tokens, student tokens and bytes.
type Expected = (usize, Option<(usize, usize, usize)>);

/// The alignment oracle, with no walk: chunks are the spans between byte offsets where both
/// tokenizations of `text` have a boundary; one of at most `max` tokens on each side is
/// labelled at its first student token.
fn chunk_oracle(teacher: &StudentTokenizer, student: &StudentTokenizer, text: &str, max: usize) -> Vec<Expected> {
    let starts = |tok: &StudentTokenizer| {
        let mut out = vec![0];
        for id in tok.encode(text).unwrap() {
            out.push(out.last().unwrap() + tok.bytes(id).len());
        }
        out
    };
    let (t, s) = (starts(teacher), starts(student));
    let common: Vec<usize> = s.iter().copied().filter(|b| t.contains(b)).collect();
    let count = |bounds: &[usize], a: usize, b: usize| bounds[..bounds.len() - 1].iter().filter(|&&x| a <= x && x < b).count();
    s.windows(2)
        .map(|w| {
            let label = common.iter().position(|&b| b == w[0]).filter(|&i| i + 1 < common.len()).and_then(|i| {
                let end = common[i + 1];
                let (m, n) = (count(&t, w[0], end), count(&s, w[0], end));
                (m.max(n) <= max).then_some((m, n, end - w[0]))
            });
            (w[1] - w[0], label)
        })
        .collect()
}

fn soft_bytes(expected: &[Expected]) -> usize {
    expected.iter().filter_map(|(_, l)| l.map(|(_, _, bytes)| bytes)).sum()
}

#[test]
fn a_teacher_with_another_bpe_labels_every_chunk_of_up_to_max_chunk_tokens() {
    let s = setup();
    let teacher = StudentTokenizer::load(&s.different).unwrap();
    let student = StudentTokenizer::load(&s.shared).unwrap();
    // Code the two BPEs merge differently, digits, and multi-byte UTF-8.
    let c = "def add(a, b):\n    return a + b  # somme é 12345\n\nprint(add(1, 2))\n";
    let max = 4;
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.0, max_chunk_tokens: max, ..Default::default() };
    let (out, stats) = run_stage(s.work.path(), &[sample("p1", 0, c, Some(teacher_tokens(&teacher, c)))], &cfg);

    let oracle = chunk_oracle(&teacher, &student, c, max);
    let kinds: Vec<Option<(usize, usize)>> = oracle.iter().map(|(_, l)| l.map(|(m, n, _)| (m, n))).collect();
    assert!(kinds.contains(&Some((1, 1))) && kinds.iter().any(|k| k.is_some_and(|(m, n)| m > 1 && n == 1)), "the test needs 1:1 and m:1 chunks: {kinds:?}");
    assert!(kinds.iter().any(|k| k.is_some_and(|(_, n)| n > 1)) && kinds.iter().any(|k| k.is_none()), "and 1:n chunks, and unlabelled positions: {kinds:?}");
    let comp_ids = student.encode(c).unwrap();

    let m = manifest(&out);
    assert_eq!(m.alignment, BTreeMap::from([("chunks".to_string(), 1)]));
    assert_eq!(m.hard_label_only_rows, 0);
    assert_eq!((m.soft_label_bytes, m.completion_bytes), (soft_bytes(&oracle) as u64, c.len() as u64));
    assert!((stats["soft_label_byte_share"].as_f64().unwrap() - soft_bytes(&oracle) as f64 / c.len() as f64).abs() < 1e-12, "{stats}");

    let py = read_back(&out);
    let row = &py["files"]["train-00000-of-00001.parquet"]["rows_data"][0];
    assert_eq!((row["alignment"].as_str(), row["hard_label_only"].as_bool()), (Some("chunks"), Some(false)));
    let ids: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
    let mask: Vec<u8> = serde_json::from_value(row["loss_mask"].clone()).unwrap();
    let topk: Vec<Vec<u32>> = serde_json::from_value(row["teacher_topk_ids"].clone()).unwrap();
    let lps: Vec<Vec<f32>> = serde_json::from_value(row["teacher_topk_logprobs"].clone()).unwrap();
    let starts: Vec<u32> = serde_json::from_value(row["chunk_starts"].clone()).unwrap();
    let lengths: Vec<u32> = serde_json::from_value(row["chunk_lengths"].clone()).unwrap();
    let first = row["prompt_tokens"].as_u64().unwrap() as usize;
    assert_eq!(ids[first..first + comp_ids.len()], comp_ids[..], "the student's own tokenization is the input");
    let mut want_chunks = Vec::new();
    let mut at = 0;
    for (j, &(len, label)) in oracle.iter().enumerate() {
        let p = first + j;
        assert_eq!(mask[p], 1, "every completion position trains on the hard label");
        assert_eq!(!topk[p].is_empty(), label.is_some(), "position {j}: {:?}", String::from_utf8_lossy(student.bytes(comp_ids[j])));
        if let Some((m, n, bytes)) = label {
            // The chunk heads the list: the student's first token of it, at the sum of its
            // teacher tokens' log-probs.
            assert_eq!(topk[p][0], comp_ids[j]);
            assert!((lps[p][0] - -0.25 * m as f32).abs() < 1e-6, "{} vs {m} tokens", lps[p][0]);
            if (m, n) != (1, 1) {
                // The other events are disjoint from the chunk: no prefix either way.
                let chunk = &c.as_bytes()[at..at + bytes];
                for &alt in &topk[p][1..] {
                    let b = student.bytes(alt);
                    assert!(!chunk.starts_with(b) && !b.starts_with(chunk), "{:?} overlaps {:?}", String::from_utf8_lossy(b), String::from_utf8_lossy(chunk));
                }
            }
            if n > 1 {
                want_chunks.push((p as u32, n as u32));
            }
        }
        at += len;
    }
    assert_eq!(starts.into_iter().zip(lengths).collect::<Vec<_>>(), want_chunks);
    let mass = row["teacher_mass_captured"].as_f64().unwrap();
    assert!(mass > 0.0 && mass < 1.0, "{mass}");
}

/// Claude's tokenizer as the `anthropic` Python SDK 0.34.2 ships it (MIT licence), installed
/// into the test venv by `scripts/requirements-test.txt`.
fn published_tokenizer() -> PathBuf {
    let find = "import importlib.util, os; print(os.path.join(importlib.util.find_spec('anthropic').submodule_search_locations[0], 'tokenizer.json'))";
    let o = Command::new(distill_core::testing::reference_python()).args(["-c", find]).output().unwrap();
    assert!(o.status.success(), "anthropic is not in the test venv (run scripts/python-env.sh): {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

#[test]
fn a_published_teacher_tokenizer_labels_most_completion_bytes() {
    let s = setup();
    let teacher = StudentTokenizer::load(&published_tokenizer()).unwrap();
    let student = StudentTokenizer::load(&s.shared).unwrap();
    assert!(teacher.vocab_size() > 60_000, "{}", teacher.vocab_size());
    let completions = [CODE, "def mean(xs):\n    return sum(xs) / len(xs)  # moyenne é, 3.14159\n", "x = [1, 22, 333]\nprint(x)\n"];
    let samples: Vec<Sample> = completions.iter().enumerate().map(|(i, c)| sample(&format!("p{i}"), 0, c, Some(teacher_tokens(&teacher, c)))).collect();
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.0, ..Default::default() };
    let (out, _) = run_stage(s.work.path(), &samples, &cfg);

    // Every chunk of up to max_chunk_tokens tokens carries soft labels.
    let soft: usize = completions.iter().map(|c| soft_bytes(&chunk_oracle(&teacher, &student, c, cfg.max_chunk_tokens))).sum();
    let one_to_one: usize = completions.iter().flat_map(|c| chunk_oracle(&teacher, &student, c, 1)).filter_map(|(_, l)| l.map(|(_, _, b)| b)).sum();
    let m = manifest(&out);
    let total: usize = completions.iter().map(|c| c.len()).sum();
    assert_eq!((m.soft_label_bytes, m.completion_bytes), (soft as u64, total as u64));
    eprintln!("published tokenizer: {soft} of {total} completion bytes soft-labelled ({one_to_one} by 1:1 chunks alone)");
    assert!(soft * 10 >= total * 9 && soft > one_to_one, "chunk events label at least 90% of the bytes: {soft} of {total} ({one_to_one} by 1:1 chunks alone)");
    assert_eq!(m.hard_label_only_rows, 0, "{:?}", m.alignment);
}

/// What practitioners' tokenizers do at the edges: a teacher that ends on a special token the
/// answer's text lacks, a teacher that splits a multi-byte character into byte tokens (each not
/// valid UTF-8 alone; the server sends their bytes), a teacher without bytes that shows such a
/// split as U+FFFD, and a student whose added token appears in the answer's text.
#[test]
fn vocabulary_edge_cases_keep_soft_labels_everywhere_they_can() {
    let work = tempfile::tempdir().unwrap();
    let spec = BpeSpec { vocab_size: 420, min_frequency: 1, special_tokens: &[ENDOFTEXT, PAD, "<|fim_middle|>"], max_token_length: None };
    let path = work.path().join("student.json");
    train_byte_level([CODE, CODE].iter(), &spec).unwrap().save(&path, false).unwrap();
    let student = StudentTokenizer::load(&path).unwrap();
    let tok = |bytes: &[u8], token: &str| {
        let alt = TopLogprob { token: token.to_string(), bytes: Some(bytes.to_vec()), logprob: -0.25 };
        TokenLogprob { token: token.to_string(), bytes: Some(bytes.to_vec()), logprob: -0.25, top: vec![alt] }
    };
    let split = |text: &str| -> Vec<TokenLogprob> { student.encode(text).unwrap().iter().map(|&id| tok(student.bytes(id), &String::from_utf8_lossy(student.bytes(id)))).collect() };
    let plain = "x = 1\nprint(x)\n";
    let mut trailing_special = split(plain);
    trailing_special.push(tok(b"<|im_end|>", "<|im_end|>"));
    let accented = "s = 'caf\u{e9}'\n";
    let mut byte_tokens = split("s = 'caf");
    byte_tokens.extend([tok(&[0xC3], "bytes:\\xc3"), tok(&[0xA9], "bytes:\\xa9")]);
    byte_tokens.extend(split("'\n"));
    let mut no_bytes = split("s = 'caf");
    no_bytes.extend(["\u{fffd}", "\u{fffd}"].map(|t| TokenLogprob { token: t.into(), bytes: None, logprob: -0.25, top: vec![] }));
    no_bytes.extend(split("'\n"));
    let added = "y = '<|fim_middle|>'\n";
    let added_split: Vec<TokenLogprob> = ["y = '", "<|", "fim_middle", "|>", "'\n"].iter().map(|t| tok(t.as_bytes(), t)).collect();
    assert!(student.encode(added).unwrap().contains(&student.token_to_id("<|fim_middle|>").unwrap()), "the student reads its added token in the text");
    let samples = vec![
        sample("a", 0, plain, Some(trailing_special)),
        sample("b", 0, accented, Some(byte_tokens)),
        sample("c", 0, accented, Some(no_bytes)),
        sample("d", 0, added, Some(added_split)),
    ];
    let cfg = ShardsConfig { tokenizer: path.display().to_string(), validation_fraction: 0.0, ..Default::default() };
    let (out, stats) = run_stage(work.path(), &samples, &cfg);
    assert_eq!(stats["hard_label_only_rows"], 0, "{stats}");
    let py = read_back(&out);
    let rows = py["files"]["train-00000-of-00001.parquet"]["rows_data"].as_array().unwrap().clone();
    let share: BTreeMap<String, f64> = rows.iter().map(|r| (r["row_id"].as_str().unwrap().to_string(), r["soft_label_byte_share"].as_f64().unwrap())).collect();
    assert_eq!(share["a#0"], 1.0, "the trailing special token costs nothing");
    assert_eq!(share["b#0"], 1.0, "byte tokens form a chunk with the character");
    assert_eq!(share["d#0"], 1.0, "the added token is a chunk of the teacher's plain pieces");
    // Without bytes only the student tokens over the replaced character fall back to the hard
    // label (bytes 8..10 of the answer, when the teacher's other tokens are the student's).
    let mut at = 0;
    let replaced: usize = student
        .encode(accented)
        .unwrap()
        .iter()
        .map(|&id| {
            at += student.bytes(id).len();
            (at - student.bytes(id).len(), at)
        })
        .filter(|&(a, b)| a < 10 && b > 8)
        .map(|(a, b)| b - a)
        .sum();
    assert!((share["c#0"] - (1.0 - replaced as f64 / accented.len() as f64)).abs() < 1e-6, "{} with {replaced} bytes replaced", share["c#0"]);
}

#[test]
fn files_row_groups_and_bytes_are_deterministic() {
    let s = setup();
    let tok = StudentTokenizer::load(&s.shared).unwrap();
    let c = "for i in range(10):\n    print(i)\n";
    let mut samples: Vec<Sample> = (0..7).map(|i| sample(&format!("q{i}"), 0, c, Some(teacher_tokens(&tok, c)))).collect();
    samples.reverse(); // run_stage writes them in the filter's order
    samples.push(sample("long", 0, &CODE.repeat(20), None));
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), rows_per_file: 3, row_group_rows: 2, validation_fraction: 0.0, max_seq_len: 200, ..Default::default() };
    let (a, stats) = run_stage(s.work.path(), &samples, &cfg);
    assert_eq!(stats["skipped"]["too_long"], 1, "{stats}");
    let (b, _) = run_stage(s.work.path(), &samples, &cfg);
    let m = manifest(&a);
    let names: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet"]);
    for f in &m.files {
        assert_eq!(fs::read(a.join(&f.path)).unwrap(), fs::read(b.join(&f.path)).unwrap(), "{} differs between runs", f.path);
    }
    let py = read_back(&a);
    assert_eq!(py["files"]["train-00000-of-00003.parquet"]["row_groups"], 2);
    assert_eq!(py["files"]["train-00002-of-00003.parquet"]["rows"], 1);
    let ids: Vec<String> = m.files.iter().flat_map(|f| py["files"][&f.path]["rows_data"].as_array().unwrap().iter().map(|r| r["row_id"].as_str().unwrap().to_string())).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows are in the kept samples' order");
    let leftovers: Vec<_> = fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Regression: a sampling teacher with the student's own vocabulary often emits a valid but
/// non-canonical split ("d" "e" "f" where BPE writes "def"); those rows used to fall back to
/// hard labels (38 of 39 in the offline default). The teacher's ids are used instead.
#[test]
fn a_non_canonical_split_in_the_shared_vocabulary_keeps_exact_soft_labels() {
    let s = setup();
    let student = StudentTokenizer::load(&s.shared).unwrap();
    let c = "def add(a, b):\n    return a + b\n";
    let one_byte_each: Vec<TokenLogprob> = c
        .bytes()
        .map(|b| {
            let alt = |x: &[u8], lp: f32| TopLogprob { token: String::from_utf8_lossy(x).into_owned(), bytes: Some(x.to_vec()), logprob: lp };
            TokenLogprob { token: (b as char).to_string(), bytes: Some(vec![b]), logprob: -0.5, top: vec![alt(&[b], -0.5), alt(b"x", -1.5)] }
        })
        .collect();
    assert_ne!(student.encode(c).unwrap().len(), one_byte_each.len(), "BPE would split this differently");
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.0, append_eos: false, ..Default::default() };
    let (out, stats) = run_stage(s.work.path(), &[sample("p1", 0, c, Some(one_byte_each.clone()))], &cfg);
    assert_eq!(stats["hard_label_only_rows"], 0, "{stats}");
    assert_eq!(manifest(&out).alignment, [("exact_teacher_tokens".to_string(), 1usize)].into());
    let py = read_back(&out);
    let row = &py["files"]["train-00000-of-00001.parquet"]["rows_data"][0];
    let ids: Vec<u32> = serde_json::from_value(row["input_ids"].clone()).unwrap();
    let mask: Vec<u8> = serde_json::from_value(row["loss_mask"].clone()).unwrap();
    let completion: Vec<u32> = ids.iter().zip(&mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
    let want: Vec<u32> = c.bytes().map(|b| student.id(&[b]).unwrap()).collect();
    assert_eq!(completion, want, "the completion is the teacher's own segmentation");
    let topk: Vec<Vec<u32>> = serde_json::from_value(row["teacher_topk_ids"].clone()).unwrap();
    assert!(topk.iter().zip(&mask).filter(|(_, m)| **m == 1).all(|(t, _)| t.len() == 2), "both alternatives map to student ids");
}
