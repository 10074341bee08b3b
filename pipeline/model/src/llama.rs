//! Llama / Qwen2 decoder (HF `LlamaForCausalLM`, `Qwen2ForCausalLM`), logits at every position.
//!
//! Per layer, with x (B, T, C), H query heads and Hkv key/value heads of size D:
//!
//! ```text
//! h = x + o_proj(attn(rope(q_proj(rms(x))), rope(k_proj(rms(x))), v_proj(rms(x))))
//! y = h + down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))
//! ```
//!
//! RoPE uses HF's rotate-half layout: for each head vector split into halves (x1, x2),
//! `(x1 cos - x2 sin, x2 cos + x1 sin)` with angle `pos * theta^(-2i/D)` (Llama 3 scaling of
//! the frequencies when `rope_scaling` says so). Tensor names follow HF exactly
//! (`model.layers.{i}.self_attn.q_proj.weight`, ...), so checkpoints load and save unchanged.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::cache::KvCache;
use crate::config::LlamaConfig;
use crate::error::Result;
use crate::head_loss::HeadRows;
use crate::nn::{self, RmsNorm};
use crate::quant::{QuantStats, Quantization, Table};
use crate::recompute::AttentionBackward;

/// Inverse frequencies `theta^(-2i/D)` (D/2 of them), with Llama 3 scaling when configured.
pub fn inv_freq(cfg: &LlamaConfig) -> Vec<f32> {
    let d = cfg.head_size();
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64)).collect();
    let Some(s) = &cfg.rope_scaling else { return base.into_iter().map(|f| f as f32).collect() };
    // HF `_compute_llama3_parameters`: long wavelengths are divided by `factor`, short ones kept,
    // the band between interpolated smoothly.
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            };
            scaled as f32
        })
        .collect()
}

/// cos and sin for positions (1, T) -> (T, D/2), or (B, T) -> (B, T, D/2) (per-row positions
/// of batched generation), the layout of [`crate::recompute::rope`].
fn rope_tables(positions: &Tensor, inv_freq: &Tensor) -> Result<(Tensor, Tensor)> {
    let pos = positions.to_dtype(candle_core::DType::F32)?.unsqueeze(2)?; // (B, T, 1)
    let angles = pos.broadcast_mul(&inv_freq.unsqueeze(0)?.unsqueeze(0)?)?; // (B, T, D/2)
    let angles = if angles.dim(0)? == 1 { angles.squeeze(0)? } else { angles };
    Ok((angles.cos()?, angles.sin()?))
}

/// Rotate-half RoPE on x (B, H, T, D).
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    crate::recompute::rope(x, &cos.to_dtype(x.dtype())?, &sin.to_dtype(x.dtype())?)
}

/// How a layer computes attention: the tiled kernels where they apply (`flash`), else the
/// composed path with `backward`'s choice of probabilities.
#[derive(Clone, Copy)]
struct AttentionPath {
    backward: AttentionBackward,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))] // only the CUDA build has the kernels
    flash: bool,
}

struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    o_proj: nn::Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, d, std) = (cfg.hidden_size, cfg.head_size(), cfg.initializer_range);
        let (q, kv) = (cfg.num_attention_heads * d, cfg.kv_heads() * d);
        Ok(Attention {
            q_proj: nn::linear(h, q, cfg.qkv_bias(), std, vb.pp("q_proj"))?,
            k_proj: nn::linear(h, kv, cfg.qkv_bias(), std, vb.pp("k_proj"))?,
            v_proj: nn::linear(h, kv, cfg.qkv_bias(), std, vb.pp("v_proj"))?,
            o_proj: nn::linear(q, h, cfg.o_bias(), std, vb.pp("o_proj"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            head_dim: d,
        })
    }

    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor, cache: Option<(&mut KvCache, usize)>, path: AttentionPath) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // Without a cache the mask is the causal one (every caller's), which the tiled kernels
        // apply themselves, reading the projections' (B, T, heads, D) layout as it is.
        #[cfg(feature = "cuda")]
        if path.flash && cache.is_none() && x.device().is_cuda() && crate::cuda_kernels::flash::supports(x.dtype(), self.head_dim) {
            let heads = |y: Tensor, n: usize| y.reshape((b, t, n, self.head_dim)); // (B, T, n, D)
            let (cos, sin) = (cos.to_dtype(x.dtype())?, sin.to_dtype(x.dtype())?);
            let q = crate::recompute::rope_thd(&heads(self.q_proj.forward(x)?, self.heads)?, &cos, &sin)?;
            let k = crate::recompute::rope_thd(&heads(self.k_proj.forward(x)?, self.kv_heads)?, &cos, &sin)?;
            let v = heads(self.v_proj.forward(x)?, self.kv_heads)?;
            let y = crate::recompute::flash_attention(&q, &k, &v)?; // (B, T, H, D)
            return Ok(self.o_proj.forward(&y.reshape((b, t, self.heads * self.head_dim))?)?);
        }
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
            // (B, H, T, D)
        };
        let q = apply_rope(&split(self.q_proj.forward(x)?, self.heads)?, cos, sin)?;
        let k = apply_rope(&split(self.k_proj.forward(x)?, self.kv_heads)?, cos, sin)?;
        let v = split(self.v_proj.forward(x)?, self.kv_heads)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        // Grouped-query heads attend without repeating k and v (see recompute::attention).
        let y = crate::recompute::attention(&q, &k, &v, mask, path.backward)?; // (B, H, T, D)
        let y = y.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))?;
        Ok(self.o_proj.forward(&y)?)
    }
}

struct Mlp {
    gate_proj: nn::Linear,
    up_proj: nn::Linear,
    down_proj: nn::Linear,
}

impl Mlp {
    fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, std) = (cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range);
        Ok(Mlp {
            gate_proj: nn::linear(h, i, false, std, vb.pp("gate_proj"))?,
            up_proj: nn::linear(h, i, false, std, vb.pp("up_proj"))?,
            down_proj: nn::linear(i, h, false, std, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = crate::fused::swiglu(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?;
        Ok(self.down_proj.forward(&h)?)
    }
}

struct Layer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

/// The Llama / Qwen2 causal LM.
pub struct Llama {
    embed_tokens: Table,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// None when tied to `embed_tokens`.
    lm_head: Option<nn::Linear>,
    inv_freq: Tensor,
    pub(crate) attention_backward: AttentionBackward,
    /// Attention through the tiled CUDA kernels where they apply (`Model::set_flash_attention`).
    pub(crate) flash_attention: bool,
}

impl Llama {
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let std = cfg.initializer_range;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp("layers").pp(i);
                Ok(Layer {
                    self_attn: Attention::new(cfg, l.pp("self_attn"))?,
                    mlp: Mlp::new(cfg, l.pp("mlp"))?,
                    input_layernorm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, l.pp("input_layernorm"))?,
                    post_attention_layernorm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, l.pp("post_attention_layernorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(nn::linear(cfg.hidden_size, cfg.vocab_size, false, std, vb.pp("lm_head"))?) };
        let inv = inv_freq(cfg);
        Ok(Llama {
            embed_tokens: nn::embedding(cfg.vocab_size, cfg.hidden_size, std, m.pp("embed_tokens"))?,
            layers,
            norm: RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?,
            lm_head,
            inv_freq: Tensor::from_vec(inv.clone(), inv.len(), vb.device())?,
            attention_backward: AttentionBackward::default(),
            flash_attention: false,
        })
    }

    /// ids (B, T) u32, positions (B or 1, T) u32, additive mask (B or 1, 1, T, Tk) -> logits (B, T, V).
    pub fn forward(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.head(&self.hidden(ids, positions, mask, cache)?)
    }

    /// The decoder stack: like [`forward`](Self::forward), up to the final norm: (B, T, C).
    pub fn hidden(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let mut x = self.embed(ids)?;
        let (cos, sin) = self.rope(positions)?;
        for i in 0..self.layers.len() {
            x = self.block(i, &x, &cos, &sin, mask, cache.as_deref_mut())?;
        }
        Ok(x)
    }

    /// Token embeddings: ids (B, T) -> (B, T, C).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.lookup(ids).map_err(Into::into)
    }

    /// The rotary tables (cos, sin) for `positions`, shared by every layer.
    pub fn rope(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        rope_tables(positions, &self.inv_freq)
    }

    /// Decoder layer `i`: (B, T, C) -> (B, T, C).
    pub fn block(&self, i: usize, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let layer = &self.layers[i];
        let h = layer.self_attn.forward(
            &layer.input_layernorm.forward(x)?,
            cos,
            sin,
            mask,
            cache.map(|c| (c, i)),
            AttentionPath { backward: self.attention_backward, flash: self.flash_attention },
        )?;
        let x = crate::fused::add_rows(x, &h)?;
        let h = layer.mlp.forward(&layer.post_attention_layernorm.forward(&x)?)?;
        Ok(crate::fused::add_rows(&x, &h)?)
    }

    pub fn num_blocks(&self) -> usize {
        self.layers.len()
    }

    /// Final norm and LM head: hidden states (B, T, C) -> logits (B, T, V).
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.norm.forward(x)?;
        let logits = match &self.lm_head {
            Some(head) => head.forward(&x)?,
            None => self.embed_tokens.project(&x)?,
        };
        Ok(logits) // (B, T, V)
    }

    /// The final norm of `x` (B, T, C) as rows with the LM head's matrix, for a loss that
    /// projects them chunk by chunk ([`crate::head_loss`]).
    pub fn head_rows(&self, x: &Tensor) -> Result<HeadRows> {
        let weight = match &self.lm_head {
            Some(head) => head.dense(),
            None => self.embed_tokens.dense(),
        };
        HeadRows::new(&self.norm.forward(x)?, weight)
    }

    /// Quantizes every matrix (see [`crate::quant`]); a tied `embed_tokens` is the embedding
    /// and the head, one quantized copy for both.
    pub fn quantize(&mut self, q: Quantization, stats: &mut QuantStats) -> Result<()> {
        self.embed_tokens.quantize(q, stats)?;
        for l in &mut self.layers {
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            for layer in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj, &mut m.gate_proj, &mut m.up_proj, &mut m.down_proj] {
                layer.quantize(q, stats)?;
            }
        }
        if let Some(head) = &mut self.lm_head {
            head.quantize(q, stats)?;
        }
        Ok(())
    }
}
