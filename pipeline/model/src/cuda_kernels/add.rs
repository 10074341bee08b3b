//! Row-broadcast add `a + b` in one vectorised pass (`kernels/add.cu`): a linear layer's bias
//! (b (C,) over a (..., C)) and the residual adds (b of a's shape); [`crate::fused::add_rows`]
//! picks it on CUDA. candle's broadcast add computes a strided index per element (a division
//! and a remainder per dim, sizes read from global memory) and its same-shape add moves one
//! element per thread; this kernel moves 16 bytes per thread and index.
//!
//! ```text
//! forward:  out = T(a + b)        b repeated over a's rows (a (R, C), b (C,)) or of a's shape
//! backward: da = dout,  db = dout (same shape) or sum over rows of dout, in f32
//! ```

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Tensor};

use super::{rows_cols, THREADS};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/add.ptx"));
const MODULE: &str = "distill_add";

/// Elements of `dtype` in one 16-byte load, or None for a dtype without a kernel.
fn vector_width(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 => Some(4),
        DType::BF16 => Some(8),
        _ => None,
    }
}

/// `a + b` on the kernel, for b of shape (C,) with a (..., C), or of a's shape; None where the
/// kernel does not apply (another dtype or shape, or a width or an offset that is not a
/// multiple of the 16-byte vector), for the caller to compose.
pub fn add_rows(a: &Tensor, b: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let Some(v) = vector_width(a.dtype()) else { return Ok(None) };
    let same = a.dims() == b.dims();
    let bias = b.rank() == 1 && a.dims().last() == Some(&b.dim(0)?);
    if a.dtype() != b.dtype() || !(same || bias) || b.elem_count() % v != 0 {
        return Ok(None);
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    if a.layout().start_offset() % v != 0 || b.layout().start_offset() % v != 0 {
        return Ok(None);
    }
    Ok(Some(a.apply_op2(&b, AddRows)?))
}

struct AddRows;

fn launch_add<T: DeviceRepr>(
    a: &CudaSlice<T>,
    la: &Layout,
    b: &CudaSlice<T>,
    lb: &Layout,
    dev: &candle_core::CudaDevice,
    name: &str,
    v: usize,
) -> candle_core::Result<CudaSlice<T>> {
    let (a1, a2, _) = rows_cols(la)?;
    let (b1, b2, _) = rows_cols(lb)?;
    let (n, period) = (a2 - a1, b2 - b1);
    let (a, b) = (a.slice(a1..a2), b.slice(b1..b2));
    // SAFETY: every element is written by the kernel (n is a multiple of the vector width).
    let out = unsafe { dev.alloc::<T>(n)? };
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let blocks = (n / v).div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    let (n64, period64) = (n as i64, period as i64);
    let mut builder = func.builder();
    builder.arg(&a);
    builder.arg(&b);
    builder.arg(&out);
    builder.arg(&n64);
    builder.arg(&period64);
    let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the argument list matches the kernel's signature.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(out)
}

impl candle_core::CustomOp2 for AddRows {
    fn name(&self) -> &'static str {
        "add-rows"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("add_rows kernel is CUDA only (the CPU path composes candle ops)")
    }

    fn cuda_fwd(&self, a: &CudaStorage, la: &Layout, b: &CudaStorage, lb: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = a.device();
        let slice = match (&a.slice, &b.slice) {
            (CudaStorageSlice::F32(x), CudaStorageSlice::F32(y)) => CudaStorageSlice::F32(launch_add(x, la, y, lb, dev, "add_rows_f32", 4)?),
            (CudaStorageSlice::BF16(x), CudaStorageSlice::BF16(y)) => CudaStorageSlice::BF16(launch_add(x, la, y, lb, dev, "add_rows_bf16", 8)?),
            _ => candle_core::bail!("add_rows: a and b must share a dtype (f32 or bf16)"),
        };
        Ok((CudaStorage { slice, device: dev.clone() }, la.shape().clone()))
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _: &Tensor, dout: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dout = dout.detach().to_dtype(a.dtype())?;
        let db = if b.dims() == a.dims() { dout.clone() } else { dout.contiguous()?.apply_op1_no_bwd(&ColSum)? };
        Ok((Some(dout), Some(db)))
    }
}

/// The sums over rows of a contiguous (..., C) tensor: (C,), summed in f32.
struct ColSum;

fn launch_col_sum<T: DeviceRepr>(dy: &CudaSlice<T>, l: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<T>> {
    let (o1, o2, cols) = rows_cols(l)?;
    let dy = dy.slice(o1..o2);
    // SAFETY: the kernel writes every column.
    let db = unsafe { dev.alloc::<T>(cols)? };
    let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
    let (rows64, cols64) = (((o2 - o1) / cols) as i64, cols as i64);
    let mut builder = func.builder();
    builder.arg(&dy);
    builder.arg(&db);
    builder.arg(&rows64);
    builder.arg(&cols64);
    let cfg = LaunchConfig { grid_dim: (cols.div_ceil(32) as u32, 1, 1), block_dim: (32, 32, 1), shared_mem_bytes: 0 };
    // SAFETY: the argument list matches the kernel's signature.
    unsafe { builder.launch(cfg) }.w()?;
    Ok(db)
}

impl candle_core::CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "col-sum"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("col_sum kernel is CUDA only")
    }

    fn cuda_fwd(&self, dy: &CudaStorage, l: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = dy.device();
        let slice = match &dy.slice {
            CudaStorageSlice::F32(x) => CudaStorageSlice::F32(launch_col_sum(x, l, dev, "col_sum_f32")?),
            CudaStorageSlice::BF16(x) => CudaStorageSlice::BF16(launch_col_sum(x, l, dev, "col_sum_bf16")?),
            _ => candle_core::bail!("col_sum: f32 or bf16 only"),
        };
        let cols = *l.dims().last().expect("rank >= 1");
        Ok((CudaStorage { slice, device: dev.clone() }, Shape::from(cols)))
    }
}
