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
//!
//! Mixed precision: [`AdamW::compute_copies`] gives each f32 master a copy in the compute
//! dtype (bf16) that every update rewrites as `bf16(p)`, in the same CUDA kernel. The forward
//! and backward passes run on the copies, so a step casts no weights, and the gradients arrive
//! in bf16 (the matmuls write them in bf16 anyway) and are read as such by the norm and the
//! update, which compute in f32.

use std::collections::{BTreeMap, HashMap};

use candle_core::{DType, Tensor, Var};

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
    /// Each parameter's compute copy (same order as `params`), once [`Self::compute_copies`]
    /// has made them.
    compute: Option<Vec<Var>>,
    /// Updates done so far.
    pub t: u64,
    pub hp: AdamWParams,
}

impl AdamW {
    /// `params` sorted by name (as `TrainableLm::vars` gives them).
    pub fn new(params: Vec<(String, Var)>, hp: AdamWParams) -> Result<Self> {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(AdamW { params, m, v, compute: None, t: 0, hp })
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// The parameters in `dtype` for the forward and backward passes (module docs): on the
    /// first call (and after [`Self::load_state`]) each f32 master cast once, then the same
    /// copies, which every update rewrites. Take the gradients on these, not on the masters.
    pub fn compute_copies(&mut self, dtype: DType) -> Result<Vec<(String, Var)>> {
        let stale = match &self.compute {
            Some(copies) => copies.first().is_some_and(|c| c.dtype() != dtype),
            None => true,
        };
        if stale {
            let copies = self.params.iter().map(|(_, p)| Var::from_tensor(&p.as_tensor().to_dtype(dtype)?.contiguous()?)).collect::<candle_core::Result<Vec<_>>>()?;
            self.compute = Some(copies);
        }
        let copies = self.compute.as_ref().expect("made above");
        Ok(self.params.iter().zip(copies).map(|((name, _), c)| (name.clone(), c.clone())).collect())
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
                let copy = self.compute.as_ref().map(|c| c[i].as_tensor());
                distill_model::cuda_kernels::adamw_step(p.as_tensor(), g, &self.m[i], &self.v[i], clip, copy, step)?;
                continue;
            }
            // Gradients from `backward` still carry their op graph; moments built from them
            // would keep every earlier step's graph alive (memory grew ~600 MB a step).
            let g = g.detach().to_dtype(DType::F32)?;
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?.detach();
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?.detach();
            let mut theta = p.as_tensor().clone();
            if wd > 0.0 && decays(name) {
                theta = (theta * (1.0 - lr * wd))?;
            }
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + eps)?)?;
            let updated = (theta - (update * lr)?)?;
            if let Some(copies) = &self.compute {
                copies[i].set(&updated.to_dtype(copies[i].dtype())?)?;
            }
            p.set(&updated)?;
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

    /// Restores moments saved by [`state`](Self::state) and the update count. The compute
    /// copies are dropped: the masters were just loaded too, and the next
    /// [`compute_copies`](Self::compute_copies) casts them afresh.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        self.compute = None;
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (key, slot) in [(format!("m.{name}"), &mut self.m[i]), (format!("v.{name}"), &mut self.v[i])] {
                let s = state.get(&key).ok_or_else(|| Error::OptimizerStateMissing { key: key.clone() })?;
                if s.dims() != p.dims() {
                    return Err(Error::OptimizerStateShape { key, found: s.dims().to_vec(), expected: p.dims().to_vec() });
                }
                // A private contiguous copy: the CUDA optimizer updates the moments in place.
                *slot = s.to_dtype(DType::F32)?.copy()?;
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
        // Contiguous once here, so that the AdamW kernel reads them without another copy; in
        // bf16 when all are (the compute copies' gradients), else in f32.
        let dtype = if grads.values().all(|g| g.dtype() == DType::BF16) { DType::BF16 } else { DType::F32 };
        let mut flat = Vec::with_capacity(names.len());
        for name in &names {
            let g = grads[name].detach().to_dtype(dtype)?.contiguous()?;
            grads.insert(name.clone(), g.clone());
            flat.push(g);
        }
        return Ok(GradNorm::Device(distill_model::cuda_kernels::grad_norm_and_clip(&flat, max_norm)?));
    }
    // Per-tensor sums of squares stay on the device and are added in f64 there: one
    // synchronisation per step instead of one per tensor.
    // Rows first: a whole-tensor sum is one GPU block over up to 136M elements (an embedding).
    let sum_sq = |g: &Tensor| -> candle_core::Result<Tensor> {
        let sq = g.to_dtype(DType::F32)?.sqr()?;
        let rows = if sq.rank() >= 2 { sq.sum(candle_core::D::Minus1)? } else { sq };
        rows.sum_all()?.to_dtype(DType::F64)
    };
    let sums = names.iter().map(|n| sum_sq(&grads[n])).collect::<candle_core::Result<Vec<_>>>()?;
    let sq = Tensor::stack(&sums, 0)?.sum_all()?.to_scalar::<f64>()?;
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            // In f32: a bf16 product would round the scaled gradient (the CUDA kernel scales
            // in f32 too).
            *g = (g.to_dtype(DType::F32)? * scale)?;
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

    /// The bf16 copies are the graph's leaves: their gradients come back in bf16, each update
    /// rewrites the same copies as the updated masters cast to bf16, and a checkpoint load
    /// (which replaces the masters) makes the next call cast afresh.
    #[test]
    fn compute_copies_take_the_gradients_and_follow_every_update() {
        let p = Var::new(&[1.0f32, -2.0, 0.3], &Device::Cpu).unwrap();
        let hp = AdamWParams { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1 };
        let mut opt = AdamW::new(vec![("w.weight".into(), p.clone())], hp).unwrap();
        let first = opt.compute_copies(DType::BF16).unwrap()[0].1.clone();
        for _ in 0..3 {
            let copies = opt.compute_copies(DType::BF16).unwrap();
            let w = &copies[0].1;
            assert_eq!(w.id(), first.id(), "the same copies every step, not a cast per step");
            let loss = w.as_tensor().to_dtype(DType::F32).unwrap().sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap().get(w.as_tensor()).unwrap().clone();
            assert_eq!(g.dtype(), DType::BF16);
            opt.step(&HashMap::from([("w.weight".to_string(), g)]), 0.01).unwrap();
            let bf16_values = |t: &Tensor| t.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(bf16_values(w.as_tensor()), bf16_values(p.as_tensor()));
        }
        assert_ne!(p.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0f32, -2.0, 0.3], "the masters moved");
        let state: HashMap<String, Tensor> = opt.state().into_iter().collect();
        p.set(&Tensor::new(&[5.0f32, 6.0, 7.0], &Device::Cpu).unwrap()).unwrap();
        opt.load_state(&state, 3).unwrap();
        let fresh = opt.compute_copies(DType::BF16).unwrap()[0].1.clone();
        assert_ne!(fresh.id(), first.id());
        assert_eq!(fresh.as_tensor().to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(), vec![5.0f32, 6.0, 7.0]);
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
