//! The student tokenizer seen as bytes: every id's exact byte string, and the reverse map.
//!
//! Alignment compares tokens by their bytes (the only representation teacher and student
//! share). A byte-level BPE (GPT-2, Qwen, Llama-3, StarCoder and ours) stores each byte as one
//! printable character of the GPT-2 `bytes_to_unicode` table, so a vocabulary string maps back to
//! bytes exactly. Other vocabularies are read as UTF-8 text, with SentencePiece's `▁` as a space
//! and its `<0xNN>` byte-fallback pieces as the byte they name.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::Tokenizer;

use crate::ascii_bpe::AsciiBpe;
use crate::error::{Error, Result};

pub struct StudentTokenizer {
    tokenizer: Tokenizer,
    /// The fast path of `encode` where the tokenizer allows it.
    ascii_bpe: Option<AsciiBpe>,
    /// Bytes of each id (index = id); empty for ids the vocabulary skips.
    bytes_of: Vec<Vec<u8>>,
    /// aHash rather than SipHash: this map is looked up ~20 times per teacher token.
    id_of: HashMap<Vec<u8>, u32, ahash::RandomState>,
    /// sha256 of the tokenizer.json file.
    pub sha256: String,
    pub path: std::path::PathBuf,
}

/// GPT-2's table: byte -> the printable character standing for it.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("latin-1 is valid")
        } else {
            let c = char::from_u32(next).expect("valid code point");
            next += 1;
            c
        };
    }
    table
}

impl StudentTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let err = |message: String| Error::Tokenizer { path: path.to_path_buf(), message };
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let tokenizer = Tokenizer::from_bytes(&raw).map_err(|e| err(e.to_string()))?;
        let mut s = Self::from_tokenizer(tokenizer);
        s.sha256 = distill_core::digest::sha256_hex(&raw);
        s.path = path.to_path_buf();
        Ok(s)
    }

    pub fn from_tokenizer(tokenizer: Tokenizer) -> Self {
        let byte_level = matches!(tokenizer.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)))
            || matches!(tokenizer.get_pre_tokenizer(), Some(tokenizers::PreTokenizerWrapper::ByteLevel(_)));
        let table = bytes_to_unicode();
        let byte_of: HashMap<char, u8> = table.iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let vocab = tokenizer.get_vocab(true);
        let special: std::collections::HashSet<u32> = tokenizer.get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id).collect();
        let size = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut bytes_of = vec![Vec::new(); size];
        for (text, id) in &vocab {
            // Added/special tokens are matched in text literally: their bytes are their text.
            let as_bytes: Option<Vec<u8>> = if special.contains(id) || tokenizer.get_added_tokens_decoder().contains_key(id) {
                Some(text.as_bytes().to_vec())
            } else if byte_level {
                text.chars().map(|c| byte_of.get(&c).copied()).collect()
            } else {
                Some(sentencepiece_bytes(text))
            };
            bytes_of[*id as usize] = as_bytes.unwrap_or_else(|| text.as_bytes().to_vec());
        }
        let mut id_of = HashMap::with_capacity_and_hasher(size, ahash::RandomState::new());
        for (id, b) in bytes_of.iter().enumerate() {
            if !b.is_empty() {
                // Lowest id wins where two entries spell the same bytes.
                id_of.entry(b.clone()).or_insert(id as u32);
            }
        }
        let ascii_bpe = AsciiBpe::new(&tokenizer);
        StudentTokenizer { tokenizer, ascii_bpe, bytes_of, id_of, sha256: String::new(), path: Default::default() }
    }

    /// Ids of `text` (no special tokens added around it).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let fast = self.ascii_bpe.as_ref().and_then(|f| f.encode(self.tokenizer.get_model(), text));
        let ids = fast.unwrap_or_else(|| self.tokenizer.encode_fast(text, false).map(|e| e.get_ids().to_vec()));
        ids.map_err(|e| Error::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// Whether `encode` has the fast path of [`AsciiBpe`] for ASCII text.
    pub fn has_ascii_fast_path(&self) -> bool {
        self.ascii_bpe.is_some()
    }

    /// Ids of `text` through `tokenizers` alone (the reference for the fast path).
    pub fn encode_reference(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode_fast(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer { path: self.path.clone(), message: e.to_string() })
    }

    /// The exact bytes of one id (empty for an unknown id).
    pub fn bytes(&self, id: u32) -> &[u8] {
        self.bytes_of.get(id as usize).map_or(&[], |b| b.as_slice())
    }

    /// The id whose bytes are exactly `bytes`, if the vocabulary has one.
    pub fn id(&self, bytes: &[u8]) -> Option<u32> {
        self.id_of.get(bytes).copied()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.bytes_of.len()
    }
}

fn sentencepiece_bytes(piece: &str) -> Vec<u8> {
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
        if let Ok(b) = u8::from_str_radix(hex, 16) {
            return vec![b];
        }
    }
    piece.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_is_a_bijection_with_gpt2_landmarks() {
        let t = bytes_to_unicode();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], '\u{120}'); // GPT-2's "Ġ"
        assert_eq!(t[b'\n' as usize], '\u{10a}'); // "Ċ"
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn sentencepiece_pieces_map_to_bytes() {
        assert_eq!(sentencepiece_bytes("\u{2581}def"), b" def");
        assert_eq!(sentencepiece_bytes("<0x0A>"), b"\n");
    }
}
