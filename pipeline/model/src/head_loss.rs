//! The LM head and the distillation loss together, chunk by chunk over rows: the (N, V)
//! logits never exist all at once (one chunk's (R, V) at a time, in the compute dtype), and
//! nothing of size V waits in the graph for the backward pass but the head's own gradient.
//!
//! For the final hidden rows h (N, C) (after the last norm), the head's matrix W (V, C) and
//! the targets, with z = h W^T:
//!
//! ```text
//! for each chunk c of rows:  z_c  = h_c W^T                  (R, V)
//!                            L_c  = loss(z_c, targets_c)
//!                            dz_c = dL_c / dz_c              (the loss's own backward)
//!                            dh_c = dz_c W                   (R, C)
//!                            dW  += dz_c^T h_c               (V, C)
//! L = sum_c L_c,   dL/dh = [dh_1; dh_2; ...],   dL/dW = dW
//! ```
//!
//! This is exact: each row's loss depends on that row's logits and targets alone (a
//! multi-token chunk of a teacher with another tokenizer spans rows, so no boundary splits
//! one: [`ChunkRows::boundary_at_or_after`]), and the masked means divide by the batch's
//! token counts, fixed in advance ([`KdTargets::rows`]). So L is the sum of the chunks'
//! losses, and the values and gradients are [`distill_loss_over`]'s on the whole logits up to
//! the order of float sums. Both gradients are computed in the forward pass, while z_c is at
//! hand (as Liger-Kernel's fused linear cross-entropy does), so no matmul is recomputed; the
//! backward pass only scales them by the loss's incoming gradient. On CUDA, dW accumulates in
//! place in one cuBLAS call per chunk ([`crate::cuda_kernels::gemm`]).
//!
//! Memory: z_c and dz_c, (R, V) each, instead of the whole (N, V) logits and their gradient.
//! At the trainer's CUDA default R = 2,048 rows and a 151,936-token vocabulary that is 1.2 GB in
//! bf16, where a 2 x 2,048 batch's logits and gradient take 2.5 GB and a 16 x 2,048 batch's 20
//! GB. Smaller chunks cost time: each chunk's dz_c W has only R rows of output to spread over
//! the GPU, and each chunk adds its (V, C) product into dW (on an H100 at 0.5B, 1,024-row chunks
//! ran 2.5% slower than one chunk, 2,048-row chunks 0.8%). On the CPU the trainer's default
//! is one chunk: there the chunks' buffers, freed and allocated again, cost page faults (twice
//! as many in the scale benchmark's nano training, a quarter more wall time).
//!
//! [`ChunkRows::boundary_at_or_after`]: crate::loss::ChunkRows::boundary_at_or_after

use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Tensor};

use crate::error::{Error, Result};
use crate::loss::{distill_loss_over, KdTargets, LossParts, LossWeights, TokenCounts};
use crate::recompute::Precomputed;

/// The final hidden rows and the LM head's matrix, whose product is the logits.
pub struct HeadRows {
    /// (N, C), after the final norm.
    pub hidden: Tensor,
    /// (V, C).
    pub weight: Tensor,
}

impl HeadRows {
    /// `x` (..., C) as rows, with the head's dense matrix (`None` for a quantized head).
    pub fn new(x: &Tensor, weight: Option<&Tensor>) -> Result<Self> {
        let weight = weight.ok_or_else(|| Error::Invalid("a quantized model has no dense LM head to train or score".into()))?.clone();
        let c = x.dim(candle_core::D::Minus1)?;
        Ok(HeadRows { hidden: x.reshape(((), c))?, weight })
    }

    /// The whole logits (N, V) in the compute dtype.
    pub fn logits(&self) -> Result<Tensor> {
        Ok(crate::nn::matmul_last(&self.hidden, &self.weight.t()?)?)
    }

    /// The same rows outside any graph: a loss on them prepares no gradient.
    pub fn detach(&self) -> HeadRows {
        HeadRows { hidden: self.hidden.detach(), weight: self.weight.detach() }
    }
}

/// [`distill_loss_over`] on the logits `rows.hidden @ rows.weight^T`, computed `chunk_rows`
/// rows at a time (module docs; 0: all at once). The gradients are prepared only when the rows
/// are part of a graph; the result's `total` carries them to `rows.hidden` and `rows.weight`.
pub fn distill_loss_chunked(rows: &HeadRows, targets: &KdTargets, w: &LossWeights, report_all: bool, over: Option<TokenCounts>, chunk_rows: usize) -> Result<LossParts> {
    let n = rows.hidden.dim(0)?;
    let den = over.unwrap_or(targets.counts);
    let graph = rows.hidden.track_op() || rows.weight.track_op();
    let (h, weight) = (rows.hidden.detach(), rows.weight.detach());
    let mut sums: Option<(Tensor, Tensor)> = None;
    let (mut dh, mut dw) = (Vec::new(), None);
    let mut from = 0;
    while from < n {
        let end = if chunk_rows == 0 { n } else { from + chunk_rows };
        let to = targets.chunks.as_ref().map_or(end, |c| c.boundary_at_or_after(end)).min(n);
        let hc = h.narrow(0, from, to - from)?;
        let z = HeadRows { hidden: hc.clone(), weight: weight.clone() }.logits()?; // (R, V)
        let chunk_targets = targets.rows(from, to - from)?;
        let parts = if graph {
            // A leaf on z's storage: the loss's own backward leaves dL_c/dz_c in the store.
            let z = z.shared_leaf();
            let parts = distill_loss_over(&z, &chunk_targets, w, report_all, Some(den))?;
            let store = parts.total.backward()?;
            // None: this chunk's loss does not depend on the logits (no row counts).
            let dz = store.get(&z).map_or_else(|| z.zeros_like(), |g| Ok(g.clone()))?.to_dtype(h.dtype())?;
            drop(store);
            dh.push(dz.matmul(&weight)?);
            dw = Some(add_at_b(dw, &dz, &hc)?);
            parts
        } else {
            distill_loss_over(&z, &chunk_targets, w, report_all, Some(den))?
        };
        let (total, terms) = (parts.total.detach(), parts.terms);
        sums = Some(match sums {
            None => (total, terms),
            Some((t0, s0)) => ((t0 + total)?, (s0 + terms)?),
        });
        from = to;
    }
    let (total, terms) = sums.ok_or_else(|| Error::Invalid("a loss over no rows".into()))?;
    let total = match dw {
        Some(dw) => rows.hidden.apply_op2(&rows.weight, HeadLossOp { total: Precomputed::new(total)?, dh: Tensor::cat(&dh, 0)?, dw })?,
        None => total,
    };
    Ok(LossParts { total, terms, kd_tokens: targets.counts.kd, ce_tokens: targets.counts.ce })
}

/// `acc + a^T b`, in place into `acc` on CUDA (one cuBLAS call); `a^T b` when there is no `acc`.
fn add_at_b(acc: Option<Tensor>, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let Some(acc) = acc else { return a.t()?.matmul(b) };
    #[cfg(feature = "cuda")]
    if acc.device().is_cuda() {
        crate::cuda_kernels::gemm::add_at_b(&acc, a, b)?;
        return Ok(acc);
    }
    acc + a.t()?.matmul(b)?
}

/// Re-attaches the chunks' summed loss to the graph, with the gradients computed in the
/// forward pass (module docs).
struct HeadLossOp {
    total: Precomputed,
    /// (N, C) and (V, C), for an incoming gradient of 1.
    dh: Tensor,
    dw: Tensor,
}

impl candle_core::CustomOp2 for HeadLossOp {
    fn name(&self) -> &'static str {
        "head-loss-chunked"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.total.cpu()
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout, _: &CudaStorage, _: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        self.total.cuda()
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(scaled(&self.dh, grad)?), Some(scaled(&self.dw, grad)?)))
    }
}

/// `x * g` for the loss's incoming gradient `g` (one element). On the CPU g is read, and x
/// passed on as is when g is 1, as it is when the loss is the root of the backward pass. On a
/// GPU, reading g would make the host wait for the device in the middle of the step, so x is
/// multiplied (2.3 ms of a 68 ms 0.5B step on an H100 for the (V, C) head: `benches/gpu/RESULTS.md`).
fn scaled(x: &Tensor, g: &Tensor) -> candle_core::Result<Tensor> {
    let g = g.detach();
    if x.device().is_cpu() {
        let s = g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?[0];
        return if s == 1.0 { Ok(x.clone()) } else { x.affine(s, 0.0) };
    }
    x.broadcast_mul(&g.to_dtype(x.dtype())?)
}
