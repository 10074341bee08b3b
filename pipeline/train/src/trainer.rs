//! The training loop, readable top to bottom (nanoGPT's shape):
//!
//! ```text
//! for step in start..steps:
//!     lr = lr_at(step)                                   pure function of the step
//!     for micro in 0..grad_accum:                        gradient accumulation
//!         batch = next batch in the seeded, length-bucketed order
//!         logits = model(batch.ids, dropout seeded by (seed, step, micro))   (B, T-1, V)
//!         loss = distill_loss(logits at positions 0..T-1, targets of tokens 1..T) / grad_accum
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

use candle_core::{DType, Device, Tensor};
use distill_model::loss::{self, LossWeights};
use distill_model::nn::Dropout;
use distill_model::weights::fnv1a;
use distill_model::{CausalLm, TrainableLm};
use serde_json::json;

use crate::batch::{epoch_batches, Batch};
use crate::checkpoint::{self, CheckpointState, DataPosition, RngState};
use crate::config::Settings;
use crate::data::{Dataset, Example};
use crate::error::{Error, Result};
use crate::optim::{clip_global_norm, AdamW};
use crate::schedule::lr_at;

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
            let dev = Device::new_cuda(n).map_err(|e| Error::Other(format!("device '{name}': {e} (build with `--features cuda`, see `make cuda`)")))?;
            disable_event_tracking(&dev);
            keep_freed_device_memory(&dev)?;
            Ok(dev)
        }
        _ => Err(Error::Other(format!("device '{name}': use \"cpu\" or \"cuda[:N]\""))),
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
        return Err(Error::Other(format!("cuda memory pool: {status:?}")));
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn keep_freed_device_memory(_: &Device) -> Result<()> {
    Ok(())
}

/// Evaluates `examples` in fixed order (sorted by length), token-weighted.
pub fn evaluate(model: &CausalLm, examples: &[Example], batch_size: usize, max_batches: usize, capture_t: f64) -> Result<EvalResult> {
    let w = LossWeights { kd: 0.0, reverse_kl: 0.0, jsd: 0.0, jsd_beta: 0.5, ce: 0.0, temperature: 1.0, capture_temperature: capture_t };
    let mut order: Vec<&Example> = examples.iter().collect();
    order.sort_by(|a, b| (a.len(), &a.id).cmp(&(b.len(), &b.id)));
    let (mut kd, mut ce, mut kd_n, mut ce_n) = (0.0, 0.0, 0.0, 0.0);
    for (i, chunk) in order.chunks(batch_size.max(1)).enumerate() {
        if max_batches > 0 && i >= max_batches {
            break;
        }
        let batch = Batch::new(chunk, model.device())?;
        let logits = flat_logits(&model.forward_next_native(&batch.ids, None)?.to_dtype(DType::F32)?)?;
        let parts = loss::distill_loss(&logits, &batch.targets, &w, true)?;
        kd += parts.forward_kl * parts.kd_tokens;
        ce += parts.ce * parts.ce_tokens;
        kd_n += parts.kd_tokens;
        ce_n += parts.ce_tokens;
    }
    Ok(EvalResult { kd: kd / kd_n.max(1.0), ce: ce / ce_n.max(1.0), kd_tokens: kd_n, ce_tokens: ce_n })
}

/// (B, T-1, V) logits predicting tokens 1..T -> (B (T-1), V) rows.
fn flat_logits(logits: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    Ok(logits.reshape((b * t, v))?)
}

/// Deals out micro-batches in the seeded order, across epochs.
pub(crate) struct Feeder<'a> {
    data: &'a [Example],
    lengths: Vec<usize>,
    batch_size: usize,
    seed: u64,
    pos: DataPosition,
    order: Vec<Vec<usize>>,
}

impl<'a> Feeder<'a> {
    pub(crate) fn new(data: &'a [Example], batch_size: usize, seed: u64, pos: DataPosition) -> Self {
        let lengths: Vec<usize> = data.iter().map(Example::len).collect();
        let order = epoch_batches(&lengths, batch_size, seed, pos.epoch);
        Feeder { data, lengths, batch_size, seed, pos, order }
    }

    fn next(&mut self) -> Vec<&'a Example> {
        if self.pos.batch >= self.order.len() {
            self.pos = DataPosition { epoch: self.pos.epoch + 1, batch: 0 };
            self.order = epoch_batches(&self.lengths, self.batch_size, self.seed, self.pos.epoch);
        }
        let b = self.order[self.pos.batch].iter().map(|&i| &self.data[i]).collect();
        self.pos.batch += 1;
        b
    }
}

/// Trains `lm` on `data` (see the module docs); writes checkpoints and `metrics.jsonl` into
/// the scratch folder.
pub fn train(lm: &TrainableLm, data: &Dataset, run: &TrainRun) -> Result<TrainReport> {
    let s = run.settings;
    if data.train.is_empty() {
        return Err(Error::Other("no training examples (are the shards empty, or every row skipped?)".into()));
    }
    let device = lm.model.device().clone();
    let mut opt = AdamW::new(lm.vars(), s.adamw)?;
    let metrics_path = run.scratch_dir.join(METRICS_FILE);
    std::fs::create_dir_all(run.scratch_dir).map_err(|e| Error::Other(format!("{}: {e}", run.scratch_dir.display())))?;

    let mut start = 0u64;
    let mut pos = DataPosition::default();
    let mut resumed_from = None;
    let resume_from = if run.resume { checkpoint::latest(run.scratch_dir) } else { None };
    if let Some((step, dir)) = resume_from {
        let state = checkpoint::load(&dir, lm, &mut opt, &device)?;
        if state.train_config != run.train_config {
            return Err(Error::Checkpoint {
                path: dir,
                message: "was made with a different [train] config; restore that config, or run without --resume to start over".into(),
            });
        }
        start = state.step;
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
            std::fs::remove_dir_all(&ckpts).map_err(|e| Error::Other(format!("{}: {e}", ckpts.display())))?;
        }
        std::fs::write(&metrics_path, b"").map_err(|e| Error::Other(format!("{}: {e}", metrics_path.display())))?;
    }
    let mut metrics = std::fs::OpenOptions::new().append(true).open(&metrics_path).map_err(|e| Error::Other(format!("{}: {e}", metrics_path.display())))?;
    let mut log = |v: serde_json::Value| -> Result<()> {
        writeln!(metrics, "{v}").map_err(|e| Error::Other(format!("{}: {e}", metrics_path.display())))
    };

    let mut feeder = Feeder::new(&data.train, s.batch_size, s.seed, pos);
    let bar = distill_core::progress::bar(s.steps, "train", run.quiet);
    bar.set_position(start);
    let t0 = Instant::now();
    let mut tokens = 0u64;
    let mut final_loss = f64::NAN;
    let mut last_eval = None;
    let mut step = start;
    while step < s.steps {
        let lr = lr_at(step, &s.schedule);
        let out = optimizer_step(lm, &mut opt, &mut feeder, s, step, lr)?;
        let StepOutcome { total, forward_kl: fkl, reverse_kl: rkl, jsd, ce, grad_norm, .. } = out;
        tokens += out.tokens;
        step += 1;
        final_loss = total;
        if !total.is_finite() {
            return Err(Error::Other(format!("loss became {total} at step {step}; lower [train.optimizer] lr or check the shards")));
        }
        if every(step, s.log_every) || step == s.steps {
            log(json!({"kind": "train", "step": step, "lr": lr, "loss": total, "forward_kl": fkl, "reverse_kl": rkl, "jsd": jsd, "ce": ce, "grad_norm": grad_norm}))?;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        bar.set_position(step);
        bar.set_message(format!("loss {total:.4} {:.0} tok/s", tokens as f64 / elapsed.max(1e-9)));
        let at_end = step == s.steps;
        if !data.validation.is_empty() && (every(step, s.eval_every) || at_end) {
            let e = evaluate(&lm.model, &data.validation, s.batch_size, s.eval_batches, s.loss.capture_temperature)?;
            log(json!({"kind": "eval", "step": step, "val_kd": e.kd, "val_ce": e.ce, "kd_tokens": e.kd_tokens, "ce_tokens": e.ce_tokens}))?;
            tracing::info!(step, val_kd = e.kd, val_ce = e.ce, "held-out");
            last_eval = Some(e);
        }
        let stopping = run.stop_after.is_some_and(|n| step - start >= n);
        if every(step, s.checkpoint_every) || at_end || stopping {
            let state = CheckpointState {
                step,
                adam_t: opt.t,
                data: feeder.pos,
                rng: RngState { scheme: "derived(seed, step, micro)".into(), seed: s.seed, next_step: step },
                tokens_seen: tokens,
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

/// What one optimizer step did: losses averaged over its micro-batches, the gradient norm
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

/// One optimizer step: `grad_accum` micro-batches forward and backward (in bf16 through
/// [`TrainableLm::compute_view`] when configured; the loss is always f32), gradients summed
/// on the f32 master weights, clipped to the global norm, AdamW at `lr`.
pub(crate) fn optimizer_step(lm: &TrainableLm, opt: &mut AdamW, feeder: &mut Feeder, s: &Settings, step: u64, lr: f64) -> Result<StepOutcome> {
    optimizer_step_timed(lm, opt, feeder, s, step, lr, None)
}

/// Seconds per phase of a step, summed over steps (`distill train --bench`, where each phase
/// ends with a device synchronisation so the time is the GPU's, not the launch queue's).
pub(crate) type PhaseTimes = std::collections::BTreeMap<&'static str, f64>;

/// [`optimizer_step`], timing its phases into `phases` when given.
pub(crate) fn optimizer_step_timed(
    lm: &TrainableLm,
    opt: &mut AdamW,
    feeder: &mut Feeder,
    s: &Settings,
    step: u64,
    lr: f64,
    mut phases: Option<&mut PhaseTimes>,
) -> Result<StepOutcome> {
    let device = lm.model.device().clone();
    let mut clock = Instant::now();
    let mut mark = |name: &'static str, phases: &mut Option<&mut PhaseTimes>| -> Result<()> {
        if let Some(p) = phases.as_deref_mut() {
            device.synchronize()?;
            *p.entry(name).or_insert(0.0) += clock.elapsed().as_secs_f64();
            clock = Instant::now();
        }
        Ok(())
    };
    let bf16_view = if s.bf16 { Some(lm.compute_view(DType::BF16)?) } else { None };
    mark("cast weights", &mut phases)?;
    let model = bf16_view.as_ref().unwrap_or(&lm.model);
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    let mut out = StepOutcome { total: 0.0, forward_kl: 0.0, reverse_kl: 0.0, jsd: 0.0, ce: 0.0, grad_norm: 0.0, tokens: 0 };
    for micro in 0..s.grad_accum {
        let examples = feeder.next();
        let batch = Batch::new(&examples, &device)?;
        out.tokens += batch.tokens as u64;
        mark("batch", &mut phases)?;
        let mut dropout = Dropout::new(s.seed ^ fnv1a(&format!("dropout/{step}/{micro}")));
        let logits = flat_logits(&model.forward_next_native(&batch.ids, Some(&mut dropout))?)?;
        mark("forward", &mut phases)?;
        let parts = loss::distill_loss(&logits, &batch.targets, &s.loss, false)?;
        let scaled = (&parts.total / s.grad_accum as f64)?;
        mark("loss", &mut phases)?;
        let store = scaled.backward()?;
        mark("backward", &mut phases)?;
        for (name, var) in opt.params() {
            if let Some(g) = store.get(var.as_tensor()) {
                let g = match grads.remove(name) {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                };
                grads.insert(name.clone(), g);
            }
        }
        let n = s.grad_accum as f64;
        out.total += parts.total.to_scalar::<f32>()? as f64 / n;
        out.forward_kl += parts.forward_kl / n;
        out.reverse_kl += parts.reverse_kl / n;
        out.jsd += parts.jsd / n;
        out.ce += parts.ce / n;
    }
    mark("accumulate", &mut phases)?;
    let norm = clip_global_norm(&mut grads, s.grad_clip)?;
    mark("clip", &mut phases)?;
    opt.step_clipped(&grads, lr, &norm)?;
    drop(grads);
    out.grad_norm = norm.value()?;
    mark("adamw", &mut phases)?;
    Ok(out)
}

/// Whether `step` is a multiple of a positive `n` (0 = never).
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace supports 1.85
fn every(step: u64, n: u64) -> bool {
    n > 0 && step % n == 0
}

/// Drops metric lines written after `step` (a resumed run rewrites them).
fn keep_metrics_up_to(path: &Path, step: u64) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}
