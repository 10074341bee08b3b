//! Fill-in-the-middle rows (`fim.rs`) through the whole stage: the row layout, the loss mask and
//! the teacher's soft labels on the middle, read back from the Parquet files with pyarrow;
//! counts in the manifest; byte-identical reruns.

mod common;

use std::collections::BTreeMap;

use common::*;
use distill_shards::config::FimSplit;
use distill_shards::fim::{cut_points, plan, PSM, SPM};
use distill_shards::{ShardsConfig, StudentTokenizer};
use distill_tokenizer::SPECIAL_TOKENS;

const COMPLETIONS: [&str; 4] = [
    "def add(a, b):\n    return a + b\n",
    "class Stack:\n    def push(self, x):\n        self.items.append(x)\n",
    "for i in range(10):\n    print(i, add(i, i))\n",
    "def __init__(self):\n    self.items = []\n",
];
const PROMPT: &str = "# add two numbers\n";

struct Fixture {
    _setup: Setup,
    tok: StudentTokenizer,
    tokenizer: String,
    samples: Vec<Sample>,
}

/// 60 samples (30 prompts x 2) over a tokenizer with the tokenizer stage's FIM specials.
fn fixture() -> Fixture {
    let setup = setup();
    let path = train_tokenizer_with(setup.work.path(), "fim.json", 420, &[CODE, CODE], &SPECIAL_TOKENS);
    let tok = StudentTokenizer::load(&path).unwrap();
    let samples = (0..60)
        .map(|i| {
            let c = COMPLETIONS[i % COMPLETIONS.len()];
            sample(&format!("p{:02}", i / 2), i % 2, c, Some(teacher_tokens(&tok, c)))
        })
        .collect();
    Fixture { tokenizer: path.display().to_string(), _setup: setup, tok, samples }
}

fn config(f: &Fixture, rate: f64, split: &str) -> ShardsConfig {
    ShardsConfig { tokenizer: f.tokenizer.clone(), validation_fraction: 0.2, fim_rate: rate, fim_split: split.into(), fim_seed: 11, ..Default::default() }
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Every row the files hold, by row id.
fn rows(out: &std::path::Path) -> BTreeMap<String, serde_json::Value> {
    let py = read_back(out);
    let mut rows = BTreeMap::new();
    for f in py["files"].as_object().unwrap().values() {
        assert_eq!(f["schema"]["fim"], "string");
        for r in f["rows_data"].as_array().unwrap() {
            rows.insert(r["row_id"].as_str().unwrap().to_string(), r.clone());
        }
    }
    rows
}

#[test]
fn fim_rows_keep_the_teachers_labels_on_the_middle_only() {
    let f = fixture();
    let cfg = config(&f, 0.5, "chars");
    let (out, stats) = run_stage(f._setup.work.path(), &f.samples, &cfg);
    let m = manifest(&out);
    let rows = rows(&out);
    assert_eq!(rows.len(), 60);
    let settings = cfg.settings("c.toml", f._setup.work.path()).unwrap().fim.unwrap();
    let special = |t: &str| f.tok.token_to_id(t).unwrap();
    let (pre, suf, mid, eos) = (special("<|fim_prefix|>"), special("<|fim_suffix|>"), special("<|fim_middle|>"), special("<|endoftext|>"));
    let mut counted: BTreeMap<String, usize> = BTreeMap::new();
    let (mut middle_positions, mut labelled) = (0, 0);
    for (id, row) in &rows {
        let completion = f.samples.iter().find(|s| &s.0.id == id).unwrap().0.completion.clone();
        let fim = row["fim"].as_str().unwrap();
        let drawn = plan(id, &completion, &settings);
        if row["split"] == "validation" {
            assert_eq!(fim, "none", "{id}: validation rows stay left to right");
            continue;
        }
        assert_eq!(fim, drawn.as_ref().map_or("none", |p| p.mode), "{id}");
        let Some(p) = drawn else { continue };
        *counted.entry(fim.to_string()).or_default() += 1;
        let middle = &completion[p.middle.clone()];
        assert_eq!(row["completion_text"], middle, "{id}: completion_text holds the middle");
        let input = ids(&row["input_ids"]);
        let mask: Vec<u8> = serde_json::from_value(row["loss_mask"].clone()).unwrap();
        let context = row["prompt_tokens"].as_u64().unwrap() as usize;
        let prefix = f.tok.encode(&format!("{PROMPT}{}", &completion[..p.middle.start])).unwrap();
        let suffix = f.tok.encode(&completion[p.middle.end..]).unwrap();
        let want_context = if fim == PSM { [vec![pre], prefix, vec![suf], suffix, vec![mid]].concat() } else { [vec![pre, suf], suffix, vec![mid], prefix].concat() };
        assert_eq!(input[..context], want_context[..], "{id} ({fim}): the context");
        assert_eq!(*input.last().unwrap(), eos, "{id}: the middle ends with end-of-text");
        let middle_ids = &input[context..input.len() - 1];
        let spelled: Vec<u8> = middle_ids.iter().flat_map(|&t| f.tok.bytes(t).to_vec()).collect();
        assert_eq!(spelled, middle.as_bytes(), "{id}: the middle's ids spell the middle");
        assert!(mask[..context].iter().all(|&x| x == 0) && mask[context..].iter().all(|&x| x == 1), "{id}: loss on the middle and end-of-text only");
        // Soft labels: only on the middle, each at a position whose token is the teacher's own
        // token starting at the same completion byte (teacher_tokens samples at -0.25).
        let topk: Vec<Vec<u32>> = serde_json::from_value(row["teacher_topk_ids"].clone()).unwrap();
        let lp: Vec<f32> = serde_json::from_value(row["teacher_token_logprob"].clone()).unwrap();
        assert!(topk[..context].iter().all(Vec::is_empty) && topk.last().unwrap().is_empty());
        let teacher_starts: Vec<usize> = f
            .tok
            .encode(&completion)
            .unwrap()
            .iter()
            .scan(0, |at, &t| {
                *at += f.tok.bytes(t).len();
                Some(*at - f.tok.bytes(t).len())
            })
            .collect();
        let mut at = p.middle.start;
        for (j, &t) in middle_ids.iter().enumerate() {
            let pos = context + j;
            middle_positions += 1;
            if !topk[pos].is_empty() {
                labelled += 1;
                assert!(teacher_starts.contains(&at), "{id}: a label at byte {at}, where no teacher token starts");
                assert_eq!(topk[pos][0], t, "{id}: the sampled token leads the top-k");
                assert_eq!(lp[pos], -0.25);
            }
            at += f.tok.bytes(t).len();
        }
    }
    assert_eq!(m.fim_rows, counted, "the manifest counts the FIM rows the files hold");
    assert_eq!(stats["fim_rows"], serde_json::to_value(&counted).unwrap());
    assert!(counted.get(PSM).copied().unwrap_or(0) >= 5 && counted.get(SPM).copied().unwrap_or(0) >= 5, "{counted:?}");
    // Cuts inside teacher tokens cost at most the two cut tokens' pieces per row.
    assert!(labelled * 10 >= middle_positions * 6, "{labelled} of {middle_positions} middle positions soft-labelled");

    // The same inputs give the same bytes; FIM off gives no FIM rows.
    let (again, _) = run_stage(f._setup.work.path(), &f.samples, &cfg);
    assert_eq!(manifest(&again).files, m.files, "reruns are byte-identical");
    let (off, _) = run_stage(f._setup.work.path(), &f.samples, &config(&f, 0.0, "chars"));
    assert!(manifest(&off).fim_rows.is_empty());
    assert!(rows_fim_values(&off).iter().all(|v| v == "none"));
}

fn rows_fim_values(out: &std::path::Path) -> Vec<String> {
    rows(out).values().map(|r| r["fim"].as_str().unwrap().to_string()).collect()
}

#[test]
fn line_mode_middles_are_whole_lines() {
    let f = fixture();
    let (out, _) = run_stage(f._setup.work.path(), &f.samples, &config(&f, 1.0, "lines"));
    let mut fim = 0;
    for (id, row) in rows(&out) {
        if row["fim"] == "none" {
            continue;
        }
        fim += 1;
        let completion = f.samples.iter().find(|s| s.0.id == id).unwrap().0.completion.clone();
        let middle = row["completion_text"].as_str().unwrap();
        let starts = cut_points(&completion, FimSplit::Lines);
        assert!(starts.iter().any(|&a| completion[a..].starts_with(middle) && starts.contains(&(a + middle.len()))), "{id}: {middle:?} is not whole lines of {completion:?}");
    }
    assert_eq!(fim, manifest(&out).rows["train"], "fim_rate 1 turns every training row");
}

#[test]
fn a_tokenizer_without_fim_tokens_is_an_error_that_names_the_key() {
    let s = setup();
    let tok = StudentTokenizer::load(&s.shared).unwrap();
    let samples: Vec<Sample> = (0..6).map(|i| sample(&format!("p{i}"), 0, COMPLETIONS[0], Some(teacher_tokens(&tok, COMPLETIONS[0])))).collect();
    let cfg = ShardsConfig { tokenizer: s.shared.display().to_string(), validation_fraction: 0.0, fim_rate: 1.0, ..Default::default() };
    let err = std::panic::catch_unwind(|| run_stage(s.work.path(), &samples, &cfg)).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("<|fim_prefix|>") && msg.contains("fim_tokens") && msg.contains("shared.json"), "{msg}");
}
