//! Model configs: serde mirrors of Hugging Face `config.json` for the two families we build,
//! so an HF folder's config loads as is and ours save back with exactly HF's keys.
//!
//! - [`LlamaConfig`]: `model_type = "llama"` (`LlamaForCausalLM`) and `"qwen2"`
//!   (`Qwen2ForCausalLM`, whose q/k/v projections carry biases).
//! - [`Gpt2Config`]: `model_type = "gpt2"` (`GPT2LMHeadModel`).
//!
//! Keys we do not model are kept in `extra` and written back unchanged. Keys that would change
//! the computation in ways we do not implement (`mlp_bias`, sliding windows, rope scaling other
//! than `llama3`, per-layer attention scaling) are refused by [`ModelConfig::validate`] rather
//! than silently ignored.
//!
//! Presets (`nano`, `small`, `medium`, `gpt2-124m`, `llama-1b`, `llama-7b`, plus the test sizes
//! `llama-nano` and `qwen2-nano`) live in `configs/models/*.json` at the repository root and are
//! compiled into the binary, so a preset name works from any directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// One token id or several (`eos_token_id` is a list in Llama 3 configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(t) => vec![*t],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// HF `rope_scaling` of type `llama3` (Llama 3.1 / 3.2); other types are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    pub rope_type: String,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "eight_k")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn eight_k() -> usize {
    8192
}

/// `LlamaForCausalLM` / `Qwen2ForCausalLM` config, with HF's defaults for missing keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlamaConfig {
    pub architectures: Vec<String>,
    /// `llama` or `qwen2`.
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: fewer key/value heads than query heads (None = same).
    pub num_key_value_heads: Option<usize>,
    /// Per-head size; HF's default is `hidden_size / num_attention_heads`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub tie_word_embeddings: bool,
    /// Llama only: biases on q, k, v and o (Qwen2 always has q/k/v biases and no o bias).
    pub attention_bias: bool,
    pub hidden_act: String,
    pub initializer_range: f64,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub torch_dtype: Option<String>,
    /// Keys we do not use, written back unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for LlamaConfig {
    fn default() -> Self {
        LlamaConfig {
            architectures: vec!["LlamaForCausalLM".into()],
            model_type: "llama".into(),
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_scaling: None,
            tie_word_embeddings: false,
            attention_bias: false,
            hidden_act: "silu".into(),
            initializer_range: 0.02,
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: Some("float32".into()),
            extra: BTreeMap::new(),
        }
    }
}

impl LlamaConfig {
    pub fn is_qwen2(&self) -> bool {
        self.model_type == "qwen2"
    }
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
    /// Whether q, k and v projections have biases.
    pub fn qkv_bias(&self) -> bool {
        self.is_qwen2() || self.attention_bias
    }
    /// Whether the output projection has a bias.
    pub fn o_bias(&self) -> bool {
        !self.is_qwen2() && self.attention_bias
    }

    /// Closed-form parameter count (see [`ModelConfig::num_params`]).
    pub fn num_params(&self) -> usize {
        let (h, v, i, l) = (self.hidden_size, self.vocab_size, self.intermediate_size, self.num_hidden_layers);
        let (q, kv) = (self.num_attention_heads * self.head_size(), self.kv_heads() * self.head_size());
        let attn = h * q + 2 * h * kv + q * h + if self.qkv_bias() { q + 2 * kv } else { 0 } + if self.o_bias() { h } else { 0 };
        let mlp = 3 * h * i;
        let norms = 2 * h;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + l * (attn + mlp + norms) + h + head
    }
}

/// `GPT2LMHeadModel` config, with HF's defaults for missing keys. The LM head is always tied
/// to the token embedding, as in GPT-2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpt2Config {
    pub architectures: Vec<String>,
    pub model_type: String,
    pub vocab_size: usize,
    /// Maximum sequence length (learned position table size).
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// MLP width; None = 4 * n_embd.
    pub n_inner: Option<usize>,
    /// `gelu_new` (tanh approximation, GPT-2's) or `gelu` (erf).
    pub activation_function: String,
    pub resid_pdrop: f64,
    pub embd_pdrop: f64,
    pub attn_pdrop: f64,
    pub layer_norm_epsilon: f64,
    pub initializer_range: f64,
    pub scale_attn_weights: bool,
    pub scale_attn_by_inverse_layer_idx: bool,
    pub bos_token_id: Option<TokenIds>,
    pub eos_token_id: Option<TokenIds>,
    pub torch_dtype: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for Gpt2Config {
    fn default() -> Self {
        Gpt2Config {
            architectures: vec!["GPT2LMHeadModel".into()],
            model_type: "gpt2".into(),
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: "gelu_new".into(),
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            layer_norm_epsilon: 1e-5,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            bos_token_id: Some(TokenIds::One(50256)),
            eos_token_id: Some(TokenIds::One(50256)),
            torch_dtype: Some("float32".into()),
            extra: BTreeMap::new(),
        }
    }
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Closed-form parameter count (see [`ModelConfig::num_params`]).
    pub fn num_params(&self) -> usize {
        let (h, i) = (self.n_embd, self.inner());
        let block = 2 * (2 * h) // ln_1, ln_2
            + (h * 3 * h + 3 * h) // c_attn
            + (h * h + h) // attn.c_proj
            + (h * i + i) // c_fc
            + (i * h + h); // mlp.c_proj
        self.vocab_size * h + self.n_positions * h + self.n_layer * block + 2 * h
    }
}

/// A model config of either family, tagged by HF's `model_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Llama(LlamaConfig),
    Gpt2(Gpt2Config),
}

/// The presets compiled in from `configs/models/`.
pub const PRESETS: &[(&str, &str)] = &[
    ("nano", include_str!("../../../configs/models/nano.json")),
    ("small", include_str!("../../../configs/models/small.json")),
    ("medium", include_str!("../../../configs/models/medium.json")),
    ("gpt2-124m", include_str!("../../../configs/models/gpt2-124m.json")),
    ("llama-1b", include_str!("../../../configs/models/llama-1b.json")),
    ("llama-7b", include_str!("../../../configs/models/llama-7b.json")),
    ("llama-nano", include_str!("../../../configs/models/llama-nano.json")),
    ("qwen2-nano", include_str!("../../../configs/models/qwen2-nano.json")),
    ("qwen2.5-0.5b", include_str!("../../../configs/models/qwen2.5-0.5b.json")),
    ("qwen2.5-1.5b", include_str!("../../../configs/models/qwen2.5-1.5b.json")),
    ("qwen2.5-3b", include_str!("../../../configs/models/qwen2.5-3b.json")),
    // The offline default's small teacher (`[teacher_bootstrap.train] model`).
    ("offline-teacher", include_str!("../../../configs/models/offline-teacher.json")),
];

/// transformers 5 writes RoPE settings as `rope_parameters: {rope_type, rope_theta, factor,
/// ...}` and drops the top-level `rope_theta` / `rope_scaling` keys; a config that has it gets
/// those two keys from it (`rope_parameters` itself is kept and written back). Without this a
/// re-saved Qwen2.5 would silently get the default theta of 10,000 instead of 1,000,000.
fn rope_parameters_to_legacy_keys(mut v: Value, file: &Path) -> Result<Value> {
    let Some(rp) = v.get("rope_parameters").filter(|rp| !rp.is_null()).cloned() else { return Ok(v) };
    let (Some(rp), Some(obj)) = (rp.as_object(), v.as_object_mut()) else {
        return Err(Error::config(file, "rope_parameters must be an object like {\"rope_type\": \"default\", \"rope_theta\": 10000.0}"));
    };
    if let Some(theta) = rp.get("rope_theta") {
        obj.insert("rope_theta".into(), theta.clone());
    }
    match rp.get("rope_type").and_then(Value::as_str).unwrap_or("default") {
        "default" => {}
        _ => {
            let mut scaling = rp.clone();
            scaling.remove("rope_theta");
            obj.insert("rope_scaling".into(), Value::Object(scaling));
        }
    }
    Ok(v)
}

impl ModelConfig {
    /// Parses an HF-style config (a `config.json` value); `file` names it in errors.
    pub fn from_json_value(v: Value, file: &Path) -> Result<Self> {
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or_default().to_string();
        let parsed = match model_type.as_str() {
            "llama" | "qwen2" => serde_json::from_value(rope_parameters_to_legacy_keys(v, file)?).map(ModelConfig::Llama),
            "gpt2" => serde_json::from_value(v).map(ModelConfig::Gpt2),
            other => return Err(Error::config(file, format!("model_type '{other}' is not supported (use \"llama\", \"qwen2\" or \"gpt2\")"))),
        };
        let cfg = parsed.map_err(|e| Error::config(file, e.to_string()))?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Reads a `config.json` file, or the `config.json` inside an HF model folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).at(&file)?;
        let v: Value = serde_json::from_str(&text).map_err(|source| Error::Json { path: file.clone(), source })?;
        Self::from_json_value(v, &file)
    }

    /// A preset by name (see [`PRESETS`]).
    pub fn preset(name: &str) -> Result<Self> {
        let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(Error::Invalid(format!("unknown model preset '{name}' (presets: {})", names.join(", "))));
        };
        let file = Path::new("configs/models").join(format!("{name}.json"));
        let v: Value = serde_json::from_str(text).map_err(|source| Error::Json { path: file.clone(), source })?;
        Self::from_json_value(v, &file)
    }

    /// A preset name, or a path to a `config.json` / HF folder.
    pub fn resolve(spec: &str) -> Result<Self> {
        if PRESETS.iter().any(|(n, _)| *n == spec) {
            Self::preset(spec)
        } else {
            Self::from_file(Path::new(spec))
        }
    }

    /// The config as HF's `config.json` object (HF's key names).
    pub fn to_json(&self) -> Value {
        let v = match self {
            ModelConfig::Llama(c) => serde_json::to_value(c),
            ModelConfig::Gpt2(c) => serde_json::to_value(c),
        };
        let mut v = v.expect("model configs always serialise");
        // `Qwen2Config` has no `attention_bias` key (its q/k/v biases are fixed).
        if let (ModelConfig::Llama(c), Value::Object(m)) = (self, &mut v) {
            if c.is_qwen2() {
                m.remove("attention_bias");
            }
        }
        v
    }

    /// Refuses configs that describe computations we do not implement.
    pub fn validate(&self, file: &Path) -> Result<()> {
        let bad = |m: String| Err(Error::config(file, m));
        match self {
            ModelConfig::Llama(c) => {
                if c.hidden_act != "silu" {
                    return bad(format!("hidden_act '{}' is not supported (Llama/Qwen2 students use \"silu\")", c.hidden_act));
                }
                if c.num_attention_heads == 0 || c.kv_heads() == 0 || c.num_attention_heads % c.kv_heads() != 0 {
                    return bad(format!("num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})", c.num_attention_heads, c.kv_heads()));
                }
                if c.head_size() % 2 != 0 {
                    return bad(format!("head size {} must be even for rotary embeddings", c.head_size()));
                }
                if c.extra.get("mlp_bias").is_some_and(|b| b == &Value::Bool(true)) {
                    return bad("mlp_bias = true is not supported".into());
                }
                if c.extra.get("use_sliding_window").is_some_and(|b| b == &Value::Bool(true)) {
                    return bad("use_sliding_window = true is not supported; set it to false".into());
                }
                if let Some(s) = &c.rope_scaling {
                    if s.rope_type != "llama3" {
                        return bad(format!("rope_scaling type '{}' is not supported (only \"llama3\")", s.rope_type));
                    }
                }
            }
            ModelConfig::Gpt2(c) => {
                if !matches!(c.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh" | "gelu") {
                    return bad(format!("activation_function '{}' is not supported (gelu_new or gelu)", c.activation_function));
                }
                if c.n_head == 0 || c.n_embd % c.n_head != 0 {
                    return bad(format!("n_embd ({}) must be a multiple of n_head ({})", c.n_embd, c.n_head));
                }
                if c.scale_attn_by_inverse_layer_idx || !c.scale_attn_weights {
                    return bad("only scale_attn_weights = true, scale_attn_by_inverse_layer_idx = false are supported".into());
                }
            }
        }
        if self.vocab_size() == 0 || self.num_layers() == 0 {
            return bad("vocab_size and the number of layers must be positive".into());
        }
        Ok(())
    }

    /// Closed-form parameter count, counting a tied LM head once (as HF's `num_parameters()`).
    pub fn num_params(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.num_params(),
            ModelConfig::Gpt2(c) => c.num_params(),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.vocab_size,
            ModelConfig::Gpt2(c) => c.vocab_size,
        }
    }

    pub fn set_vocab_size(&mut self, v: usize) {
        match self {
            ModelConfig::Llama(c) => c.vocab_size = v,
            ModelConfig::Gpt2(c) => c.vocab_size = v,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.num_hidden_layers,
            ModelConfig::Gpt2(c) => c.n_layer,
        }
    }

    /// Longest sequence the model accepts.
    pub fn max_positions(&self) -> usize {
        match self {
            ModelConfig::Llama(c) => c.max_position_embeddings,
            ModelConfig::Gpt2(c) => c.n_positions,
        }
    }

    pub fn eos_token_ids(&self) -> Vec<u32> {
        let e = match self {
            ModelConfig::Llama(c) => &c.eos_token_id,
            ModelConfig::Gpt2(c) => &c.eos_token_id,
        };
        e.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }

    pub fn bos_token_ids(&self) -> Vec<u32> {
        let e = match self {
            ModelConfig::Llama(c) => &c.bos_token_id,
            ModelConfig::Gpt2(c) => &c.bos_token_id,
        };
        e.as_ref().map(TokenIds::to_vec).unwrap_or_default()
    }

    /// Sets bos and eos ids (a trained tokenizer's special tokens).
    pub fn set_special_tokens(&mut self, bos: Option<u32>, eos: Option<u32>) {
        let (b, e) = match self {
            ModelConfig::Llama(c) => (&mut c.bos_token_id, &mut c.eos_token_id),
            ModelConfig::Gpt2(c) => (&mut c.bos_token_id, &mut c.eos_token_id),
        };
        *b = bos.map(TokenIds::One);
        *e = eos.map(TokenIds::One);
    }

    /// Whether the LM head shares the token embedding's weights.
    pub fn tied_embeddings(&self) -> bool {
        match self {
            ModelConfig::Llama(c) => c.tie_word_embeddings,
            ModelConfig::Gpt2(_) => true,
        }
    }

    /// Std of the normal initialisation of weight matrices.
    pub fn initializer_range(&self) -> f64 {
        match self {
            ModelConfig::Llama(c) => c.initializer_range,
            ModelConfig::Gpt2(c) => c.initializer_range,
        }
    }

    /// Forward FLOPs per token, the usual `2 * params + attention` estimate (for MFU).
    pub fn flops_per_token(&self, seq_len: usize) -> f64 {
        let (l, h) = match self {
            ModelConfig::Llama(c) => (c.num_hidden_layers, c.num_attention_heads * c.head_size()),
            ModelConfig::Gpt2(c) => (c.n_layer, c.n_embd),
        };
        2.0 * self.num_params() as f64 + 2.0 * (l * seq_len * h) as f64
    }
}
