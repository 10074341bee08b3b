//! Attention-softmax kernels (`kernels/attention.cu`), without autograd
//! ([`crate::recompute::attention`] does the graph):
//!
//! - [`masked_softmax`]: `softmax(s * scale + mask)` over the last dim, s (B, G, R T, N) f32
//!   or bf16 (grouped-query heads), mask f32 (1 or B, 1, T, N); f32 math; each row read once,
//!   masked entries (a causal row's future) never read.
//! - [`softmax_backward`]: `scale * p * (dp - rowsum(p * dp))`, f32 math; one read of p, dp
//!   read only where p is not 0.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Tensor};

use super::{row_blocks, rows_cols};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
const MODULE: &str = "distill_attention";

/// `softmax(s * scale + mask)`, see the module docs. s (B, G, R T, N) for G key/value heads
/// with R query heads each (R = 1 without grouping), mask (1 or B, 1, T, N).
pub fn masked_softmax(s: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let (b, g, rt, n) = s.dims4()?;
    let (mb, _, t, mn) = mask.dims4()?;
    if (mb != 1 && mb != b) || t == 0 || rt % t != 0 || mn != n {
        candle_core::bail!("masked_softmax: mask {:?} does not fit scores {:?}", mask.dims(), s.dims());
    }
    let mask = mask.to_dtype(DType::F32)?.contiguous()?;
    let op = MaskedSoftmax { rows_per_batch: g * rt, t_q: t, mask_batch_stride: if mb == 1 { 0 } else { t * n }, scale: scale as f32 };
    s.contiguous()?.apply_op2_no_bwd(&mask, &op)
}

/// `scale * p * (dp - rowsum(p * dp))`, see the module docs.
pub fn softmax_backward(p: &Tensor, dp: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let dp = dp.to_dtype(p.dtype())?.contiguous()?;
    p.contiguous()?.apply_op2_no_bwd(&dp, &SoftmaxBackward { scale: scale as f32 })
}

/// The kernel variant for rows of `n`: values cached in registers, `PER` per thread, up to
/// 16 x 256 columns; longer rows take the strided `_long` kernel.
fn variant(base: &str, n: usize) -> String {
    let per = n.div_ceil(super::THREADS as usize);
    let suffix = match per {
        0..=4 => "4",
        5..=8 => "8",
        9..=16 => "16",
        _ => "long",
    };
    format!("{base}_{suffix}")
}

struct MaskedSoftmax {
    rows_per_batch: usize,
    t_q: usize,
    mask_batch_stride: usize,
    scale: f32,
}

impl MaskedSoftmax {
    fn launch<T: DeviceRepr>(
        &self,
        s: &CudaSlice<T>,
        ls: &Layout,
        mask: &CudaSlice<f32>,
        lm: &Layout,
        dev: &candle_core::CudaDevice,
        name: &str,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (o1, o2, n) = rows_cols(ls)?;
        let (m1, m2, _) = rows_cols(lm)?;
        let (src, mask) = (s.slice(o1..o2), mask.slice(m1..m2));
        let rows = (o2 - o1) / n;
        let func = dev.get_or_load_custom_func(&variant(name, n), MODULE, PTX)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<T>(o2 - o1)? };
        let (n, t_q, rows_per_batch, stride) = (n as i32, self.t_q as i32, self.rows_per_batch as i64, self.mask_batch_stride as i64);
        let mut b = func.builder();
        b.arg(&src);
        b.arg(&mask);
        b.arg(&dst);
        b.arg(&n);
        b.arg(&t_q);
        b.arg(&rows_per_batch);
        b.arg(&stride);
        b.arg(&self.scale);
        let cfg = row_blocks(rows);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(cfg) }.w()?;
        Ok(dst)
    }
}

impl candle_core::CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("masked-softmax kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, s: &CudaStorage, ls: &Layout, m: &CudaStorage, lm: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = s.device();
        let CudaStorageSlice::F32(mask) = &m.slice else { candle_core::bail!("masked-softmax: mask must be f32") };
        let slice = match &s.slice {
            CudaStorageSlice::F32(x) => CudaStorageSlice::F32(self.launch(x, ls, mask, lm, dev, "masked_softmax_f32")?),
            CudaStorageSlice::BF16(x) => CudaStorageSlice::BF16(self.launch(x, ls, mask, lm, dev, "masked_softmax_bf16")?),
            _ => candle_core::bail!("masked-softmax: scores must be f32 or bf16, got {:?}", s.dtype()),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, ls.shape().clone()))
    }
}

struct SoftmaxBackward {
    scale: f32,
}

impl SoftmaxBackward {
    fn launch<T: DeviceRepr>(
        &self,
        p: &CudaSlice<T>,
        lp: &Layout,
        dp: &CudaSlice<T>,
        ldp: &Layout,
        dev: &candle_core::CudaDevice,
        name: &str,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (o1, o2, n) = rows_cols(lp)?;
        let (d1, d2, _) = rows_cols(ldp)?;
        let (p, dp) = (p.slice(o1..o2), dp.slice(d1..d2));
        let rows = (o2 - o1) / n;
        let func = dev.get_or_load_custom_func(&variant(name, n), MODULE, PTX)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<T>(o2 - o1)? };
        let n = n as i32;
        let mut b = func.builder();
        b.arg(&p);
        b.arg(&dp);
        b.arg(&dst);
        b.arg(&n);
        b.arg(&self.scale);
        let cfg = row_blocks(rows);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(cfg) }.w()?;
        Ok(dst)
    }
}

impl candle_core::CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("softmax-backward kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, p: &CudaStorage, lp: &Layout, dp: &CudaStorage, ldp: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = p.device();
        let slice = match (&p.slice, &dp.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => CudaStorageSlice::F32(self.launch(a, lp, b, ldp, dev, "softmax_bwd_f32")?),
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => CudaStorageSlice::BF16(self.launch(a, lp, b, ldp, dev, "softmax_bwd_bf16")?),
            _ => candle_core::bail!("softmax-backward: p and dp must both be f32 or both bf16"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, lp.shape().clone()))
    }
}
