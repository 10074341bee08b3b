//! Ops with a kernel of our own on some devices: on CUDA ([`crate::cuda_kernels`]) one kernel
//! forward and one backward, checked against the CPU path (`tests/cuda_kernels.rs`); on the
//! CPU in f32, one pass each way for GELU, LayerNorm and bias adds
//! ([`distill_cpu_kernels`]); the composed candle graph elsewhere.
//!
//! - RMSNorm: `y = T(x / sqrt(mean(x^2) + eps)) * w` over the last dim, statistics in f32
//!   (HF's LlamaRMSNorm); x (..., C), w (C,).
//! - SwiGLU: `silu(g) * u`, g and u of one shape.
//! - Row-broadcast add: `a + b` for a bias b (C,) over a (..., C) or a residual b of a's shape;
//!   on the CPU in f32, a bias add whose backward sums the gradient's columns on every thread
//!   ([`distill_cpu_kernels::bias`]) where candle's reduction runs on one.
//! - Embedding: rows `ids` of a (V, C) table; the backward scatter-adds in f32 on CUDA.
//! - GELU (tanh approximation): on the CPU in f32, one pass forward and one backward
//!   ([`distill_cpu_kernels::gelu`]) where candle's backward takes about fifteen; candle's
//!   `gelu` elsewhere.
//! - LayerNorm with weight and bias: on the CPU in f32, one pass over the rows each way
//!   ([`distill_cpu_kernels::layer_norm`]) where the composed graph takes seven forward and
//!   about twenty backward; the composed graph (`nn::LayerNorm`) elsewhere.

use candle_core::{CpuStorage, DType, Layout, Shape, Tensor, D};

/// RMSNorm over the last dim (module docs), differentiable in x and w.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && x.dim(D::Minus1)? <= crate::cuda_kernels::norm::MAX_WIDTH && x.dtype() == w.dtype() {
        return crate::cuda_kernels::rms_norm(x, w, eps);
    }
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    xf.broadcast_div(&(ms + eps)?.sqrt()?)?.to_dtype(x.dtype())?.broadcast_mul(w)
}

/// `silu(g) * u`, differentiable in g and u.
pub fn swiglu(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if g.device().is_cuda() && g.dtype() == u.dtype() {
        return crate::cuda_kernels::swiglu(g, u);
    }
    g.silu()? * u
}

/// `a + b` for b (C,) broadcast over the rows of a (..., C) (a bias), or b of a's shape (a
/// residual); differentiable in both.
pub fn add_rows(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if a.device().is_cuda() {
        if let Some(y) = crate::cuda_kernels::add::add_rows(a, b)? {
            return Ok(y);
        }
    }
    if let Some(y) = bias_add_cpu(a, b)? {
        return Ok(y);
    }
    a.broadcast_add(b)
}

/// `a + b` for a contiguous f32 CPU a (..., C) and bias b (C,), with a backward that sums the
/// bias gradient's columns on every thread ([`distill_cpu_kernels::bias`]); None otherwise.
fn bias_add_cpu(a: &Tensor, b: &Tensor) -> candle_core::Result<Option<Tensor>> {
    let bias = b.rank() == 1 && a.dims().last() == Some(&b.dim(0)?);
    if !(bias && cpu_f32(&[a, b])) {
        return Ok(None);
    }
    Ok(Some(a.contiguous()?.apply_op2(&b.contiguous()?, BiasAdd)?))
}

struct BiasAdd;

impl candle_core::CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, b) = (f32_elements(s1, l1)?, f32_elements(s2, l2)?);
        let mut y = vec![0f32; x.len()];
        distill_cpu_kernels::bias::add_rows(x, b, &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, _: &Tensor, b: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.detach().contiguous()?;
        let sums = {
            let (storage, layout) = dy.storage_and_layout();
            match &*storage {
                candle_core::Storage::Cpu(s) => distill_cpu_kernels::bias::column_sums(f32_elements(s, layout)?, b.dim(0)?),
                _ => candle_core::bail!("bias-add-cpu: the gradient is not on the CPU"),
            }
        };
        Ok((Some(dy), Some(Tensor::from_vec(sums, b.shape(), b.device())?)))
    }
}

/// Rows `ids` (u32, any shape) of the table `w` (V, C) -> (..., C), differentiable in `w`.
pub fn embedding(w: &Tensor, ids: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if w.device().is_cuda() && matches!(w.dtype(), DType::F32 | DType::BF16) {
        return crate::cuda_kernels::embedding(w, ids);
    }
    candle_core::Module::forward(&candle_nn::Embedding::new(w.clone(), w.dim(1)?), ids)
}

/// GELU with the tanh approximation, differentiable in x (module docs).
pub fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    if cpu_f32(&[x]) {
        return x.contiguous()?.apply_op1(GeluOp);
    }
    x.gelu()
}

/// LayerNorm over the last dim (module docs), differentiable in x, w and b, for a contiguous
/// f32 CPU x (..., C) and w, b (C,); None for any other input (the caller composes it).
pub fn layer_norm_cpu(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> candle_core::Result<Option<Tensor>> {
    if !cpu_f32(&[x, w, b]) {
        return Ok(None);
    }
    Ok(Some(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNormOp { eps })?))
}

struct LayerNormOp {
    eps: f64,
}

impl candle_core::CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, b) = (f32_elements(s1, l1)?, f32_elements(s2, l2)?, f32_elements(s3, l3)?);
        if w.is_empty() || w.len() != b.len() || !x.len().is_multiple_of(w.len()) {
            candle_core::bail!("layer norm: x of {} elements, w of {}, b of {}", x.len(), w.len(), b.len());
        }
        let mut y = vec![0f32; x.len()];
        distill_cpu_kernels::layer_norm::forward(x, w, b, self.eps, &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Copies of the three (a memcpy each, next to the kernel's arithmetic).
        let elements = |t: &Tensor| t.detach().flatten_all()?.to_vec1::<f32>();
        let mut dx = vec![0f32; x.elem_count()];
        let (dw, db) = distill_cpu_kernels::layer_norm::backward(&elements(x)?, &elements(w)?, &elements(dy)?, self.eps, &mut dx);
        let dev = x.device();
        Ok((Some(Tensor::from_vec(dx, x.shape(), dev)?), Some(Tensor::from_vec(dw, w.shape(), dev)?), Some(Tensor::from_vec(db, w.shape(), dev)?)))
    }
}

/// A contiguous f32 CPU tensor's elements.
/// Whether every tensor is f32 on the CPU: what the CPU kernels take.
pub(crate) fn cpu_f32(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

pub(crate) fn f32_elements<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("expected a contiguous tensor"),
    }
}

/// The body of a CPU op over two contiguous f32 tensors of one shape (values and their
/// gradients) that writes a third of that shape: `kernel(values, gradients, out)`.
pub(crate) fn same_shape_f32(
    what: &str,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    kernel: impl FnOnce(&[f32], &[f32], &mut [f32]),
) -> candle_core::Result<(CpuStorage, Shape)> {
    let (x, dy) = (f32_elements(s1, l1)?, f32_elements(s2, l2)?);
    if x.len() != dy.len() {
        candle_core::bail!("{what}: {} values, {} gradients", x.len(), dy.len());
    }
    let mut out = vec![0f32; x.len()];
    kernel(x, dy, &mut out);
    Ok((CpuStorage::F32(out), l1.shape().clone()))
}

struct GeluOp;

impl candle_core::CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu-cpu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_elements(s, l)?;
        let mut y = vec![0f32; x.len()];
        distill_cpu_kernels::gelu::forward(x, &mut y);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.detach().apply_op2_no_bwd(&dy.detach().contiguous()?, &GeluBackward)?))
    }
}

/// `dy * gelu'(x)`, x and dy contiguous f32 of one shape.
struct GeluBackward;

impl candle_core::CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu-cpu-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        same_shape_f32("gelu backward", s1, l1, s2, l2, distill_cpu_kernels::gelu::backward)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn cpu_layer_norm_equals_the_composed_graph_in_value_and_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(crate::weights::normal_tensor((2, 70, 48), 3.0, 9, &dev).unwrap() + 1.5).unwrap()).unwrap();
        let w = Var::from_tensor(&(crate::weights::normal_tensor(48, 0.3, 10, &dev).unwrap() + 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&crate::weights::normal_tensor(48, 0.3, 11, &dev).unwrap()).unwrap();
        let t = crate::weights::normal_tensor((2, 70, 48), 1.0, 12, &dev).unwrap();
        let composed = {
            let x = x.as_tensor();
            let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap()).unwrap();
            let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            xc.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap().broadcast_mul(w.as_tensor()).unwrap().broadcast_add(b.as_tensor()).unwrap()
        };
        let fused = layer_norm_cpu(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap().unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(max_diff(&composed, &fused) < 2e-6, "outputs differ by {}", max_diff(&composed, &fused));
        let g1 = (&composed * &t).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&fused * &t).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            let scale = a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(scale > 0.1, "{name}: gradient is not trivially zero");
            assert!(max_diff(a, b) < 2e-5 * scale, "d{name} differs by {} (max {scale})", max_diff(a, b));
        }
    }

    #[test]
    fn cpu_gelu_equals_candles_in_value_and_gradient() {
        let x = Var::from_tensor(&(crate::weights::normal_tensor((3, 50, 40), 2.0, 7, &Device::Cpu).unwrap())).unwrap();
        let w = crate::weights::normal_tensor((3, 50, 40), 1.0, 8, &Device::Cpu).unwrap();
        let (ours, theirs) = (gelu(x.as_tensor()).unwrap(), x.as_tensor().gelu().unwrap());
        let values = (&ours - &theirs).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(values < 1e-6, "values differ by {values}");
        let g1 = (&ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&theirs * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        // candle's derivative rounds its constants to six digits.
        assert!(diff < 1e-5, "gradients differ by {diff}");
        assert!(a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() > 0.5);
    }
}
