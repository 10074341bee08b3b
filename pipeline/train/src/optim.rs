//! AdamW (decoupled weight decay, PyTorch's `torch.optim.AdamW` update) with two parameter
//! groups, global-norm gradient clipping, and a state that round-trips through a checkpoint.
//!
//! For each parameter p with gradient g at update t (1-based):
//!
//! ```text
//! p <- p - lr * wd * p                       (decay group only)
//! m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//! p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//! ```
//!
//! No decay on biases, norm weights and embeddings (tensor names ending in `.bias`, containing
//! `norm` or `.ln_`, or naming an embedding table: `embed_tokens`, `wte`, `wpe`).
//! Clipping: with `n = sqrt(sum over all grads of g^2)`, grads are scaled by `c / (n + 1e-6)`
//! when `n > c`.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// Whether a parameter gets weight decay (module docs).
pub fn decays(name: &str) -> bool {
    let no = name.ends_with(".bias") || name.contains("norm") || name.contains(".ln_") || name.contains("embed_tokens") || name.contains(".wte.") || name.contains(".wpe.");
    !no
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Updates done so far.
    pub t: u64,
    pub hp: AdamWParams,
}

impl AdamW {
    /// `params` sorted by name (as `TrainableLm::vars` gives them).
    pub fn new(params: Vec<(String, Var)>, hp: AdamWParams) -> Result<Self> {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW { params, m, v, t: 0, hp })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update with `grads` (by parameter name; a missing gradient counts as zero).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.step_clipped(grads, lr, &GradNorm::Host(0.0))
    }

    /// [`step`](Self::step) after [`clip_global_norm`]: a norm left on the device has its
    /// clipping coefficient applied inside the CUDA AdamW kernel.
    pub fn step_clipped(&mut self, grads: &HashMap<String, Tensor>, lr: f64, norm: &GradNorm) -> Result<()> {
        #[cfg(not(feature = "cuda"))]
        let _ = norm; // a device-side coefficient exists only in the CUDA build
        self.t += 1;
        let AdamWParams { beta1: b1, beta2: b2, eps, weight_decay: wd } = self.hp;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        #[cfg(feature = "cuda")]
        let no_clip = match (norm, self.params.first()) {
            (GradNorm::Host(_), Some((_, p))) if p.device().is_cuda() => Some(Tensor::new(&[0f32, 1.0], p.device())?),
            _ => None,
        };
        for (i, (name, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(name) else { continue };
            #[cfg(feature = "cuda")]
            if p.device().is_cuda() {
                let clip = match norm {
                    GradNorm::Device(t) => t,
                    GradNorm::Host(_) => no_clip.as_ref().expect("made above for CUDA parameters"),
                };
                // One fused in-place kernel; the same formula as the composed ops below.
                let decay = if wd > 0.0 && decays(name) { 1.0 - lr * wd } else { 1.0 };
                let step = distill_model::cuda_kernels::AdamWStep {
                    lr: lr as f32,
                    beta1: b1 as f32,
                    beta2: b2 as f32,
                    eps: eps as f32,
                    decay: decay as f32,
                    bc1: bc1 as f32,
                    bc2: bc2 as f32,
                };
                distill_model::cuda_kernels::adamw_step(p.as_tensor(), g, &self.m[i], &self.v[i], clip, step)?;
                continue;
            }
            // Gradients from `backward` still carry their op graph; moments built from them
            // would keep every earlier step's graph alive (memory grew ~600 MB a step).
            let g = g.detach();
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?.detach();
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let mut theta = p.as_tensor().clone();
            if wd > 0.0 && decays(name) {
                theta = (theta * (1.0 - lr * wd))?;
            }
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + eps)?)?;
            p.set(&(theta - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`state`](Self::state) and the update count.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (key, slot) in [(format!("m.{name}"), &mut self.m[i]), (format!("v.{name}"), &mut self.v[i])] {
                let s = state.get(&key).ok_or_else(|| Error::OptimizerStateMissing { key: key.clone() })?;
                if s.dims() != p.dims() {
                    return Err(Error::OptimizerStateShape { key, found: s.dims().to_vec(), expected: p.dims().to_vec() });
                }
                // A private contiguous copy: the CUDA optimizer updates the moments in place.
                *slot = s.to_dtype(candle_core::DType::F32)?.copy()?;
            }
        }
        self.t = t;
        Ok(())
    }
}

/// The global gradient norm of a step, and where its clipping happens.
pub enum GradNorm {
    /// The grads were already scaled; the norm before scaling (CPU).
    Host(f64),
    /// `(norm, coefficient)` (2,) f32 on the device; [`AdamW::step_clipped`] applies the
    /// coefficient inside its kernel, so no host synchronisation or scaled copy is needed.
    Device(Tensor),
}

impl GradNorm {
    /// The norm before clipping (reads it from the device: a synchronisation).
    pub fn value(&self) -> Result<f64> {
        match self {
            GradNorm::Host(n) => Ok(*n),
            GradNorm::Device(t) => Ok(t.get(0)?.to_scalar::<f32>()? as f64),
        }
    }
}

/// The global L2 norm of `grads`, and the grads scaled to at most `max_norm` (0 = no clipping):
/// on the CPU in place; on CUDA as a coefficient on the device for [`AdamW::step_clipped`].
pub fn clip_global_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<GradNorm> {
    let mut names: Vec<String> = grads.keys().cloned().collect();
    names.sort(); // a fixed summation order keeps runs bit-identical
    if names.is_empty() {
        return Ok(GradNorm::Host(0.0));
    }
    #[cfg(feature = "cuda")]
    if grads[&names[0]].device().is_cuda() {
        // Contiguous f32 once here, so that the AdamW kernel reads them without another copy.
        let mut flat = Vec::with_capacity(names.len());
        for name in &names {
            let g = grads[name].detach().to_dtype(candle_core::DType::F32)?.contiguous()?;
            grads.insert(name.clone(), g.clone());
            flat.push(g);
        }
        return Ok(GradNorm::Device(distill_model::cuda_kernels::grad_norm_and_clip(&flat, max_norm)?));
    }
    // Per-tensor sums of squares stay on the device and are added in f64 there: one
    // synchronisation per step instead of one per tensor.
    // Rows first: a whole-tensor sum is one GPU block over up to 136M elements (an embedding).
    let sum_sq = |g: &Tensor| -> candle_core::Result<Tensor> {
        let sq = g.sqr()?;
        let rows = if sq.rank() >= 2 { sq.sum(candle_core::D::Minus1)? } else { sq };
        rows.sum_all()?.to_dtype(candle_core::DType::F64)
    };
    let sums = names.iter().map(|n| sum_sq(&grads[n])).collect::<candle_core::Result<Vec<_>>>()?;
    let sq = Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f64>()?;
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(GradNorm::Host(norm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn decay_groups_follow_the_names() {
        assert!(decays("model.layers.0.self_attn.q_proj.weight"));
        assert!(decays("lm_head.weight"));
        assert!(!decays("model.layers.0.self_attn.q_proj.bias"));
        assert!(!decays("model.layers.0.input_layernorm.weight"));
        assert!(!decays("model.norm.weight"));
        assert!(!decays("model.embed_tokens.weight"));
        assert!(!decays("transformer.wte.weight"));
        assert!(!decays("transformer.h.0.ln_1.weight"));
        assert!(decays("transformer.h.0.mlp.c_fc.weight"));
    }

    /// Two AdamW steps on p = [1, -2] with constant grads, against PyTorch's formula by hand.
    #[test]
    fn update_matches_the_pytorch_formula() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let hp = AdamWParams { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut opt = AdamW::new(vec![("w.weight".into(), p.clone())], hp).unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &Device::Cpu).unwrap();
        let grads = HashMap::from([("w.weight".to_string(), g)]);
        opt.step(&grads, 0.01).unwrap();
        opt.step(&grads, 0.01).unwrap();
        // Constant gradients: m_hat = g, v_hat = g^2, so each step moves by lr * sign(g)
        // (up to eps) after decaying by (1 - lr * wd).
        let mut want = [1.0f64, -2.0];
        for _ in 0..2 {
            for (w, s) in want.iter_mut().zip([1.0, -1.0]) {
                *w = *w * (1.0 - 0.01 * 0.1) - 0.01 * s;
            }
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    /// Regression: moments built from `backward`'s gradients kept their op graph, so every
    /// step's graph stayed alive and a 150-step CPU run ran out of 24 GiB.
    #[test]
    fn moments_do_not_keep_the_gradient_graph_alive() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("w.weight".into(), p.clone())], AdamWParams { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }).unwrap();
        for _ in 0..3 {
            let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
            let store = loss.backward().unwrap();
            let g = store.get(p.as_tensor()).unwrap().clone();
            opt.step(&HashMap::from([("w.weight".to_string(), g)]), 0.01).unwrap();
        }
        assert!(!opt.m[0].track_op() && !opt.v[0].track_op(), "moments must be detached from the graph");
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut grads = HashMap::from([("a".to_string(), Tensor::new(&[3.0f32], &Device::Cpu).unwrap()), ("b".to_string(), Tensor::new(&[4.0f32], &Device::Cpu).unwrap())]);
        let n = clip_global_norm(&mut grads, 1.0).unwrap().value().unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        let a = grads["a"].to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-5);
        let n2 = clip_global_norm(&mut grads, 10.0).unwrap().value().unwrap();
        assert!((n2 - 1.0).abs() < 1e-5, "now within bounds, unchanged");
    }
}
