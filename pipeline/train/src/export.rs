//! The final HF-style model folder and the loss curve:
//!
//! ```text
//! <out>/config.json              HF config (model_type, architectures, HF key names)
//! <out>/model.safetensors        f32 weights, HF tensor names, metadata format = pt
//! <out>/tokenizer.json           the tokenizer the shards were made with, copied
//! <out>/generation_config.json   bos / eos / pad ids, as transformers writes it
//! <out>/metrics.jsonl            train and held-out losses per step
//! <out>/loss_curve.png           the same, drawn
//! ```

use std::path::Path;

use distill_core::error::IoContext;
use distill_model::TrainableLm;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// What we need from a `tokenizer.json`: vocabulary size and special ids.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerInfo {
    pub vocab_size: usize,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub bos: Option<u32>,
}

/// Reads a HF `tokenizer.json` (any model type with a `vocab`, plus `added_tokens`).
pub fn tokenizer_info(path: &Path) -> Result<TokenizerInfo> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::TokenizerMissing { path: path.to_path_buf(), source })?;
    let v: Value = serde_json::from_str(&text).map_err(|source| Error::TokenizerJson { path: path.to_path_buf(), source })?;
    let mut max_id: Option<u64> = None;
    let mut special = std::collections::BTreeMap::new();
    match &v["model"]["vocab"] {
        Value::Object(m) => max_id = m.values().filter_map(Value::as_u64).max(),
        // Unigram: [[piece, score], ...], ids are positions.
        Value::Array(a) => max_id = a.len().checked_sub(1).map(|x| x as u64),
        _ => {}
    }
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        if let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) {
            max_id = Some(max_id.map_or(id, |m| m.max(id)));
            special.insert(content.to_string(), id as u32);
        }
    }
    let Some(max_id) = max_id else {
        return Err(Error::TokenizerVocab { path: path.to_path_buf() });
    };
    let find = |names: &[&str]| names.iter().find_map(|n| special.get(*n).copied());
    Ok(TokenizerInfo {
        vocab_size: max_id as usize + 1,
        eos: find(&["<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>"]),
        pad: find(&["<|pad|>", "<pad>"]),
        bos: find(&["<s>", "<bos>", "<|begin_of_text|>"]),
    })
}

/// `generation_config.json` as transformers writes it.
pub fn generation_config(lm: &TrainableLm, pad: Option<u32>) -> Value {
    let cfg = lm.model.config();
    let one_or_many = |v: Vec<u32>| match v.len() {
        0 => Value::Null,
        1 => json!(v[0]),
        _ => json!(v),
    };
    let mut g = serde_json::Map::new();
    g.insert("_from_model_config".into(), json!(true));
    g.insert("bos_token_id".into(), one_or_many(cfg.bos_token_ids()));
    g.insert("eos_token_id".into(), one_or_many(cfg.eos_token_ids()));
    if let Some(p) = pad {
        g.insert("pad_token_id".into(), json!(p));
    }
    g.retain(|_, v| !v.is_null());
    Value::Object(g)
}

/// Writes config.json, model.safetensors, tokenizer.json and generation_config.json.
pub fn write_hf_folder(lm: &TrainableLm, tokenizer: &Path, pad: Option<u32>, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).at(out)?;
    distill_core::atomic::write_json(&out.join("config.json"), &lm.model.config().to_json())?;
    lm.save_weights(&out.join("model.safetensors"))?;
    let bytes = std::fs::read(tokenizer).at(tokenizer)?;
    distill_core::atomic::write_file(&out.join("tokenizer.json"), &bytes)?;
    distill_core::atomic::write_json(&out.join("generation_config.json"), &generation_config(lm, pad))?;
    Ok(())
}

/// Draws train loss, held-out KD and held-out CE against the step from `metrics.jsonl` lines.
pub fn loss_curve(metrics: &str, png: &Path) -> Result<()> {
    let mut train = Vec::new();
    let mut val_kd = Vec::new();
    let mut val_ce = Vec::new();
    for v in metrics.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let step = v["step"].as_f64().unwrap_or(0.0);
        match v["kind"].as_str() {
            Some("train") => train.extend(v["loss"].as_f64().map(|y| (step, y))),
            Some("eval") => {
                if v["kd_tokens"].as_f64().unwrap_or(0.0) > 0.0 {
                    val_kd.extend(v["val_kd"].as_f64().map(|y| (step, y)));
                }
                val_ce.extend(v["val_ce"].as_f64().map(|y| (step, y)));
            }
            _ => {}
        }
    }
    let series: Vec<distill_plot::Series> = [("train loss", train), ("held-out KD (KL, T=1)", val_kd), ("held-out CE", val_ce)]
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(n, points)| distill_plot::Series { name: n.to_string(), points })
        .collect();
    Ok(distill_plot::line_chart(png, "training", "step", "nats / token", &series)?)
}
