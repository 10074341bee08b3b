//! The training loop, readable top to bottom (nanoGPT's shape):
//!
//! ```text
//! for step in start..steps:
//!     lr = lr_at(step)                                   pure function of the step
//!     for micro in 0..grad_accum:                        gradient accumulation
//!         batch = next batch in the seeded, length-bucketed order
//!         rows = model(batch.ids, dropout seeded by (seed, step, micro))     (B (T-1), C)
//!         loss = distill_loss(rows @ head^T: the logits of positions 0..T-1, (B (T-1), V),
//!                             one chunk of head_chunk_rows rows at a time; targets of tokens 1..T),
//!                masked means over the step's tokens (all micro-batches together)
//!         grads += d loss / d params
//!     clip grads to the global norm; AdamW update
//!     every log_every: a train line in metrics.jsonl; every eval_every: held-out KD and CE
//!     every checkpoint_every (and at the end): a checkpoint
//! ```
//!
//! A CE-only run (kd = 0) on packed raw text is the same path: its examples have no soft
//! labels, so only the hard-label term is computed. `metrics.jsonl` holds no timings, so an
//! interrupted-and-resumed run writes the same file as an uninterrupted one; throughput goes
//! to the returned report.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use distill_core::error::IoContext;
use distill_model::head_loss::{self, HeadRows};
use distill_model::loss::{self, LossWeights, TokenCounts};
use distill_model::nn::Dropout;
use distill_model::weights::fnv1a;
use distill_model::{CausalLm, TrainableLm};
use serde_json::json;

use crate::batch::{batch_count, epoch_batches, window_seed, Batch};
use crate::checkpoint::{self, CheckpointState, DataPosition, RngState};
use crate::config::Settings;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::optim::{clip_global_norm, AdamW};
use crate::schedule::lr_at;
use crate::source::Source;

pub const METRICS_FILE: &str = "metrics.jsonl";

/// How this invocation runs.
pub struct TrainRun<'a> {
    pub settings: &'a Settings,
    /// The `[train]` section as JSON, recorded in checkpoints; resume refuses a different one.
    pub train_config: serde_json::Value,
    /// Checkpoints and the running metrics file live here.
    pub scratch_dir: &'a Path,
    pub quiet: bool,
    /// Continue from the newest checkpoint when there is one.
    pub resume: bool,
    /// Stop after this many steps of this invocation, as if killed right after a checkpoint
    /// (tests and time-boxed runs; a checkpoint is written there).
    pub stop_after: Option<u64>,
}

/// Held-out losses, token-weighted over the validation split.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// Forward KL(teacher || student) on the top-k + tail distribution, at T = 1.
    pub kd: f64,
    /// Cross-entropy (NLL) of the teacher's tokens.
    pub ce: f64,
    pub kd_tokens: f64,
    pub ce_tokens: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Optimizer steps completed in total (including before a resume).
    pub steps: u64,
    pub completed: bool,
    pub resumed_from: Option<u64>,
    /// Real tokens processed by this invocation.
    pub tokens: u64,
    pub elapsed_secs: f64,
    pub tokens_per_sec: f64,
    pub final_train_loss: f64,
    pub last_eval: Option<EvalResult>,
}

/// The compute device a settings string names.
pub fn device(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = name.strip_prefix("cuda").map(|r| r.trim_start_matches(':')).map(|r| if r.is_empty() { Ok(0) } else { r.parse::<usize>() });
    match ordinal {
        Some(Ok(n)) => {
            let dev = Device::new_cuda(n).map_err(|source| Error::CudaDevice { name: name.to_string(), source })?;
            disable_event_tracking(&dev);
            keep_freed_device_memory(&dev)?;
            Ok(dev)
        }
        _ => Err(Error::UnknownDevice { name: name.to_string() }),
    }
}

/// cudarc records CUDA events on every tensor use so that tensors can be shared between
/// streams; the trainer runs on one stream, where that is pure per-op host overhead.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
fn disable_event_tracking(dev: &Device) {
    if let Device::Cuda(d) = dev {
        // SAFETY: every tensor of this process lives on this device's single stream.
        unsafe { d.disable_event_tracking() }
    }
}

#[cfg(not(feature = "cuda"))]
fn disable_event_tracking(_: &Device) {}

/// cudarc allocates through the device's stream-ordered memory pool, whose release threshold
/// is 0 by default: at every synchronisation the pool hands all freed memory back to the
/// driver, so each training step maps its ~20 GB of activations afresh. A threshold of
/// "never" keeps freed blocks for reuse, as PyTorch's caching allocator does.
/// `DISTILL_CUDA_POOL_RELEASE=1` restores the driver's default (for benchmarks).
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
fn keep_freed_device_memory(dev: &Device) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let Device::Cuda(d) = dev else { return Ok(()) };
    if std::env::var("DISTILL_CUDA_POOL_RELEASE").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    let cu_device = d.cuda_stream().context().cu_device();
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: plain driver calls on a live device; `threshold` outlives the call that reads it.
    let status = unsafe {
        let r = sys::cuDeviceGetDefaultMemPool(&mut pool, cu_device);
        if r != sys::CUresult::CUDA_SUCCESS {
            r
        } else {
            sys::cuMemPoolSetAttribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, (&mut threshold as *mut u64).cast())
        }
    };
    if status != sys::CUresult::CUDA_SUCCESS {
        return Err(Error::CudaMemoryPool { status: format!("{status:?}") });
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn keep_freed_device_memory(_: &Device) -> Result<()> {
    Ok(())
}

/// Evaluates `examples` in fixed order (window by window, each sorted by length),
/// token-weighted; at most `max_batches` batches (0 = all).
pub fn evaluate(model: &CausalLm, examples: &dyn Source, batch_size: usize, max_batches: usize, capture_t: f64) -> Result<EvalResult> {
    let w = LossWeights { kd: 0.0, reverse_kl: 0.0, jsd: 0.0, jsd_beta: 0.5, ce: 0.0, temperature: 1.0, capture_temperature: capture_t };
    let (mut kd, mut ce, mut kd_n, mut ce_n) = (0.0, 0.0, 0.0, 0.0);
    let mut batches = 0;
    'windows: for window in examples.windows(0, None) {
        let loaded = examples.load(&window)?;
        let mut order: Vec<usize> = (0..loaded.len()).collect();
        order.sort_by_key(|&i| (loaded[i].len(), i));
        for chunk in order.chunks(batch_size.max(1)) {
            if max_batches > 0 && batches >= max_batches {
                break 'windows;
            }
            batches += 1;
            let chunk: Vec<&Example> = chunk.iter().map(|&i| &loaded[i]).collect();
            let batch = Batch::new(&chunk, model.device())?;
            let logits = flat_logits(&model.forward_next_native(&batch.ids, None)?.to_dtype(DType::F32)?)?;
            let parts = loss::distill_loss(&logits, &batch.targets, &w, true)?;
            let terms = parts.terms()?;
            kd += terms.forward_kl * parts.kd_tokens;
            ce += terms.ce * parts.ce_tokens;
            kd_n += parts.kd_tokens;
            ce_n += parts.ce_tokens;
        }
    }
    Ok(EvalResult { kd: kd / kd_n.max(1.0), ce: ce / ce_n.max(1.0), kd_tokens: kd_n, ce_tokens: ce_n })
}

/// (B, T-1, V) logits predicting tokens 1..T -> (B (T-1), V) rows.
fn flat_logits(logits: &Tensor) -> candle_core::Result<Tensor> {
    logits.flatten_to(1)
}

/// Deals out micro-batches in the seeded order, across epochs, one window of the source in
/// memory at a time (see [`crate::source`]).
pub struct Feeder<'a> {
    src: &'a dyn Source,
    batch_size: usize,
    seed: u64,
    /// The next batch to deal.
    pos: DataPosition,
    /// The loaded window's examples and batches.
    loaded: Vec<Example>,
    batches: Vec<Vec<usize>>,
    /// Epoch batch index of `batches[0]`.
    first: usize,
    /// A step's micro-batches built ahead ([`Feeder::prefetch`]), and the position before them.
    ahead: Option<(DataPosition, Vec<Batch>)>,
}

impl<'a> Feeder<'a> {
    pub fn new(src: &'a dyn Source, batch_size: usize, seed: u64, pos: DataPosition) -> Result<Self> {
        let mut f = Feeder { src, batch_size, seed, pos, loaded: Vec::new(), batches: Vec::new(), first: 0, ahead: None };
        f.seek()?;
        Ok(f)
    }

    /// Loads the window holding batch `pos.batch` of `pos.epoch` (the next epoch's first
    /// batch when the epoch is over), skipping earlier windows by their batch counts.
    fn seek(&mut self) -> Result<()> {
        loop {
            let mut first = 0;
            for (w, window) in self.src.windows(self.seed, Some(self.pos.epoch)).iter().enumerate() {
                let n = batch_count(window.len(), self.batch_size);
                if self.pos.batch < first + n {
                    self.first = first;
                    self.loaded = self.src.load(window)?;
                    let lengths: Vec<usize> = self.loaded.iter().map(Example::len).collect();
                    self.batches = epoch_batches(&lengths, self.batch_size, window_seed(self.seed, w), self.pos.epoch);
                    return Ok(());
                }
                first += n;
            }
            if first == 0 {
                return Err(Error::NoTrainingExamples);
            }
            self.pos = DataPosition { epoch: self.pos.epoch + 1, batch: 0 };
        }
    }

    /// The next micro-batch's examples.
    pub fn next_batch(&mut self) -> Result<Vec<Example>> {
        if self.pos.batch >= self.first + self.batches.len() {
            self.seek()?;
        }
        let b = self.batches[self.pos.batch - self.first].iter().map(|&i| self.loaded[i].clone()).collect();
        self.pos.batch += 1;
        Ok(b)
    }

    /// Where the next batch not yet trained on comes from (what a checkpoint records): before
    /// the batches built ahead, if any.
    pub fn position(&self) -> DataPosition {
        self.ahead.as_ref().map_or(self.pos, |(before, _)| *before)
    }

    /// The next step's `n` micro-batches on `device`: the ones built ahead, else built now.
    pub fn step_batches(&mut self, n: usize, device: &Device) -> Result<Vec<Batch>> {
        match self.ahead.take() {
            Some((_, batches)) => Ok(batches),
            None => (0..n).map(|_| Batch::new(&self.next_batch()?.iter().collect::<Vec<_>>(), device)).collect(),
        }
    }

    /// Builds the next step's `n` micro-batches now: host work (examples copied, arrays built,
    /// uploads queued) that the caller overlaps with the device's work on the current step.
    pub fn prefetch(&mut self, n: usize, device: &Device) -> Result<()> {
        let before = self.position();
        let batches = self.step_batches(n, device)?;
        self.ahead = Some((before, batches));
        Ok(())
    }
}

/// Trains `lm` on `train`, evaluating on `validation` (see the module docs); writes checkpoints
/// and `metrics.jsonl` into the scratch folder.
pub fn train(lm: &TrainableLm, train: &dyn Source, validation: &dyn Source, run: &TrainRun) -> Result<TrainReport> {
    let s = run.settings;
    if train.is_empty() {
        return Err(Error::NoTrainingExamples);
    }
    let device = lm.model.device().clone();
    let mut opt = AdamW::new(lm.vars(), s.adamw)?;
    let metrics_path = run.scratch_dir.join(METRICS_FILE);
    std::fs::create_dir_all(run.scratch_dir).at(run.scratch_dir)?;

    let mut start = 0u64;
    // Tokens trained on by the invocations before this one (from the checkpoint resumed).
    let mut tokens_before = 0u64;
    let mut pos = DataPosition::default();
    let mut resumed_from = None;
    let resume_from = if run.resume { checkpoint::latest(run.scratch_dir) } else { None };
    if let Some((step, dir)) = resume_from {
        let state = checkpoint::load(&dir, lm, &mut opt, &device)?;
        if state.train_config != run.train_config {
            return Err(Error::Checkpoint { path: dir, message: "was made with a different [train] config; restore that config, or run without --resume to start over".into() });
        }
        start = state.step;
        tokens_before = state.tokens_seen;
        pos = state.data;
        resumed_from = Some(step);
        keep_metrics_up_to(&metrics_path, step)?;
        tracing::info!(step, "resumed from {}", dir.display());
    } else {
        if run.resume {
            tracing::info!("--resume: no checkpoint in {}, starting from step 0", run.scratch_dir.display());
        }
        let ckpts = checkpoint::checkpoints_dir(run.scratch_dir);
        if ckpts.exists() {
            std::fs::remove_dir_all(&ckpts).at(&ckpts)?;
        }
        std::fs::write(&metrics_path, b"").at(&metrics_path)?;
    }
    let mut metrics = std::fs::OpenOptions::new().append(true).open(&metrics_path).at(&metrics_path)?;
    let mut log = |v: serde_json::Value| -> Result<()> { Ok(writeln!(metrics, "{v}").at(&metrics_path)?) };

    let mut feeder = Feeder::new(train, s.batch_size, s.seed, pos)?;
    let bar = distill_core::progress::bar(s.steps, "train", run.quiet);
    bar.set_position(start);
    let t0 = Instant::now();
    let mut tokens = 0u64;
    let mut final_loss = f64::NAN;
    let mut last_eval = None;
    let mut step = start;
    while step < s.steps {
        let lr = lr_at(step, &s.schedule);
        let last = step + 1 == s.steps || run.stop_after.is_some_and(|n| step + 1 - start >= n);
        let out = optimizer_step(lm, &mut opt, &mut feeder, s, step, !last)?;
        let StepOutcome { total, forward_kl: fkl, reverse_kl: rkl, jsd, ce, grad_norm, .. } = out;
        tokens += out.tokens;
        step += 1;
        final_loss = total;
        if !total.is_finite() {
            return Err(Error::Diverged { loss: total, step });
        }
        if every(step, s.log_every) || step == s.steps {
            log(json!({"kind": "train", "step": step, "lr": lr, "loss": total, "forward_kl": fkl, "reverse_kl": rkl, "jsd": jsd, "ce": ce, "grad_norm": grad_norm}))?;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        bar.set_position(step);
        bar.set_message(format!("loss {total:.4} {:.0} tok/s", tokens as f64 / elapsed.max(1e-9)));
        let at_end = step == s.steps;
        if !validation.is_empty() && (every(step, s.eval_every) || at_end) {
            let e = evaluate(&lm.model, validation, s.batch_size, s.eval_batches, s.loss.capture_temperature)?;
            log(json!({"kind": "eval", "step": step, "val_kd": e.kd, "val_ce": e.ce, "kd_tokens": e.kd_tokens, "ce_tokens": e.ce_tokens}))?;
            tracing::info!(step, val_kd = e.kd, val_ce = e.ce, "held-out");
            last_eval = Some(e);
        }
        let stopping = run.stop_after.is_some_and(|n| step - start >= n);
        if every(step, s.checkpoint_every) || at_end || stopping {
            let state = CheckpointState {
                step,
                adam_t: opt.t,
                data: feeder.position(),
                rng: RngState { scheme: "derived(seed, step, micro)".into(), seed: s.seed, next_step: step },
                tokens_seen: tokens_before + tokens,
                train_config: run.train_config.clone(),
                model_config: lm.model.config().to_json(),
            };
            checkpoint::save(run.scratch_dir, &state, lm, &opt, s.keep_last)?;
        }
        if stopping && !at_end {
            break;
        }
    }
    bar.finish_and_clear();
    let elapsed_secs = t0.elapsed().as_secs_f64();
    Ok(TrainReport {
        steps: step,
        completed: step == s.steps,
        resumed_from,
        tokens,
        elapsed_secs,
        tokens_per_sec: tokens as f64 / elapsed_secs.max(1e-9),
        final_train_loss: final_loss,
        last_eval,
    })
}

/// What one optimizer step did: losses token-weighted over its micro-batches, the gradient norm
/// before clipping, and the real tokens it consumed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepOutcome {
    pub total: f64,
    pub forward_kl: f64,
    pub reverse_kl: f64,
    pub jsd: f64,
    pub ce: f64,
    pub grad_norm: f64,
    pub tokens: u64,
}

/// One optimizer step: `grad_accum` micro-batches forward and backward (in bf16 over the
/// optimizer's compute copies when configured, see [`AdamW::compute_copies`]; the loss is
/// always f32), gradients summed (in f32 over several micro-batches), clipped to the global
/// norm, AdamW at the schedule's rate for `step` on the f32 masters.
///
/// The step waits for the device once, at its end: the losses stay on the device until the
/// update is queued, and with `prefetch_next` the next step's batches are built on the host
/// while the device still runs this one (on a GPU that host work otherwise left it idle).
pub(crate) fn optimizer_step(lm: &TrainableLm, opt: &mut AdamW, feeder: &mut Feeder, s: &Settings, step: u64, prefetch_next: bool) -> Result<StepOutcome> {
    optimizer_step_timed(lm, opt, feeder, s, step, prefetch_next, None)
}

/// Seconds per phase of a step, summed over steps (`distill train --bench`, where each phase
/// ends with a device synchronisation so the time is the GPU's, not the launch queue's).
pub(crate) type PhaseTimes = std::collections::BTreeMap<&'static str, f64>;

/// Ends phases of a step: with somewhere to put them, syncs the device and adds the seconds
/// since the last mark; without, does nothing (no synchronisation in normal training).
struct PhaseClock<'a> {
    device: Device,
    since: Instant,
    phases: Option<&'a mut PhaseTimes>,
}

impl PhaseClock<'_> {
    fn mark(&mut self, name: &'static str) -> Result<()> {
        if let Some(p) = self.phases.as_deref_mut() {
            self.device.synchronize()?;
            *p.entry(name).or_insert(0.0) += self.since.elapsed().as_secs_f64();
            self.since = Instant::now();
        }
        Ok(())
    }
}

/// [`optimizer_step`], timing its phases into `phases` when given.
pub(crate) fn optimizer_step_timed(
    lm: &TrainableLm,
    opt: &mut AdamW,
    feeder: &mut Feeder,
    s: &Settings,
    step: u64,
    prefetch_next: bool,
    phases: Option<&mut PhaseTimes>,
) -> Result<StepOutcome> {
    let device = lm.model.device().clone();
    let mut clock = PhaseClock { device: device.clone(), since: Instant::now(), phases };
    // In bf16, the graph's leaves are the optimizer's compute copies (cast once, then rewritten
    // by each update), so their gradients come back in bf16 with no cast kernels either way.
    let (bf16_view, leaves) = if s.bf16 {
        let copies = opt.compute_copies(DType::BF16)?;
        (Some(lm.view_over(copies.clone(), DType::BF16)?), copies)
    } else {
        (None, opt.params().to_vec())
    };
    clock.mark("cast weights")?;
    let model = bf16_view.as_ref().unwrap_or(&lm.model);
    let batches = feeder.step_batches(s.grad_accum, &device)?;
    clock.mark("batch")?;
    let (mut grads, losses) = accumulate(model, &leaves, &batches, s, step, &mut clock)?;
    let norm = clip_global_norm(&mut grads, s.grad_clip)?;
    clock.mark("clip")?;
    opt.step_clipped(&grads, lr_at(step, &s.schedule), &norm)?;
    drop(grads);
    clock.mark("adamw")?;
    if prefetch_next {
        feeder.prefetch(s.grad_accum, &device)?;
        clock.mark("batch")?;
    }
    losses.read(norm.value()?)
}

/// A step's losses summed over its micro-batches, still on the device, and its real tokens.
struct StepLosses {
    /// The combined loss, a scalar.
    total: Tensor,
    /// `(4,)`: [`loss::LossTerms`].
    terms: Tensor,
    tokens: u64,
}

impl StepLosses {
    /// The numbers (waits for the device).
    fn read(self, grad_norm: f64) -> Result<StepOutcome> {
        // One read from the device: the total and the terms side by side.
        let v = Tensor::cat(&[self.total.reshape(1)?, self.terms.to_dtype(DType::F32)?], 0)?.to_vec1::<f32>()?;
        let (total, t) = (v[0] as f64, loss::LossTerms::from_values(&v[1..]));
        Ok(StepOutcome { total, forward_kl: t.forward_kl, reverse_kl: t.reverse_kl, jsd: t.jsd, ce: t.ce, grad_norm, tokens: self.tokens })
    }
}

/// Forward and backward over a step's micro-batches, the gradients of `params` summed. The
/// loss is token-weighted over the whole step (every micro-batch's masked means divide by
/// the step's token counts), so the sum is the gradient one batch of all of them would give.
fn accumulate(model: &CausalLm, params: &[(String, Var)], batches: &[Batch], s: &Settings, step: u64, clock: &mut PhaseClock) -> Result<(HashMap<String, Tensor>, StepLosses)> {
    let over = TokenCounts { kd: batches.iter().map(|b| b.targets.counts.kd).sum(), ce: batches.iter().map(|b| b.targets.counts.ce).sum() };
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let mut sum: Option<StepLosses> = None;
    for (micro, batch) in batches.iter().enumerate() {
        let mut dropout = Dropout::new(s.seed ^ fnv1a(&format!("dropout/{step}/{micro}")));
        let loss_of = |rows: &HeadRows| head_loss::distill_loss_chunked(rows, &batch.targets, &s.loss, false, Some(over), s.head_chunk_rows);
        let (parts, micro_grads) = if s.activation_checkpointing {
            let vars: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
            let ck = distill_model::checkpoint::forward_backward(model, &batch.ids, Some(&mut dropout), &vars, |rows| {
                let parts = loss_of(rows)?;
                Ok((parts.total.clone(), parts))
            })?;
            clock.mark("forward+backward (checkpointed)")?;
            let grads = params.iter().filter_map(|(name, v)| ck.grads.get(&v.id()).map(|g| (name, g.clone()))).collect::<Vec<_>>();
            (ck.extra, grads)
        } else {
            let rows = model.forward_next_head(&batch.ids, Some(&mut dropout))?;
            clock.mark("forward")?;
            let parts = loss_of(&rows)?;
            clock.mark("loss")?;
            let store = parts.total.backward()?;
            clock.mark("backward")?;
            let grads = params.iter().filter_map(|(name, v)| store.get(v.as_tensor()).map(|g| (name, g.clone()))).collect::<Vec<_>>();
            (parts, grads)
        };
        for (name, g) in micro_grads {
            // Summed over micro-batches in f32 (bf16 copies' gradients come in bf16).
            let g = if batches.len() > 1 { g.to_dtype(DType::F32)? } else { g };
            // Detached: a weight's gradient still refers to its micro-batch's backward graph,
            // which would keep every micro-batch's activations alive until the step.
            let g = match grads.remove(name) {
                Some(acc) => (acc + g)?.detach(),
                None => g.detach(),
            };
            grads.insert(name.clone(), g);
        }
        let (total, terms, tokens) = (parts.total.detach(), parts.terms, batch.tokens as u64);
        sum = Some(match sum {
            None => StepLosses { total, terms, tokens },
            Some(acc) => StepLosses { total: (acc.total + total)?, terms: (acc.terms + terms)?, tokens: acc.tokens + tokens },
        });
    }
    clock.mark("accumulate")?;
    let losses = sum.ok_or(Error::NoTrainingExamples)?;
    Ok((grads, losses))
}

/// Whether `step` is a multiple of a positive `n` (0 = never).
fn every(step: u64, n: u64) -> bool {
    n > 0 && step.is_multiple_of(n)
}

/// Drops metric lines written after `step` (a resumed run rewrites them).
fn keep_metrics_up_to(path: &Path, step: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: String =
        text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step)).map(|l| format!("{l}\n")).collect();
    Ok(std::fs::write(path, kept).at(path)?)
}

#[cfg(test)]
mod tests {
    use distill_model::config::ModelConfig;

    use super::*;
    use crate::config::TrainConfig;

    /// A completion of `len` tokens after a 3-token prompt, with a top-2 soft label on each
    /// completion position; ids and log-probs vary with `seed`.
    fn example(id: &str, len: usize, seed: u32) -> Example {
        let n = 3 + len;
        let input_ids: Vec<u32> = (0..n as u32).map(|i| 5 + (i * 7 + seed * 13) % 90).collect();
        let loss_mask = (0..n).map(|i| u8::from(i >= 3)).collect();
        let topk_ids = (0..n).map(|i| if i >= 3 { vec![input_ids[i], 1 + (i as u32 + seed) % 90] } else { vec![] }).collect();
        let topk_logprobs = (0..n).map(|i| if i >= 3 { vec![-0.2 - 0.01 * (i as f32), -2.0] } else { vec![] }).collect();
        Example { id: id.into(), input_ids, loss_mask, topk_ids, topk_logprobs, hard_label_only: false, chunks: Vec::new() }
    }

    fn gradients(lm: &TrainableLm, s: &Settings, batches: &[Batch]) -> (HashMap<String, Tensor>, StepOutcome) {
        let mut clock = PhaseClock { device: Device::Cpu, since: Instant::now(), phases: None };
        let (grads, losses) = accumulate(&lm.model, &lm.vars(), batches, s, 0, &mut clock).unwrap();
        (grads, losses.read(0.0).unwrap())
    }

    /// Regression: micro-batch losses were each averaged over their own tokens and the means
    /// averaged, so with micro-batches of unequal length a token of the short one weighed more
    /// than a token of the long one, and `grad_accum = 2` did not train like a batch twice the
    /// size. Now both give the same loss and gradients.
    #[test]
    fn accumulated_micro_batches_weigh_every_token_equally() {
        let lm = TrainableLm::init(&ModelConfig::preset("llama-nano").unwrap(), &Device::Cpu, 3).unwrap();
        let cfg = TrainConfig { grad_accum: 2, ..TrainConfig::default() };
        let s = cfg.settings("test.toml", Some(1.0)).unwrap();
        let (long_a, long_b, short_a, short_b) = (example("a", 40, 1), example("b", 37, 2), example("c", 4, 3), example("d", 6, 4));
        let micro = [Batch::new(&[&long_a, &long_b], &Device::Cpu).unwrap(), Batch::new(&[&short_a, &short_b], &Device::Cpu).unwrap()];
        let whole = [Batch::new(&[&long_a, &long_b, &short_a, &short_b], &Device::Cpu).unwrap()];
        let (g_micro, out_micro) = gradients(&lm, &s, &micro);
        let (g_whole, out_whole) = gradients(&lm, &s, &whole);

        assert!((out_micro.total - out_whole.total).abs() < 1e-5 * out_whole.total.abs(), "{} vs {}", out_micro.total, out_whole.total);
        assert!((out_micro.forward_kl - out_whole.forward_kl).abs() < 1e-5 * out_whole.forward_kl.abs());
        assert_eq!(out_micro.tokens, out_whole.tokens);
        assert_eq!(g_micro.len(), g_whole.len());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (name, gw) in &g_whole {
            let (a, b) = (flat(&g_micro[name]), flat(gw));
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(scale > 0.0, "{name}: zero gradient");
            assert!(diff <= 1e-4 * scale, "{name}: accumulated gradient differs by {diff} (max |g| {scale})");
        }

        // The mean of per-micro-batch means (the old rule) is measurably different here.
        let own = |b: &Batch| loss::distill_loss(&flat_logits(&lm.model.forward_next_native(&b.ids, None).unwrap()).unwrap(), &b.targets, &s.loss, false).unwrap();
        let mean_of_means = micro.iter().map(|b| own(b).total.to_scalar::<f32>().unwrap() as f64).sum::<f64>() / 2.0;
        assert!((mean_of_means - out_whole.total).abs() > 1e-3 * out_whole.total.abs(), "test data too uniform to tell the rules apart");
    }

    /// `activation_checkpointing = true` trains on the same loss and gradients, micro-batches
    /// and chunk events included.
    #[test]
    fn activation_checkpointing_gives_the_same_step() {
        let lm = TrainableLm::init(&ModelConfig::preset("llama-nano").unwrap(), &Device::Cpu, 3).unwrap();
        let plain = TrainConfig { grad_accum: 2, ..TrainConfig::default() }.settings("test.toml", Some(1.0)).unwrap();
        let ck = Settings { activation_checkpointing: true, ..plain.clone() };
        let mut chunked = example("c", 12, 3);
        (chunked.chunks, chunked.topk_ids[6], chunked.topk_logprobs[6]) = (vec![(5, 2)], vec![], vec![]);
        let micro = [Batch::new(&[&example("a", 20, 1), &example("b", 17, 2)], &Device::Cpu).unwrap(), Batch::new(&[&chunked], &Device::Cpu).unwrap()];
        let (g_plain, out_plain) = gradients(&lm, &plain, &micro);
        let (g_ck, out_ck) = gradients(&lm, &ck, &micro);
        assert!((out_plain.total - out_ck.total).abs() < 1e-6 * out_plain.total.abs(), "{} vs {}", out_plain.total, out_ck.total);
        assert_eq!(g_plain.len(), g_ck.len());
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (name, g) in &g_plain {
            let (a, b) = (flat(g), flat(&g_ck[name]));
            let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff <= 1e-5 * scale.max(1e-3), "{name}: checkpointed gradient differs by {diff} (max |g| {scale})");
        }
    }
}
