//! The fused attention-softmax kernels of `kernels/attention.cu` (compiled to PTX by
//! `build.rs` in the CUDA build), as candle ops without autograd; [`crate::recompute`] calls
//! them on CUDA tensors and uses composed candle ops on the CPU, so the CPU path is the
//! reference they are checked against (`benches/gpu/smoke.sh`: CPU and CUDA losses agree).
//!
//! - [`masked_softmax`]: `softmax(s * scale + mask)` over the last dim, s (B, H, T, N) f32 or
//!   bf16, mask f32 (1 or B, 1, T, N); f32 math; one pass instead of four.
//! - [`softmax_backward`]: `scale * p * (dp - rowsum(p * dp))`, f32 math; one pass instead of
//!   seven.
//! - [`lse_gather`] (`kernels/vocab.cu`): log-softmax of (N, V) logits read once, gathered at J
//!   ids per row, with its backward; the (N, V) f32 log-softmax is never materialised.
//! - [`adamw_step`] (`kernels/adamw.cu`): one in-place AdamW update of a parameter and its two
//!   moments, one pass instead of sixteen.

#![allow(unsafe_code)] // kernel launches and uninitialised device allocations are FFI

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
const MODULE: &str = "distill_attention";
const VOCAB_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/vocab.ptx"));
const VOCAB_MODULE: &str = "distill_vocab";
const ADAMW_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/adamw.ptx"));
const ADAMW_MODULE: &str = "distill_adamw";
const THREADS: u32 = 256;

fn rows_cols(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (o1, o2) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("attention kernels need contiguous inputs".into()))?;
    let n = *l.dims().last().expect("rank >= 1");
    Ok((o1, o2, n))
}

/// `softmax(s * scale + mask)`, see the module docs.
pub fn masked_softmax(s: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let (b, h, t, n) = s.dims4()?;
    let (mb, _, mt, mn) = mask.dims4()?;
    if (mb != 1 && mb != b) || mt != t || mn != n {
        candle_core::bail!("masked_softmax: mask {:?} does not fit scores {:?}", mask.dims(), s.dims());
    }
    let mask = mask.to_dtype(DType::F32)?.contiguous()?;
    let op = MaskedSoftmax { heads: h, t_q: t, mask_batch_stride: if mb == 1 { 0 } else { t * n }, scale: scale as f32 };
    s.contiguous()?.apply_op2_no_bwd(&mask, &op)
}

/// `scale * p * (dp - rowsum(p * dp))`, see the module docs.
pub fn softmax_backward(p: &Tensor, dp: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    let dp = dp.to_dtype(p.dtype())?.contiguous()?;
    p.contiguous()?.apply_op2_no_bwd(&dp, &SoftmaxBackward { scale: scale as f32 })
}

struct MaskedSoftmax {
    heads: usize,
    t_q: usize,
    mask_batch_stride: usize,
    scale: f32,
}

impl MaskedSoftmax {
    fn launch<T: DeviceRepr>(&self, s: &CudaSlice<T>, ls: &Layout, mask: &CudaSlice<f32>, lm: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
        let (o1, o2, n) = rows_cols(ls)?;
        let (m1, m2, _) = rows_cols(lm)?;
        let (src, mask) = (s.slice(o1..o2), mask.slice(m1..m2));
        let rows = (o2 - o1) / n;
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<T>(o2 - o1)? };
        let (n, t_q, heads, stride) = (n as i32, self.t_q as i32, self.heads as i32, self.mask_batch_stride as i64);
        let mut b = func.builder();
        b.arg(&src);
        b.arg(&mask);
        b.arg(&dst);
        b.arg(&n);
        b.arg(&t_q);
        b.arg(&heads);
        b.arg(&stride);
        b.arg(&self.scale);
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
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
    fn launch<T: DeviceRepr>(&self, p: &CudaSlice<T>, lp: &Layout, dp: &CudaSlice<T>, ldp: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
        let (o1, o2, n) = rows_cols(lp)?;
        let (d1, d2, _) = rows_cols(ldp)?;
        let (p, dp) = (p.slice(o1..o2), dp.slice(d1..d2));
        let rows = (o2 - o1) / n;
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        // SAFETY: every element is written by the kernel.
        let dst = unsafe { dev.alloc::<T>(o2 - o1)? };
        let n = n as i32;
        let mut b = func.builder();
        b.arg(&p);
        b.arg(&dp);
        b.arg(&dst);
        b.arg(&n);
        b.arg(&self.scale);
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
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

/// `[z[r, idx[r, i]] - lse_r for i < J] ++ [lse_r]`: (N, J + 1) f32 from logits z (N, V) f32 or
/// bf16 and ids (N, J) u32, differentiable in z (see the module docs).
pub fn lse_gather(z: &Tensor, idx: &Tensor) -> candle_core::Result<Tensor> {
    z.contiguous()?.apply_op2(&idx.contiguous()?, LseGather)
}

struct LseGather;

fn row_blocks(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

impl LseGather {
    fn forward<T: DeviceRepr>(z: &CudaSlice<T>, lz: &Layout, idx: &CudaSlice<u32>, li: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<f32>> {
        let (z1, z2, v) = rows_cols(lz)?;
        let (i1, i2, j) = rows_cols(li)?;
        let rows = (z2 - z1) / v;
        let (z, idx) = (z.slice(z1..z2), idx.slice(i1..i2));
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<f32>(rows * (j + 1))? };
        let (v, j) = (v as i32, j as i32);
        let func = dev.get_or_load_custom_func(name, VOCAB_MODULE, VOCAB_PTX)?;
        let mut b = func.builder();
        b.arg(&z);
        b.arg(&idx);
        b.arg(&out);
        b.arg(&v);
        b.arg(&j);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(row_blocks(rows)) }.w()?;
        Ok(out)
    }
}

impl candle_core::CustomOp2 for LseGather {
    fn name(&self) -> &'static str {
        "lse-gather"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("lse-gather kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, z: &CudaStorage, lz: &Layout, idx: &CudaStorage, li: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = z.device();
        let CudaStorageSlice::U32(ids) = &idx.slice else { candle_core::bail!("lse-gather: ids must be u32") };
        let out = match &z.slice {
            CudaStorageSlice::F32(x) => Self::forward(x, lz, ids, li, dev, "lse_gather_f32")?,
            CudaStorageSlice::BF16(x) => Self::forward(x, lz, ids, li, dev, "lse_gather_bf16")?,
            _ => candle_core::bail!("lse-gather: logits must be f32 or bf16, got {:?}", z.dtype()),
        };
        let (rows, j) = (li.dims()[0], li.dims()[1]);
        Ok((CudaStorage { slice: CudaStorageSlice::F32(out), device: dev.clone() }, Shape::from((rows, j + 1))))
    }

    fn bwd(&self, z: &Tensor, idx: &Tensor, out: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.to_dtype(DType::F32)?.contiguous()?;
        let dz = z.detach().apply_op3_no_bwd(&idx.detach(), &Tensor::cat(&[&out.detach(), &grad], 1)?, &LseGatherBackward)?;
        Ok((Some(dz), None))
    }
}

/// dz from (z, idx, [out | grad]): the two (N, J + 1) f32 tensors travel side by side.
struct LseGatherBackward;

impl LseGatherBackward {
    fn backward<T: DeviceRepr>(z: &CudaSlice<T>, lz: &Layout, idx: &CudaSlice<u32>, li: &Layout, og: &CudaSlice<f32>, lo: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
        let (z1, z2, v) = rows_cols(lz)?;
        let (i1, i2, j) = rows_cols(li)?;
        let (o1, o2, w) = rows_cols(lo)?;
        if w != 2 * (j + 1) {
            candle_core::bail!("lse-gather backward: expected {} columns of [out | grad], got {w}", 2 * (j + 1));
        }
        let rows = (z2 - z1) / v;
        let og = og.slice(o1..o2);
        let (z, idx) = (z.slice(z1..z2), idx.slice(i1..i2));
        // SAFETY: every element is written by the kernel.
        let dz = unsafe { dev.alloc::<T>(z2 - z1)? };
        let (v, j) = (v as i32, j as i32);
        let func = dev.get_or_load_custom_func(name, VOCAB_MODULE, VOCAB_PTX)?;
        let mut b = func.builder();
        b.arg(&z);
        b.arg(&idx);
        b.arg(&og);
        b.arg(&dz);
        b.arg(&v);
        b.arg(&j);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(row_blocks(rows)) }.w()?;
        Ok(dz)
    }
}

impl candle_core::CustomOp3 for LseGatherBackward {
    fn name(&self) -> &'static str {
        "lse-gather-backward"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("lse-gather backward kernel is CUDA only")
    }

    fn cuda_fwd(&self, z: &CudaStorage, lz: &Layout, idx: &CudaStorage, li: &Layout, og: &CudaStorage, lo: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = z.device();
        let (CudaStorageSlice::U32(ids), CudaStorageSlice::F32(og)) = (&idx.slice, &og.slice) else {
            candle_core::bail!("lse-gather backward: ids must be u32 and [out | grad] f32")
        };
        let slice = match &z.slice {
            CudaStorageSlice::F32(x) => CudaStorageSlice::F32(Self::backward(x, lz, ids, li, og, lo, dev, "lse_gather_bwd_f32")?),
            CudaStorageSlice::BF16(x) => CudaStorageSlice::BF16(Self::backward(x, lz, ids, li, og, lo, dev, "lse_gather_bwd_bf16")?),
            _ => candle_core::bail!("lse-gather backward: logits must be f32 or bf16"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, lz.shape().clone()))
    }
}

/// The scalars of one AdamW step (see `kernels/adamw.cu`).
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 - lr * weight_decay` for decayed parameters, else 1.
    pub decay: f32,
    /// Bias corrections `1 - beta^t`.
    pub bc1: f32,
    pub bc2: f32,
}

/// Updates f32 `p`, `m` and `v` in place from the gradient `g` (all the same shape, on one
/// CUDA device; `m` and `v` contiguous from offset 0, as the optimizer allocates them).
pub fn adamw_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, step: AdamWStep) -> candle_core::Result<()> {
    let g = g.to_dtype(DType::F32)?.contiguous()?;
    p.inplace_op2(&g, &AdamWOp { m: m.clone(), v: v.clone(), step })
}

struct AdamWOp {
    m: Tensor,
    v: Tensor,
    step: AdamWStep,
}

/// The f32 device buffer of a contiguous tensor that starts at offset 0.
fn whole_f32<'a>(s: &'a CudaStorage, l: &Layout) -> candle_core::Result<CudaView<'a, f32>> {
    if !(l.is_contiguous() && l.start_offset() == 0) {
        candle_core::bail!("adamw: optimizer state must be contiguous from offset 0");
    }
    match &s.slice {
        CudaStorageSlice::F32(x) => Ok(x.slice(0..l.shape().elem_count())),
        _ => candle_core::bail!("adamw: optimizer tensors must be f32"),
    }
}

impl candle_core::InplaceOp2 for AdamWOp {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("adamw kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, p: &mut CudaStorage, lp: &Layout, g: &CudaStorage, lg: &Layout) -> candle_core::Result<()> {
        let n = lp.shape().elem_count();
        if lg.shape().elem_count() != n || self.m.elem_count() != n || self.v.elem_count() != n {
            candle_core::bail!("adamw: parameter, gradient and moments differ in size");
        }
        let dev = p.device().clone();
        let (ms, ml) = self.m.storage_and_layout();
        let (vs, vl) = self.v.storage_and_layout();
        let (Storage::Cuda(ms), Storage::Cuda(vs)) = (&*ms, &*vs) else { candle_core::bail!("adamw: moments must be on the CUDA device") };
        let (m, v) = (whole_f32(ms, ml)?, whole_f32(vs, vl)?);
        let (g1, g2, _) = rows_cols(lg)?;
        let CudaStorageSlice::F32(g) = &g.slice else { candle_core::bail!("adamw: gradient must be f32") };
        let g = g.slice(g1..g2);
        let CudaStorageSlice::F32(p) = &mut p.slice else { candle_core::bail!("adamw: parameter must be f32") };
        if !(lp.is_contiguous() && lp.start_offset() == 0) {
            candle_core::bail!("adamw: parameter must be contiguous from offset 0");
        }
        let func = dev.get_or_load_custom_func("adamw_f32", ADAMW_MODULE, ADAMW_PTX)?;
        let s = self.step;
        let n64 = n as i64;
        let mut b = func.builder();
        b.arg(p);
        b.arg(&g);
        // The kernel writes m and v through these views: one stream, so no other reader races.
        b.arg(&m);
        b.arg(&v);
        b.arg(&n64);
        let scalars = [s.lr, s.beta1, s.beta2, s.eps, s.decay, s.bc1, s.bc2];
        for x in &scalars {
            b.arg(x);
        }
        let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the argument list matches the kernel's signature; sizes were checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}
