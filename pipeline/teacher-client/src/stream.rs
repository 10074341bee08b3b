//! The streaming engine behind every batch: prompts in, one outcome per prompt out, in input
//! order, with memory bounded by a window of prompts rather than by the data set.
//!
//! ```text
//! prompts ─> admit (validate, request key, share with an identical request in the window,
//!            cache look-up, else spawn the send) ─> window (in input order) ─> sink
//!                                                        ▲
//!                                   answers arriving in any order fill their slots
//! ```
//!
//! The window holds at most `max(4 * max_concurrency, 64)` prompts (cache hits stay in their
//! compact form until they reach the front); the sink receives the
//! front of the window as soon as it is answered, so an answer waits only for slower answers
//! to earlier prompts, never for a whole batch. A prompt whose request repeats one outside the
//! window finds it in the cache, which is where the earlier answer went before it was handed
//! on.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use distill_core::records::{FailedPrompt, PromptRecord, TeacherRecord};

use crate::cache::{Entry, Store};
use crate::client::PromptOutcome;
use crate::config::Sampling;
use crate::error::Error;
use crate::request::{self, Request};
use crate::response::Parsed;
use crate::send::{self, Sent, Shared};
use crate::stats::BatchStats;

type Answer = Result<Parsed, (String, String)>;

/// An answer in the window: decoded, or still the cache's compact bytes (decoded only when its
/// prompt reaches the front, so a window of cache hits holds ~50 bytes a token, not ~2 KB).
enum Slot {
    Ready(Answer),
    /// One value per part of the request (one, except for Anthropic's `n` samples).
    Cached(Vec<Vec<u8>>),
}

/// What the cache holds for a request: a usable outcome, or the parts it has (the rest to send).
enum Lookup {
    Hit(Slot),
    Miss(Vec<Option<Vec<u8>>>),
}

/// One distinct request of the window and the prompts waiting for it.
struct Active {
    req: Arc<Request>,
    answer: Option<Slot>,
    from_cache: bool,
    /// Prompts of the window that still need this answer.
    waiting: usize,
}

impl Slot {
    /// A copy of a decoded answer (for a prompt sharing the request with a later one).
    fn clone_ready(&self) -> Slot {
        match self {
            Slot::Ready(a) => Slot::Ready(a.clone()),
            Slot::Cached(v) => Slot::Cached(v.clone()),
        }
    }
}

pub(crate) struct Engine<'a> {
    pub shared: Arc<Shared>,
    pub store: &'a dyn Store,
    pub sampling: &'a Sampling,
    pub retry_failed: bool,
    /// After batches (`transport = "batch"`): nothing is sent; a request the cache lacks fails
    /// with the batch's reason, if it gave one.
    pub cache_only: Option<&'a crate::batch::Results>,
}

impl Engine<'_> {
    /// The cached outcome of a request, if there is one to use (answers left undecoded): every
    /// part answered, or a part's remembered failure.
    fn cached(&self, req: &Request) -> distill_core::Result<Lookup> {
        let mut values = Vec::with_capacity(req.parts.len());
        let mut complete = true;
        for key in &req.parts {
            let value = self.store.get(key)?;
            match value.as_deref().and_then(Entry::decode_meta) {
                Some((false, _)) => values.push(value),
                Some((true, meta)) if !self.retry_failed => {
                    return Ok(Lookup::Hit(Slot::Ready(Err((meta.reason.unwrap_or_else(|| "bad_request".into()), meta.message.unwrap_or_default())))))
                }
                _ => {
                    complete = false;
                    values.push(None);
                }
            }
        }
        Ok(match complete {
            true => Lookup::Hit(Slot::Cached(values.into_iter().flatten().collect())),
            false => Lookup::Miss(values),
        })
    }

    pub(crate) async fn run(
        self,
        mut prompts: impl Iterator<Item = PromptRecord>,
        bar: &indicatif::ProgressBar,
        mut sink: impl FnMut(PromptOutcome) -> distill_core::Result<()>,
    ) -> distill_core::Result<BatchStats> {
        let t0 = Instant::now();
        let shared = self.shared.clone();
        let settings = &shared.settings;
        let c = &shared.counters;
        let before = (c.http_requests.load(Relaxed), c.rate_limited.load(Relaxed), c.retries.load(Relaxed), c.requested.load(Relaxed), shared.spent());
        let capacity = (settings.max_concurrency * 4).max(64);
        let mut stats = BatchStats::default();
        let mut window: VecDeque<(PromptRecord, Result<[u8; 32], String>)> = VecDeque::with_capacity(capacity);
        let mut active: HashMap<[u8; 32], Active> = HashMap::new();
        let mut tasks: JoinSet<([u8; 32], Sent)> = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut exhausted = false;
        loop {
            while !exhausted && window.len() < capacity {
                let Some(prompt) = prompts.next() else {
                    exhausted = true;
                    break;
                };
                stats.prompts += 1;
                if let Err(e) = prompt.validate() {
                    window.push_back((prompt, Err(e)));
                    continue;
                }
                let req = request::build_for(settings.api, &prompt, &settings.model, self.sampling, &settings.extra_body);
                let key = req.key;
                match active.entry(key) {
                    MapEntry::Occupied(mut o) => {
                        stats.duplicates += 1;
                        o.get_mut().waiting += 1;
                    }
                    MapEntry::Vacant(v) => {
                        let req = Arc::new(req);
                        let mut from_cache = false;
                        let answer = match self.cached(&req)? {
                            Lookup::Hit(slot) => {
                                // After batches, what one of them answered is new to this run.
                                from_cache = self.cache_only.is_none_or(|r| req.parts.iter().all(|k| !r.answered.contains(k) && !r.unanswered.contains_key(k)));
                                Some(slot)
                            }
                            Lookup::Miss(_) if self.cache_only.is_some() => {
                                let why = req.parts.iter().find_map(|k| self.cache_only.and_then(|r| r.unanswered.get(k)));
                                let (reason, message) = why
                                    .cloned()
                                    .unwrap_or_else(|| ("batch_unanswered".into(), "no batch answered this request (see the log); the next run submits it again".into()));
                                Some(Slot::Ready(Err((reason, message))))
                            }
                            Lookup::Miss(have) => {
                                let (sh, r) = (shared.clone(), req.clone());
                                tasks.spawn(async move { (key, send::send_request(sh, r, have).await) });
                                None
                            }
                        };
                        v.insert(Active { req, from_cache, answer, waiting: 1 });
                    }
                }
                window.push_back((prompt, Ok(key)));
            }
            // Hand on every answered prompt at the front.
            while let Some((_, slot)) = window.front() {
                if let Ok(key) = slot {
                    let a = active.get_mut(key).expect("active while waited for");
                    if let Some(Slot::Cached(values)) = &a.answer {
                        let parts: Option<Vec<Parsed>> = values
                            .iter()
                            .map(|v| match Entry::decode(v) {
                                Some(Entry::Response { parsed, .. }) => Some(parsed),
                                _ => None,
                            })
                            .collect();
                        match parts {
                            Some(mut parts) if parts.len() == 1 => a.answer = Some(Slot::Ready(Ok(parts.pop().expect("one part")))),
                            Some(parts) => a.answer = Some(Slot::Ready(Ok(crate::response::merge(parts)))),
                            // Unreadable after all (decode logged why): ask the server, online even
                            // after batches (the entry's metadata read as an answer, so no batch
                            // would ever submit it again).
                            None => {
                                a.answer = None;
                                a.from_cache = false;
                                let (sh, r, k) = (shared.clone(), a.req.clone(), *key);
                                let none = vec![None; r.parts.len()];
                                tasks.spawn(async move { (k, send::send_request(sh, r, none).await) });
                            }
                        }
                    }
                    if a.answer.is_none() {
                        break;
                    }
                }
                let (prompt, slot) = window.pop_front().expect("front exists");
                let outcome = match slot {
                    Err(message) => PromptOutcome::Failed(FailedPrompt { id: prompt.id.clone(), reason: "invalid_prompt".into(), message }),
                    Ok(key) => {
                        let a = active.get_mut(&key).expect("active while waited for");
                        a.waiting -= 1;
                        if a.from_cache {
                            stats.from_cache += 1;
                            c.from_cache.fetch_add(1, Relaxed);
                        }
                        let endpoint = a.req.endpoint.name();
                        // The last prompt waiting takes the answer instead of a copy (a copy of
                        // every token's top-k is most of the cost of an answer with logprobs).
                        let slot = if a.waiting == 0 { active.remove(&key).and_then(|a| a.answer) } else { a.answer.as_ref().map(Slot::clone_ready) };
                        let Some(Slot::Ready(answer)) = slot else { unreachable!("decoded above") };
                        self.outcome(prompt, endpoint, answer, &mut stats)
                    }
                };
                match &outcome {
                    PromptOutcome::Answered(_) => stats.completed += 1,
                    PromptOutcome::Failed(f) => {
                        stats.failed += 1;
                        *stats.failed_by_reason.entry(f.reason.clone()).or_default() += 1;
                    }
                }
                sink(outcome)?;
                bar.inc(1);
            }
            if window.is_empty() && exhausted {
                break;
            }
            if window.len() < capacity && !exhausted {
                continue; // room freed by the answers just handed on: admit more first
            }
            tokio::select! {
                joined = tasks.join_next() => {
                    let (key, sent) = joined.expect("a prompt waits only on a task in flight").expect("request tasks do not panic");
                    let answer = match sent {
                        Sent::Done(p) => Ok(p),
                        Sent::Failed { reason, message } => Err((reason, message)),
                        Sent::Fatal { status, message } => {
                            // Aborts every request still waiting or in flight.
                            tasks.abort_all();
                            let (status, message) = shared.first_fatal().unwrap_or((status, message));
                            return Err(Error::Fatal { status, message }.into());
                        }
                    };
                    active.get_mut(&key).expect("a task answers an active request").answer = Some(Slot::Ready(answer));
                }
                _ = tick.tick() => {
                    let secs = t0.elapsed().as_secs_f64().max(1e-3);
                    let tokens = c.new_prompt_tokens.load(Relaxed) + c.new_completion_tokens.load(Relaxed);
                    bar.set_message(format!(
                        "{:.0} tok/s ${:.4} retries {} 429s {}",
                        tokens as f64 / secs,
                        shared.spent() - before.4,
                        c.retries.load(Relaxed) - before.2,
                        c.rate_limited.load(Relaxed) - before.1
                    ));
                }
            }
        }
        stats.http_requests = c.http_requests.load(Relaxed) - before.0;
        stats.rate_limited = c.rate_limited.load(Relaxed) - before.1;
        stats.retries = c.retries.load(Relaxed) - before.2;
        stats.requested = c.requested.load(Relaxed) - before.3;
        stats.cost_usd = shared.spent() - before.4;
        stats.elapsed_secs = t0.elapsed().as_secs_f64();
        Ok(stats)
    }

    fn outcome(&self, prompt: PromptRecord, endpoint: &str, answer: Answer, stats: &mut BatchStats) -> PromptOutcome {
        match answer {
            Ok(parsed) => {
                if parsed.usage.is_none() {
                    stats.usage_missing += 1;
                }
                let usage = parsed.usage.unwrap_or_default();
                stats.prompt_tokens += usage.prompt_tokens;
                stats.completion_tokens += usage.completion_tokens;
                PromptOutcome::Answered(TeacherRecord {
                    id: prompt.id.clone(),
                    model: parsed.model.unwrap_or_else(|| self.shared.settings.model.clone()),
                    prompt,
                    endpoint: endpoint.to_string(),
                    temperature: self.sampling.temperature as f32,
                    samples: parsed.samples,
                    usage,
                })
            }
            Err((reason, message)) => PromptOutcome::Failed(FailedPrompt { id: prompt.id, reason, message }),
        }
    }
}
