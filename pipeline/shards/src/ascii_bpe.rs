//! A faster `encode` for the usual student tokenizer on ASCII text: byte-level BPE with
//! GPT-2's split pattern and no normalizer (the tokenizer `distill` trains, GPT-2's, StarCoder's).
//!
//! `tokenizers`' `encode_fast` keeps an offset-tracked `NormalizedString` for every piece and
//! allocates a `Token` (with its string) for every id: about 30% of the shards stage's CPU time
//! at 5,000 prompts. On ASCII text GPT-2's pattern
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! reduces to byte classes (letters `[A-Za-z]`, numbers `[0-9]`, white space `[\t\n\v\f\r ]`,
//! everything else), so [`split`] cuts the pieces with one scan. Each piece's ids still come
//! from the tokenizer's own BPE model (`Model::tokenize` on the piece's byte-level characters),
//! memoised per thread, so the merges are `tokenizers`' own. Text that is not ASCII or that
//! contains an added token (which `tokenizers` splits out first) goes through `encode_fast`.
//! `tests/ascii_bpe.rs` checks equal ids on every ASCII byte in every context and on the
//! benchmarks' code.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use tokenizers::{Model, ModelWrapper, PreTokenizerWrapper, Tokenizer};

/// Pieces memoised per thread before the memo is cleared (a few MB at most).
const MEMO_PIECES: usize = 1 << 16;

/// The fast path of one tokenizer, when its pipeline is the one this module reproduces.
pub struct AsciiBpe {
    /// Distinguishes tokenizers in the per-thread memo.
    key: u64,
    /// Added tokens' texts: a text containing one takes the slow path.
    added: Vec<String>,
    /// GPT-2's byte -> character table.
    table: [char; 256],
}

/// Piece bytes -> ids, for the tokenizer of one key.
type Memo = HashMap<Box<[u8]>, Box<[u32]>, ahash::RandomState>;

thread_local! {
    static MEMO: RefCell<(u64, Memo)> = RefCell::new((0, Memo::default()));
}

impl AsciiBpe {
    /// The fast path for `t`, or `None` when its pipeline is not byte-level BPE with GPT-2's
    /// pattern and nothing else (a normalizer, a prefix space, BPE dropout, affixes, padding or
    /// truncation would change the ids).
    pub fn new(t: &Tokenizer) -> Option<Self> {
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        let Some(PreTokenizerWrapper::ByteLevel(b)) = t.get_pre_tokenizer() else { return None };
        let ModelWrapper::BPE(bpe) = t.get_model() else { return None };
        let plain_bpe = bpe.dropout.is_none() && bpe.continuing_subword_prefix.is_none() && bpe.end_of_word_suffix.is_none();
        let plain = t.get_normalizer().is_none() && t.get_truncation().is_none() && t.get_padding().is_none();
        if !(b.use_regex && !b.add_prefix_space && plain_bpe && plain) {
            return None;
        }
        let added = t.get_added_tokens_decoder().into_values().map(|a| a.content).collect();
        Some(AsciiBpe { key: NEXT_KEY.fetch_add(1, Ordering::Relaxed), added, table: crate::vocab::bytes_to_unicode() })
    }

    /// The ids of `text` if the fast path applies to it (ASCII, no added token in it).
    pub fn encode(&self, model: &ModelWrapper, text: &str) -> Option<tokenizers::Result<Vec<u32>>> {
        if !text.is_ascii() || self.added.iter().any(|a| text.contains(a.as_str())) {
            return None;
        }
        Some(MEMO.with(|memo| {
            let (key, memo) = &mut *memo.borrow_mut();
            if *key != self.key || memo.len() > MEMO_PIECES {
                memo.clear();
                *key = self.key;
            }
            let mut ids = Vec::with_capacity(text.len() / 3);
            for piece in split(text.as_bytes()) {
                if let Some(known) = memo.get(piece) {
                    ids.extend_from_slice(known);
                    continue;
                }
                let chars: String = piece.iter().map(|&b| self.table[b as usize]).collect();
                let piece_ids: Box<[u32]> = model.tokenize(&chars)?.into_iter().map(|t| t.id).collect();
                ids.extend_from_slice(&piece_ids);
                memo.insert(piece.into(), piece_ids);
            }
            Ok(ids)
        }))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(b: u8) -> Class {
    match b {
        b'A'..=b'Z' | b'a'..=b'z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => Class::Space,
        _ => Class::Other,
    }
}

/// The pieces GPT-2's pattern cuts ASCII `s` into, in order (see the module doc).
pub fn split(s: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= s.len() {
            return None;
        }
        let start = i;
        i = piece_end(s, i);
        Some(&s[start..i])
    })
}

/// The end of the piece starting at `i` (< `s.len()`), trying the pattern's alternatives in order.
fn piece_end(s: &[u8], i: usize) -> usize {
    let run = |from: usize, c: Class| from + s[from..].iter().take_while(|&&b| class(b) == c).count();
    if s[i] == b'\'' {
        let rest = &s[i + 1..];
        if let Some(len) = ["s", "t", "re", "ve", "m", "ll", "d"].iter().find(|c| rest.starts_with(c.as_bytes())).map(|c| c.len()) {
            return i + 1 + len;
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    let body = if s[i] == b' ' { i + 1 } else { i };
    if let Some(&b) = s.get(body) {
        let c = class(b);
        if c != Class::Space {
            return run(body, c);
        }
    }
    // `\s+(?!\S)` (a run of white space that leaves its last character before a non-space to the
    // next piece), else `\s+`.
    let end = run(i, Class::Space);
    if end < s.len() && end - i > 1 {
        end - 1
    } else {
        end
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    fn pieces(s: &str) -> Vec<&str> {
        split(s.as_bytes()).map(|p| std::str::from_utf8(p).unwrap()).collect()
    }

    #[test]
    fn gpt2_pieces() {
        assert_eq!(pieces("def f(x):\n    return x's 12"), ["def", " f", "(", "x", "):", "\n   ", " return", " x", "'s", " 12"]);
        assert_eq!(pieces("a  \n\n"), ["a", "  \n\n"]);
        assert_eq!(pieces(" 'll'x"), [" '", "ll", "'", "x"]);
        assert_eq!(pieces("x)'s\t\ty"), ["x", ")'", "s", "\t", "\t", "y"]);
    }
}
