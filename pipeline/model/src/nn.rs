//! Building blocks shared by both families, written with plain differentiable candle ops.
//!
//! candle's fused `softmax_last_dim`, `rms_norm` and `layer_norm` have no backward pass, so
//! training needs these composed versions (attention runs through
//! [`crate::recompute::attention`], which keeps far less for the backward pass; RMSNorm and
//! SwiGLU through [`crate::fused`], single kernels on CUDA); they compute in fp32 exactly as
//! the formulas below, also when the model runs in bf16 (the input is upcast and the result
//! cast back, as HF does).
//!
//! - RMSNorm: `y = x / sqrt(mean(x^2) + eps) * w`, over the last dim.
//! - LayerNorm: `y = (x - mean) / sqrt(var + eps) * w + b` (biased variance).
//! - softmax: `exp(x - max) / sum(exp(x - max))`, max detached (it cancels mathematically).
//! - GPT-2's Conv1D: `y = x @ W + b` with `W` stored (in, out), HF's layout.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::error::Result;
use crate::quant::{self, QuantStats, Quantization, Weight};

/// Additive mask value for disallowed attention: finite so that no `inf - inf` appears.
pub const MASKED: f32 = -1e9;

pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let xf = x.to_dtype(DType::F32)?;
    let max = xf.max_keepdim(D::Minus1)?.detach();
    let e = xf.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?.to_dtype(x.dtype())?)
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(RmsNorm { weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        crate::fused::rms_norm(x, &self.weight, self.eps)
    }
}

#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm { weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?, bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?, eps })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if let Some(y) = crate::fused::layer_norm_cpu(x, &self.weight, &self.bias, self.eps)? {
            return Ok(y);
        }
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(D::Minus1)?;
        let xc = xf.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        xc.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(x.dtype())?.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// `x (..., in) @ w (in, out)` as one 2-D matmul over the flattened leading dims. Faster than
/// a batched matmul against a broadcast weight, above all in the backward pass (no per-batch
/// weight gradients to sum).
pub fn matmul_last(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, inp))?.matmul(w)?;
    let mut out = dims;
    *out.last_mut().expect("at least one dim") = w.dim(1)?;
    y.reshape(out)
}

/// A `(out, in)` linear layer (HF's `nn.Linear` layout), applied with [`matmul_last`], or
/// its quantized form ([`crate::quant`]).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    /// The (out, in) matrix for training; `None` once quantized (inference only).
    pub fn dense(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::Dense(w) => Some(w),
            Weight::Quant(_) => None,
        }
    }

    /// Replaces the weight by its quantized rows (inference only).
    pub fn quantize(&mut self, q: Quantization, stats: &mut QuantStats) -> Result<()> {
        if let Weight::Dense(w) = &self.weight {
            if let Some(qt) = quant::quantize_rows(w, q, stats)? {
                self.weight = Weight::Quant(QMatMul::from_arc(qt)?);
            }
        }
        Ok(())
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.weight {
            Weight::Dense(w) => matmul_last(x, &w.t()?)?,
            Weight::Quant(q) => quant::qmatmul(q, x)?,
        };
        match &self.bias {
            Some(b) => crate::fused::add_rows(&y, b),
            None => Ok(y),
        }
    }
}

/// HF's `Conv1D` (GPT-2): weight (in, out); quantized, it is stored transposed, (out, in).
#[derive(Debug, Clone)]
pub struct Conv1D {
    weight: Weight,
    bias: Tensor,
}

impl Conv1D {
    pub fn new(inp: usize, out: usize, std: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Conv1D {
            weight: Weight::Dense(vb.get_with_hints((inp, out), "weight", Init::Randn { mean: 0.0, stdev: std })?),
            bias: vb.get_with_hints(out, "bias", Init::Const(0.0))?,
        })
    }

    /// Replaces the weight by its quantized rows (inference only).
    pub fn quantize(&mut self, q: Quantization, stats: &mut QuantStats) -> Result<()> {
        if let Weight::Dense(w) = &self.weight {
            if let Some(qt) = quant::quantize_rows(&w.t()?, q, stats)? {
                self.weight = Weight::Quant(QMatMul::from_arc(qt)?);
            }
        }
        Ok(())
    }
}

impl Module for Conv1D {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            Weight::Dense(w) => crate::fused::add_rows(&matmul_last(x, w)?, &self.bias),
            Weight::Quant(q) => crate::fused::add_rows(&quant::qmatmul(q, x)?, &self.bias),
        }
    }
}

/// A `(out, in)` linear layer, HF's `nn.Linear` layout.
pub fn linear(inp: usize, out: usize, bias: bool, std: f64, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((out, inp), "weight", Init::Randn { mean: 0.0, stdev: std })?;
    let bias = if bias { Some(vb.get_with_hints(out, "bias", Init::Const(0.0))?) } else { None };
    Ok(Linear { weight: Weight::Dense(weight), bias })
}

/// An `(n, dim)` embedding table (dense until [`crate::quant::Table::quantize`]).
pub(crate) fn embedding(n: usize, dim: usize, std: f64, vb: VarBuilder) -> Result<quant::Table> {
    Ok(quant::Table::Dense(vb.get_with_hints((n, dim), "weight", Init::Randn { mean: 0.0, stdev: std })?))
}

/// Seeded dropout. The mask comes from our own RNG (candle's CPU RNG cannot be seeded), so a
/// training run is reproducible; the trainer derives the seed from (run seed, step). A clone
/// draws the same masks from there on (activation checkpointing replays a block with one).
#[derive(Clone)]
pub struct Dropout {
    rng: StdRng,
}

impl Dropout {
    pub fn new(seed: u64) -> Self {
        Dropout { rng: StdRng::seed_from_u64(seed) }
    }

    /// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)`.
    pub fn apply(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        match self.mask_like(x, p)? {
            Some(mask) => Ok(x.mul(&mask)?),
            None => Ok(x.clone()),
        }
    }

    /// The mask [`apply`](Self::apply) multiplies `x` by (0 or `1 / (1 - p)` per element, in
    /// `x`'s element order), drawing as it does; None when `p <= 0`, which draws nothing.
    pub fn mask_like(&mut self, x: &Tensor, p: f64) -> Result<Option<Tensor>> {
        if p <= 0.0 {
            return Ok(None);
        }
        let keep = 1.0 - p;
        let scale = (1.0 / keep) as f32;
        // Drawn in distill-cpu-kernels, which the dev build optimises: the same stream as one
        // draw per element here, minus the unoptimised per-draw cost.
        let mask = distill_cpu_kernels::dropout::mask(&mut self.rng, x.elem_count(), keep, scale);
        Ok(Some(Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?))
    }
}

/// Additive attention mask (B, 1, T, T_past + T) for `t` new query positions after `past`
/// cached ones: a key is visible when it is not in the future and not padding. A query always
/// sees itself, so no row is fully masked (pad rows produce values nobody reads).
///
/// `key_valid` is (B, T_past + T) with 1 for real tokens, 0 for left padding.
pub fn attention_mask(key_valid: &[Vec<u8>], past: usize, t: usize, device: &Device) -> Result<Tensor> {
    let b = key_valid.len();
    let tk = past + t;
    let mut m = vec![0f32; b * t * tk];
    for (bi, valid) in key_valid.iter().enumerate() {
        for qi in 0..t {
            let q_abs = past + qi;
            for kj in 0..tk {
                let visible = kj == q_abs || (kj < q_abs && valid[kj] != 0);
                if !visible {
                    m[(bi * t + qi) * tk + kj] = MASKED;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, t, tk), device)?)
}

/// The causal mask (1, 1, T, T) for unpadded training batches.
pub fn causal_mask(t: usize, device: &Device) -> Result<Tensor> {
    // Built on the device: a host loop and upload of T^2 values costs ~10 ms at T = 2048.
    let i = Tensor::arange(0u32, t as u32, device)?;
    let future = i.unsqueeze(0)?.broadcast_gt(&i.unsqueeze(1)?)?; // (T, T): key j > query i
    let m = future.where_cond(&Tensor::full(MASKED, (t, t), device)?, &Tensor::zeros((t, t), DType::F32, device)?)?;
    Ok(m.reshape((1, 1, t, t))?)
}

/// Positions 0..T for every row: (1, T) u32.
pub fn default_positions(t: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::arange(0u32, t as u32, device)?.unsqueeze(0)?)
}

/// `(B, Hkv, T, D)` -> `(B, Hkv * n_rep, T, D)`: HF's `repeat_kv`, the reference that
/// [`crate::recompute::attention`]'s grouped form (no repeated keys) is tested against.
pub fn repeat_kv(x: &Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, h, n_rep, t, d))?.reshape((b, h * n_rep, t, d))?)
}

/// Scaled dot-product attention as a plain composed graph: q (B, H, T, D), k/v (B, H, Tk, D),
/// mask broadcastable to (B, H, T, Tk); returns (B, H, T, D). `probs_hook` sees the attention
/// probabilities (GPT-2's attention dropout). The reference the tests hold the much leaner
/// [`crate::recompute::attention`] and [`crate::recompute::attention_with_dropout`] to.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, mut probs_hook: impl FnMut(Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scores = (q.matmul(&k.t()?.contiguous()?)? / (d as f64).sqrt())?; // (B, H, T, Tk)
    let scores = scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?;
    let probs = probs_hook(softmax_last(&scores)?)?;
    Ok(probs.matmul(v)?)
}
