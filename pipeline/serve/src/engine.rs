//! The decoding engine: one thread owns the model, collects requests into batches and decodes
//! each batch with a KV cache, streaming every sequence's tokens back to its HTTP handler.
//!
//! Scheduling: the thread blocks for the first sequence, then keeps collecting for
//! `batch_wait` (or until `max_batch_size` sequences), and decodes those sequences as one
//! batch to completion; whatever arrived meanwhile forms the next batch. A request with `n`
//! choices is `n` sequences. A batch only groups sequences that fit the model's context
//! together (longest prompt + largest `max_tokens` <= max positions); the others wait.
//!
//! Decoding: the batch runs through [`Decoder`] (left-padded prefill, then one token per
//! unfinished row a step, finished rows leaving the batch and the cache), the same loop
//! `distill_model::generate` uses. Each row samples with its own parameters and RNG (see
//! [`sample`](crate::sample)), so its output does not depend on its batch-mates (up to float
//! rounding of different batch shapes).
//!
//! The choice of tokens is ours rather than `distill_model::generate`'s because a server batch
//! mixes requests with different temperatures, top_p, stop strings, lengths and seeds, needs
//! text stop strings checked on bytes as tokens arrive, and must stream tokens as they are made.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use tokio::sync::mpsc::UnboundedSender;

use distill_model::decode::Decoder;
use distill_model::{CausalLm, FinishReason};

use crate::error::{Error, Result};
use crate::sample::{choose, Choice, Sampling};
use crate::text::TextState;
use crate::vocab::Vocab;

/// One sequence to decode.
pub struct SeqJob {
    pub prompt: Arc<Vec<u32>>,
    pub max_new: usize,
    pub sampling: Sampling,
    pub rng: StdRng,
    pub stops: Vec<String>,
    pub events: UnboundedSender<Event>,
}

/// What a handler receives for one sequence, in order: deltas, then `Done`.
#[derive(Debug, Clone)]
pub enum Event {
    /// Final text and the tokens released with it (see [`text`](crate::text)).
    Delta {
        text: String,
        tokens: Vec<Choice>,
    },
    /// `completion_tokens` counts every sampled token (end-of-sequence and stop-string tokens
    /// included).
    Done {
        finish: FinishReason,
        completion_tokens: usize,
    },
    Failed(String),
}

/// Counters a test or benchmark can read.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub batches: AtomicU64,
    pub sequences: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// The most sequences decoded together so far.
    pub largest_batch: AtomicU64,
}

pub struct Engine {
    tx: Sender<SeqJob>,
    pub stats: Arc<EngineStats>,
    pub max_positions: usize,
    /// The model's vocabulary (embedding rows): token ids in prompts must be below it.
    pub vocab_size: usize,
}

impl Engine {
    /// Starts the decoding thread.
    pub fn spawn(model: CausalLm, vocab: Arc<Vocab>, max_batch: usize, wait: Duration) -> Result<Engine> {
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(EngineStats::default());
        let max_positions = model.config().max_positions();
        let vocab_size = model.config().vocab_size();
        let st = stats.clone();
        std::thread::Builder::new()
            .name("distill-serve-engine".into())
            .spawn(move || scheduler(rx, &model, &vocab, max_batch, wait, &st))
            .map_err(|source| Error::Io { what: "starting the decoding thread".into(), source })?;
        Ok(Engine { tx, stats, max_positions, vocab_size })
    }

    pub fn submit(&self, job: SeqJob) -> Result<()> {
        self.tx.send(job).map_err(|_| Error::EngineStopped("the decoding thread has exited".into()))
    }
}

fn scheduler(rx: Receiver<SeqJob>, model: &CausalLm, vocab: &Vocab, max_batch: usize, wait: Duration, stats: &EngineStats) {
    let max_pos = model.config().max_positions();
    let mut pending: VecDeque<SeqJob> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match rx.recv() {
                Ok(j) => pending.push_back(j),
                Err(_) => return, // every sender is gone: the server has shut down
            }
        }
        let deadline = Instant::now() + wait;
        while pending.len() < max_batch {
            let now = Instant::now();
            match rx.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(j) => pending.push_back(j),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        pending.retain(|j| !j.events.is_closed()); // clients that hung up while waiting
        let batch = take_batch(&mut pending, max_batch, max_pos);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.sequences.fetch_add(n, Ordering::Relaxed);
        stats.largest_batch.fetch_max(n, Ordering::Relaxed);
        let started = Instant::now();
        // A panic in the model must not take the server down: the batch's senders drop during
        // unwinding, which its handlers report as a 500.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(model, vocab, batch, stats)));
        match outcome {
            Ok(Ok(tokens)) => tracing::debug!(sequences = n, tokens, secs = started.elapsed().as_secs_f64(), "batch decoded"),
            Ok(Err(e)) => tracing::error!("decoding a batch failed: {e}"),
            Err(_) => tracing::error!("decoding a batch panicked"),
        }
    }
}

/// Takes up to `max_batch` jobs from the front that fit the context together; the first
/// always goes (handlers reject requests that do not fit on their own).
fn take_batch(pending: &mut VecDeque<SeqJob>, max_batch: usize, max_pos: usize) -> Vec<SeqJob> {
    let mut batch = Vec::new();
    let (mut longest, mut most_new) = (0, 0);
    let mut rest = VecDeque::new();
    while let Some(j) = pending.pop_front() {
        let (l, m) = (longest.max(j.prompt.len()), most_new.max(j.max_new));
        if batch.is_empty() || (batch.len() < max_batch && l + m <= max_pos) {
            (longest, most_new) = (l, m);
            batch.push(j);
        } else {
            rest.push_back(j);
        }
    }
    *pending = rest;
    batch
}

struct Row {
    job: SeqJob,
    text: TextState,
    unreleased: VecDeque<Choice>,
    generated: usize,
    finished: bool,
}

impl Row {
    /// Sends a release; false when the client has gone.
    fn send(&mut self, text: String, tokens: usize) -> bool {
        if text.is_empty() && tokens == 0 {
            return !self.job.events.is_closed();
        }
        let tokens: Vec<Choice> = self.unreleased.drain(..tokens.min(self.unreleased.len())).collect();
        self.job.events.send(Event::Delta { text, tokens }).is_ok()
    }

    /// Releases what was held back (a possible stop-string prefix) and ends the sequence.
    fn done(&mut self, finish: FinishReason) {
        let r = self.text.finish();
        self.send(r.text, r.tokens);
        self.finished = true;
        let _ = self.job.events.send(Event::Done { finish, completion_tokens: self.generated });
    }
}

/// Decodes one batch to completion; returns the number of tokens generated.
fn run_batch(model: &CausalLm, vocab: &Vocab, jobs: Vec<SeqJob>, stats: &EngineStats) -> Result<usize> {
    let max_pos = model.config().max_positions();
    let mut rows: Vec<Row> = jobs.into_iter().map(|job| Row { text: TextState::new(&job.stops), job, unreleased: VecDeque::new(), generated: 0, finished: false }).collect();
    let result = (|| -> Result<usize> {
        let prompts: Vec<&[u32]> = rows.iter().map(|r| r.job.prompt.as_slice()).collect();
        let mut batch = Decoder::new(model, &prompts)?;
        let mut total = 0;
        loop {
            let logits = batch.logits()?;
            let room = batch.context_len() < max_pos;
            let mut next = Vec::new(); // (row, token) of the rows that continue
            for (&i, row_logits) in batch.rows().iter().zip(&logits) {
                let row = &mut rows[i];
                let c = choose(row_logits, &row.job.sampling, &mut row.job.rng);
                row.generated += 1;
                total += 1;
                if vocab.eos_ids.contains(&c.id) {
                    row.done(FinishReason::Stop);
                    continue;
                }
                let id = c.id;
                row.unreleased.push_back(c);
                let r = row.text.push(vocab.bytes(id));
                let alive = row.send(r.text, r.tokens);
                if r.stopped {
                    row.unreleased.clear();
                    row.done(FinishReason::Stop);
                } else if row.generated >= row.job.max_new || !room {
                    row.done(FinishReason::Length);
                } else if alive {
                    next.push((i, id));
                }
            }
            stats.generated_tokens.fetch_add(logits.len() as u64, Ordering::Relaxed);
            if next.is_empty() {
                return Ok(total);
            }
            batch.step(&next)?;
        }
    })();
    if let Err(e) = &result {
        for r in rows.iter().filter(|r| !r.finished) {
            let _ = r.job.events.send(Event::Failed(e.to_string()));
        }
    }
    result
}
