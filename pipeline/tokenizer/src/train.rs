//! Training a byte-level BPE (GPT-2 style) with the `tokenizers` library.
//!
//! Text is split by the GPT-2 pre-tokenizer regex, each piece mapped byte by byte onto 256
//! printable symbols (so any byte string is encodable and no `<unk>` exists), and BPE merges the
//! most frequent adjacent pair until the vocabulary has `vocab_size` entries. Special tokens take
//! ids 0..5 (see [`SPECIAL_TOKENS`]), then the 256 byte symbols, then the merges. No prefix space
//! is added: in code a leading space is meaningful and the student must reproduce text exactly.
//! Training is deterministic: the trainer orders its alphabet and breaks count ties by pair id.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::config::{Settings, SPECIAL_TOKENS};
use crate::error::{Error, Result};

fn tk_err(what: &'static str) -> impl Fn(tokenizers::Error) -> Error {
    move |e| Error::Tokenizers { what, path: None, message: e.to_string() }
}

/// Trains the stage's tokenizer on `texts` (one entry per file, in training order).
pub fn train(texts: &[String], settings: &Settings) -> Result<Tokenizer> {
    let spec = BpeSpec { vocab_size: settings.vocab_size, min_frequency: settings.min_frequency, special_tokens: &SPECIAL_TOKENS, max_token_length: settings.max_token_length };
    train_byte_level(texts.iter(), &spec)
}

/// What a byte-level BPE is trained with.
#[derive(Debug, Clone)]
pub struct BpeSpec<'a> {
    /// Most entries: special tokens, the 256 byte symbols and the merges.
    pub vocab_size: usize,
    /// The least count a pair needs to be merged.
    pub min_frequency: u64,
    /// Special tokens, given ids from 0 in this order.
    pub special_tokens: &'a [&'a str],
    /// Longest token in characters (`None`: no limit).
    pub max_token_length: Option<usize>,
}

/// Trains a byte-level BPE as the module docs describe. The workspace's one builder of such
/// tokenizers: the stage, the test fixtures and the benchmarks all train through it, so what
/// they test is the kind of tokenizer the stage makes.
pub fn train_byte_level<I, S>(texts: I, spec: &BpeSpec) -> Result<Tokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    let specials: Vec<AddedToken> = spec.special_tokens.iter().map(|t| AddedToken::from(*t, true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(spec.vocab_size)
        .min_frequency(spec.min_frequency)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .max_token_length(spec.max_token_length)
        .build();
    let byte_level = ByteLevel::new(false, false, true);
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(tokenizers::PreTokenizerWrapper::ByteLevel(byte_level)))
        .with_post_processor(Some(tokenizers::PostProcessorWrapper::ByteLevel(byte_level)))
        .with_decoder(Some(tokenizers::DecoderWrapper::ByteLevel(byte_level)))
        .build()
        .map_err(tk_err("building"))?;
    tokenizer.train(&mut trainer, texts).map_err(tk_err("training"))?;
    Ok(Tokenizer::from(tokenizer))
}

/// The tokenizer as `tokenizer.json` text (the HF format `transformers` and `tokenizers` load).
pub fn to_json(tokenizer: &Tokenizer) -> Result<String> {
    tokenizer.to_string(true).map_err(tk_err("serialising"))
}

/// Mean UTF-8 bytes per token over `texts` (higher compresses better).
pub fn bytes_per_token(tokenizer: &Tokenizer, texts: &[String]) -> Result<f64> {
    let mut bytes = 0usize;
    let mut tokens = 0usize;
    for t in texts {
        bytes += t.len();
        tokens += tokenizer.encode(t.as_str(), false).map_err(tk_err("encoding"))?.len();
    }
    Ok(if tokens == 0 { 0.0 } else { bytes as f64 / tokens as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &[&str] = &["def add(a, b):\n    return a + b\n", "for i in range(10):\n    print(i, add(i, i))\n", "# héllo wörld\n"];

    #[test]
    fn specials_come_first_and_any_text_round_trips() {
        let spec = BpeSpec { vocab_size: 300, min_frequency: 1, special_tokens: &["<|a|>", "<|b|>"], max_token_length: None };
        let tk = train_byte_level(CODE.iter(), &spec).unwrap();
        assert_eq!((tk.token_to_id("<|a|>"), tk.token_to_id("<|b|>")), (Some(0), Some(1)));
        assert!(tk.get_vocab_size(true) <= 300 && tk.get_vocab_size(true) > 2 + 256, "merges were learnt");
        // Text the corpus never saw still encodes: every byte has a symbol, and no prefix space.
        let text = " ünseen\t\u{1F600} text<|a|>";
        let ids = tk.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(tk.decode(&ids, false).unwrap(), text);
        assert_eq!(ids.last(), Some(&0), "special tokens are matched whole");
    }

    #[test]
    fn max_token_length_caps_the_merges() {
        let spec = BpeSpec { vocab_size: 400, min_frequency: 1, special_tokens: &[], max_token_length: Some(2) };
        let tk = train_byte_level(CODE.iter(), &spec).unwrap();
        let longest = tk.get_vocab(false).keys().map(|t| t.chars().count()).max().unwrap();
        assert_eq!(longest, 2);
    }
}
