//! The fast ASCII path of `StudentTokenizer::encode` gives `tokenizers`' own ids: on every ASCII
//! byte in the contexts GPT-2's pattern distinguishes, on random ASCII, on real code (MBPP's
//! 974 problems, their code and tests), and it steps aside for non-ASCII text and added tokens.

mod common;

use distill_shards::StudentTokenizer;
use distill_tokenizer::config::SPECIAL_TOKENS;

fn tokenizer() -> (tempfile::TempDir, StudentTokenizer) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = mbpp_texts();
    let refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let path = common::train_tokenizer_with(dir.path(), "tok.json", 2000, &refs, &SPECIAL_TOKENS);
    let tok = StudentTokenizer::load(&path).unwrap();
    assert!(tok.has_ascii_fast_path(), "the tokenizer stage's kind of tokenizer takes the fast path");
    (dir, tok)
}

/// MBPP's problem texts, code and tests (repo copy; see evals/SOURCES.md).
fn mbpp_texts() -> Vec<String> {
    let raw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../evals/data/mbpp.jsonl")).unwrap();
    let mut texts = Vec::new();
    for line in raw.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        texts.push(v["text"].as_str().unwrap().to_string());
        texts.push(v["code"].as_str().unwrap().to_string());
        texts.push(v["test_list"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect::<Vec<_>>().join("\n"));
    }
    texts
}

fn assert_same(tok: &StudentTokenizer, text: &str) {
    assert_eq!(tok.encode(text).unwrap(), tok.encode_reference(text).unwrap(), "text {text:?}");
}

#[test]
fn every_ascii_byte_in_every_context() {
    let (_dir, tok) = tokenizer();
    let contexts = ["", "a", "Z", "7", " ", "  ", "\n", "\t ", "'", "'s", "'ll", "(", "x ", " y", "  q", "\r\n"];
    let mut n = 0;
    for b in 0u8..128 {
        let c = (b as char).to_string();
        for before in contexts {
            for after in contexts {
                for repeat in [1, 2, 3] {
                    assert_same(&tok, &format!("{before}{}{after}", c.repeat(repeat)));
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 128 * 16 * 16 * 3);
}

#[test]
fn random_ascii_and_real_code() {
    let (_dir, tok) = tokenizer();
    // Weighted towards what GPT-2's pattern cares about: spaces, quotes, letters, digits.
    let alphabet: Vec<char> = "aAzZ09 '  \n\n\t\r\x0b\x0c\x1c\x1f\x7f(){}:=_.,\"#sltrvmd".chars().collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..3000 {
        let len = (state % 40) as usize;
        let text: String = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect();
        assert_same(&tok, &text);
    }
    let texts = mbpp_texts();
    assert!(texts.len() > 2900);
    for text in &texts {
        assert_same(&tok, text);
    }
}

#[test]
fn non_ascii_text_and_added_tokens_take_the_reference_path() {
    let (_dir, tok) = tokenizer();
    for text in ["naïve = 1", "x = '\u{a0}'", "print('日本')", "a<|endoftext|>b", "<|fim_prefix|>def f():", "s\u{2028}t"] {
        assert_same(&tok, text);
    }
}
