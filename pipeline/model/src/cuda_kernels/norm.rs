//! RMSNorm in one pass forward and one backward (`kernels/norm.cu`), differentiable in the
//! input and the weight; [`crate::fused::rms_norm`] picks it on CUDA. The composed candle
//! graph it replaces is ~8 launches forward and ~15 backward per norm, each over (N, C).
//!
//! ```text
//! forward:  rstd = 1 / sqrt(mean(x^2) + eps),  y = T(T(x rstd) w)
//! backward: dx = rstd (dy w - n mean(dy w n)),  dw = sum over rows of dy T(n),  n = x rstd
//! ```
//!
//! Shapes: x and y (..., C), w (C,), in one dtype (f32 or bf16); statistics in f32.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, Layout, Shape, Storage, Tensor};

use super::{f32_view, row_blocks, rows_cols, uninit_f32, THREADS};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/norm.ptx"));
const MODULE: &str = "distill_norm";

/// Widest row the backward's shared-memory weight-gradient accumulator holds (48 KB of f32).
pub const MAX_WIDTH: usize = 12 * 1024;

/// Blocks of the backward pass, each accumulating one partial weight gradient.
const GROUPS: usize = 1024;

/// `x / sqrt(mean(x^2) + eps) * w` over the last dim (module docs); x (..., C) with
/// C <= [`MAX_WIDTH`], w (C,).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let c = x.dim(candle_core::D::Minus1)?;
    if w.dims() != [c] || c > MAX_WIDTH {
        candle_core::bail!("rms_norm kernel: input {:?}, weight {:?} (width at most {MAX_WIDTH})", x.dims(), w.dims());
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })
}

struct RmsNorm {
    eps: f32,
}

fn kernel_name(base: &str, s: &CudaStorage) -> candle_core::Result<String> {
    match &s.slice {
        CudaStorageSlice::F32(_) => Ok(format!("{base}_f32")),
        CudaStorageSlice::BF16(_) => Ok(format!("{base}_bf16")),
        _ => candle_core::bail!("rms_norm kernel: f32 or bf16 only, got {:?}", s.dtype()),
    }
}

impl RmsNorm {
    fn forward<T: DeviceRepr>(&self, x: &CudaSlice<T>, lx: &Layout, w: &CudaSlice<T>, lw: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
        let (x1, x2, c) = rows_cols(lx)?;
        let (w1, w2, _) = rows_cols(lw)?;
        let (x, w) = (x.slice(x1..x2), w.slice(w1..w2));
        // SAFETY: every element is written by the kernel.
        let y = unsafe { dev.alloc::<T>(x2 - x1)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let ci = c as i32;
        let mut b = func.builder();
        b.arg(&x);
        b.arg(&w);
        b.arg(&y);
        b.arg(&ci);
        b.arg(&self.eps);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(row_blocks((x2 - x1) / c)) }.w()?;
        Ok(y)
    }
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("rms-norm kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, x: &CudaStorage, lx: &Layout, w: &CudaStorage, lw: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.device();
        let name = kernel_name("rms_fwd", x)?;
        let slice = match (&x.slice, &w.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => CudaStorageSlice::F32(self.forward(a, lx, b, lw, dev, &name)?),
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => CudaStorageSlice::BF16(self.forward(a, lx, b, lw, dev, &name)?),
            _ => candle_core::bail!("rms-norm: input and weight must share a dtype (f32 or bf16)"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, lx.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let candle_core::Device::Cuda(dev) = x.device() else { candle_core::bail!("rms-norm backward: not a CUDA tensor") };
        let c = x.dim(candle_core::D::Minus1)?;
        let groups = (x.elem_count() / c).clamp(1, GROUPS);
        let partial = uninit_f32(dev, (c, groups))?;
        let dy = dy.detach().to_dtype(x.dtype())?.contiguous()?;
        let op = RmsNormBackward { eps: self.eps, groups, partial: partial.clone() };
        let dx = x.detach().apply_op3_no_bwd(&w.detach(), &dy, &op)?;
        let dw = partial.sum(1)?.to_dtype(w.dtype())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// dx from (x, w, dy); writes the per-block weight-gradient partials (C, groups) into `partial`.
struct RmsNormBackward {
    eps: f32,
    groups: usize,
    partial: Tensor,
}

impl RmsNormBackward {
    #[allow(clippy::too_many_arguments)]
    fn launch<T: DeviceRepr>(
        &self,
        x: &CudaSlice<T>,
        lx: &Layout,
        w: &CudaSlice<T>,
        lw: &Layout,
        dy: &CudaSlice<T>,
        ldy: &Layout,
        dev: &candle_core::CudaDevice,
        name: &str,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (x1, x2, c) = rows_cols(lx)?;
        let (w1, w2, _) = rows_cols(lw)?;
        let (d1, d2, _) = rows_cols(ldy)?;
        let (x, w, dy) = (x.slice(x1..x2), w.slice(w1..w2), dy.slice(d1..d2));
        let (ps, pl) = self.partial.storage_and_layout();
        let Storage::Cuda(ps) = &*ps else { candle_core::bail!("rms-norm backward: partials must be on the device") };
        let partial = f32_view(ps, pl)?;
        // SAFETY: every element is written by the kernel.
        let dx = unsafe { dev.alloc::<T>(x2 - x1)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let (rows, ci) = (((x2 - x1) / c) as i64, c as i32);
        let mut b = func.builder();
        b.arg(&x);
        b.arg(&w);
        b.arg(&dy);
        b.arg(&dx);
        b.arg(&partial);
        b.arg(&rows);
        b.arg(&ci);
        b.arg(&self.eps);
        let cfg = LaunchConfig { grid_dim: (self.groups as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: (c * 4) as u32 };
        // SAFETY: the argument list matches the kernel's signature; c <= MAX_WIDTH fits the
        // default 48 KB of dynamic shared memory; `partial` is (c, groups).
        unsafe { b.launch(cfg) }.w()?;
        Ok(dx)
    }
}

impl candle_core::CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("rms-norm backward kernel is CUDA only")
    }

    fn cuda_fwd(&self, x: &CudaStorage, lx: &Layout, w: &CudaStorage, lw: &Layout, dy: &CudaStorage, ldy: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = x.device();
        let name = kernel_name("rms_bwd", x)?;
        let slice = match (&x.slice, &w.slice, &dy.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b), CudaStorageSlice::F32(d)) => CudaStorageSlice::F32(self.launch(a, lx, b, lw, d, ldy, dev, &name)?),
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b), CudaStorageSlice::BF16(d)) => CudaStorageSlice::BF16(self.launch(a, lx, b, lw, d, ldy, dev, &name)?),
            _ => candle_core::bail!("rms-norm backward: x, w and dy must share a dtype (f32 or bf16)"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, lx.shape().clone()))
    }
}
