//! The project's own CUDA kernels (`kernels/*.cu`, compiled to PTX by `build.rs` in the CUDA
//! build), as candle ops. Callers ([`crate::recompute`], [`crate::fused`], the trainer's
//! optimizer) use them on CUDA tensors and composed candle ops on the CPU, so the CPU path is
//! the reference they are checked against: values and gradients of each op in
//! `tests/cuda_kernels.rs`, AdamW and whole training steps in the train crate's
//! `tests/cuda_training.rs` (both built by `make cuda`, run on a GPU by `benches/gpu/test.sh`).
//!
//! - [`add`]: a bias or residual add, 16 bytes per thread, and its backward's column sums.
//! - [`gemm`]: `acc += a^T b` in one cuBLAS call, for a weight gradient summed over chunks.
//! - [`attention`]: `softmax(s * scale + mask)` and its backward for the attention scores.
//! - [`flash`]: tiled causal attention on the tensor cores, forward and backward, with no
//!   (T, T) tensor and no head split/merge copy.
//! - [`vocab`]: log-softmax of (N, V) logits read once, gathered at J ids per row, and its
//!   backward; the (N, V) f32 log-softmax is never materialised.
//! - [`embed`]: embedding lookup whose backward scatter-adds rows in f32.
//! - [`norm`]: RMSNorm forward and backward (dx and the weight's gradient) in one pass each.
//! - [`mlp`]: SwiGLU `silu(g) * u` forward and backward in one pass each.
//! - [`optim`]: the global gradient norm of all parameters in one launch, and an in-place
//!   AdamW update that applies the clipping coefficient on the device.

#![allow(unsafe_code)] // kernel launches and uninitialised device allocations are FFI

pub mod add;
pub mod attention;
pub mod embed;
pub mod flash;
pub mod gemm;
pub mod mlp;
pub mod norm;
pub mod optim;
pub mod vocab;

pub use attention::{masked_softmax, softmax_backward};
pub use embed::embedding;
pub use mlp::swiglu;
pub use norm::rms_norm;
pub use optim::{adamw_step, grad_norm_and_clip, AdamWStep};
pub use vocab::lse_gather;

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::Layout;

/// Threads per block of the row kernels.
const THREADS: u32 = 256;

/// (start, end, last dim) of a contiguous layout.
fn rows_cols(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (o1, o2) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("distill kernels need contiguous inputs".into()))?;
    let n = *l.dims().last().expect("rank >= 1");
    Ok((o1, o2, n))
}

/// One block of [`THREADS`] per row.
fn row_blocks(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// An f32 tensor on `dev` whose elements a kernel is about to write, all of them.
fn uninit_f32(dev: &candle_core::CudaDevice, shape: impl Into<candle_core::Shape>) -> candle_core::Result<candle_core::Tensor> {
    use candle_core::cuda_backend::CudaStorageSlice;
    let shape = shape.into();
    // SAFETY: callers launch a kernel that writes every element before anything reads it.
    let slice = unsafe { dev.alloc::<f32>(shape.elem_count())? };
    let storage = candle_core::CudaStorage { slice: CudaStorageSlice::F32(slice), device: dev.clone() };
    Ok(candle_core::Tensor::from_storage(candle_core::Storage::Cuda(storage), shape, candle_core::op::BackpropOp::none(), false))
}

/// The device buffer of a contiguous f32 tensor, for a kernel to write in place (one stream,
/// so nothing reads it concurrently).
fn f32_view<'a>(s: &'a candle_core::CudaStorage, l: &Layout) -> candle_core::Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, f32>> {
    use candle_core::cuda_backend::CudaStorageSlice;
    let (o1, o2, _) = rows_cols(l)?;
    match &s.slice {
        CudaStorageSlice::F32(x) => Ok(x.slice(o1..o2)),
        _ => candle_core::bail!("expected an f32 tensor"),
    }
}
