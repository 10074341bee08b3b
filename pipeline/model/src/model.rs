//! [`CausalLm`]: one type over both families, with the three ways the rest of the project runs
//! a model: training forward (causal mask, optional dropout), evaluation forward, and
//! incremental decoding with a [`KvCache`] (per-row positions and padding masks, for batched
//! generation of prompts of different lengths).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::cache::KvCache;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gpt2::Gpt2;
use crate::head_loss::HeadRows;
use crate::llama::Llama;
use crate::nn::{self, Dropout};
use crate::quant::{QuantStats, Quantization};
use crate::recompute::AttentionBackward;

enum Inner {
    Llama(Llama),
    Gpt2(Gpt2),
}

/// A causal language model returning logits at every position.
pub struct CausalLm {
    inner: Inner,
    config: ModelConfig,
    device: Device,
    quantized: Option<Quantization>,
}

impl CausalLm {
    /// Builds the model from `vb`: a `VarMap` (fresh, trainable) or loaded tensors; names are
    /// HF's, so both work unchanged.
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        let device = vb.device().clone();
        let inner = match config {
            ModelConfig::Llama(c) => Inner::Llama(Llama::new(c, vb)?),
            ModelConfig::Gpt2(c) => Inner::Gpt2(Gpt2::new(c, vb)?),
        };
        Ok(CausalLm { inner, config: config.clone(), device, quantized: None })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check_len(&self, t: usize) -> Result<()> {
        if t > self.config.max_positions() {
            return Err(Error::Invalid(format!("sequence of {t} tokens is longer than the model's {} positions", self.config.max_positions())));
        }
        Ok(())
    }

    /// How attention's backward pass gets its probabilities (recomputed by default).
    pub fn attention_backward(&self) -> AttentionBackward {
        match &self.inner {
            Inner::Llama(m) => m.attention_backward,
            Inner::Gpt2(m) => m.attention_backward,
        }
    }

    /// Recompute attention's probabilities in the backward pass, or keep them (faster, more
    /// memory: see [`AttentionBackward`]).
    pub fn set_attention_backward(&mut self, backward: AttentionBackward) {
        match &mut self.inner {
            Inner::Llama(m) => m.attention_backward = backward,
            Inner::Gpt2(m) => m.attention_backward = backward,
        }
    }

    /// Whether causal attention without a cache runs through the tiled CUDA kernels
    /// (`cuda_kernels::flash` in the CUDA build: bf16, head size 64 or 128, Llama/Qwen2 family).
    pub fn flash_attention(&self) -> bool {
        matches!(&self.inner, Inner::Llama(m) if m.flash_attention)
    }

    /// Use the tiled attention kernels where they apply (see [`flash_attention`](Self::flash_attention));
    /// elsewhere, and for GPT-2, attention is [`AttentionBackward`]'s.
    pub fn set_flash_attention(&mut self, on: bool) {
        if let Inner::Llama(m) = &mut self.inner {
            m.flash_attention = on;
        }
    }

    /// Evaluation forward: ids (B, T) u32 -> logits (B, T, V) f32, causal, no dropout.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_train(ids, None)
    }

    /// Training forward: like [`forward`](Self::forward), with dropout when `dropout` is given
    /// (GPT-2 family; Llama has none).
    pub fn forward_train(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        Ok(self.forward_train_native(ids, dropout)?.to_dtype(DType::F32)?)
    }

    /// [`forward_train`](Self::forward_train) with the logits left in the compute dtype (bf16
    /// for a bf16 view): the trainer's loss reads them directly, with no f32 copy of (B, T, V).
    pub fn forward_train_native(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        self.check_len(t)?;
        let pos = nn::default_positions(t, &self.device)?;
        let mask = nn::causal_mask(t, &self.device)?;
        self.run_native(ids, &pos, &mask, None, dropout)
    }

    /// The training forward for next-token losses: logits (B, T - 1, V) at positions 0..T-1,
    /// those that predict tokens 1..T (see [`crate::loss::align`]), in the compute dtype. The
    /// last position is dropped before the LM head, so no (B, T, V) tensor is made, sliced and
    /// copied (forward and backward) to get there.
    pub fn forward_next_native(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let logits = self.forward_next_head(ids, dropout)?.logits()?; // (B (T - 1), V)
        Ok(logits.reshape((b, t - 1, ()))?)
    }

    /// [`forward_next_native`](Self::forward_next_native) up to the LM head: the final hidden
    /// rows (B (T - 1), C) and the head's matrix, for the trainer's chunked head and loss
    /// ([`crate::head_loss`]).
    pub fn forward_next_head(&self, ids: &Tensor, dropout: Option<&mut Dropout>) -> Result<HeadRows> {
        let (_, t) = ids.dims2()?;
        self.check_len(t)?;
        if t < 2 {
            return Err(Error::Invalid("need at least 2 positions to pair logits with next tokens".into()));
        }
        let pos = nn::default_positions(t, &self.device)?;
        let mask = nn::causal_mask(t, &self.device)?;
        match &self.inner {
            Inner::Llama(m) => m.head_rows(&m.hidden(ids, &pos, &mask, None)?.narrow(1, 0, t - 1)?),
            Inner::Gpt2(m) => m.head_rows(&m.hidden(ids, &pos, &mask, None, dropout)?.narrow(1, 0, t - 1)?),
        }
    }

    /// One decoding call: `ids` (B, T) new tokens at `positions` (B, T) u32, additive `mask`
    /// (B, 1, T, T_past + T); appends to `cache` and returns logits (B, T, V).
    pub fn forward_cached(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.check_len(cache.seq_len() + ids.dim(1)?)?;
        self.run(ids, positions, mask, Some(cache), None)
    }

    fn run(&self, ids: &Tensor, pos: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        Ok(self.run_native(ids, pos, mask, cache, dropout)?.to_dtype(DType::F32)?)
    }

    fn run_native(&self, ids: &Tensor, pos: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        match &self.inner {
            Inner::Llama(m) => m.forward(ids, pos, mask, cache),
            Inner::Gpt2(m) => m.forward(ids, pos, mask, cache, dropout),
        }
    }

    /// The cuts [`crate::checkpoint`] makes for a training sequence of `t` tokens.
    pub(crate) fn segments(&self, t: usize) -> Result<Segments<'_>> {
        self.check_len(t)?;
        let pos = nn::default_positions(t, &self.device)?;
        let mask = nn::causal_mask(t, &self.device)?;
        let rope = match &self.inner {
            Inner::Llama(m) => Some(m.rope(&pos)?),
            Inner::Gpt2(_) => None,
        };
        Ok(Segments { model: self, pos, mask, rope })
    }

    /// Replaces the weight matrices by quantized copies for inference ([`crate::quant`]):
    /// forward passes and generation work as before, in f32 activations; training does not.
    pub fn quantize(&mut self, q: Quantization) -> Result<QuantStats> {
        let mut stats = QuantStats::default();
        match &mut self.inner {
            Inner::Llama(m) => m.quantize(q, &mut stats)?,
            Inner::Gpt2(m) => m.quantize(q, &mut stats)?,
        }
        self.quantized = Some(q);
        Ok(stats)
    }

    /// The quantization applied by [`quantize`](Self::quantize), if any.
    pub fn quantization(&self) -> Option<Quantization> {
        self.quantized
    }

    /// A cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers())
    }
}

/// The training forward cut at block boundaries, for activation checkpointing: the
/// embeddings, each block, then the head. Run in order with one [`Dropout`], they compute
/// exactly what [`CausalLm::forward_next_native`] does.
pub(crate) struct Segments<'a> {
    model: &'a CausalLm,
    pos: Tensor,
    mask: Tensor,
    /// Llama's rotary tables.
    rope: Option<(Tensor, Tensor)>,
}

impl Segments<'_> {
    pub fn blocks(&self) -> usize {
        match &self.model.inner {
            Inner::Llama(m) => m.num_blocks(),
            Inner::Gpt2(m) => m.num_blocks(),
        }
    }

    /// ids (B, T) -> (B, T, C).
    pub fn embed(&self, ids: &Tensor, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
        match &self.model.inner {
            Inner::Llama(m) => m.embed(ids),
            Inner::Gpt2(m) => m.embed(ids, &self.pos, dropout),
        }
    }

    /// Block `i`: (B, T, C) -> (B, T, C).
    pub fn block(&self, i: usize, x: &Tensor, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
        match (&self.model.inner, &self.rope) {
            (Inner::Llama(m), Some((cos, sin))) => m.block(i, x, cos, sin, &self.mask, None),
            (Inner::Gpt2(m), _) => m.block(i, x, &self.mask, None, dropout),
            (Inner::Llama(_), None) => unreachable!("Llama segments carry rotary tables"),
        }
    }

    /// The last block's output (B, T, C) -> the head's rows for positions 0..T-1, those that
    /// predict tokens 1..T, as [`CausalLm::forward_next_head`] gives them.
    pub fn head_next(&self, x: &Tensor) -> Result<HeadRows> {
        let t = x.dim(1)?;
        if t < 2 {
            return Err(Error::Invalid("need at least 2 positions to pair logits with next tokens".into()));
        }
        let x = x.narrow(1, 0, t - 1)?;
        match &self.model.inner {
            Inner::Llama(m) => m.head_rows(&x),
            Inner::Gpt2(m) => m.head_rows(&x),
        }
    }
}
