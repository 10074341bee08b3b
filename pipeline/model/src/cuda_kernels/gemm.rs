//! `acc += a^T b` in one cuBLAS call (`beta = 1`, f32 accumulation on the tensor cores): the LM
//! head's weight gradient summed over row chunks ([`crate::head_loss`]) with no separate add
//! pass over the (V, C) matrix per chunk.
//!
//! Shapes: acc (M, C) contiguous from offset 0, a (R, M), b (R, C) contiguous; all f32 or all
//! bf16. In cuBLAS's column-major terms the row-major acc is acc^T (C x M), and
//! `acc^T += b^T a`: b as stored is b^T (no transpose), a as stored is a^T (transposed).

use candle_core::cuda_backend::cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, Layout, Tensor, WithDType};

use super::rows_cols;

/// Adds `a^T b` to `acc` in place (module docs).
pub fn add_at_b(acc: &Tensor, a: &Tensor, b: &Tensor) -> candle_core::Result<()> {
    let ((r, m), (rb, c)) = (a.dims2()?, b.dims2()?);
    if acc.dims2()? != (m, c) || r != rb {
        candle_core::bail!("add_at_b: acc {:?} += a {:?}^T b {:?} does not fit", acc.dims(), a.dims(), b.dims());
    }
    acc.inplace_op3(&a.contiguous()?, &b.contiguous()?, &AddAtB)
}

struct AddAtB;

impl AddAtB {
    fn launch<T: WithDType + DeviceRepr>(blas: &CudaBlas, acc: &mut CudaSlice<T>, la: &Layout, a: &CudaSlice<T>, lb: &Layout, b: &CudaSlice<T>) -> candle_core::Result<()>
    where
        CudaBlas: Gemm<T>,
    {
        let (a1, a2, m) = rows_cols(la)?;
        let (b1, b2, c) = rows_cols(lb)?;
        let r = (a2 - a1) / m;
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_N,
            transb: cublasOperation_t::CUBLAS_OP_T,
            m: c as i32,
            n: m as i32,
            k: r as i32,
            alpha: T::from_f64(1.0),
            lda: c as i32,
            ldb: m as i32,
            beta: T::from_f64(1.0),
            ldc: c as i32,
        };
        // SAFETY: the shapes were checked by `add_at_b`; the views cover exactly a, b and acc.
        unsafe { blas.gemm(cfg, &b.slice(b1..b2), &a.slice(a1..a2), acc) }.w()
    }
}

impl candle_core::InplaceOp3 for AddAtB {
    fn name(&self) -> &'static str {
        "add-at-b"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("add_at_b is CUDA only (the CPU path adds a candle matmul)")
    }

    fn cuda_fwd(&self, acc: &mut CudaStorage, lacc: &Layout, a: &CudaStorage, la: &Layout, b: &CudaStorage, lb: &Layout) -> candle_core::Result<()> {
        if !(lacc.is_contiguous() && lacc.start_offset() == 0) {
            candle_core::bail!("add_at_b: the accumulator must be contiguous from offset 0");
        }
        let blas = acc.device.cublas_handle();
        match (&mut acc.slice, &a.slice, &b.slice) {
            (CudaStorageSlice::BF16(acc), CudaStorageSlice::BF16(a), CudaStorageSlice::BF16(b)) => Self::launch(&blas, acc, la, a, lb, b),
            (CudaStorageSlice::F32(acc), CudaStorageSlice::F32(a), CudaStorageSlice::F32(b)) => Self::launch(&blas, acc, la, a, lb, b),
            _ => candle_core::bail!("add_at_b: acc, a and b must all be f32 or all bf16"),
        }
    }
}
