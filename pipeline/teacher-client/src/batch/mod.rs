//! `transport = "batch"`: the requests the cache lacks go through the provider's batch API
//! (about half the price, answers within 24 hours), and their answers into the same cache
//! under the same keys as online ones.
//!
//! ```text
//! journal: re-attach to open batches (their keys files: what they hold)
//! prompts ─> requests ─> parts the cache lacks and no open batch holds ─> JSONL chunks (split
//!   by requests and bytes) ─> budget check ─> keys file, upload + create (journal
//!   `submitted`, fsynced) ─> poll old and new batches ─> results ─> cache (durable)
//!   ─> journal `done`
//! ```
//!
//! A line's body is the online request's canonical body, byte for byte, and its `custom_id` is
//! that body's cache key in hex ([`crate::request`]): an answer bought in a batch is found by a
//! later online run and the other way round, and a prompt cached online is never put in a
//! batch. The journal ([`journal`]) makes a `kill -9` harmless: a restarted run waits for the
//! batches already submitted instead of submitting their requests again. What a batch did not
//! answer (expired, cancelled, a 5xx in the error file) stays out of the cache and is
//! submitted again by the next run; a 4xx is remembered as a failure, as online.

pub mod journal;
pub mod remote;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use distill_core::records::PromptRecord;

use crate::cache::{Entry, Meta, Store};
use crate::config::{Api, Sampling};
use crate::error::Error;
use crate::request::{self, Endpoint};
use crate::retry::{classify_api, Verdict};
use crate::send::Shared;
use crate::stats::cost;
use journal::{Event, Journal};
use remote::LineOutcome;

/// What the batches of one run did (the `batch` object of the teacher stage's stats).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobStats {
    /// Batches this run created.
    pub batches_submitted: u64,
    /// Batches of an earlier (killed) run this run waited for.
    pub batches_reattached: u64,
    pub batches_completed: u64,
    pub batches_expired: u64,
    /// Failed or cancelled as a whole.
    pub batches_failed: u64,
    /// Requests in the batches this run created.
    pub requests_submitted: u64,
    /// Answers read from batches into the cache.
    pub requests_succeeded: u64,
    /// Requests a batch returned with an error (4xx remembered, others sent again next run).
    pub requests_failed: u64,
    /// Requests left undone by an expired or cancelled batch.
    pub requests_expired: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Dollars of the answers read, at the batch price.
    pub cost_usd: f64,
    /// Seconds spent waiting for batches.
    pub wait_secs: f64,
}

/// What the batches of a run did to each request they held, by cache key.
#[derive(Debug, Default)]
pub struct Results {
    /// Why a request has no answer after the batches (reason, message).
    pub unanswered: HashMap<[u8; 32], (String, String)>,
    /// Requests answered by a batch in this run (not "from the cache" in the run's stats).
    pub answered: HashSet<[u8; 32]>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One batch's input, spooled to a file.
struct Chunk {
    path: PathBuf,
    endpoint: Endpoint,
    requests: u64,
    bytes: u64,
    /// Worst-case dollars at the batch price.
    worst_cost: f64,
    /// The cache keys of its requests, in order.
    keys: Vec<[u8; 32]>,
}

struct ChunkWriter {
    dir: PathBuf,
    stamp: String,
    max_requests: u64,
    max_bytes: u64,
    open: HashMap<&'static str, (Chunk, std::io::BufWriter<std::fs::File>)>,
    done: Vec<Chunk>,
}

impl ChunkWriter {
    fn push(&mut self, endpoint: Endpoint, key: [u8; 32], line: &[u8], worst: f64) -> Result<(), Error> {
        let io = |p: &Path, e: std::io::Error| Error::Cache { path: p.to_path_buf(), message: format!("batch input: {e}") };
        let full = self.open.get(endpoint.path()).is_some_and(|(c, _)| c.requests + 1 > self.max_requests || c.bytes + line.len() as u64 + 1 > self.max_bytes);
        if full {
            self.close(endpoint)?;
        }
        if !self.open.contains_key(endpoint.path()) {
            let path = self.dir.join(format!("chunk-{}-{}.jsonl", self.stamp, self.done.len() + self.open.len()));
            let file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
            self.open.insert(endpoint.path(), (Chunk { path, endpoint, requests: 0, bytes: 0, worst_cost: 0.0, keys: Vec::new() }, std::io::BufWriter::new(file)));
        }
        let (chunk, w) = self.open.get_mut(endpoint.path()).expect("opened above");
        use std::io::Write;
        w.write_all(line).and_then(|()| w.write_all(b"\n")).map_err(|e| io(&chunk.path, e))?;
        chunk.requests += 1;
        chunk.bytes += line.len() as u64 + 1;
        chunk.worst_cost += worst;
        chunk.keys.push(key);
        Ok(())
    }

    fn close(&mut self, endpoint: Endpoint) -> Result<(), Error> {
        if let Some((chunk, mut w)) = self.open.remove(endpoint.path()) {
            use std::io::Write;
            w.flush().map_err(|e| Error::Cache { path: chunk.path.clone(), message: format!("batch input: {e}") })?;
            self.done.push(chunk);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<Chunk>, Error> {
        for e in [Endpoint::Chat, Endpoint::Completions, Endpoint::Messages] {
            self.close(e)?;
        }
        Ok(self.done)
    }
}

/// The keys file's name of a chunk file (`chunk-S-N.jsonl` -> `keys-S-N.bin`).
fn keys_name(chunk: &Path) -> String {
    let stem = chunk.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    format!("keys-{}.bin", stem.trim_start_matches("chunk-"))
}

/// The batch job of one run; see the module docs.
pub(crate) struct Job<'a> {
    pub shared: Arc<Shared>,
    pub store: &'a dyn Store,
    pub bar: &'a indicatif::ProgressBar,
    pub stats: JobStats,
    pub results: Results,
    journal: Journal,
    open: journal::Open,
    dir: PathBuf,
    /// Every batch id the journal or this run knows (never taken for a lost one).
    known: HashSet<String>,
}

/// A batch being waited for.
struct InFlight {
    id: String,
    requests: u64,
    state: remote::State,
    /// Its keys file, removed once the batch is done.
    keys: Option<String>,
}

impl<'a> Job<'a> {
    pub fn open(shared: Arc<Shared>, store: &'a dyn Store, bar: &'a indicatif::ProgressBar) -> Result<Job<'a>, Error> {
        let dir = shared.settings.cache_dir.join("batches");
        let (journal, open) = Journal::open(&dir)?;
        // Inputs of a killed run: either submitted (journaled) or to be rebuilt from the cache;
        // keys files of batches no longer open.
        let live: HashSet<&String> = open
            .batches
            .iter()
            .filter_map(|b| b.2.as_ref())
            .chain(open.uploads.iter().filter_map(|u| u.2.as_ref()))
            .chain(open.creating.iter().filter_map(|c| c.2.as_ref()))
            .collect();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("chunk-") || (name.starts_with("keys-") && !live.contains(&name)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let known = open.batches.iter().map(|b| b.0.clone()).chain(open.closed.iter().cloned()).collect();
        Ok(Job { shared, store, bar, stats: JobStats::default(), results: Results::default(), journal, open, dir, known })
    }

    fn api_name(&self) -> String {
        match self.shared.settings.api {
            Api::Openai => "openai".into(),
            Api::Anthropic => "anthropic".into(),
        }
    }

    /// Journals a batch that a killed run created but did not journal (found again by
    /// [`Job::run`]) as submitted, and adds it to the open batches.
    fn adopt(&mut self, id: String, input_file_id: Option<String>, requests: u64, keys: Option<String>) -> Result<(), Error> {
        self.journal.append(&Event::Submitted { api: self.api_name(), batch_id: id.clone(), input_file_id, requests, bytes: 0, unix: unix_now(), keys: keys.clone() })?;
        self.open.batches.push((id, requests, keys));
        Ok(())
    }

    /// Re-attaches to the batches of earlier runs, submits what the cache still lacks for
    /// `prompts` (and no batch in flight holds), and waits for every batch; answers end in the
    /// cache.
    pub async fn run(&mut self, prompts: impl Iterator<Item = PromptRecord>, sampling: &Sampling, retry_failed: bool) -> Result<(), Error> {
        // An input uploaded by a killed run: its batch may exist (created, not yet journaled).
        for (file, requests, keys) in std::mem::take(&mut self.open.uploads) {
            if let Some(id) = remote::find_by_input_file(&self.shared, &file).await? {
                tracing::info!("batch {id} of an earlier run found by its input file {file}");
                self.adopt(id, Some(file), requests, keys)?;
            }
        }
        // A message batch being created by a killed run: one created since, as large, and
        // not in the journal, is taken for it.
        for (since, requests, keys) in std::mem::take(&mut self.open.creating) {
            let found = remote::find_anthropic(&self.shared, since, requests).await?.into_iter().find(|id| !self.known.contains(id));
            if let Some(id) = found {
                self.known.insert(id.clone());
                tracing::info!("message batch {id} of an earlier run found by its size and time");
                self.adopt(id, None, requests, keys)?;
            }
        }
        // Batches whose requests are known are waited for with the new ones; the others (no
        // keys file) first, so that nothing they hold is submitted again.
        let (mut inflight, mut unknown) = (Vec::new(), Vec::new());
        let mut held: HashSet<[u8; 32]> = HashSet::new();
        for (id, requests, keys) in std::mem::take(&mut self.open.batches) {
            tracing::info!("re-attaching to batch {id} ({requests} requests) submitted by an earlier run");
            self.stats.batches_reattached += 1;
            let known = keys.as_ref().and_then(|k| std::fs::read(self.dir.join(k)).ok()).filter(|b| b.len() as u64 == requests * 32);
            let b = InFlight { id, requests, state: Default::default(), keys };
            match known {
                Some(bytes) => {
                    held.extend(bytes.chunks_exact(32).map(|k| <[u8; 32]>::try_from(k).expect("32 bytes")));
                    inflight.push(b);
                }
                None => unknown.push(b),
            }
        }
        self.wait(&mut unknown).await?;

        let chunks = self.build(prompts, sampling, retry_failed, &held)?;
        drop(held);
        let worst: f64 = chunks.iter().map(|c| c.worst_cost).sum();
        let s = &self.shared.settings;
        if s.max_cost_usd > 0.0 && self.stats.cost_usd + worst > s.max_cost_usd {
            for c in &chunks {
                let _ = std::fs::remove_file(&c.path);
            }
            let requests: u64 = chunks.iter().map(|c| c.requests).sum();
            return Err(Error::Fatal {
                status: 0,
                message: format!(
                    "refusing to submit {} batch(es) of {requests} requests: they may cost up to ${worst:.4} at the batch price, and max_cost_usd is {} (${:.4} spent this run); raise [teacher] max_cost_usd or answer fewer prompts",
                    chunks.len(),
                    s.max_cost_usd,
                    self.stats.cost_usd
                ),
            });
        }
        for chunk in chunks {
            let id = self.submit(&chunk).await?;
            let _ = std::fs::remove_file(&chunk.path);
            tracing::info!("batch {id} submitted: {} requests, {} bytes", chunk.requests, chunk.bytes);
            self.stats.batches_submitted += 1;
            self.stats.requests_submitted += chunk.requests;
            inflight.push(InFlight { id, requests: chunk.requests, state: Default::default(), keys: Some(keys_name(&chunk.path)) });
        }
        self.wait(&mut inflight).await
    }

    /// Spools the parts the cache lacks into chunk files, one set per endpoint.
    fn build(&mut self, prompts: impl Iterator<Item = PromptRecord>, sampling: &Sampling, retry_failed: bool, held: &HashSet<[u8; 32]>) -> Result<Vec<Chunk>, Error> {
        let s = self.shared.settings.clone();
        let (price_in, price_out) = s.prices();
        let mut writer = ChunkWriter {
            dir: self.dir.clone(),
            stamp: format!("{}-{}", unix_now(), std::process::id()),
            max_requests: s.batch_max_requests.max(1),
            max_bytes: s.batch_max_bytes.max(1),
            open: HashMap::new(),
            done: Vec::new(),
        };
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        let mut line = Vec::new();
        for prompt in prompts {
            if prompt.validate().is_err() {
                continue;
            }
            let req = request::build_for(s.api, &prompt, &s.model, sampling, &s.extra_body);
            let worst = cost(req.prompt_tokens_estimate, req.completion_tokens_max, price_in, price_out);
            for key in &req.parts {
                // In a batch already (re-attached), or in a chunk of this run.
                if held.contains(key) || !seen.insert(*key) {
                    continue;
                }
                let cached = self.store.get(key).map_err(|e| Error::Cache { path: s.cache_dir.clone(), message: e.to_string() })?;
                match cached.as_deref().and_then(Entry::decode_meta) {
                    Some((false, _)) => continue,
                    Some((true, _)) if !retry_failed => continue,
                    _ => {}
                }
                line.clear();
                let id = hex::encode(key);
                match s.api {
                    Api::Openai => {
                        line.extend_from_slice(format!("{{\"custom_id\":\"{id}\",\"method\":\"POST\",\"url\":\"/v1/{}\",\"body\":", req.endpoint.path()).as_bytes());
                        line.extend_from_slice(&req.body);
                        line.push(b'}');
                    }
                    Api::Anthropic => {
                        line.extend_from_slice(format!("{{\"custom_id\":\"{id}\",\"params\":").as_bytes());
                        line.extend_from_slice(&req.body);
                        line.push(b'}');
                    }
                }
                writer.push(req.endpoint, *key, &line, worst)?;
            }
        }
        writer.finish()
    }

    async fn submit(&mut self, chunk: &Chunk) -> Result<String, Error> {
        let lines = std::fs::read(&chunk.path).map_err(|e| Error::Cache { path: chunk.path.clone(), message: format!("batch input: {e}") })?;
        let api = self.api_name();
        // The batch's keys, durable before the batch can exist: a restarted run knows what it
        // holds without waiting for it to end.
        let keys = keys_name(&chunk.path);
        let path = self.dir.join(&keys);
        let io = |e: std::io::Error| Error::Cache { path: path.clone(), message: format!("batch keys: {e}") };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&path).map_err(io)?;
            f.write_all(&chunk.keys.concat()).and_then(|()| f.sync_all()).map_err(io)?;
        }
        let keys = Some(keys);
        match self.shared.settings.api {
            Api::Openai => {
                let file = remote::upload(&self.shared, lines).await?;
                self.journal.append(&Event::Uploaded {
                    api: api.clone(),
                    input_file_id: file.clone(),
                    requests: chunk.requests,
                    bytes: chunk.bytes,
                    unix: unix_now(),
                    keys: keys.clone(),
                })?;
                let id = remote::create_openai(&self.shared, &file, chunk.endpoint.path()).await?;
                self.journal.append(&Event::Submitted {
                    api,
                    batch_id: id.clone(),
                    input_file_id: Some(file),
                    requests: chunk.requests,
                    bytes: chunk.bytes,
                    unix: unix_now(),
                    keys,
                })?;
                Ok(id)
            }
            Api::Anthropic => {
                // Anthropic takes the requests inline: a batch created by a run killed before
                // its id was journaled is found by its time and size (see the journal docs).
                let since = unix_now();
                self.journal.append(&Event::Creating { api: api.clone(), requests: chunk.requests, bytes: chunk.bytes, unix: since, keys: keys.clone() })?;
                let id = remote::create_anthropic(&self.shared, &lines, chunk.requests, since, &self.known).await?;
                self.known.insert(id.clone());
                self.journal.append(&Event::Submitted { api, batch_id: id.clone(), input_file_id: None, requests: chunk.requests, bytes: chunk.bytes, unix: unix_now(), keys })?;
                Ok(id)
            }
        }
    }

    /// Polls every batch until it ends, reading each one's results as it does.
    async fn wait(&mut self, inflight: &mut Vec<InFlight>) -> Result<(), Error> {
        let t0 = Instant::now();
        let mut last_log: Option<Instant> = None;
        while !inflight.is_empty() {
            let mut i = 0;
            while i < inflight.len() {
                let state = match remote::poll(&self.shared, &inflight[i].id).await {
                    Ok(state) => state,
                    // Unknown to the API (another account or base_url, or past its retention):
                    // nothing to wait for; what it held is submitted again by the next run.
                    Err(Error::Fatal { status: 404, message }) => {
                        let b = inflight.remove(i);
                        tracing::warn!("batch {} is unknown to the API, given up: {message}", b.id);
                        self.stats.batches_failed += 1;
                        self.journal.append(&Event::Done { batch_id: b.id, status: "lost".into(), unix: unix_now() })?;
                        if let Some(k) = b.keys {
                            let _ = std::fs::remove_file(self.dir.join(k));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if state.ended {
                    let b = inflight.remove(i);
                    self.ingest(&b.id, &state).await?;
                    match state.outcome {
                        "completed" => self.stats.batches_completed += 1,
                        "expired" => self.stats.batches_expired += 1,
                        _ => self.stats.batches_failed += 1,
                    }
                    if !state.errors.is_empty() {
                        tracing::warn!("batch {} {}: {}", b.id, state.outcome, state.errors.join("; "));
                    }
                    tracing::info!("batch {} {} ({} of {} requests answered)", b.id, state.outcome, state.done, b.requests);
                    self.journal.append(&Event::Done { batch_id: b.id, status: state.outcome.into(), unix: unix_now() })?;
                    if let Some(k) = b.keys {
                        let _ = std::fs::remove_file(self.dir.join(k));
                    }
                } else {
                    inflight[i].state = state;
                    i += 1;
                }
            }
            let (done, total) = inflight.iter().fold((0, 0), |(d, t), b| (d + b.state.done + b.state.failed, t + b.requests.max(b.state.total)));
            let line = format!(
                "batches: {} submitted, {} re-attached, {} in flight, {} completed, {} expired, {} failed; requests in flight done {done}/{total}, answers read {}",
                self.stats.batches_submitted,
                self.stats.batches_reattached,
                inflight.len(),
                self.stats.batches_completed,
                self.stats.batches_expired,
                self.stats.batches_failed,
                self.stats.requests_succeeded
            );
            self.bar.set_message(line.clone());
            self.bar.tick();
            if inflight.is_empty() {
                break;
            }
            // The bar is hidden without a terminal (and with --quiet): the log says it too, at
            // the first look and once a minute.
            if last_log.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                tracing::info!("{line}");
                last_log = Some(Instant::now());
            }
            tokio::time::sleep(self.shared.settings.batch_poll).await;
        }
        self.stats.wait_secs += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Reads an ended batch's results into the cache (durably, before the journal says done).
    async fn ingest(&mut self, id: &str, state: &remote::State) -> Result<(), Error> {
        let s = self.shared.settings.clone();
        let (price_in, price_out) = s.prices();
        let store = self.store;
        let cache_err = |e: crate::error::Error| Error::Cache { path: s.cache_dir.clone(), message: e.to_string() };
        let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let stats = &mut self.stats;
        let results = &mut self.results;
        let shared = self.shared.clone();
        remote::results(&self.shared, id, state, |custom_id, outcome| {
            let Some(key) = hex::decode(custom_id).ok().and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
                tracing::warn!("batch {id}: a result with a custom_id this client did not write ({custom_id}) is skipped");
                return Ok(());
            };
            let unix = unix_now();
            match outcome {
                LineOutcome::Http { status, body } => match classify_api(s.api, status, &body, None) {
                    Verdict::Success(parsed) => {
                        let (pt, ct) = parsed.usage.map(|u| (u.prompt_tokens, u.completion_tokens)).unwrap_or((0, 0));
                        stats.prompt_tokens += pt;
                        stats.completion_tokens += ct;
                        stats.cost_usd += cost(pt, ct, price_in, price_out);
                        stats.requests_succeeded += 1;
                        results.unanswered.remove(&key);
                        results.answered.insert(key);
                        let meta = Meta { unix, latency_ms: 0, usage: parsed.usage, status, reason: None, message: None };
                        pending.push((key.to_vec(), Entry::Response { meta, parsed }.encode()));
                    }
                    Verdict::Fail { reason, message } => {
                        stats.requests_failed += 1;
                        let message = shared.redact(message);
                        results.unanswered.insert(key, (reason.to_string(), message.clone()));
                        let meta = Meta { unix, latency_ms: 0, usage: None, status, reason: Some(reason.into()), message: Some(message) };
                        pending.push((key.to_vec(), Entry::Failed { meta }.encode()));
                    }
                    Verdict::Retry { reason, message, .. } => {
                        stats.requests_failed += 1;
                        results.unanswered.insert(key, (format!("batch_{reason}"), format!("{} (submitted again by the next run)", shared.redact(message))));
                    }
                    Verdict::Fatal { message } => {
                        stats.requests_failed += 1;
                        results.unanswered.insert(key, ("batch_refused".into(), shared.redact(message)));
                    }
                },
                LineOutcome::Expired => {
                    stats.requests_expired += 1;
                    results.unanswered.insert(key, ("batch_expired".into(), format!("batch {id} expired before this request ran (submitted again by the next run)")));
                }
                LineOutcome::Errored { code, message } => {
                    stats.requests_failed += 1;
                    results.unanswered.insert(key, (format!("batch_{code}"), format!("batch {id}: {} (submitted again by the next run)", shared.redact(message))));
                }
            }
            if pending.len() >= 256 {
                store.put_durable(&std::mem::take(&mut pending)).map_err(cache_err)?;
            }
            Ok(())
        })
        .await?;
        if !pending.is_empty() {
            store.put_durable(&pending).map_err(cache_err)?;
        }
        Ok(())
    }
}
