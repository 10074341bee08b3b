//! GPT-2 (HF `GPT2LMHeadModel`): learned positions, pre-LayerNorm blocks, GELU MLP, dropout,
//! LM head tied to the token embedding. Logits at every position.
//!
//! ```text
//! x = drop(wte[ids] + wpe[pos])                                  (B, T, C)
//! x = x + drop(c_proj(attn(split(c_attn(ln_1(x))))))             attn probs also dropped
//! x = x + drop(mlp.c_proj(gelu(c_fc(ln_2(x)))))
//! logits = ln_f(x) @ wte^T                                        (B, T, V)
//! ```
//!
//! Weights use HF's names (`transformer.h.{i}.attn.c_attn.weight`, Conv1D layout (in, out));
//! original OpenAI-era files without the `transformer.` prefix are renamed on load
//! (see [`crate::weights`]).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::cache::KvCache;
use crate::config::Gpt2Config;
use crate::error::Result;
use crate::head_loss::HeadRows;
use crate::nn::{self, Conv1D, Dropout, LayerNorm};
use crate::quant::{QuantStats, Quantization, Table};
use crate::recompute::AttentionBackward;

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_c_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_c_proj: Conv1D,
}

pub struct Gpt2 {
    wte: Table,
    wpe: Table,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    n_head: usize,
    exact_gelu: bool,
    resid_pdrop: f64,
    embd_pdrop: f64,
    attn_pdrop: f64,
    pub(crate) attention_backward: AttentionBackward,
}

impl Gpt2 {
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        let t = vb.pp("transformer");
        let (c, std, eps) = (cfg.n_embd, cfg.initializer_range, cfg.layer_norm_epsilon);
        // GPT-2 scales the residual projections' init by 1/sqrt(2 * n_layer).
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let h = t.pp("h").pp(i);
                Ok(Block {
                    ln_1: LayerNorm::new(c, eps, h.pp("ln_1"))?,
                    c_attn: Conv1D::new(c, 3 * c, std, h.pp("attn").pp("c_attn"))?,
                    attn_c_proj: Conv1D::new(c, c, proj_std, h.pp("attn").pp("c_proj"))?,
                    ln_2: LayerNorm::new(c, eps, h.pp("ln_2"))?,
                    c_fc: Conv1D::new(c, cfg.inner(), std, h.pp("mlp").pp("c_fc"))?,
                    mlp_c_proj: Conv1D::new(cfg.inner(), c, proj_std, h.pp("mlp").pp("c_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Gpt2 {
            wte: nn::embedding(cfg.vocab_size, c, std, t.pp("wte"))?,
            wpe: nn::embedding(cfg.n_positions, c, std, t.pp("wpe"))?,
            blocks,
            ln_f: LayerNorm::new(c, eps, t.pp("ln_f"))?,
            n_head: cfg.n_head,
            exact_gelu: cfg.activation_function == "gelu",
            resid_pdrop: cfg.resid_pdrop,
            embd_pdrop: cfg.embd_pdrop,
            attn_pdrop: cfg.attn_pdrop,
            attention_backward: AttentionBackward::default(),
        })
    }

    /// ids (B, T) u32, positions (B or 1, T) u32, additive mask (B or 1, 1, T, Tk) -> logits
    /// (B, T, V). `dropout` is Some only in training.
    pub fn forward(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>, dropout: Option<&mut Dropout>) -> Result<Tensor> {
        self.head(&self.hidden(ids, positions, mask, cache, dropout)?)
    }

    /// The transformer blocks: like [`forward`](Self::forward), up to the final LayerNorm: (B, T, C).
    pub fn hidden(&self, ids: &Tensor, positions: &Tensor, mask: &Tensor, mut cache: Option<&mut KvCache>, mut dropout: Option<&mut Dropout>) -> Result<Tensor> {
        let mut x = self.embed(ids, positions, &mut dropout)?;
        for i in 0..self.blocks.len() {
            x = self.block(i, &x, mask, cache.as_deref_mut(), &mut dropout)?;
        }
        Ok(x)
    }

    /// Token and position embeddings (and their dropout): ids (B, T) -> (B, T, C).
    pub fn embed(&self, ids: &Tensor, positions: &Tensor, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
        let pos = self.wpe.lookup(positions)?; // (B or 1, T, C)
        dropped(dropout, self.wte.lookup(ids)?.broadcast_add(&pos)?, self.embd_pdrop)
    }

    /// Block `i`: (B, T, C) -> (B, T, C). Dropout draws from `dropout` in a fixed order, so a
    /// copy of it taken before the block replays the same masks.
    pub fn block(&self, i: usize, x: &Tensor, mask: &Tensor, cache: Option<&mut KvCache>, dropout: &mut Option<&mut Dropout>) -> Result<Tensor> {
        let blk = &self.blocks[i];
        let (b, t, c) = x.dims3()?;
        let hd = c / self.n_head;
        let qkv = blk.c_attn.forward(&blk.ln_1.forward(x)?)?; // (B, T, 3C)
        let heads = |j: usize| -> Result<Tensor> { Ok(qkv.narrow(2, j * c, c)?.reshape((b, t, self.n_head, hd))?.transpose(1, 2)?.contiguous()?) };
        let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?); // (B, H, T, D)
        let (k, v) = match cache {
            Some(cache) => cache.append(i, &k, &v)?,
            None => (k, v),
        };
        let y = match dropout.as_deref_mut() {
            Some(d) if self.attn_pdrop > 0.0 => crate::recompute::attention_with_dropout(&q, &k, &v, mask, self.attention_backward, d, self.attn_pdrop)?,
            _ => crate::recompute::attention(&q, &k, &v, mask, self.attention_backward)?,
        };
        let y = y.transpose(1, 2)?.reshape((b, t, c))?;
        let x = crate::fused::add_rows(x, &dropped(dropout, blk.attn_c_proj.forward(&y)?, self.resid_pdrop)?)?;
        let h = blk.c_fc.forward(&blk.ln_2.forward(&x)?)?;
        let h = if self.exact_gelu { h.gelu_erf()? } else { crate::fused::gelu(&h)? };
        Ok(crate::fused::add_rows(&x, &dropped(dropout, blk.mlp_c_proj.forward(&h)?, self.resid_pdrop)?)?)
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Final LayerNorm and the tied LM head: hidden states (B, T, C) -> logits (B, T, V).
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.ln_f.forward(x)?;
        Ok(self.wte.project(&x)?) // (B, T, V)
    }

    /// The final LayerNorm of `x` (B, T, C) as rows with the tied head's matrix, for a loss that
    /// projects them chunk by chunk ([`crate::head_loss`]).
    pub fn head_rows(&self, x: &Tensor) -> Result<HeadRows> {
        HeadRows::new(&self.ln_f.forward(x)?, self.wte.dense())
    }

    /// Quantizes every matrix but the position table (see [`crate::quant`]); `wte` is the
    /// embedding and the tied head, one quantized copy for both.
    pub fn quantize(&mut self, q: Quantization, stats: &mut QuantStats) -> Result<()> {
        self.wte.quantize(q, stats)?;
        for b in &mut self.blocks {
            for layer in [&mut b.c_attn, &mut b.attn_c_proj, &mut b.c_fc, &mut b.mlp_c_proj] {
                layer.quantize(q, stats)?;
            }
        }
        Ok(())
    }
}

/// `x` with dropout `p` applied when training (`dropout` is Some), else `x`.
fn dropped(dropout: &mut Option<&mut Dropout>, x: Tensor, p: f64) -> Result<Tensor> {
    match dropout.as_deref_mut() {
        Some(d) => d.apply(&x, p),
        None => Ok(x),
    }
}
