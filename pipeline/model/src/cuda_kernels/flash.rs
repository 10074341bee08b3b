//! Tiled causal attention (`kernels/flash.cu`, flash attention 2 on the tensor cores), without
//! autograd ([`crate::recompute::flash_attention`] does the graph). bf16 only, head size 64
//! or 128 ([`supports`]).
//!
//! Layouts are the projections' own, so no head split/merge copy is made: q (B, T, H, D),
//! k and v (B, T, G, D) with G dividing H (query head h reads key/value head h / (H / G)),
//! contiguous. Neither the (T, T) scores nor the probabilities ever reach device memory: the
//! forward pass keeps the output and the row log-sum-exp (B, H, T) f32 (base 2, over
//! `q k^T / sqrt(D) * log2 e`), from which the backward pass recomputes each tile.
//!
//! ```text
//! forward:  O = softmax(causal(q k^T / sqrt(D))) v
//! backward: delta = rowsum(dO * O),  dS = P * (dO v^T - delta)
//!           dQ = dS k / sqrt(D),  dK = dS^T q / sqrt(D),  dV = P^T dO
//! ```
//!
//! dK and dV come out per query head in f32 (B, T, H, D) and are summed over each group's
//! H / G heads here, so the kernels need no atomics and the result is deterministic.

use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute_enum;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Storage, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash.ptx"));
const MODULE: &str = "distill_flash";
/// Queries (and keys) per tile, as in the kernels.
const TILE: usize = 64;
/// Threads per block: 4 warps of 16 rows each.
const THREADS: u32 = 128;
/// bf16 of padding per shared-memory row (see the kernels).
const PAD: usize = 8;

/// Whether the kernels handle this dtype and head size.
pub fn supports(dtype: DType, head_size: usize) -> bool {
    dtype == DType::BF16 && matches!(head_size, 64 | 128)
}

/// The output (B, T, H, D) bf16 and the base-2 row log-sum-exp (B, H, T) f32 of causal
/// attention (module docs).
pub fn flash_forward(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let s = Shapes::of(q, k, v)?;
    let dev = cuda_device(q)?;
    let (qg, kg, vg) = (q.storage_and_layout(), k.storage_and_layout(), v.storage_and_layout());
    let (qv, kv, vv) = (bf16_view(&qg.0, &qg.1)?, bf16_view(&kg.0, &kg.1)?, bf16_view(&vg.0, &vg.1)?);
    // SAFETY: the kernel writes every element of both (each row of every head is in a tile).
    let out = unsafe { dev.alloc(s.b * s.t * s.h * s.d)? };
    let lse = unsafe { dev.alloc::<f32>(s.b * s.h * s.t)? };
    let (func, stream) = (s.function(&dev, "flash_fwd", 2)?, dev.cuda_stream());
    let mut b = stream.launch_builder(&func);
    b.arg(&qv).arg(&kv).arg(&vv).arg(&out).arg(&lse);
    s.push_dims(&mut b);
    b.arg(&s.scale_log2);
    // SAFETY: the argument list matches the kernel's signature.
    unsafe { b.launch(s.grid(2)) }.w()?;
    drop((qg, kg, vg));
    Ok((wrap(CudaStorageSlice::BF16(out), &dev, q.dims()), wrap(CudaStorageSlice::F32(lse), &dev, (s.b, s.h, s.t))))
}

/// dq (B, T, H, D), dk and dv (B, T, G, D), all bf16, from the forward pass's inputs, its
/// output and log-sum-exp, and the output's gradient (module docs).
pub fn flash_backward(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, lse: &Tensor, d_out: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let s = Shapes::of(q, k, v)?;
    let d_out = d_out.to_dtype(DType::BF16)?.contiguous()?;
    if out.dims() != q.dims() || d_out.dims() != q.dims() || lse.dims() != [s.b, s.h, s.t] {
        candle_core::bail!("flash_backward: output {:?}, its gradient {:?} or lse {:?} do not fit q {:?}", out.dims(), d_out.dims(), lse.dims(), q.dims());
    }
    let dev = cuda_device(q)?;
    let guards = [q, k, v, out, &d_out, lse].map(|t| t.storage_and_layout());
    let [qv, kv, vv, ov, dov] = [0, 1, 2, 3, 4].map(|i| bf16_view(&guards[i].0, &guards[i].1));
    let (qv, kv, vv, ov, dov) = (qv?, kv?, vv?, ov?, dov?);
    let lsev = f32_view(&guards[5].0, &guards[5].1)?;
    let rows = s.b * s.t * s.h;

    // SAFETY (the three allocations): each kernel writes every element of its output.
    let delta = unsafe { dev.alloc::<f32>(rows)? };
    let func = dev.get_or_load_custom_func(&format!("flash_delta_{}", s.d), MODULE, PTX)?;
    let mut b = func.builder();
    let (t, h, n) = (s.t as i32, s.h as i32, rows as i64);
    b.arg(&ov).arg(&dov).arg(&delta).arg(&t).arg(&h).arg(&n);
    let warps_per_block = THREADS as usize / 32;
    let cfg = LaunchConfig { grid_dim: (rows.div_ceil(warps_per_block) as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: the argument list matches the kernel's signature.
    unsafe { b.launch(cfg) }.w()?;

    let dq = unsafe { dev.alloc(rows * s.d)? };
    let (func, stream) = (s.function(&dev, "flash_dq", 2)?, dev.cuda_stream());
    let mut b = stream.launch_builder(&func);
    b.arg(&qv).arg(&kv).arg(&vv).arg(&dov).arg(&lsev).arg(&delta).arg(&dq);
    s.push_dims(&mut b);
    b.arg(&s.scale_log2).arg(&s.scale);
    // SAFETY: as above.
    unsafe { b.launch(s.grid(2)) }.w()?;

    let dk = unsafe { dev.alloc::<f32>(rows * s.d)? };
    let dv = unsafe { dev.alloc::<f32>(rows * s.d)? };
    let func = s.function(&dev, "flash_dkdv", 4)?;
    let mut b = stream.launch_builder(&func);
    b.arg(&qv).arg(&kv).arg(&vv).arg(&dov).arg(&lsev).arg(&delta).arg(&dk).arg(&dv);
    s.push_dims(&mut b);
    b.arg(&s.scale_log2).arg(&s.scale);
    // SAFETY: as above.
    unsafe { b.launch(s.grid(4)) }.w()?;
    drop(guards);

    let dq = wrap(CudaStorageSlice::BF16(dq), &dev, q.dims());
    // Per query head (B, T, H, D) -> summed over the R heads of each group -> (B, T, G, D).
    let per_group = |x| -> candle_core::Result<Tensor> { wrap(CudaStorageSlice::F32(x), &dev, (s.b, s.t, s.g, s.h / s.g, s.d)).sum(3)?.to_dtype(DType::BF16) };
    Ok((dq, per_group(dk)?, per_group(dv)?))
}

/// The dimensions shared by the kernels' launches.
struct Shapes {
    b: usize,
    t: usize,
    h: usize,
    g: usize,
    d: usize,
    scale: f32,
    scale_log2: f32,
    dims: [i32; 3],
}

impl Shapes {
    fn of(q: &Tensor, k: &Tensor, v: &Tensor) -> candle_core::Result<Self> {
        let (b, t, h, d) = q.dims4()?;
        let g = k.dim(2)?;
        if k.dims() != [b, t, g, d] || v.dims() != k.dims() || g == 0 || h % g != 0 {
            candle_core::bail!("flash attention: q {:?}, k {:?} and v {:?} are not (B, T, H, D), (B, T, G, D) with G dividing H", q.dims(), k.dims(), v.dims());
        }
        if !supports(q.dtype(), d) || k.dtype() != q.dtype() || v.dtype() != q.dtype() {
            candle_core::bail!("flash attention: needs bf16 and head size 64 or 128, got {:?} and {d}", q.dtype());
        }
        let scale = 1.0 / (d as f32).sqrt();
        Ok(Shapes { b, t, h, g, d, scale, scale_log2: scale * std::f32::consts::LOG2_E, dims: [t as i32, h as i32, g as i32] })
    }

    /// `name_D`, allowed the shared memory of `tiles` (TILE x (D + PAD)) bf16 tiles (plus two
    /// f32 rows with four tiles, as `flash_dkdv` lays them out).
    fn function(&self, dev: &CudaDevice, name: &str, tiles: usize) -> candle_core::Result<CudaFunction> {
        let func = dev.get_or_load_custom_func(&format!("{name}_{}", self.d), MODULE, PTX)?.into_cuda_function();
        // Above 48 KB a kernel must opt in to its dynamic shared memory.
        func.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, self.shared_bytes(tiles) as i32).w()?;
        Ok(func)
    }

    fn shared_bytes(&self, tiles: usize) -> usize {
        let floats = if tiles == 4 { 2 * TILE * 4 } else { 0 };
        tiles * TILE * (self.d + PAD) * 2 + floats
    }

    /// One block per (tile, query head, batch row).
    fn grid(&self, tiles: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.t.div_ceil(TILE) as u32, self.h as u32, self.b as u32), block_dim: (THREADS, 1, 1), shared_mem_bytes: self.shared_bytes(tiles) as u32 }
    }

    /// T, H and G, as the kernels' `int`s (the builder holds references until the launch).
    fn push_dims<'a>(&'a self, b: &mut candle_core::cuda_backend::cudarc::driver::LaunchArgs<'a>) {
        b.arg(&self.dims[0]).arg(&self.dims[1]).arg(&self.dims[2]);
    }
}

fn cuda_device(x: &Tensor) -> candle_core::Result<CudaDevice> {
    match x.device() {
        candle_core::Device::Cuda(d) => Ok(d.clone()),
        _ => candle_core::bail!("flash attention runs on a CUDA device"),
    }
}

/// The bf16 buffer of a contiguous CUDA tensor.
fn bf16_view<'a>(s: &'a Storage, l: &Layout) -> candle_core::Result<CudaView<'a, impl candle_core::cuda_backend::cudarc::driver::DeviceRepr>> {
    let (Storage::Cuda(CudaStorage { slice: CudaStorageSlice::BF16(x), .. }), Some((o1, o2))) = (s, l.contiguous_offsets()) else {
        candle_core::bail!("flash attention: inputs must be contiguous bf16 CUDA tensors")
    };
    Ok(x.slice(o1..o2))
}

/// The f32 buffer of a contiguous CUDA tensor.
fn f32_view<'a>(s: &'a Storage, l: &Layout) -> candle_core::Result<CudaView<'a, f32>> {
    let (Storage::Cuda(CudaStorage { slice: CudaStorageSlice::F32(x), .. }), Some((o1, o2))) = (s, l.contiguous_offsets()) else {
        candle_core::bail!("flash attention: lse must be a contiguous f32 CUDA tensor")
    };
    Ok(x.slice(o1..o2))
}

fn wrap(slice: CudaStorageSlice, dev: &CudaDevice, shape: impl Into<candle_core::Shape>) -> Tensor {
    let storage = CudaStorage { slice, device: dev.clone() };
    Tensor::from_storage(Storage::Cuda(storage), shape, candle_core::op::BackpropOp::none(), false)
}
