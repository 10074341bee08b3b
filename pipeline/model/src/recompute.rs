//! Memory-lean autograd for the two largest activations of a training step: attention's
//! (B, H, T, T) scores and the loss's logsumexp over the (N, V) vocabulary logits; and RoPE
//! through candle's fused kernel (one launch instead of seven, forward and backward).
//!
//! candle's graph keeps every intermediate of the forward pass alive until the backward pass:
//! composed attention holds five (B, H, T, T) tensors per layer (scores, scaled, masked, probs
//! and its copy), which for a 0.5B student at 2 x 2048 tokens is 28 GB. Here the forward runs on
//! detached inputs, so its intermediates are freed at once, and a custom op re-attaches the
//! result to the graph. Its backward needs the probabilities P; [`AttentionBackward`] chooses
//! between keeping P (one (B, H, T, Tk) tensor per layer in the compute dtype: 5.6 GB for that
//! student) and recomputing it from q and k (flash attention's trade, without the tiling: no
//! T x T memory kept, one more q k^T and softmax per layer). On CUDA the softmax and its
//! backward are single fused kernels ([`crate::cuda_kernels`]).
//!
//! ```text
//! attention:  S = q k^T,  P = softmax(S * scale + mask),  O = P v
//!             dV = P^T dO,  dP = dO v^T,  dS = scale * P * (dP - rowsum(dP * P)),
//!             dQ = dS k,  dK = dS^T q
//! logsumexp:  l = max + log sum_j exp(z_j - max),  dz = exp(z - l) * dl
//! ```
//!
//! Shapes: q (B, G, R T, D) (the R query heads of each of G key/value heads as rows), k and v
//! (B, G, Tk, D), mask (1 or B, 1, T, Tk); z (N, C) -> l (N, 1).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Storage, Tensor, D};

use crate::error::Result;

/// A result computed outside the graph, handed out by a custom op's forward.
pub(crate) struct Precomputed(Tensor);

impl Precomputed {
    pub(crate) fn new(t: Tensor) -> candle_core::Result<Self> {
        // `try_clone` copies the whole buffer: it must be exactly this tensor's elements.
        let (_, layout) = t.storage_and_layout();
        let exact = layout.is_contiguous() && layout.start_offset() == 0;
        Ok(Precomputed(if exact { t.clone() } else { t.copy()? }))
    }

    pub(crate) fn cpu(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let (storage, layout) = self.0.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("precomputed result is not on the CPU"),
        }
    }

    pub(crate) fn cuda(&self) -> candle_core::Result<(CudaStorage, Shape)> {
        let (storage, layout) = self.0.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("precomputed result is not on a CUDA device"),
        }
    }
}

/// Softmax over the last dim with f32 accumulation (candle's CUDA kernel does so for bf16;
/// its CPU kernel accumulates in the input dtype, so the CPU upcasts first).
pub fn softmax_no_grad(x: &Tensor) -> candle_core::Result<Tensor> {
    let x = x.detach().contiguous()?;
    if x.device().is_cpu() && x.dtype() != DType::F32 {
        candle_nn::ops::softmax_last_dim(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())
    } else {
        candle_nn::ops::softmax_last_dim(&x)
    }
}

/// `dx = y * (dy - sum(dy * y))` for `y = softmax(x)`, in f32, returned in `dtype`.
pub fn softmax_backward(y: &Tensor, dy: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let (yf, dyf) = (y.to_dtype(DType::F32)?, dy.to_dtype(DType::F32)?);
    let dot = (&dyf * &yf)?.sum_keepdim(D::Minus1)?;
    (yf * dyf.broadcast_sub(&dot)?)?.to_dtype(dtype)
}

/// `softmax(s * scale + mask)` over the last dim, no graph: the fused kernel on CUDA, one pass
/// per row in f32 on the CPU ([`crate::softmax_cpu`]), composed candle ops (the reference)
/// elsewhere. s (B, G, R T, N) with R query heads per key/value head (R = 1 without grouping),
/// mask (1 or B, 1, T, N).
pub fn masked_softmax(s: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if s.device().is_cuda() {
        return crate::cuda_kernels::masked_softmax(&s.detach(), &mask.detach(), scale);
    }
    if let Some(p) = crate::softmax_cpu::masked_softmax(s, mask, scale)? {
        return Ok(p);
    }
    let (b, g, rt, n) = s.dims4()?;
    let t = mask.dim(2)?;
    let scaled = (s.detach() * scale)?.reshape((b, g, rt / t, t, n))?;
    let mask = mask.detach().to_dtype(scaled.dtype())?.unsqueeze(2)?; // (1 or B, 1, 1, T, N)
    softmax_no_grad(&scaled.broadcast_add(&mask)?)?.reshape((b, g, rt, n))
}

/// The gradient with respect to `s` of [`masked_softmax`], from its output `p` and the
/// gradient `dp` of its output: `scale * p * (dp - rowsum(p * dp))`.
pub fn masked_softmax_backward(p: &Tensor, dp: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if p.device().is_cuda() {
        return crate::cuda_kernels::softmax_backward(p, dp, scale);
    }
    if let Some(ds) = crate::softmax_cpu::masked_softmax_backward(p, dp, scale)? {
        return Ok(ds);
    }
    softmax_backward(p, dp, p.dtype())? * scale
}

/// Where attention's backward pass gets the probabilities P from (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionBackward {
    /// Recompute P from q and k: memory linear in T, one more q k^T and softmax per layer.
    #[default]
    Recompute,
    /// Keep P from the forward pass (when a gradient can flow; inference keeps nothing).
    KeepProbs,
}

fn attention_probs(q: &Tensor, k: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    masked_softmax(&q.matmul(&k.t()?)?, mask, scale)
}

/// Scaled dot-product attention whose graph keeps only q, k, v and the output (module docs).
/// q (B, H, T, D); k and v (B, G, Tk, D) with G dividing H: grouped-query attention runs
/// without repeating k and v, by treating the R = H / G query heads of a group as R T rows
/// against the group's keys (heads of a group are consecutive, as HF's `repeat_kv` has them).
/// Both kinds of `backward` give the same values and gradients, bit for bit.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, backward: AttentionBackward) -> Result<Tensor> {
    attend(q, k, v, mask, backward, None)
}

/// [`attention`] with dropout `p` on the probabilities (GPT-2's attention dropout):
/// `O = (P * M) V`, the mask M drawn from `dropout` as [`nn::Dropout::apply`] on P (B, H, T, Tk)
/// draws it, so the values are those of the composed graph with that hook. The graph keeps M
/// (one (B, H, T, Tk) tensor per layer) besides q, k, v and the output, where the composed
/// graph keeps eight; the backward pass is `dV = (P * M)^T dO`, `dP = (dO v^T) * M`, then the
/// softmax's as without dropout.
///
/// [`nn::Dropout::apply`]: crate::nn::Dropout::apply
pub fn attention_with_dropout(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, backward: AttentionBackward, dropout: &mut crate::nn::Dropout, p: f64) -> Result<Tensor> {
    attend(q, k, v, mask, backward, Some((dropout, p)))
}

fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, backward: AttentionBackward, dropout: Option<(&mut crate::nn::Dropout, f64)>) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let g = k.dim(1)?;
    if g == 0 || h % g != 0 || v.dim(1)? != g {
        return Err(crate::Error::Invalid(format!("attention: {h} query heads do not group over {g} key/value heads")));
    }
    let q = q.reshape((b, g, (h / g) * t, d))?; // (B, G, R T, D)
    let scale = 1.0 / (d as f64).sqrt();
    let (qd, kd, vd) = (q.detach(), k.detach(), v.detach());
    let p = attention_probs(&qd, &kd, mask, scale)?;
    // (B, G, R T, Tk) is (B, H, T, Tk) in memory, so the mask is drawn in the composed order.
    let kept = match dropout {
        Some((d, rate)) => d.mask_like(&p, rate)?,
        None => None,
    };
    let out = match &kept {
        Some(m) => (&p * m)?.matmul(&vd)?,
        None => p.matmul(&vd)?,
    };
    // Without a graph to backpropagate through, the op is dropped at once: keep nothing.
    let graph = q.track_op() || k.track_op() || v.track_op();
    let probs = (graph && backward == AttentionBackward::KeepProbs).then_some(p);
    let op = AttentionOp { mask: mask.detach(), scale, out: Precomputed::new(out)?, probs, dropout: kept.filter(|_| graph) };
    Ok(q.apply_op3(k, v, op)?.reshape((b, h, t, d))?)
}

struct AttentionOp {
    mask: Tensor,
    scale: f64,
    out: Precomputed,
    /// P from the forward pass, or None to recompute it.
    probs: Option<Tensor>,
    /// The dropout mask M applied to P (0 or 1 / keep), if any.
    dropout: Option<Tensor>,
}

impl candle_core::CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "attention-recompute"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, _: &Tensor, d_out: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v, d_out) = (q.detach(), k.detach(), v.detach(), d_out.detach().contiguous()?);
        let p = match &self.probs {
            Some(p) => p.clone(),
            None => attention_probs(&q, &k, &self.mask, self.scale)?,
        }; // (B, G, R T, Tk)
        let dv = match &self.dropout {
            Some(m) => (&p * m)?.t()?.matmul(&d_out)?,
            None => p.t()?.matmul(&d_out)?,
        };
        let dp = d_out.matmul(&v.t()?)?;
        let dp = match &self.dropout {
            Some(m) => (dp * m)?,
            None => dp,
        };
        let ds = masked_softmax_backward(&p, &dp, self.scale)?; // d loss / d (q k^T)
        drop((p, dp));
        let dq = ds.matmul(&k)?;
        let dk = ds.t()?.matmul(&q)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// Rotate-half RoPE (HF's layout) through candle's fused kernel, differentiable in x: x
/// (B, H, T, D); cos and sin (T, D/2), or (B, T, D/2) for per-row positions, in x's dtype.
/// RoPE is a rotation, so the backward pass is the same kernel with `-sin`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    rope_in(x, cos, sin, HeadLayout::Bhtd)
}

/// [`rope`] on x (B, T, H, D), the layout the projections write (no head transpose).
pub fn rope_thd(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    rope_in(x, cos, sin, HeadLayout::Bthd)
}

/// Where the head axis of a (B, ., ., D) activation is.
#[derive(Clone, Copy)]
enum HeadLayout {
    Bhtd,
    Bthd,
}

impl HeadLayout {
    fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            HeadLayout::Bhtd => candle_nn::rotary_emb::rope(x, cos, sin),
            HeadLayout::Bthd => candle_nn::rotary_emb::rope_thd(x, cos, sin),
        }
    }
}

fn rope_in(x: &Tensor, cos: &Tensor, sin: &Tensor, layout: HeadLayout) -> Result<Tensor> {
    let (cos, sin) = (cos.detach().contiguous()?, sin.detach().contiguous()?);
    let y = layout.rope(&x.detach().contiguous()?, &cos, &sin)?;
    Ok(x.apply_op1(RopeOp { cos, sin, layout, out: Precomputed::new(y)? })?)
}

struct RopeOp {
    cos: Tensor,
    sin: Tensor,
    layout: HeadLayout,
    out: Precomputed,
}

impl candle_core::CustomOp1 for RopeOp {
    fn name(&self) -> &'static str {
        "rope-recompute"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dx = self.layout.rope(&dy.detach().contiguous()?, &self.cos, &self.sin.neg()?)?;
        Ok(Some(dx))
    }
}

/// Causal attention through the tiled CUDA kernels ([`crate::cuda_kernels::flash`]): q
/// (B, T, H, D), k and v (B, T, G, D) with G dividing H, bf16, D 64 or 128 -> (B, T, H, D).
/// The graph keeps q, k, v, the output and one f32 per query row (the log-sum-exp); the
/// backward pass recomputes the probabilities tile by tile. No (T, T) tensor is ever made.
#[cfg(feature = "cuda")]
pub fn flash_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (qd, kd, vd) = (q.detach().contiguous()?, k.detach().contiguous()?, v.detach().contiguous()?);
    let (out, lse) = crate::cuda_kernels::flash::flash_forward(&qd, &kd, &vd)?;
    let op = FlashOp { out: Precomputed::new(out)?, lse };
    Ok(q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

#[cfg(feature = "cuda")]
struct FlashOp {
    out: Precomputed,
    /// Base-2 log-sum-exp of each query row's scaled scores (B, H, T) f32.
    lse: Tensor,
}

#[cfg(feature = "cuda")]
impl candle_core::CustomOp3 for FlashOp {
    fn name(&self) -> &'static str {
        "flash-attention"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("flash attention is CUDA only (the CPU path is recompute::attention)")
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(&self, q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, d_out: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v) = (q.detach().contiguous()?, k.detach().contiguous()?, v.detach().contiguous()?);
        let (dq, dk, dv) = crate::cuda_kernels::flash::flash_backward(&q, &k, &v, &out.detach(), &self.lse, &d_out.detach())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// `log sum exp` over the last dim, keepdim: z (N, C) -> (N, 1), with no (N, C) intermediate
/// kept for the backward pass (module docs).
pub fn logsumexp_last(z: &Tensor) -> Result<Tensor> {
    let zd = z.detach();
    let max = zd.max_keepdim(D::Minus1)?;
    let lse = (zd.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + max)?;
    Ok(z.apply_op1(LogSumExpOp { out: Precomputed::new(lse)? })?)
}

/// `log softmax(z)` at `ids`: z (N, V) f32 or bf16, ids (N, J) u32 -> (N, J) f32. On CUDA one
/// fused kernel reads each row of z once, forward and backward
/// ([`crate::cuda_kernels::lse_gather`]); elsewhere [`logsumexp_last`] and a gather.
pub fn log_softmax_gather(z: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let j = ids.dim(1)?;
    #[cfg(feature = "cuda")]
    if z.device().is_cuda() {
        return Ok(crate::cuda_kernels::lse_gather(z, ids)?.narrow(1, 0, j)?);
    }
    let _ = j;
    let z = z.to_dtype(DType::F32)?;
    let lse = logsumexp_last(&z)?;
    Ok(z.gather(&ids.contiguous()?, D::Minus1)?.broadcast_sub(&lse)?)
}

struct LogSumExpOp {
    out: Precomputed,
}

impl candle_core::CustomOp1 for LogSumExpOp {
    fn name(&self) -> &'static str {
        "logsumexp-recompute"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(&self, z: &Tensor, lse: &Tensor, d_lse: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let p = z.detach().broadcast_sub(&lse.detach())?.exp()?;
        Ok(Some(p.broadcast_mul(&d_lse.detach())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::nn;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
        d.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Seeded N(0, std) values: the same inputs on every run.
    fn seeded(shape: impl Into<candle_core::Shape>, std: f64, seed: u64) -> Tensor {
        crate::weights::normal_tensor(shape, std, seed, &Device::Cpu).unwrap()
    }

    fn var(shape: (usize, usize, usize, usize), std: f64, dtype: DType, seed: u64) -> Var {
        Var::from_tensor(&seeded(shape, std, seed).to_dtype(dtype).unwrap()).unwrap()
    }

    #[test]
    fn recomputing_attention_matches_the_composed_graph_in_value_and_gradients() {
        for (dtype, tol) in [(DType::F32, 2e-5f32), (DType::BF16, 3e-2)] {
            let (q, k, v) = (var((2, 3, 7, 8), 1.5, dtype, 107), var((2, 3, 7, 8), 1.5, dtype, 108), var((2, 3, 7, 8), 1.0, dtype, 109));
            let mask = nn::causal_mask(7, &Device::Cpu).unwrap();
            let w = seeded((2, 3, 7, 8), 1.0, 101).to_dtype(dtype).unwrap();
            let composed = nn::attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, Ok).unwrap();
            let lean = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, AttentionBackward::Recompute).unwrap();
            assert!(max_diff(&composed, &lean) < tol, "{dtype:?}: outputs differ by {}", max_diff(&composed, &lean));
            let g1 = (&composed * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&lean * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
                assert!(max_diff(a, &a.zeros_like().unwrap()) > 0.05, "{name}: gradient is not trivially zero");
                assert!(max_diff(a, b) < tol * 4.0, "{dtype:?}: d{name} differs by {}", max_diff(a, b));
            }
        }
    }

    #[test]
    fn attention_dropout_matches_the_composed_graph_with_the_same_masks() {
        let (q, k, v) = (var((2, 3, 9, 8), 1.5, DType::F32, 121), var((2, 3, 9, 8), 1.5, DType::F32, 122), var((2, 3, 9, 8), 1.0, DType::F32, 123));
        let mask = nn::causal_mask(9, &Device::Cpu).unwrap();
        let w = seeded((2, 3, 9, 8), 1.0, 124);
        let (mut d1, d2) = (nn::Dropout::new(5), nn::Dropout::new(5));
        let composed = nn::attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, |p| d1.apply(&p, 0.3)).unwrap();
        let next_draws = |d: &mut nn::Dropout| d.mask_like(&w, 0.5).unwrap().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let after_composed = next_draws(&mut d1);
        let without = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, AttentionBackward::Recompute).unwrap();
        assert!(max_diff(&composed, &without) > 0.05, "the dropout changes the output");
        for backward in [AttentionBackward::Recompute, AttentionBackward::KeepProbs] {
            let mut d = d2.clone();
            let lean = attention_with_dropout(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, backward, &mut d, 0.3).unwrap();
            assert!(max_diff(&composed, &lean) < 2e-5, "outputs differ by {}", max_diff(&composed, &lean));
            let g1 = (&composed * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&lean * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
                let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
                assert!(max_diff(a, &a.zeros_like().unwrap()) > 0.05, "{name}: gradient is not trivially zero");
                assert!(max_diff(a, b) < 1e-4, "d{name} differs by {}", max_diff(a, b));
            }
            assert_eq!(next_draws(&mut d), after_composed, "the RNG is left where the composed graph's hook left it");
        }
    }

    #[test]
    fn grouped_query_attention_matches_repeated_keys_in_value_and_gradients() {
        let (q, k, v) = (var((2, 6, 5, 4), 1.5, DType::F32, 110), var((2, 2, 5, 4), 1.5, DType::F32, 111), var((2, 2, 5, 4), 1.0, DType::F32, 112));
        let mask = nn::causal_mask(5, &Device::Cpu).unwrap();
        let w = seeded((2, 6, 5, 4), 1.0, 102);
        let (kr, vr) = (nn::repeat_kv(k.as_tensor(), 3).unwrap(), nn::repeat_kv(v.as_tensor(), 3).unwrap());
        let composed = nn::attention(q.as_tensor(), &kr, &vr, &mask, Ok).unwrap();
        let grouped = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, AttentionBackward::KeepProbs).unwrap();
        assert!(max_diff(&composed, &grouped) < 2e-5, "outputs differ by {}", max_diff(&composed, &grouped));
        let g1 = (&composed * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&grouped * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, x) in [("q", &q), ("k", &k), ("v", &v)] {
            let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            assert!(max_diff(a, &a.zeros_like().unwrap()) > 0.05, "{name}: gradient is not trivially zero");
            assert!(max_diff(a, b) < 1e-4, "d{name} differs by {}", max_diff(a, b));
        }
    }

    #[test]
    fn kept_and_recomputed_probabilities_give_the_same_gradients_bit_for_bit() {
        let (q, k, v) = (var((2, 6, 9, 4), 1.5, DType::F32, 114), var((2, 2, 9, 4), 1.5, DType::F32, 115), var((2, 2, 9, 4), 1.0, DType::F32, 116));
        let mask = nn::causal_mask(9, &Device::Cpu).unwrap();
        let w = seeded((2, 6, 9, 4), 1.0, 117);
        let grads = |backward| {
            let y = attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), &mask, backward).unwrap();
            let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            [&q, &k, &v].map(|x| g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap())
        };
        let (kept, recomputed) = (grads(AttentionBackward::KeepProbs), grads(AttentionBackward::Recompute));
        assert!(kept[0].iter().any(|x| x.abs() > 0.05), "dq is not trivially zero");
        assert_eq!(kept, recomputed);
    }

    #[test]
    fn fused_rope_matches_the_rotate_half_formula_in_value_and_gradient() {
        let x = var((2, 3, 5, 8), 1.0, DType::F32, 113);
        let angles = seeded((5, 4), 2.0, 103);
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let composed = {
            let xt = x.as_tensor();
            let (x1, x2) = (xt.narrow(3, 0, 4).unwrap(), xt.narrow(3, 4, 4).unwrap());
            let a = (x1.broadcast_mul(&cos).unwrap() - x2.broadcast_mul(&sin).unwrap()).unwrap();
            let b = (x2.broadcast_mul(&cos).unwrap() + x1.broadcast_mul(&sin).unwrap()).unwrap();
            Tensor::cat(&[a, b], 3).unwrap()
        };
        let fused = rope(x.as_tensor(), &cos, &sin).unwrap();
        assert!(max_diff(&composed, &fused) < 1e-6);
        let w = seeded((2, 3, 5, 8), 1.0, 104);
        let g1 = (&composed * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()) < 1e-6);
    }

    #[test]
    fn rope_on_the_projections_layout_equals_rope_on_heads_in_value_and_gradient() {
        let x = var((2, 5, 3, 8), 1.0, DType::F32, 118); // (B, T, H, D)
        let angles = seeded((5, 4), 2.0, 119);
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let thd = rope_thd(x.as_tensor(), &cos, &sin).unwrap();
        let bhtd = rope(&x.as_tensor().transpose(1, 2).unwrap(), &cos, &sin).unwrap().transpose(1, 2).unwrap();
        assert!(max_diff(&thd, &bhtd) < 1e-6);
        let w = seeded((2, 5, 3, 8), 1.0, 120);
        let g1 = (&thd * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&bhtd * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(max_diff(a, &a.zeros_like().unwrap()) > 0.05, "the gradient is not trivially zero");
        assert!(max_diff(a, b) < 1e-6);
    }

    #[test]
    fn recomputing_logsumexp_matches_the_composed_graph() {
        let z = Var::from_tensor(&(seeded((5, 300), 4.0, 105))).unwrap();
        let w = seeded((5, 1), 1.0, 106);
        let max = z.as_tensor().max_keepdim(1).unwrap().detach();
        let composed = (z.as_tensor().broadcast_sub(&max).unwrap().exp().unwrap().sum_keepdim(1).unwrap().log().unwrap() + &max).unwrap();
        let lean = logsumexp_last(z.as_tensor()).unwrap();
        assert!(max_diff(&composed, &lean) < 1e-5);
        let g1 = (&composed * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&lean * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g1.get(z.as_tensor()).unwrap(), g2.get(z.as_tensor()).unwrap()) < 1e-6);
    }
}
