//! SwiGLU `silu(g) * u` in one pass forward and one backward (`kernels/mlp.cu`),
//! differentiable in g and u; [`crate::fused::swiglu`] picks it on CUDA. The composed graph
//! is 2 launches forward and ~9 backward over the (N, I) MLP activations, and keeps silu(g)
//! alive for the backward pass; this keeps only g and u.
//!
//! ```text
//! h = silu(g) u,  silu(g) = g s,  s = sigmoid(g)
//! dg = dh u s (1 + g (1 - s)),  du = dh silu(g)
//! ```

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, Layout, Shape, Tensor};

use super::{rows_cols, THREADS};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/mlp.ptx"));
const MODULE: &str = "distill_mlp";

/// `silu(g) * u` for g and u of one shape and dtype (f32 or bf16).
pub fn swiglu(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if g.dims() != u.dims() {
        candle_core::bail!("swiglu: gate {:?} and up {:?} differ in shape", g.dims(), u.dims());
    }
    g.contiguous()?.apply_op2(&u.contiguous()?, SwiGlu)
}

struct SwiGlu;

fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

fn slices<'a, T: DeviceRepr>(
    a: &'a CudaSlice<T>,
    la: &Layout,
    b: &'a CudaSlice<T>,
    lb: &Layout,
) -> candle_core::Result<(candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>, candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>, usize)> {
    let (a1, a2, _) = rows_cols(la)?;
    let (b1, b2, _) = rows_cols(lb)?;
    Ok((a.slice(a1..a2), b.slice(b1..b2), a2 - a1))
}

impl SwiGlu {
    fn forward<T: DeviceRepr>(g: &CudaSlice<T>, lg: &Layout, u: &CudaSlice<T>, lu: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
        let (g, u, n) = slices(g, lg, u, lu)?;
        // SAFETY: every element is written by the kernel.
        let h = unsafe { dev.alloc::<T>(n)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let n64 = n as i64;
        let mut b = func.builder();
        b.arg(&g);
        b.arg(&u);
        b.arg(&h);
        b.arg(&n64);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(grid(n)) }.w()?;
        Ok(h)
    }
}

impl candle_core::CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("swiglu kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, g: &CudaStorage, lg: &Layout, u: &CudaStorage, lu: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = g.device();
        let slice = match (&g.slice, &u.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => CudaStorageSlice::F32(Self::forward(a, lg, b, lu, dev, "swiglu_fwd_f32")?),
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => CudaStorageSlice::BF16(Self::forward(a, lg, b, lu, dev, "swiglu_fwd_bf16")?),
            _ => candle_core::bail!("swiglu: gate and up must share a dtype (f32 or bf16)"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, lg.shape().clone()))
    }

    fn bwd(&self, g: &Tensor, u: &Tensor, _: &Tensor, dh: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dh = dh.detach().to_dtype(g.dtype())?.contiguous()?;
        // [dg | du] in one (2, ...) buffer; the halves are contiguous views of it.
        let both = g.detach().apply_op3_no_bwd(&u.detach(), &dh, &SwiGluBackward)?;
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

struct SwiGluBackward;

impl SwiGluBackward {
    #[allow(clippy::too_many_arguments)]
    fn launch<T: DeviceRepr>(
        g: &CudaSlice<T>,
        lg: &Layout,
        u: &CudaSlice<T>,
        lu: &Layout,
        dh: &CudaSlice<T>,
        ldh: &Layout,
        dev: &candle_core::CudaDevice,
        name: &str,
    ) -> candle_core::Result<CudaSlice<T>> {
        let (g, u, n) = slices(g, lg, u, lu)?;
        let (d1, d2, _) = rows_cols(ldh)?;
        let dh = dh.slice(d1..d2);
        // SAFETY: every element of both halves is written by the kernel.
        let dgu = unsafe { dev.alloc::<T>(2 * n)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let n64 = n as i64;
        let mut b = func.builder();
        b.arg(&g);
        b.arg(&u);
        b.arg(&dh);
        b.arg(&dgu);
        b.arg(&n64);
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { b.launch(grid(n)) }.w()?;
        Ok(dgu)
    }
}

impl candle_core::CustomOp3 for SwiGluBackward {
    fn name(&self) -> &'static str {
        "swiglu-backward"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("swiglu backward kernel is CUDA only")
    }

    fn cuda_fwd(&self, g: &CudaStorage, lg: &Layout, u: &CudaStorage, lu: &Layout, dh: &CudaStorage, ldh: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = g.device();
        let slice = match (&g.slice, &u.slice, &dh.slice) {
            (CudaStorageSlice::F32(a), CudaStorageSlice::F32(b), CudaStorageSlice::F32(d)) => CudaStorageSlice::F32(Self::launch(a, lg, b, lu, d, ldh, dev, "swiglu_bwd_f32")?),
            (CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b), CudaStorageSlice::BF16(d)) => {
                CudaStorageSlice::BF16(Self::launch(a, lg, b, lu, d, ldh, dev, "swiglu_bwd_bf16")?)
            }
            _ => candle_core::bail!("swiglu backward: g, u and dh must share a dtype (f32 or bf16)"),
        };
        let mut dims = vec![2];
        dims.extend_from_slice(lg.dims());
        Ok((CudaStorage { slice, device: dev.clone() }, Shape::from(dims)))
    }
}
