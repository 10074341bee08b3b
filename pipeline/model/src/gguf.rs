//! Export of an HF model folder to one GGUF file that llama.cpp-based tools load: the
//! architecture's `<arch>.*` hyperparameters, the tokenizer ([`crate::gguf_vocab`]) and every
//! tensor under llama.cpp's name and layout, f32 or quantized ([`crate::quant`]).
//!
//! Layouts. GGUF stores a matrix as ggml's `ne = [cols, rows]`: rows of `cols` input features,
//! HF `nn.Linear`'s `(out, in)`. So GPT-2's `Conv1D` weights `(in, out)` are transposed.
//! Llama's q/k projections are permuted from HF's rotate-half RoPE layout to the interleaved
//! one llama.cpp's "llama" architecture rotates, per head `(2, D/2, C) -> (D/2, 2, C)` (what
//! llama.cpp's `convert_hf_to_gguf.py` does); Qwen2 uses rotate-half (NEOX) in llama.cpp too,
//! so its q/k are written as they are.
//!
//! Names (`blk.<i>.` per layer): GPT-2 `token_embd`, `position_embd`, `attn_norm`,
//! `attn_qkv`, `attn_output`, `ffn_norm`, `ffn_up`, `ffn_down`, `output_norm`; Llama/Qwen2
//! `token_embd`, `attn_norm`, `attn_q`/`attn_k`/`attn_v` (Qwen2 with biases), `attn_output`,
//! `ffn_norm`, `ffn_gate`, `ffn_up`, `ffn_down`, `output_norm`, `output` (absent when tied:
//! llama.cpp then uses `token_embd`). Matrices are quantized as `CausalLm::quantize` does
//! (the same rows, so the same blocks); vectors and the position table stay f32.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::config::{Gpt2Config, LlamaConfig, ModelConfig};
use crate::error::{Error, IoContext, Result};
use crate::gguf_vocab::GgufVocab;
use crate::quant::{QuantStats, Quantization};

/// What [`export`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufReport {
    pub architecture: String,
    pub tensors: usize,
    pub bytes: u64,
    /// Tensors per ggml type ("f32", "q8_0", "q4k", "q4_0").
    pub types: BTreeMap<String, usize>,
}

/// One tensor to write: llama.cpp's name, the values in GGUF row layout, and whether it is a
/// weight matrix (quantized when asked).
struct Entry {
    name: String,
    value: Tensor,
    matrix: bool,
}

/// Writes `out` (a GGUF v2 file) from the HF folder `dir` (`config.json`,
/// `model.safetensors`, `tokenizer.json`), matrices quantized with `quantize` (None = f32).
pub fn export(dir: &Path, out: &Path, quantize: Option<Quantization>) -> Result<GgufReport> {
    let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
    let weights = crate::weights::read_hf_weights(dir, &Device::Cpu)?;
    let vocab = GgufVocab::from_tokenizer_json(&dir.join("tokenizer.json"), cfg.vocab_size())?;
    let (arch, mut meta, entries) = match &cfg {
        ModelConfig::Gpt2(c) => gpt2(c, &weights, dir)?,
        ModelConfig::Llama(c) => llama(c, &weights, dir)?,
    };
    meta.insert(0, ("general.architecture".into(), Value::String(arch.into())));
    meta.insert(1, ("general.name".into(), Value::String(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "distill".into()))));
    // llama.cpp's file types: 0 all f32, 7 mostly Q8_0, 14 mostly Q4_K (S).
    let file_type = match quantize {
        None => 0,
        Some(Quantization::Q8_0) => 7,
        Some(Quantization::Q4K) => 14,
    };
    meta.push(("general.file_type".into(), Value::U32(file_type)));
    meta.push(("general.quantization_version".into(), Value::U32(2)));
    meta.extend(vocab.metadata(cfg.bos_token_ids().first().copied()));

    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    let mut qtensors = Vec::with_capacity(entries.len());
    for e in &entries {
        let q = match quantize.filter(|_| e.matrix) {
            Some(q) => crate::quant::quantize_rows(&e.value, q, &mut QuantStats::default())?,
            None => None,
        };
        let qt = match q {
            Some(qt) => std::sync::Arc::try_unwrap(qt).unwrap_or_else(|_| unreachable!("a fresh Arc has one owner")),
            None => QTensor::quantize(&e.value.to_dtype(DType::F32)?.contiguous()?, GgmlDType::F32)?,
        };
        *types.entry(format!("{:?}", qt.dtype()).to_ascii_lowercase()).or_default() += 1;
        qtensors.push((e.name.as_str(), qt));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (*k, v)).collect();
    let tmp = out.with_extension("gguf.tmp");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).at(&tmp)?);
    gguf_file::write(&mut file, &meta_refs, &tensor_refs)?;
    std::io::Write::flush(&mut file).at(&tmp)?;
    drop(file);
    std::fs::rename(&tmp, out).at(out)?;
    let bytes = std::fs::metadata(out).at(out)?.len();
    Ok(GgufReport { architecture: arch.to_string(), tensors: qtensors.len(), bytes, types })
}

type Parts = (&'static str, Vec<(String, Value)>, Vec<Entry>);

/// Looks up HF tensor `name` of the folder `dir`.
fn get<'a>(w: &'a HashMap<String, Tensor>, name: &str, dir: &Path) -> Result<&'a Tensor> {
    w.get(name).ok_or_else(|| Error::Invalid(format!("{}: tensor '{name}' missing from the weights; does config.json match model.safetensors?", dir.display())))
}

fn gpt2(c: &Gpt2Config, w: &HashMap<String, Tensor>, dir: &Path) -> Result<Parts> {
    if c.activation_function != "gelu_new" {
        tracing_free_warning(&format!("GPT-2 activation '{}': llama.cpp's gpt2 runs the tanh GELU (gelu_new); outputs will differ slightly", c.activation_function));
    }
    let u = |v: usize| Value::U32(v as u32);
    let meta = vec![
        ("gpt2.context_length".into(), u(c.n_positions)),
        ("gpt2.embedding_length".into(), u(c.n_embd)),
        ("gpt2.feed_forward_length".into(), u(c.inner())),
        ("gpt2.block_count".into(), u(c.n_layer)),
        ("gpt2.attention.head_count".into(), u(c.n_head)),
        ("gpt2.attention.layer_norm_epsilon".into(), Value::F32(c.layer_norm_epsilon as f32)),
    ];
    let t = |n: &str| get(w, &format!("transformer.{n}"), dir).cloned();
    let mut e = vec![
        Entry { name: "token_embd.weight".into(), value: t("wte.weight")?, matrix: true },
        Entry { name: "position_embd.weight".into(), value: t("wpe.weight")?, matrix: false },
    ];
    for i in 0..c.n_layer {
        let h = |n: &str| t(&format!("h.{i}.{n}"));
        let b = |n: &str| format!("blk.{i}.{n}");
        for (ours, hf) in [("attn_norm", "ln_1"), ("ffn_norm", "ln_2")] {
            e.push(Entry { name: b(&format!("{ours}.weight")), value: h(&format!("{hf}.weight"))?, matrix: false });
            e.push(Entry { name: b(&format!("{ours}.bias")), value: h(&format!("{hf}.bias"))?, matrix: false });
        }
        for (ours, hf) in [("attn_qkv", "attn.c_attn"), ("attn_output", "attn.c_proj"), ("ffn_up", "mlp.c_fc"), ("ffn_down", "mlp.c_proj")] {
            // Conv1D (in, out) -> rows of inputs (out, in).
            e.push(Entry { name: b(&format!("{ours}.weight")), value: h(&format!("{hf}.weight"))?.t()?.contiguous()?, matrix: true });
            e.push(Entry { name: b(&format!("{ours}.bias")), value: h(&format!("{hf}.bias"))?, matrix: false });
        }
    }
    e.push(Entry { name: "output_norm.weight".into(), value: t("ln_f.weight")?, matrix: false });
    e.push(Entry { name: "output_norm.bias".into(), value: t("ln_f.bias")?, matrix: false });
    Ok(("gpt2", meta, e))
}

/// HF rotate-half rows -> llama.cpp's interleaved rows, per head: (heads, 2, D/2, ...) ->
/// (heads, D/2, 2, ...). `t` is (heads D, C) or (heads D,).
fn permute_rope(t: &Tensor, heads: usize) -> Result<Tensor> {
    let rows = t.dim(0)?;
    let half = rows / heads / 2;
    let shape = t.dims().to_vec();
    let mut split = vec![heads, 2, half];
    split.extend_from_slice(&shape[1..]);
    Ok(t.reshape(split)?.transpose(1, 2)?.contiguous()?.reshape(shape)?)
}

fn llama(c: &LlamaConfig, w: &HashMap<String, Tensor>, dir: &Path) -> Result<Parts> {
    if c.rope_scaling.is_some() {
        return Err(Error::config(
            dir.join("config.json"),
            "rope_scaling (Llama 3 frequency scaling) is not written to GGUF by this exporter: llama.cpp needs a rope_freqs tensor for it; export the HF folder and convert it with llama.cpp's convert_hf_to_gguf.py",
        ));
    }
    let qwen = c.is_qwen2();
    let arch = if qwen { "qwen2" } else { "llama" };
    let u = |v: usize| Value::U32(v as u32);
    let k = |s: &str| format!("{arch}.{s}");
    let meta = vec![
        (k("context_length"), u(c.max_position_embeddings)),
        (k("embedding_length"), u(c.hidden_size)),
        (k("feed_forward_length"), u(c.intermediate_size)),
        (k("block_count"), u(c.num_hidden_layers)),
        (k("attention.head_count"), u(c.num_attention_heads)),
        (k("attention.head_count_kv"), u(c.kv_heads())),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(c.rms_norm_eps as f32)),
        (k("rope.freq_base"), Value::F32(c.rope_theta as f32)),
        (k("rope.dimension_count"), u(c.head_size())),
        (k("attention.key_length"), u(c.head_size())),
        (k("attention.value_length"), u(c.head_size())),
        (k("vocab_size"), u(c.vocab_size)),
    ];
    let t = |n: &str| get(w, n, dir).cloned();
    let mut e = vec![Entry { name: "token_embd.weight".into(), value: t("model.embed_tokens.weight")?, matrix: true }];
    for i in 0..c.num_hidden_layers {
        let l = |n: &str| t(&format!("model.layers.{i}.{n}"));
        let b = |n: &str| format!("blk.{i}.{n}");
        e.push(Entry { name: b("attn_norm.weight"), value: l("input_layernorm.weight")?, matrix: false });
        e.push(Entry { name: b("ffn_norm.weight"), value: l("post_attention_layernorm.weight")?, matrix: false });
        for (ours, hf, heads) in
            [("attn_q", "q_proj", Some(c.num_attention_heads)), ("attn_k", "k_proj", Some(c.kv_heads())), ("attn_v", "v_proj", None), ("attn_output", "o_proj", None)]
        {
            let fix = |x: Tensor| -> Result<Tensor> {
                match heads {
                    Some(h) if !qwen => permute_rope(&x, h),
                    _ => Ok(x),
                }
            };
            e.push(Entry { name: b(&format!("{ours}.weight")), value: fix(l(&format!("self_attn.{hf}.weight"))?)?, matrix: true });
            if let Some(bias) = w.get(&format!("model.layers.{i}.self_attn.{hf}.bias")) {
                e.push(Entry { name: b(&format!("{ours}.bias")), value: fix(bias.clone())?, matrix: false });
            }
        }
        for (ours, hf) in [("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")] {
            e.push(Entry { name: b(&format!("{ours}.weight")), value: l(&format!("mlp.{hf}.weight"))?, matrix: true });
        }
    }
    e.push(Entry { name: "output_norm.weight".into(), value: t("model.norm.weight")?, matrix: false });
    if !c.tie_word_embeddings {
        e.push(Entry { name: "output.weight".into(), value: t("lm_head.weight")?, matrix: true });
    }
    Ok((arch, meta, e))
}

/// The model crate logs nothing (no tracing dependency); an export caveat goes to stderr.
fn tracing_free_warning(msg: &str) {
    eprintln!("warning: {msg}");
}
