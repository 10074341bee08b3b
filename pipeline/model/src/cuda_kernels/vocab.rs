//! Fused log-softmax + gather over the vocabulary (`kernels/vocab.cu`) for the distillation
//! loss: the (N, V) logits are read once forward and once backward, and the (N, V) f32
//! log-softmax is never materialised.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DeviceRepr, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Shape, Tensor};

use super::{row_blocks, rows_cols};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/vocab.ptx"));
const MODULE: &str = "distill_vocab";

/// `[z[r, idx[r, i]] - lse_r for i < J] ++ [lse_r]`: (N, J + 1) f32 from logits z (N, V) f32 or
/// bf16 and ids (N, J) u32, differentiable in z (see the module docs).
pub fn lse_gather(z: &Tensor, idx: &Tensor) -> candle_core::Result<Tensor> {
    z.contiguous()?.apply_op2(&idx.contiguous()?, LseGather)
}

struct LseGather;

impl LseGather {
    fn forward<T: DeviceRepr>(z: &CudaSlice<T>, lz: &Layout, idx: &CudaSlice<u32>, li: &Layout, dev: &candle_core::CudaDevice, name: &str) -> candle_core::Result<CudaSlice<f32>> {
        let (z1, z2, v) = rows_cols(lz)?;
        let (i1, i2, j) = rows_cols(li)?;
        let rows = (z2 - z1) / v;
        let (z, idx) = (z.slice(z1..z2), idx.slice(i1..i2));
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<f32>(rows * (j + 1))? };
        let (v, j) = (v as i32, j as i32);
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
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
    fn backward<T: DeviceRepr>(
        z: &CudaSlice<T>,
        lz: &Layout,
        idx: &CudaSlice<u32>,
        li: &Layout,
        og: &CudaSlice<f32>,
        lo: &Layout,
        dev: &candle_core::CudaDevice,
        name: &str,
    ) -> candle_core::Result<CudaSlice<T>> {
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
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
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
