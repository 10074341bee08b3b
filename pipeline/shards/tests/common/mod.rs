//! What the shards tests share: real BPE tokenizers trained on a little code, teacher tokens
//! as a server sharing a tokenizer reports them, the stage run on files written as the filter
//! and teacher stages write them, and the Parquet files read back with pyarrow.
#![allow(dead_code, reason = "each test file uses some of these")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use distill_core::records::{KeptSample, PromptRecord, TokenLogprob, TopLogprob};
use distill_core::StageContext;
use distill_shards::{run, ShardManifest, ShardsConfig, StudentTokenizer};
use distill_tokenizer::config::{ENDOFTEXT, PAD};
use distill_tokenizer::train::{train_byte_level, BpeSpec};

pub const CODE: &str = "def add(a, b):\n    return a + b\n\nclass Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n\nfor i in range(10):\n    print(i, add(i, i))\n";

/// A real byte-level BPE trained on a little code, the tokenizer stage's kind.
pub fn train_tokenizer(dir: &Path, name: &str, vocab: usize, corpus: &[&str]) -> PathBuf {
    train_tokenizer_with(dir, name, vocab, corpus, &[ENDOFTEXT, PAD])
}

/// The same, with the special tokens `special` (the tokenizer stage's own: its `SPECIAL_TOKENS`).
pub fn train_tokenizer_with(dir: &Path, name: &str, vocab: usize, corpus: &[&str], special: &[&str]) -> PathBuf {
    let spec = BpeSpec { vocab_size: vocab, min_frequency: 1, special_tokens: special, max_token_length: None };
    let path = dir.join(name);
    train_byte_level(corpus.iter(), &spec).unwrap().save(&path, false).unwrap();
    path
}

/// Teacher tokens as a server sharing `teacher_tok` would report them: the sampled token at
/// -0.25, a second real token at -2.0, and an alternative no student token spells at -3.0.
pub fn teacher_tokens(teacher_tok: &StudentTokenizer, text: &str) -> Vec<TokenLogprob> {
    let ids = teacher_tok.encode(text).unwrap();
    let other = teacher_tok.encode(" return").unwrap()[0];
    ids.iter()
        .map(|&id| {
            let bytes = teacher_tok.bytes(id).to_vec();
            let token = String::from_utf8_lossy(&bytes).into_owned();
            let alt = |b: Vec<u8>, lp: f32| TopLogprob { token: String::from_utf8_lossy(&b).into_owned(), bytes: Some(b), logprob: lp };
            let mut top = vec![alt(bytes.clone(), -0.25)];
            if other != id {
                top.push(alt(teacher_tok.bytes(other).to_vec(), -2.0));
            }
            top.push(alt("\u{1F600}qzxv".as_bytes().to_vec(), -3.0));
            TokenLogprob { token, bytes: Some(bytes), logprob: -0.25, top }
        })
        .collect()
}

/// A kept sample and the teacher tokens its frame holds.
pub type Sample = (KeptSample, Option<Vec<TokenLogprob>>);

pub fn sample(prompt_id: &str, k: usize, completion: &str, tokens: Option<Vec<TokenLogprob>>) -> Sample {
    let mut scores = BTreeMap::new();
    scores.insert("pass_rate".to_string(), 0.5 + k as f64 / 10.0);
    let kept = KeptSample {
        id: format!("{prompt_id}#{k}"),
        prompt_id: prompt_id.into(),
        prompt: PromptRecord { id: prompt_id.into(), messages: None, prompt: Some("# add two numbers\n".into()), meta: Default::default() },
        model: "teacher-x".into(),
        temperature: 0.7,
        completion: completion.into(),
        finish_reason: Some("stop".into()),
        code: completion.into(),
        scores,
        pass_vector: vec![true, k.is_multiple_of(2)],
    };
    (kept, tokens)
}

pub struct Setup {
    pub work: tempfile::TempDir,
    pub shared: PathBuf,
    pub different: PathBuf,
}

pub fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let shared = train_tokenizer(work.path(), "shared.json", 420, &[CODE, CODE]);
    let different = train_tokenizer(work.path(), "different.json", 300, &["x = 1\ny = 2\n", "print('hello world')\n"]);
    Setup { work, shared, different }
}

/// Writes the stage's inputs as the filter and teacher stages would (kept samples in prompt id
/// then sample order; one frame of log-probs per prompt), and runs the stage.
pub fn run_stage(work: &Path, samples: &[Sample], cfg: &ShardsConfig) -> (PathBuf, serde_json::Value) {
    let mut samples = samples.to_vec();
    samples.sort_by(|a, b| (&a.0.prompt_id, a.0.id.len(), &a.0.id).cmp(&(&b.0.prompt_id, b.0.id.len(), &b.0.id)));
    fs::create_dir_all(work.join("filter")).unwrap();
    let kept: Vec<&KeptSample> = samples.iter().map(|s| &s.0).collect();
    distill_core::jsonl::write(&work.join("filter/kept.jsonl"), &kept).unwrap();
    let mut by_prompt: BTreeMap<&str, Vec<Option<&[TokenLogprob]>>> = BTreeMap::new();
    for (k, tokens) in &samples {
        let index: usize = k.id.rsplit_once('#').unwrap().1.parse().unwrap();
        let slots = by_prompt.entry(&k.prompt_id).or_default();
        slots.resize(slots.len().max(index + 1), None);
        slots[index] = tokens.as_deref();
    }
    let mut frames = distill_core::frames::FrameWriter::create(&work.join("teacher/logprobs.frames")).unwrap();
    for (id, slots) in by_prompt {
        frames.write(id, &distill_core::logprobs::pack_samples(slots.into_iter())).unwrap();
    }
    frames.finish().unwrap();
    let out = work.join(format!("out-{}", rand_suffix()));
    fs::create_dir_all(&out).unwrap();
    let ctx = StageContext { stage: "shards", work_dir: work, out_dir: out.clone(), scratch_dir: work.join(".s"), shard: None, quiet: true };
    let stats = run(&ctx, cfg).unwrap();
    (out, stats)
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

pub fn manifest(out: &Path) -> ShardManifest {
    serde_json::from_slice(&fs::read(out.join("shard_manifest.json")).unwrap()).unwrap()
}

pub const READ_BACK: &str = r#"
import sys, json, hashlib, glob, os
import pyarrow.parquet as pq
out = sys.argv[1]
res = {"files": {}}
for p in sorted(glob.glob(os.path.join(out, "*.parquet"))):
    f = pq.ParquetFile(p)
    t = f.read()
    res["files"][os.path.basename(p)] = {
        "rows": t.num_rows,
        "row_groups": f.metadata.num_row_groups,
        "compression": f.metadata.row_group(0).column(0).compression,
        "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest(),
        "schema": {fld.name: str(fld.type) for fld in t.schema},
        "rows_data": t.to_pylist(),
    }
print(json.dumps(res))
"#;

pub fn read_back(out: &Path) -> serde_json::Value {
    let py = distill_core::testing::reference_python();
    let o = Command::new(py).args(["-c", READ_BACK]).arg(out).output().unwrap();
    assert!(o.status.success(), "pyarrow failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}
