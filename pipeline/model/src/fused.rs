//! RMSNorm and SwiGLU, each one CUDA kernel forward and one backward ([`crate::cuda_kernels`])
//! on a CUDA device, and the composed candle graph elsewhere: the CPU path is the reference the
//! kernels are checked against (`tests/cuda_kernels.rs`), and stays bit-for-bit what it was.
//!
//! - RMSNorm: `y = T(x / sqrt(mean(x^2) + eps)) * w` over the last dim, statistics in f32
//!   (HF's LlamaRMSNorm); x (..., C), w (C,).
//! - SwiGLU: `silu(g) * u`, g and u of one shape.
//! - Embedding: rows `ids` of a (V, C) table; the backward scatter-adds in f32 on CUDA.

use candle_core::{DType, Tensor, D};

/// RMSNorm over the last dim (module docs), differentiable in x and w.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && x.dim(D::Minus1)? <= crate::cuda_kernels::norm::MAX_WIDTH && x.dtype() == w.dtype() {
        return crate::cuda_kernels::rms_norm(x, w, eps);
    }
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    xf.broadcast_div(&(ms + eps)?.sqrt()?)?.to_dtype(x.dtype())?.broadcast_mul(w)
}

/// `silu(g) * u`, differentiable in g and u.
pub fn swiglu(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if g.device().is_cuda() && g.dtype() == u.dtype() {
        return crate::cuda_kernels::swiglu(g, u);
    }
    g.silu()? * u
}

/// Rows `ids` (u32, any shape) of the table `w` (V, C) -> (..., C), differentiable in `w`.
pub fn embedding(w: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if w.device().is_cuda() && matches!(w.dtype(), DType::F32 | DType::BF16) {
        return crate::cuda_kernels::embedding(w, ids);
    }
    candle_core::Module::forward(&candle_nn::Embedding::new(w.clone(), w.dim(1)?), ids)
}
