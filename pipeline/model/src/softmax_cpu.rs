//! Attention's masked softmax and its backward on the CPU in f32, one pass over the scores
//! each ([`distill_cpu_kernels::softmax`]), for [`crate::recompute`]'s attention ops; no graph.
//!
//! ```text
//! forward:  p = softmax(s * scale + mask)      s (B, G, R T, N), mask (1 or B, 1, T, N)
//! backward: ds = scale * p * (dp - rowsum(p * dp))
//! ```
//!
//! Row r of s (R query heads of a group stacked as R T rows) takes mask row `r mod T` of its
//! batch entry (of entry 0 when the mask has one).

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use distill_cpu_kernels::softmax::MaskRows;

use crate::fused::{cpu_f32, f32_elements, same_shape_f32};

/// `softmax(s * scale + mask)` (module docs); None for tensors the kernel does not take.
pub fn masked_softmax(s: &Tensor, mask: &Tensor, scale: f64) -> candle_core::Result<Option<Tensor>> {
    if !cpu_f32(&[s, mask]) {
        return Ok(None);
    }
    let (b, g, rt, n) = s.dims4()?;
    let (mb, _, t, mn) = mask.dims4()?;
    if mn != n || rt % t != 0 || !(mb == 1 || mb == b) {
        candle_core::bail!("masked softmax: scores {:?} and mask {:?} do not match", s.dims(), mask.dims());
    }
    let op = MaskedSoftmax { scale: scale as f32, rows: MaskRows { rows_per_batch: g * rt, t, per_batch: mb > 1 } };
    Ok(Some(s.detach().contiguous()?.apply_op2_no_bwd(&mask.detach().contiguous()?, &op)?))
}

/// `scale * p * (dp - rowsum(p * dp))` (module docs); None for tensors the kernel does not take.
pub fn masked_softmax_backward(p: &Tensor, dp: &Tensor, scale: f64) -> candle_core::Result<Option<Tensor>> {
    if !cpu_f32(&[p, dp]) {
        return Ok(None);
    }
    Ok(Some(p.detach().contiguous()?.apply_op2_no_bwd(&dp.detach().contiguous()?, &SoftmaxBackward { scale: scale as f32 })?))
}

struct MaskedSoftmax {
    scale: f32,
    rows: MaskRows,
}

impl candle_core::CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (s, mask) = (f32_elements(s1, l1)?, f32_elements(s2, l2)?);
        let n = *l1.dims().last().expect("rank 4");
        let mut y = vec![0f32; s.len()];
        distill_cpu_kernels::softmax::masked_forward(s, mask, n, self.scale, self.rows, &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
}

struct SoftmaxBackward {
    scale: f32,
}

impl candle_core::CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-backward-cpu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = *l1.dims().last().expect("rank >= 1");
        same_shape_f32("softmax backward", s1, l1, s2, l2, |p, dp, ds| distill_cpu_kernels::softmax::backward(p, dp, n, self.scale, ds))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use crate::weights::normal_tensor;

    /// The composed candle graph these replace: scale, add the mask, softmax; and its backward.
    fn composed(s: &Tensor, mask: &Tensor, scale: f64) -> Tensor {
        let (b, g, rt, n) = s.dims4().unwrap();
        let t = mask.dim(2).unwrap();
        let x = (s * scale).unwrap().reshape((b, g, rt / t, t, n)).unwrap().broadcast_add(&mask.unsqueeze(2).unwrap()).unwrap();
        candle_nn::ops::softmax_last_dim(&x).unwrap().reshape((b, g, rt, n)).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn grouped_rows_with_a_per_batch_padding_mask_match_the_composed_graph() {
        let dev = Device::Cpu;
        // B 2, G 2 groups of R 3 query heads, T 5 queries, N 5 keys; batch entry 1 pads key 4.
        let s = (normal_tensor(&[2, 2, 15, 5], 3.0, 1, &dev).unwrap()).contiguous().unwrap();
        let causal = crate::nn::causal_mask(5, &dev).unwrap(); // (1, 1, 5, 5)
        let pad = Tensor::new(&[0f32, 0., 0., 0., crate::nn::MASKED], &dev).unwrap().reshape((1, 1, 1, 5)).unwrap();
        let mask = Tensor::cat(&[causal.clone(), causal.broadcast_add(&pad).unwrap()], 0).unwrap(); // (2, 1, 5, 5)
        for m in [&causal, &mask] {
            let got = super::masked_softmax(&s, m, 0.125).unwrap().unwrap();
            let want = composed(&s, m, 0.125);
            assert!(max_diff(&got, &want) < 1e-6, "{m:?}");
            let dp = normal_tensor(&[2, 2, 15, 5], 1.0, 2, &dev).unwrap();
            let got = super::masked_softmax_backward(&got, &dp, 0.125).unwrap().unwrap();
            let dot = (&dp * &want).unwrap().sum_keepdim(3).unwrap();
            let want = ((&want * dp.broadcast_sub(&dot).unwrap()).unwrap() * 0.125).unwrap();
            assert!(max_diff(&got, &want) < 1e-6);
        }
    }
}
