//! The tokenizer stage end to end on real corpora: the Python stdlib (capped) and a temp folder.

use std::fs;
use std::path::Path;

use distill_core::StageContext;
use distill_tokenizer::{corpus_digest, run, TokenizerConfig, SPECIAL_TOKENS, TOKENIZER_FILE};
use tokenizers::Tokenizer;

fn ctx<'a>(work: &'a Path, out: &Path) -> StageContext<'a> {
    StageContext { stage: "tokenizer", work_dir: work, out_dir: out.to_path_buf(), scratch_dir: work.join(".scratch"), shard: None, quiet: true }
}

fn small_stdlib() -> TokenizerConfig {
    TokenizerConfig { vocab_size: 700, max_corpus_bytes: 400_000, ..Default::default() }
}

#[test]
fn trains_on_the_stdlib_with_special_tokens_and_round_trips_code() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let stats = run(&ctx(work.path(), &out), &small_stdlib()).unwrap();
    assert!(stats["files"].as_u64().unwrap() > 5, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() <= 400_000);
    let tok = Tokenizer::from_file(out.join(TOKENIZER_FILE)).unwrap();
    assert_eq!(tok.get_vocab_size(true), 700);
    for (id, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(id as u32), "{t}");
    }
    let code = "def f(x):\n    return x ** 2  # ünïcode ✓\n\n\tpass\r\n";
    let enc = tok.encode(code, false).unwrap();
    assert!(enc.len() < code.len(), "BPE should merge something: {} tokens", enc.len());
    assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), code);
    // Special tokens are single ids, not split into bytes.
    let fim = tok.encode("<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>", false).unwrap();
    assert_eq!(fim.get_ids()[0], 2);
    assert!(stats["bytes_per_token"].as_f64().unwrap() > 2.0, "{stats}");
    let corpus: serde_json::Value = serde_json::from_slice(&fs::read(out.join("corpus.json")).unwrap()).unwrap();
    assert_eq!(corpus["files"].as_array().unwrap().len() as u64, stats["files"].as_u64().unwrap());
}

#[test]
fn training_is_deterministic_and_the_digest_follows_the_corpus() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("pkg")).unwrap();
    fs::create_dir_all(src.join("tests")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("m{i}.py")), format!("def func_{i}(a, b):\n    return a + b * {i}\n\nclass K{i}:\n    pass\n")).unwrap();
    }
    fs::write(src.join("pkg/x.py"), "import os\nprint(os.getcwd())\n").unwrap();
    fs::write(src.join("tests/t.py"), "assert False\n").unwrap();
    fs::write(src.join("notes.txt"), "not code").unwrap();
    let cfg = TokenizerConfig { corpus: src.display().to_string(), vocab_size: 300, min_frequency: 1, ..Default::default() };
    let outs: Vec<_> = (0..2)
        .map(|k| {
            let out = work.path().join(format!("out{k}"));
            fs::create_dir_all(&out).unwrap();
            let stats = run(&ctx(work.path(), &out), &cfg).unwrap();
            assert_eq!(stats["files"], 21, "tests/ and .txt are excluded: {stats}");
            fs::read(out.join(TOKENIZER_FILE)).unwrap()
        })
        .collect();
    assert!(outs[0] == outs[1], "two trainings on the same corpus differ");

    let d0 = corpus_digest(&cfg, "c.toml").unwrap();
    assert_eq!(d0, corpus_digest(&cfg, "c.toml").unwrap());
    fs::write(src.join("pkg/x.py"), "import sys\n").unwrap();
    let d1 = corpus_digest(&cfg, "c.toml").unwrap();
    assert_ne!(d0, d1, "editing a file must change the digest");
    fs::write(src.join("tests/t.py"), "changed").unwrap();
    assert_eq!(d1, corpus_digest(&cfg, "c.toml").unwrap(), "excluded files do not count");

    let glob = TokenizerConfig { corpus: format!("{}/**/x.py", src.display()), ..cfg.clone() };
    let s = glob.settings("c").unwrap();
    let c = distill_tokenizer::corpus::select(&s).unwrap();
    assert_eq!(c.files.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(), vec!["pkg/x.py"]);
}

#[test]
fn an_empty_corpus_is_an_error_that_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let cfg = TokenizerConfig { corpus: work.path().display().to_string(), ..Default::default() };
    let err = run(&ctx(work.path(), work.path()), &cfg).unwrap_err().to_string();
    assert!(err.contains("no usable files") && err.contains("[tokenizer] corpus"), "{err}");
}
