//! The tokenizer side of serving: prompt encoding, chat rendering and the exact bytes of every
//! token id.
//!
//! OpenAI reports each sampled token with its `bytes` (a token of a byte-level BPE may hold
//! half of a UTF-8 character), so the table [`Vocab::bytes`] maps every id to its bytes once at
//! load time:
//! - byte-level BPE (GPT-2 style; the project's own tokenizer): each character of the token's
//!   vocabulary string stands for one byte through GPT-2's `bytes_to_unicode` table, inverted
//!   here;
//! - other tokenizers: `<0xNN>` byte-fallback tokens are that byte, SentencePiece's `▁` is a
//!   space, anything else is the UTF-8 of the vocabulary string.
//!
//! Added tokens (`<|endoftext|>`, ...) are their literal text. A completion's text is the UTF-8
//! decoding of its tokens' concatenated bytes, so text and logprobs always agree.
//!
//! ## Chat template (documented for users; the small models here have none of their own)
//!
//! `roles`: every message as `<|{role}|>\n{content}\n`, then `<|assistant|>\n`, e.g.
//! `<|system|>\nBe brief.\n<|user|>\nWrite add(a, b).\n<|assistant|>\n`.
//! `plain`: the contents joined by `\n` and nothing else (a base code model continues the
//! last message; put the code to complete there).

use std::collections::HashMap;
use std::path::Path;

use tokenizers::{DecoderWrapper, Tokenizer};

use crate::config::ChatTemplate;
use crate::error::{Error, Result};

pub struct Vocab {
    tokenizer: Tokenizer,
    bytes: Vec<Vec<u8>>,
    /// Ids that end a sequence: the model config's `eos_token_id`s plus `<|endoftext|>` /
    /// `</s>` / `<|im_end|>` when the tokenizer has them.
    pub eos_ids: Vec<u32>,
    /// Ids to start an otherwise empty prompt with (bos, else the first eos).
    pub empty_prompt: Vec<u32>,
}

/// GPT-2's byte -> printable character table (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid code point")
        };
    }
    table
}

impl Vocab {
    /// Loads `dir/tokenizer.json`; `eos_from_config` are the model config's end ids.
    pub fn load(dir: &Path, eos_from_config: &[u32], bos_from_config: &[u32]) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::model_dir(&path, "missing: the model folder needs the tokenizer the model was trained with"));
        }
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| Error::model_dir(&path, format!("not a tokenizers file: {e}")))?;
        let byte_level = matches!(tokenizer.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let inverse: HashMap<char, u8> = bytes_to_unicode().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let added: HashMap<u32, String> = tokenizer.get_added_tokens_decoder().into_iter().map(|(id, t)| (id, t.content)).collect();
        let size = tokenizer.get_vocab_size(true);
        let mut bytes = Vec::with_capacity(size);
        for id in 0..size as u32 {
            let piece = tokenizer.id_to_token(id).unwrap_or_default();
            let b = if added.contains_key(&id) {
                piece.into_bytes()
            } else if byte_level {
                piece
                    .chars()
                    .flat_map(|c| match inverse.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect()
            } else if let Some(b) = byte_fallback(&piece) {
                vec![b]
            } else {
                piece.replace('\u{2581}', " ").into_bytes()
            };
            bytes.push(b);
        }
        let mut eos_ids = eos_from_config.to_vec();
        for name in ["<|endoftext|>", "</s>", "<|im_end|>", "<|end_of_text|>", "<|eot_id|>"] {
            if let Some(id) = tokenizer.token_to_id(name) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let empty_prompt = bos_from_config.first().or(eos_ids.first()).map(|&i| vec![i]).unwrap_or_default();
        Ok(Vocab { tokenizer, bytes, eos_ids, empty_prompt })
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The exact bytes of token `id` (empty for ids past the tokenizer's vocabulary: a model
    /// whose embedding is padded larger may still sample them).
    pub fn bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The token as text for `token` fields (lossy where it holds part of a character; the
    /// `bytes` field is exact).
    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.bytes(id)).into_owned()
    }

    /// Encodes a prompt (the tokenizer's own post-processing, e.g. a Llama BOS, applies).
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| format!("the prompt could not be tokenized: {e}"))?;
        let ids = enc.get_ids().to_vec();
        Ok(if ids.is_empty() { self.empty_prompt.clone() } else { ids })
    }
}

/// `<0x0A>` -> 0x0A (SentencePiece byte fallback).
fn byte_fallback(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

/// Renders chat messages (role, content) into one prompt string; see the module docs.
pub fn render_chat(template: ChatTemplate, messages: &[(String, String)]) -> String {
    match template {
        ChatTemplate::Plain => messages.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>().join("\n"),
        ChatTemplate::Roles => {
            let mut s = String::new();
            for (role, content) in messages {
                s.push_str(&format!("<|{role}|>\n{content}\n"));
            }
            s.push_str("<|assistant|>\n");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let distinct: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
    }

    #[test]
    fn byte_fallback_tokens() {
        assert_eq!(byte_fallback("<0x0A>"), Some(10));
        assert_eq!(byte_fallback("<0x0>"), None);
        assert_eq!(byte_fallback("hello"), None);
    }

    #[test]
    fn chat_templates_render_as_documented() {
        let m = vec![("system".to_string(), "Be brief.".to_string()), ("user".to_string(), "Write add(a, b).".to_string())];
        assert_eq!(render_chat(ChatTemplate::Roles, &m), "<|system|>\nBe brief.\n<|user|>\nWrite add(a, b).\n<|assistant|>\n");
        assert_eq!(render_chat(ChatTemplate::Plain, &m), "Be brief.\nWrite add(a, b).");
    }
}
