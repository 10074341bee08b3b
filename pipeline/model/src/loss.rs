//! Distillation losses on sparse teacher log-probs, in fp32, masked, averaged over valid tokens.
//!
//! # Shapes and alignment
//!
//! All functions take rows: student logits `(N, V)` and, per row, the teacher's top-k ids
//! `(N, K)` u32 and log-probs `(N, K)` f32. For a sequence batch, row `(b, t)` pairs the
//! teacher's top-k **at completion token t** with the student's logits **at position t - 1**
//! (the logits that predict token t): use [`align`] on `(B, T, V)` logits and take targets
//! from positions `1..T`. Masks are `(N,)` f32 with 1 on rows that count; rows with fewer
//! than K listed tokens carry a `(N, K)` top-k mask (absent entries become [`GHOST`]s).
//!
//! # The (k+1)-category distributions
//!
//! The teacher gives only its top-k, so both distributions are collapsed onto k+1 categories:
//! the k listed tokens and a tail bucket for everything else.
//!
//! - Teacher at temperature `T`, captured at `T_c`: since `log p_{T_c}(i) = z_i / T_c - c`,
//!   `log p_T(i) = (T_c / T) * log p_{T_c}(i) - c'`. We scale the k log-probs and the tail's
//!   log-mass `log(1 - sum_i p_i)` by `T_c / T` and renormalise over the k+1 categories
//!   Exact when `T = T_c`, and log-ratios between listed tokens are always exact; the tail is
//!   treated as a single token, which for `T > T_c` is a lower bound on its rescaled mass (the
//!   true tail is spread over many tokens). Top-k mass above 1 (rounded teacher numbers) is
//!   renormalised to 1 first; the tail is floored at `EPS`.
//! - Student at temperature `T`: `log q_i = z_i / T - logsumexp(z / T)` gathered at the k ids;
//!   `q_tail = max(1 - sum_i q_i, EPS)`. Both tails are computed in f64 (a difference of nearly
//!   equal numbers), everything else in f32.
//!
//! # The losses, per row, over the k+1 categories c
//!
//! - forward KL `KL(p || q) = sum_c p_c (log p_c - log q_c)`
//! - reverse KL `KL(q || p) = sum_c q_c (log q_c - log p_c)`
//! - generalized JSD(beta), TRL's `generalized_jsd_loss` convention: with
//!   `m = beta p + (1 - beta) q`, `JSD = beta KL(p || m) + (1 - beta) KL(q || m)` for
//!   0 < beta < 1; beta = 0 is forward KL and beta = 1 reverse KL (as in TRL).
//! - cross-entropy on the teacher's sampled token y: `logsumexp(z) - z_y` (temperature 1).
//!
//! # Chunk events (a teacher of another tokenizer)
//!
//! Where teacher and student tokens group differently (an m:n chunk of the same bytes, see
//! `distill_shards::align`), the teacher's top-k at the chunk's first row are *events*: entry 0
//! is the whole chunk, the others single tokens disjoint from it. The student's probability of
//! the chunk is the product along it, so for each later row `i` of the chunk (`ChunkRows`) the
//! student's log-prob of its sampled token, `log q_i(y_i)` at temperature `T`, is added to entry
//! 0 of the chunk's first row before the tail is formed:
//! `log q(chunk) = log q_start(y_start) + sum_i log q_i(y_i)`. Those later rows carry no soft
//! labels of their own (`kd_mask` 0) and still count for CE. Without chunks nothing changes.
//!
//! KD terms are multiplied by `T^2` (Hinton et al.) so their gradients keep their scale when T
//! changes. [`distill_loss`] combines them with weights: `w_kd FKL + w_rkl RKL + w_jsd JSD`
//! (each times T^2) `+ w_ce CE`, each a masked mean `sum(loss * mask) / max(sum(mask), 1)`.
//! Under gradient accumulation the denominators are the step's token counts over all its
//! micro-batches ([`distill_loss_over`]), so the summed micro-batch losses are the mean over
//! every valid token of the step, not a mean of per-micro-batch means.
//!
//! # Example: a 2x3 forward KL
//!
//! Teacher p = (0.5, 0.3, 0.2) on both rows (k = V = 3, so the tail is empty); student
//! uniform on row 0 and equal to p on row 1. KL row 0 = 0.5 ln 1.5 + 0.3 ln 0.9 + 0.2 ln 0.6
//! = 0.0689593, row 1 = 0, mean 0.0344797.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use distill_model::loss;
//! let dev = Device::Cpu;
//! let p = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
//! let logits = Tensor::new(&[[0f32, 0., 0.], p], &dev)?; // (N=2, V=3)
//! let ids = Tensor::new(&[[0u32, 1, 2], [0, 1, 2]], &dev)?; // (N, K=3)
//! let lp = Tensor::new(&[p, p], &dev)?; // (N, K)
//! let logp = loss::teacher_log_probs(&lp, None, 1.0, 1.0)?; // (N, K+1)
//! let logq = loss::student_log_probs(&logits, &ids, None, 1.0)?; // (N, K+1)
//! let kl = loss::forward_kl(&logp, &logq)?.to_vec1::<f32>()?; // (N,)
//! assert!((kl[0] - 0.0689593).abs() < 1e-6 && kl[1].abs() < 1e-6);
//! let mask = Tensor::new(&[1f32, 1.], &dev)?;
//! let mean = loss::masked_mean(&loss::forward_kl(&logp, &logq)?, &mask)?.to_scalar::<f32>()?;
//! assert!((mean - 0.0344797).abs() < 1e-6);
//! # Ok::<(), distill_model::Error>(())
//! ```

use candle_core::{DType, Tensor, D};

use crate::error::{Error, Result};

/// Floor for the tail bucket's probability (teacher and student).
pub const EPS: f64 = 1e-10;

/// `(B, T, V)` logits -> `(B, T-1, V)`: the positions that predict tokens `1..T`.
pub fn align(logits: &Tensor) -> Result<Tensor> {
    let t = logits.dim(1)?;
    if t < 2 {
        return Err(Error::Invalid("need at least 2 positions to pair logits with next tokens".into()));
    }
    Ok(logits.narrow(1, 0, t - 1)?)
}

/// Keeps no (N, V) intermediate for the backward pass (see [`crate::recompute`]).
fn logsumexp_last(x: &Tensor) -> Result<Tensor> {
    crate::recompute::logsumexp_last(x)
}

/// Log-prob of an absent top-k entry (a row with fewer than K listed tokens): teacher and
/// student both get it, so the entry has zero mass on both sides, adds exactly 0 to every
/// divergence, and passes no gradient.
pub const GHOST: f32 = -1e30;

fn absent_to_ghost(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let Some(mask) = mask else { return Ok(x.clone()) };
    let ghost = Tensor::full(GHOST, x.shape(), x.device())?;
    Ok(mask.ne(0f32)?.where_cond(x, &ghost)?)
}

/// Teacher log-probs over k+1 categories `(N, K+1)` (last = tail) at temperature `t`, from
/// top-k log-probs `(N, K)` captured at `capture_t` (see the module docs).
pub fn teacher_log_probs(topk_logprobs: &Tensor, topk_mask: Option<&Tensor>, capture_t: f64, t: f64) -> Result<Tensor> {
    // f64: the tail is `1 - sum`, a difference of nearly equal numbers when the top-k holds
    // almost all the mass; f32 would leave it at rounding noise (~1e-7) instead of the floor.
    let lp = absent_to_ghost(&topk_logprobs.to_dtype(DType::F32)?.detach(), topk_mask)?.to_dtype(DType::F64)?;
    // Top-k mass above 1 (rounding in the teacher's numbers) is renormalised away.
    let mass = lp.exp()?.sum_keepdim(D::Minus1)?; // (N, 1)
    let lp = lp.broadcast_sub(&mass.clamp(1.0, f64::MAX)?.log()?)?;
    let tail = (1.0 - lp.exp()?.sum_keepdim(D::Minus1)?)?.clamp(EPS, 1.0)?.log()?; // (N, 1)
    let all = (Tensor::cat(&[&lp, &tail], D::Minus1)? * (capture_t / t))?; // (N, K+1)
    Ok(all.broadcast_sub(&logsumexp_last(&all)?)?.to_dtype(DType::F32)?)
}

/// Student log-probs over the teacher's k+1 categories `(N, K+1)` at temperature `t`, from
/// logits `(N, V)` and the teacher's top-k ids `(N, K)`.
pub fn student_log_probs(logits: &Tensor, topk_ids: &Tensor, topk_mask: Option<&Tensor>, t: f64) -> Result<Tensor> {
    // At T = 1 no scaled copy of the (N, V) logits is made.
    let z = if t == 1.0 { logits.clone() } else { (logits.to_dtype(DType::F32)? / t)? }; // (N, V)
    student_categories(&crate::recompute::log_softmax_gather(&z, topk_ids)?, topk_mask)
}

/// The k+1 categories `(N, K+1)` from the student's log-probs at the teacher's top-k ids `(N, K)`.
fn student_categories(lq: &Tensor, topk_mask: Option<&Tensor>) -> Result<Tensor> {
    let lq = absent_to_ghost(lq, topk_mask)?;
    // The tail in f64 for the same reason as the teacher's (gradients flow through the casts).
    let lq64 = lq.to_dtype(DType::F64)?;
    let tail = (1.0 - lq64.exp()?.sum_keepdim(D::Minus1)?)?.clamp(EPS, 1.0)?.log()?.to_dtype(DType::F32)?; // (N, 1)
    Ok(Tensor::cat(&[&lq, &tail], D::Minus1)?)
}

/// `KL(p || q)` per row `(N,)` from log-probs `(N, C)`.
pub fn forward_kl(logp: &Tensor, logq: &Tensor) -> Result<Tensor> {
    Ok((logp.exp()? * (logp - logq)?)?.sum(D::Minus1)?)
}

/// `KL(q || p)` per row `(N,)`.
pub fn reverse_kl(logp: &Tensor, logq: &Tensor) -> Result<Tensor> {
    forward_kl(logq, logp)
}

/// Generalized JSD(beta) per row `(N,)`, TRL's convention (module docs).
pub fn jsd(logp: &Tensor, logq: &Tensor, beta: f64) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&beta) {
        return Err(Error::Invalid(format!("jsd beta must be in [0, 1], got {beta}")));
    }
    if beta == 0.0 {
        return forward_kl(logp, logq);
    }
    if beta == 1.0 {
        return reverse_kl(logp, logq);
    }
    // log m = logsumexp(log p + log beta, log q + log(1 - beta)), elementwise.
    let a = (logp + beta.ln())?;
    let b = (logq + (1.0 - beta).ln())?;
    let max = a.maximum(&b)?.detach();
    let logm = (((a - &max)?.exp()? + (b - &max)?.exp()?)?.log()? + max)?;
    Ok(((forward_kl(logp, &logm)? * beta)? + (forward_kl(logq, &logm)? * (1.0 - beta))?)?)
}

/// Cross-entropy `logsumexp(z) - z_y` per row `(N,)` for logits `(N, V)`, targets `(N,)` u32.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(crate::recompute::log_softmax_gather(logits, &targets.unsqueeze(1)?)?.squeeze(1)?.neg()?)
}

/// `sum(x * mask) / max(sum(mask), 1)`: a scalar; 0 when nothing is valid.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask.sum_all()?.to_scalar::<f32>()? as f64;
    masked_sum_over(x, mask, n)
}

/// `sum(x * mask) / max(n, 1)`: a masked mean whose denominator the caller counted.
fn masked_sum_over(x: &Tensor, mask: &Tensor, n: f64) -> Result<Tensor> {
    Ok(((x * mask)?.sum_all()? / (n as f32).max(1.0) as f64)?)
}

/// Weights and temperatures of the combined loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Forward KL (teacher || student).
    pub kd: f64,
    pub reverse_kl: f64,
    pub jsd: f64,
    pub jsd_beta: f64,
    /// Cross-entropy on the teacher's sampled tokens.
    pub ce: f64,
    /// Distillation temperature T (KD terms scaled by T^2).
    pub temperature: f64,
    /// Temperature the teacher's log-probs were captured at.
    pub capture_temperature: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights { kd: 1.0, reverse_kl: 0.0, jsd: 0.0, jsd_beta: 0.5, ce: 0.0, temperature: 1.0, capture_temperature: 1.0 }
    }
}

/// Rows of targets aligned with `(N, V)` student logits (module docs).
pub struct KdTargets {
    /// `(N, K)` u32 teacher top-k ids.
    pub topk_ids: Tensor,
    /// `(N, K)` f32 teacher top-k log-probs.
    pub topk_logprobs: Tensor,
    /// `(N, K)` f32, 1 on listed entries, 0 on padding of rows with fewer than K; None = all 1.
    pub topk_mask: Option<Tensor>,
    /// `(N,)` u32 the token the teacher sampled (the next input token).
    pub sampled: Tensor,
    /// `(N,)` f32: 1 where the soft labels count (completion tokens with a top-k).
    pub kd_mask: Tensor,
    /// `(N,)` f32: 1 where the hard label counts (completion tokens).
    pub ce_mask: Tensor,
    /// The later rows of multi-token chunks (module docs); `None` when there are none.
    pub chunks: Option<ChunkRows>,
    /// Rows counted by `kd_mask` and `ce_mask`, known where the targets are built, so that a
    /// loss reads nothing back from the device ([`TokenCounts::of_masks`] counts them there).
    pub counts: TokenCounts,
}

/// Row `interior[m]`'s student log-prob of its sampled token is added to entry 0 of row
/// `start[m]` (module docs, "Chunk events"). Both `(M,)` u32, M >= 1.
pub struct ChunkRows {
    pub interior: Tensor,
    pub start: Tensor,
    /// The same `(interior, start)` pairs on the host, to split the rows without a device read.
    pairs: Vec<(u32, u32)>,
}

impl ChunkRows {
    /// The pairs on `device`; `None` when there are none.
    pub fn new(interior: Vec<u32>, start: Vec<u32>, device: &candle_core::Device) -> Result<Option<Self>> {
        if interior.len() != start.len() {
            return Err(Error::Invalid(format!("chunk rows: {} interior rows for {} starts", interior.len(), start.len())));
        }
        if interior.is_empty() {
            return Ok(None);
        }
        let pairs = interior.iter().copied().zip(start.iter().copied()).collect();
        let m = interior.len();
        Ok(Some(ChunkRows { interior: Tensor::from_vec(interior, m, device)?, start: Tensor::from_vec(start, m, device)?, pairs }))
    }

    /// The first row at or after `row` that splits no chunk: no chunk starts before it and has
    /// a later row at or after it.
    pub fn boundary_at_or_after(&self, row: usize) -> usize {
        let mut b = row;
        // Each pass moves b past the chunks it falls inside; chunks are disjoint, so this ends.
        while let Some(end) = self.pairs.iter().filter(|&&(i, s)| (s as usize) < b && i as usize >= b).map(|&(i, _)| i as usize + 1).max() {
            b = end;
        }
        b
    }

    /// The chunks that start in rows `[from, from + len)`, renumbered from `from`.
    fn within(&self, from: usize, len: usize, device: &candle_core::Device) -> Result<Option<Self>> {
        let inside = |r: u32| (from..from + len).contains(&(r as usize));
        let (interior, start): (Vec<u32>, Vec<u32>) = self.pairs.iter().filter(|&&(_, s)| inside(s)).map(|&(i, s)| (i - from as u32, s - from as u32)).unzip();
        if interior.iter().any(|&i| i as usize >= len) {
            return Err(Error::Invalid(format!("rows {from}..{} split a multi-token chunk", from + len)));
        }
        Self::new(interior, start, device)
    }
}

impl KdTargets {
    /// Rows `[from, from + len)` of these targets, with the same token counts (so a loss over
    /// them divides by the whole batch's, and decides which terms to compute as it would). The
    /// range must split no multi-token chunk ([`ChunkRows::boundary_at_or_after`]).
    pub fn rows(&self, from: usize, len: usize) -> Result<KdTargets> {
        let device = self.kd_mask.device();
        Ok(KdTargets {
            topk_ids: self.topk_ids.narrow(0, from, len)?,
            topk_logprobs: self.topk_logprobs.narrow(0, from, len)?,
            topk_mask: self.topk_mask.as_ref().map(|m| m.narrow(0, from, len)).transpose()?,
            sampled: self.sampled.narrow(0, from, len)?,
            kd_mask: self.kd_mask.narrow(0, from, len)?,
            ce_mask: self.ce_mask.narrow(0, from, len)?,
            chunks: match &self.chunks {
                Some(c) => c.within(from, len, device)?,
                None => None,
            },
            counts: self.counts,
        })
    }
}

/// Adds the chunks' later rows to entry 0 of their first rows: `lq` `(N, K)` student log-probs at
/// the teacher's ids, `sampled` `(N,)` the student's log-probs of the sampled tokens.
fn with_chunk_events(lq: &Tensor, sampled: &Tensor, chunks: &ChunkRows) -> Result<Tensor> {
    let (n, k) = lq.dims2()?;
    let extra = Tensor::zeros(n, lq.dtype(), lq.device())?.index_add(&chunks.start, &sampled.contiguous()?.index_select(&chunks.interior, 0)?, 0)?; // (N,)
    let first = lq.narrow(1, 0, 1)?.broadcast_add(&extra.unsqueeze(1)?)?;
    if k == 1 {
        return Ok(first);
    }
    Ok(Tensor::cat(&[&first, &lq.narrow(1, 1, k - 1)?], 1)?)
}

/// The token counts a loss's masked means divide by (see [`distill_loss_over`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenCounts {
    /// Rows whose soft labels count (the KD terms' denominator).
    pub kd: f64,
    /// Rows whose hard label counts (the CE term's denominator).
    pub ce: f64,
}

impl TokenCounts {
    /// The 1s of two `(N,)` masks, read back from their device.
    pub fn of_masks(kd_mask: &Tensor, ce_mask: &Tensor) -> Result<Self> {
        Ok(TokenCounts { kd: kd_mask.sum_all()?.to_scalar::<f32>()? as f64, ce: ce_mask.sum_all()?.to_scalar::<f32>()? as f64 })
    }
}

/// The combined loss (for backward) and its unweighted terms (for logs), all still on the
/// logits' device: a training step reads them once, after its last kernel is queued, instead
/// of waiting for the device in the middle of the step.
pub struct LossParts {
    pub total: Tensor,
    /// `(4,)` f32: forward KL, reverse KL, JSD and CE, 0 where not computed ([`LossTerms`]).
    pub terms: Tensor,
    pub kd_tokens: f64,
    pub ce_tokens: f64,
}

impl LossParts {
    /// The terms as numbers (waits for the device).
    pub fn terms(&self) -> Result<LossTerms> {
        LossTerms::read(&self.terms)
    }
}

/// The unweighted loss terms of [`LossParts::terms`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossTerms {
    pub forward_kl: f64,
    pub reverse_kl: f64,
    pub jsd: f64,
    pub ce: f64,
}

impl LossTerms {
    /// Reads a `(4,)` terms tensor (one of [`LossParts::terms`], or a sum of several).
    pub fn read(terms: &Tensor) -> Result<Self> {
        Ok(Self::from_values(&terms.to_dtype(DType::F32)?.to_vec1::<f32>()?))
    }

    /// The four values of a terms tensor, read back already.
    pub fn from_values(v: &[f32]) -> Self {
        LossTerms { forward_kl: v[0] as f64, reverse_kl: v[1] as f64, jsd: v[2] as f64, ce: v[3] as f64 }
    }
}

/// The weighted combination of the module docs on `(N, V)` logits. Terms whose weight is 0
/// are not computed, except forward KL and CE, which are always reported (held-out metrics);
/// pass `report_all = false` to skip unweighted terms during training.
pub fn distill_loss(logits: &Tensor, targets: &KdTargets, w: &LossWeights, report_all: bool) -> Result<LossParts> {
    distill_loss_over(logits, targets, w, report_all, None)
}

/// [`distill_loss`] with the masked means divided by `over` (a step's token counts over all
/// its micro-batches) instead of this batch's own counts: summing the results of a step's
/// micro-batches then gives the token-weighted mean over the whole step, and so the same
/// gradient as one batch holding all of them. The parts are this batch's share of that mean.
pub fn distill_loss_over(logits: &Tensor, targets: &KdTargets, w: &LossWeights, report_all: bool, over: Option<TokenCounts>) -> Result<LossParts> {
    let t2 = w.temperature * w.temperature;
    let TokenCounts { kd: kd_tokens, ce: ce_tokens } = targets.counts;
    let den = over.unwrap_or(targets.counts);
    let kd_mean = |rows: &Tensor| masked_sum_over(rows, &targets.kd_mask, den.kd);
    let zero = Tensor::zeros((), DType::F32, logits.device())?;
    let mut total = zero.clone();
    // forward KL, reverse KL, JSD, CE (LossTerms' order)
    let mut terms = [zero.clone(), zero.clone(), zero.clone(), zero];
    let need_kd = kd_tokens > 0.0 && (w.kd != 0.0 || w.reverse_kl != 0.0 || w.jsd != 0.0 || report_all);
    let need_ce = ce_tokens > 0.0 && (w.ce != 0.0 || report_all);
    // One pass over the (N, V) logits serves both the top-k and the sampled token: at T = 1 for
    // CE, and at T for chunk events.
    let mut ce_rows = None;
    let mut student_topk = None;
    let chunks = targets.chunks.as_ref().filter(|_| need_kd);
    if need_kd && ((need_ce && w.temperature == 1.0) || chunks.is_some()) {
        let k = targets.topk_ids.dim(1)?;
        let z = if w.temperature == 1.0 { logits.clone() } else { (logits.to_dtype(DType::F32)? / w.temperature)? }; // (N, V)
        let ids = Tensor::cat(&[&targets.topk_ids, &targets.sampled.unsqueeze(1)?], 1)?;
        let lq = crate::recompute::log_softmax_gather(&z, &ids)?; // (N, K+1)
        let sampled = lq.narrow(1, k, 1)?.squeeze(1)?; // (N,)
        if need_ce && w.temperature == 1.0 {
            ce_rows = Some(sampled.neg()?);
        }
        student_topk = Some(match chunks {
            Some(c) => with_chunk_events(&lq.narrow(1, 0, k)?, &sampled, c)?,
            None => lq.narrow(1, 0, k)?,
        });
    }
    if need_kd {
        let mask = targets.topk_mask.as_ref();
        let logp = teacher_log_probs(&targets.topk_logprobs, mask, w.capture_temperature, w.temperature)?;
        let logq = match &student_topk {
            Some(lq) => student_categories(lq, mask)?,
            None => student_log_probs(logits, &targets.topk_ids, mask, w.temperature)?,
        };
        if w.kd != 0.0 || report_all {
            let l = kd_mean(&forward_kl(&logp, &logq)?)?;
            terms[0] = l.detach();
            if w.kd != 0.0 {
                total = (total + (l * (w.kd * t2))?)?;
            }
        }
        if w.reverse_kl != 0.0 {
            let l = kd_mean(&reverse_kl(&logp, &logq)?)?;
            terms[1] = l.detach();
            total = (total + (l * (w.reverse_kl * t2))?)?;
        }
        if w.jsd != 0.0 {
            let l = kd_mean(&jsd(&logp, &logq, w.jsd_beta)?)?;
            terms[2] = l.detach();
            total = (total + (l * (w.jsd * t2))?)?;
        }
    }
    if need_ce {
        let rows = match ce_rows {
            Some(r) => r,
            None => cross_entropy(logits, &targets.sampled)?,
        };
        let l = masked_sum_over(&rows, &targets.ce_mask, den.ce)?;
        terms[3] = l.detach();
        if w.ce != 0.0 {
            total = (total + (l * w.ce)?)?;
        }
    }
    Ok(LossParts { total, terms: Tensor::stack(&terms, 0)?, kd_tokens, ce_tokens })
}
