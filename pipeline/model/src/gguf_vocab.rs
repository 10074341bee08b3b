//! The `tokenizer.ggml.*` metadata of a GGUF file, from an HF `tokenizer.json`.
//!
//! llama.cpp's "gpt2" tokenizer model is a byte-level BPE: `tokens` in id order spelled in the
//! byte-to-unicode alphabet (as `tokenizer.json` spells them), `merges` as `"a b"` strings in
//! rank order, and a `token_type` per token (1 normal, 3 control = special added tokens, 4 user
//! defined = other added tokens, 5 unused = padding rows of the model's embedding past the
//! tokenizer, named `[PAD<id>]` as llama.cpp's converter names them). The pre-tokenizer is
//! GPT-2's regex (`tokenizer.ggml.pre = "gpt-2"`), which is what a `ByteLevel` pre-tokenizer
//! with `use_regex` runs.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use crate::error::{Error, IoContext, Result};

const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// The vocabulary part of the metadata, in writing order.
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// (metadata key, token id) of special tokens found by name: eos, pad, FIM.
    pub special_ids: Vec<(&'static str, u32)>,
}

impl GgufVocab {
    /// Reads `tokenizer.json` at `path`, padded to `model_vocab` tokens.
    pub fn from_tokenizer_json(path: &Path, model_vocab: usize) -> Result<Self> {
        let text = std::fs::read_to_string(path).at(path)?;
        let v: Json = serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })?;
        let bad = |m: String| Error::Invalid(format!("{}: {m}", path.display()));
        if v["model"]["type"] != "BPE" || !byte_level(&v["pre_tokenizer"]) {
            return Err(bad(
                "GGUF export supports byte-level BPE tokenizers (model.type \"BPE\" with a ByteLevel pre-tokenizer, as the tokenizer stage trains); this one is not: export the HF folder instead".into(),
            ));
        }
        let mut tokens: Vec<Option<String>> = vec![None; model_vocab];
        let mut types = vec![UNUSED; model_vocab];
        let vocab = v["model"]["vocab"].as_object().ok_or_else(|| bad("model.vocab is not an object of token -> id".into()))?;
        let mut place = |tok: &str, id: u64, ty: i32| -> Result<()> {
            let slot = tokens.get_mut(id as usize).ok_or_else(|| bad(format!("token '{tok}' has id {id}, past the model's vocab_size {model_vocab} (config.json)")))?;
            *slot = Some(tok.to_string());
            types[id as usize] = ty;
            Ok(())
        };
        for (tok, id) in vocab {
            place(tok, id.as_u64().ok_or_else(|| bad(format!("token '{tok}' has no integer id")))?, NORMAL)?;
        }
        let mut special_ids = Vec::new();
        for t in v["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else { continue };
            place(content, id, if t["special"].as_bool().unwrap_or(false) { CONTROL } else { USER_DEFINED })?;
            let key = match content {
                "<|endoftext|>" | "</s>" | "<|end_of_text|>" => Some("tokenizer.ggml.eos_token_id"),
                "<|pad|>" | "<pad>" => Some("tokenizer.ggml.padding_token_id"),
                "<|fim_prefix|>" => Some("tokenizer.ggml.fim_pre_token_id"),
                "<|fim_suffix|>" => Some("tokenizer.ggml.fim_suf_token_id"),
                "<|fim_middle|>" => Some("tokenizer.ggml.fim_mid_token_id"),
                _ => None,
            };
            if let Some(key) = key {
                special_ids.push((key, id as u32));
            }
        }
        let tokens: Vec<String> = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();
        let merges = v["model"]["merges"]
            .as_array()
            .ok_or_else(|| bad("model.merges is missing".into()))?
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(p) if p.len() == 2 && p.iter().all(Json::is_string) => Ok(format!("{} {}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or(""))),
                other => Err(bad(format!("merge {other} is neither \"a b\" nor [\"a\", \"b\"]"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GgufVocab { tokens, token_types: types, merges, special_ids })
    }

    /// The `tokenizer.ggml.*` key-value pairs.
    pub fn metadata(&self, bos: Option<u32>) -> Vec<(String, Value)> {
        let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
        let mut m = vec![
            ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".to_string(), Value::String("gpt-2".into())),
            ("tokenizer.ggml.tokens".to_string(), strings(&self.tokens)),
            ("tokenizer.ggml.token_type".to_string(), Value::Array(self.token_types.iter().map(|&t| Value::I32(t)).collect())),
            ("tokenizer.ggml.merges".to_string(), strings(&self.merges)),
            // The student is trained without a BOS token; llama.cpp must not prepend one.
            ("tokenizer.ggml.add_bos_token".to_string(), Value::Bool(false)),
        ];
        if let Some(b) = bos {
            m.push(("tokenizer.ggml.bos_token_id".to_string(), Value::U32(b)));
        }
        m.extend(self.special_ids.iter().map(|(k, id)| (k.to_string(), Value::U32(*id))));
        m
    }
}

/// A `ByteLevel` pre-tokenizer, alone or inside a `Sequence`.
fn byte_level(p: &Json) -> bool {
    p["type"] == "ByteLevel" || p["pretokenizers"].as_array().is_some_and(|a| a.iter().any(byte_level))
}
