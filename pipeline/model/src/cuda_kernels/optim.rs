//! The optimizer's kernels: the global gradient norm over every parameter in one launch
//! (`kernels/clip.cu`), and one in-place AdamW update per parameter (`kernels/adamw.cu`) that
//! scales the gradient by the clipping coefficient read on the device, so a step needs no
//! host synchronisation and no scaled copy of the gradients. Gradients are f32 or bf16 (the
//! backward pass of bf16 compute copies leaves them in bf16: no cast kernels), and the update
//! can rewrite the parameter's bf16 compute copy in the same pass.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Storage, Tensor};

use super::{rows_cols, THREADS};

const ADAMW_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/adamw.ptx"));
const ADAMW_MODULE: &str = "distill_adamw";
const CLIP_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/clip.ptx"));
const CLIP_MODULE: &str = "distill_clip";

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

/// Updates f32 `p`, `m` and `v` in place from the gradient `g` (f32 or bf16) scaled by
/// `clip[1]`, and writes `bf16(p)` into `copy` when given (all the same shape, on one CUDA
/// device; `m`, `v` and `copy` contiguous from offset 0, as the optimizer allocates them;
/// `clip` from [`grad_norm_and_clip`]).
pub fn adamw_step(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, clip: &Tensor, copy: Option<&Tensor>, step: AdamWStep) -> candle_core::Result<()> {
    let g = match g.dtype() {
        DType::F32 | DType::BF16 => g.contiguous()?,
        _ => g.to_dtype(DType::F32)?.contiguous()?,
    };
    p.inplace_op2(&g, &AdamWOp { m: m.clone(), v: v.clone(), clip: clip.clone(), copy: copy.cloned(), step })
}

struct AdamWOp {
    m: Tensor,
    v: Tensor,
    clip: Tensor,
    /// The parameter's bf16 compute copy, rewritten from the updated value.
    copy: Option<Tensor>,
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
        let (cs, cl) = self.clip.storage_and_layout();
        let Storage::Cuda(cs) = &*cs else { candle_core::bail!("adamw: clipping coefficient must be on the CUDA device") };
        let clip = whole_f32(cs, cl)?;
        if clip.len() != 2 {
            candle_core::bail!("adamw: expected (norm, coefficient), got {} values", clip.len());
        }
        let copy_storage = self.copy.as_ref().map(|c| c.storage_and_layout());
        let copy = match &copy_storage {
            Some((cs, cl)) => {
                let Storage::Cuda(cs) = &**cs else { candle_core::bail!("adamw: compute copy must be on the CUDA device") };
                let CudaStorageSlice::BF16(c) = &cs.slice else { candle_core::bail!("adamw: compute copy must be bf16") };
                if !(cl.is_contiguous() && cl.start_offset() == 0 && cl.shape().elem_count() == n) {
                    candle_core::bail!("adamw: compute copy must be contiguous from offset 0, the parameter's size");
                }
                Some(c.slice(0..n))
            }
            None => None,
        };
        let (g1, g2, _) = rows_cols(lg)?;
        let CudaStorageSlice::F32(p) = &mut p.slice else { candle_core::bail!("adamw: parameter must be f32") };
        if !(lp.is_contiguous() && lp.start_offset() == 0) {
            candle_core::bail!("adamw: parameter must be contiguous from offset 0");
        }
        let kernel = match &g.slice {
            CudaStorageSlice::F32(_) => "adamw_f32",
            CudaStorageSlice::BF16(_) => "adamw_bf16",
            _ => candle_core::bail!("adamw: gradient must be f32 or bf16"),
        };
        let func = dev.get_or_load_custom_func(kernel, ADAMW_MODULE, ADAMW_PTX)?;
        let s = self.step;
        let n64 = n as i64;
        let null = 0u64;
        let mut b = func.builder();
        b.arg(p);
        let (g32, g16);
        match &g.slice {
            CudaStorageSlice::F32(x) => {
                g32 = x.slice(g1..g2);
                b.arg(&g32);
            }
            CudaStorageSlice::BF16(x) => {
                g16 = x.slice(g1..g2);
                b.arg(&g16);
            }
            _ => unreachable!("checked above"),
        }
        // The kernel writes m, v and the copy through these views: one stream, so no other
        // reader races.
        b.arg(&m);
        b.arg(&v);
        b.arg(&clip);
        match &copy {
            Some(c) => b.arg(c),
            None => b.arg(&null),
        };
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

/// Elements of one tensor that one block of `grad_sq_partials` sums.
const CHUNK: usize = 1 << 16;

/// `(||g||, c)` as a (2,) f32 tensor on the device, without a host synchronisation: the global
/// L2 norm of all `grads` (contiguous; all f32 or all bf16) and the coefficient `c = max_norm / (||g|| + 1e-6)`
/// when `max_norm > 0` and `||g|| > max_norm`, else 1, which [`adamw_step`] applies.
/// Block partials are added in a fixed order (in f64), so the result is deterministic.
pub fn grad_norm_and_clip(grads: &[Tensor], max_norm: f64) -> candle_core::Result<Tensor> {
    let Some(first) = grads.first() else { candle_core::bail!("grad_norm_and_clip: no gradients") };
    let candle_core::Device::Cuda(dev) = first.device() else { candle_core::bail!("grad_norm_and_clip: gradients must be on a CUDA device") };
    let stream = dev.cuda_stream();
    // The table the kernel reads: pointers, lengths, then (tensor, start) for every chunk.
    let mut ptrs = Vec::with_capacity(grads.len());
    let mut lens = Vec::with_capacity(grads.len());
    let mut chunks = Vec::new();
    let dtype = first.dtype();
    let kernel = match dtype {
        DType::F32 => "grad_sq_partials_f32",
        DType::BF16 => "grad_sq_partials_bf16",
        d => candle_core::bail!("grad_norm_and_clip: gradients must be f32 or bf16, not {d:?}"),
    };
    let storages: Vec<_> = grads.iter().map(|g| g.storage_and_layout()).collect();
    for (i, (storage, layout)) in storages.iter().enumerate() {
        let Storage::Cuda(s) = &**storage else { candle_core::bail!("grad_norm_and_clip: gradients must be on a CUDA device") };
        let ptr = match &s.slice {
            CudaStorageSlice::F32(x) if dtype == DType::F32 => x.device_ptr(&stream).0,
            CudaStorageSlice::BF16(x) if dtype == DType::BF16 => x.device_ptr(&stream).0,
            _ => candle_core::bail!("grad_norm_and_clip: gradients must all be {dtype:?}"),
        };
        let (o1, o2) = layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("grad_norm_and_clip: gradients must be contiguous".into()))?;
        ptrs.push(ptr + (o1 * dtype.size_in_bytes()) as u64);
        lens.push((o2 - o1) as u64);
        for start in (0..o2 - o1).step_by(CHUNK) {
            chunks.extend([i as u64, start as u64]);
        }
    }
    let blocks = chunks.len() / 2;
    let n = grads.len() as i32;
    let table: Vec<u64> = ptrs.into_iter().chain(lens).chain(chunks).collect();
    let table = dev.clone_htod(&table)?;
    // SAFETY: every partial is written by its block, both outputs by `clip_coef`.
    let partials = unsafe { dev.alloc::<f64>(blocks)? };
    let out = unsafe { dev.alloc::<f32>(2)? };
    let chunk = CHUNK as i64;
    let func = dev.get_or_load_custom_func(kernel, CLIP_MODULE, CLIP_PTX)?;
    let mut b = func.builder();
    b.arg(&table);
    b.arg(&n);
    b.arg(&chunk);
    b.arg(&partials);
    // SAFETY: the argument list matches the kernel's signature; the table covers `blocks` chunks.
    unsafe { b.launch(LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    let (count, max_norm) = (blocks as i64, max_norm as f32);
    let func = dev.get_or_load_custom_func("clip_coef", CLIP_MODULE, CLIP_PTX)?;
    let mut b = func.builder();
    b.arg(&partials);
    b.arg(&count);
    b.arg(&max_norm);
    b.arg(&out);
    // SAFETY: as above; one block of 1024 threads matches the kernel's shared array.
    unsafe { b.launch(LaunchConfig { grid_dim: (1, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 }) }.w()?;
    drop(storages);
    let storage = CudaStorage { slice: CudaStorageSlice::F32(out), device: dev.clone() };
    Ok(Tensor::from_storage(Storage::Cuda(storage), 2, candle_core::op::BackpropOp::none(), false))
}
