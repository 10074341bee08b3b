//! The `filter` stage: `teacher/responses.jsonl` -> `filter/kept.jsonl` + `exclusions.jsonl`.
//!
//! Every sample of every teacher record is a [`Candidate`] (`<prompt id>#<index>`). Filters run
//! in this order, each on what the previous ones kept (cheap checks first, the sandbox late,
//! dedup last so that self-consistency sees every sample):
//!
//! | filter | drops with reason |
//! |---|---|
//! | `finish_reason` | `not_stopped` (cut off at `length`, or no finish reason) |
//! | `length` | `too_short`, `too_long`, `code_too_long` |
//! | `refusal` | `refusal` (a pattern of `refusal_patterns` in the prose) |
//! | `code` | `no_code` (no code in the prompt's language, except prose task types) |
//! | `parse` | `syntax_error` (fenced Python that `ast.parse` rejects), `no_code` (bare text that is not Python) |
//! | `copies_prompt` | `copies_prompt` |
//! | `decontamination` | `contaminated` (n-gram or docstring overlap with HumanEval/MBPP) |
//! | `consistency` | `no_test_passed`, `not_in_best_cluster`, `low_pass_rate` ([`consistency`]) |
//! | `exact_dedup`, `near_dedup` | `exact_duplicate`, `near_duplicate` |
//!
//! The [`funnel::Funnel`] counts and writes one [`Exclusion`] per dropped sample; a malformed
//! input line is counted and skipped. Stats: the funnel (in/dropped/out per filter), drops per
//! filter and reason, self-consistency counters.

pub mod candidate;
pub mod config;
pub mod consistency;
pub mod dedup;
pub mod error;
pub mod extract;
pub mod funnel;
pub mod pycheck;
pub mod rules;

use std::sync::Arc;

use distill_core::records::{Exclusion, KeptSample, TeacherRecord};
use distill_core::StageContext;

pub use candidate::Candidate;
pub use config::{ConsistencyConfig, DecontaminationConfig, DedupConfig, FilterConfig, Settings};
pub use error::{Error, Result};
use funnel::{Decision, Filter, Funnel, PerRecord};

/// The parse check as a filter (see [`pycheck`]).
struct Parse<'a>(&'a Settings);

impl Filter for Parse<'_> {
    fn name(&self) -> &'static str {
        "parse"
    }
    fn decide(&mut self, cands: &mut [Candidate]) -> Result<Vec<Decision>> {
        let which: Vec<usize> = (0..cands.len()).filter(|&i| cands[i].is_python() && !cands[i].extracted.code.trim().is_empty()).collect();
        let items: Vec<pycheck::Item> = which.iter().map(|&i| pycheck::Item { code: &cands[i].extracted.code, tests: &cands[i].extracted.tests }).collect();
        let checked = pycheck::check_all(&self.0.cfg.python, &items)?;
        let mut d = vec![Decision::Keep; cands.len()];
        for (&i, r) in which.iter().zip(checked) {
            let c = &mut cands[i];
            match r.error {
                // A prose answer to a prose task (explain) is what was asked for: no code.
                Some(_) if c.extracted.bare && self.0.cfg.prose_task_types.contains(&c.task_type) => {
                    c.extracted.code.clear();
                    c.runnable.clear();
                }
                Some(err) if c.extracted.bare => d[i] = Decision::drop("no_code", format!("no fenced code, and the answer is not Python: {err}")),
                Some(err) => d[i] = Decision::drop("syntax_error", err),
                None => {
                    c.runnable = r.runnable;
                    c.tests = r.tests.into_iter().flat_map(|b| b.cases.into_iter().map(move |k| (b.setup.clone(), k))).collect();
                }
            }
        }
        Ok(d)
    }
}

/// sha256 of each configured benchmark file (for the runner's `external` inputs), or nothing
/// when decontamination is off.
pub fn benchmark_digests(cfg: &FilterConfig) -> distill_core::Result<Vec<(String, String)>> {
    let s = cfg.settings("[filter]")?;
    if !s.cfg.decontamination.enabled {
        return Ok(Vec::new());
    }
    Ok(dedup::load_references(&s)?.1)
}

/// Output format version (2: `kept.jsonl` holds decisions and scores, no per-token log-probs;
/// outputs in candidate order).
pub const SCHEMA_VERSION: u32 = 2;

/// Teacher records judged together: enough for the sandbox to keep every core busy, few
/// enough that memory does not depend on the data set.
const BATCH_RECORDS: usize = 256;

/// Runs the stage; see the module docs.
pub fn run(ctx: &StageContext, cfg: &FilterConfig) -> distill_core::Result<serde_json::Value> {
    let settings = cfg.settings("[filter]")?;
    let input = ctx.input_dir("teacher").join("responses.jsonl");
    let scratch = ctx.scratch_dir.join("pass1");
    let out = Outputs { kept: ctx.out_dir.join("kept.jsonl"), exclusions: ctx.out_dir.join("exclusions.jsonl") };
    let stats = filter_file(&input, &settings, &scratch, &out, ctx.quiet)?;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(stats)
}

/// Where the filter writes.
pub struct Outputs {
    pub kept: std::path::PathBuf,
    pub exclusions: std::path::PathBuf,
}

/// A candidate that passed every per-record and per-prompt filter, as dedup sees it.
struct Survivor {
    ordinal: u64,
    id: String,
    fingerprint: distill_textdedup::Fingerprint,
}

/// An exclusion with its candidate's place in the run, between the two passes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Numbered {
    ordinal: u64,
    #[serde(flatten)]
    exclusion: Exclusion,
}

/// The whole stage over a `responses.jsonl` file, streaming (see the module docs):
///
/// 1. records are read in batches of [`BATCH_RECORDS`]; each batch goes through every filter up
///    to self-consistency; survivors go to `scratch` (their `KeptSample`), keeping in memory only
///    what dedup needs (id, a 16-byte fingerprint, a MinHash signature), and exclusions to
///    `scratch` too, in candidate order;
/// 2. exact and near dedup run over the fingerprints and signatures;
/// 3. survivors and exclusions are merged back in candidate order into the outputs.
pub fn filter_file(input: &std::path::Path, s: &Settings, scratch: &std::path::Path, out: &Outputs, quiet: bool) -> distill_core::Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all(scratch).map_err(|e| distill_core::Error::io(scratch, e))?;
    let (pass1_kept, pass1_excluded) = (scratch.join("kept.jsonl"), scratch.join("exclusions.jsonl"));
    let mut kept_w = distill_core::jsonl::Writer::create(&pass1_kept)?;
    let mut excl_w = distill_core::jsonl::Writer::create(&pass1_excluded)?;
    let mut decontaminator = None;
    let mut references = 0;
    if s.cfg.decontamination.enabled {
        let (refs, _) = dedup::load_references(s)?;
        references = refs.len();
        decontaminator = Some(dedup::Decontam(distill_textdedup::Decontaminator::new(refs, &s.cfg.decontamination.matching).map_err(|e| Error::Decontamination(e.to_string()))?));
    }
    let minhash = match s.cfg.dedup.near {
        true => Some(distill_textdedup::MinHashDedup::new(&s.cfg.dedup.minhash).map_err(|e| Error::Core(distill_core::Error::Other(e.to_string())))?),
        false => None,
    };
    let num_perm = minhash.as_ref().map_or(0, |m| m.hasher().num_perm());
    let mut funnel = Funnel::default();
    let mut consistency = consistency::Consistency { settings: s, stats: Default::default() };
    let mut survivors: Vec<Survivor> = Vec::new();
    let mut signatures: Vec<u32> = Vec::new();
    let (mut prompts, mut samples, mut malformed, mut ordinal) = (0usize, 0usize, 0usize, 0u64);
    let mut last_id: Option<String> = None;
    let bar = distill_core::progress::bar(0, "filter", quiet);
    let mut batch: Vec<TeacherRecord> = Vec::with_capacity(BATCH_RECORDS);
    let mut records = distill_core::jsonl::records::<TeacherRecord>(input)?;
    loop {
        let next = records.next().transpose()?;
        let end = next.is_none();
        match next {
            Some(Err(b)) => {
                tracing::warn!("{}:{}: skipped a malformed record: {}", input.display(), b.line, b.message);
                malformed += 1;
            }
            Some(Ok(r)) => {
                match last_id.as_deref().map(|l| l.cmp(r.id.as_str())) {
                    // The same prompt twice (a merge of overlapping parts): the first counts.
                    Some(std::cmp::Ordering::Equal) => continue,
                    Some(std::cmp::Ordering::Greater) => {
                        return Err(distill_core::Error::Other(format!(
                            "{}: record '{}' comes after '{}': the file is not sorted by id; re-run the teacher stage (--force)",
                            input.display(),
                            r.id,
                            last_id.unwrap_or_default()
                        )))
                    }
                    _ => {}
                }
                last_id = Some(r.id.clone());
                batch.push(r);
            }
            None => {}
        }
        if batch.len() < BATCH_RECORDS && !end {
            continue;
        }
        prompts += batch.len();
        let mut alive: Vec<Candidate> = Vec::new();
        for r in batch.drain(..) {
            let r = Arc::new(r);
            for i in 0..r.samples.len() {
                alive.push(Candidate::new(r.clone(), i, ordinal));
                ordinal += 1;
            }
        }
        samples += alive.len();
        judge(&mut funnel, &mut alive, s, decontaminator.as_mut(), &mut consistency)?;
        for (o, e) in funnel.take_exclusions() {
            excl_w.write(&Numbered { ordinal: o, exclusion: e })?;
        }
        for c in alive {
            if let Some(m) = &minhash {
                let at = signatures.len();
                signatures.resize(at + num_perm, u32::MAX);
                m.hasher().signature_into(c.text(), &mut signatures[at..]);
            }
            survivors.push(Survivor { ordinal: c.ordinal, id: c.id.clone(), fingerprint: distill_textdedup::fingerprint(c.text()) });
            kept_w.write(&c.into_kept())?;
        }
        bar.set_message(format!("{prompts} prompts, {} kept before dedup", survivors.len()));
        if end {
            break;
        }
    }
    kept_w.finish()?;
    excl_w.finish()?;

    // Pass 2: dedup over what the survivors left in memory.
    let mut drops: Vec<Option<(&'static str, &'static str, String)>> = vec![None; survivors.len()];
    let mut steps = |name: &'static str, drops: &Vec<Option<(&'static str, &'static str, String)>>, before: usize| {
        let out = drops.iter().filter(|d| d.is_none()).count();
        funnel.steps.push(funnel::Step { filter: name, input: before, dropped: before - out, out });
        for d in drops.iter().flatten().filter(|d| d.0 == name) {
            *funnel.dropped.entry(d.0).or_default().entry(d.1).or_default() += 1;
        }
        out
    };
    let mut alive_count = survivors.len();
    if s.cfg.dedup.exact {
        let fps: Vec<distill_textdedup::Fingerprint> = survivors.iter().map(|v| v.fingerprint).collect();
        for cl in distill_textdedup::duplicate_fingerprints(&fps) {
            for (i, _) in cl.duplicates {
                drops[i] = Some(("exact_dedup", "exact_duplicate", format!("same as {}", survivors[cl.keep].id)));
            }
        }
        alive_count = steps("exact_dedup", &drops, alive_count);
    }
    if let Some(m) = &minhash {
        // Near dedup among what exact dedup left, in candidate order.
        let live: Vec<usize> = (0..survivors.len()).filter(|&i| drops[i].is_none()).collect();
        let mut flat = Vec::with_capacity(live.len() * num_perm);
        for &i in &live {
            flat.extend_from_slice(&signatures[i * num_perm..(i + 1) * num_perm]);
        }
        drop(signatures);
        for cl in m.clusters(&distill_textdedup::Signatures::from_flat(num_perm, flat)) {
            for (j, sim) in cl.duplicates {
                drops[live[j]] = Some(("near_dedup", "near_duplicate", format!("~{} (estimated Jaccard {sim:.2})", survivors[live[cl.keep]].id)));
            }
        }
        steps("near_dedup", &drops, alive_count);
    }

    // Pass 3: survivors and exclusions back in candidate order.
    let mut kept_out = distill_core::jsonl::Writer::create(&out.kept)?;
    let mut excl_out = distill_core::jsonl::Writer::create(&out.exclusions)?;
    let mut excluded = distill_core::jsonl::records::<Numbered>(&pass1_excluded)?;
    let mut pending: Option<Numbered> = None;
    // Writes the pass-1 exclusions of candidates before `before`.
    let mut next_excluded = |before: u64, w: &mut distill_core::jsonl::Writer| -> distill_core::Result<()> {
        loop {
            if pending.is_none() {
                pending = match excluded.next().transpose()? {
                    None => return Ok(()),
                    Some(r) => Some(r.map_err(|b| distill_core::Error::Input { path: pass1_excluded.clone(), line: b.line, message: b.message })?),
                };
            }
            if pending.as_ref().is_some_and(|n| n.ordinal >= before) {
                return Ok(());
            }
            w.write(&pending.take().expect("checked above").exclusion)?;
        }
    };
    let mut kept_count = 0usize;
    for (i, k) in distill_core::jsonl::records::<KeptSample>(&pass1_kept)?.enumerate() {
        let k = k?.map_err(|b| distill_core::Error::Input { path: pass1_kept.clone(), line: b.line, message: b.message })?;
        next_excluded(survivors[i].ordinal, &mut excl_out)?;
        match &drops[i] {
            Some((filter, reason, detail)) => excl_out.write(&Exclusion { id: k.id, filter: filter.to_string(), reason: reason.to_string(), detail: detail.clone() })?,
            None => {
                kept_out.write(&k)?;
                kept_count += 1;
            }
        }
    }
    next_excluded(u64::MAX, &mut excl_out)?;
    let dropped = excl_out.records;
    kept_out.finish()?;
    excl_out.finish()?;
    bar.finish_and_clear();
    Ok(serde_json::json!({
        "prompts": prompts,
        "samples": samples,
        "kept": kept_count,
        "dropped": dropped,
        "funnel": funnel.steps,
        "dropped_by_reason": funnel.dropped,
        "consistency": consistency.stats,
        "decontamination_references": references,
        "filter_secs": t0.elapsed().as_secs_f64(),
        "malformed_lines": malformed,
    }))
}

/// Every filter up to self-consistency over one batch (dedup spans batches: see [`filter_file`]).
fn judge(funnel: &mut Funnel, alive: &mut Vec<Candidate>, s: &Settings, decontaminator: Option<&mut dedup::Decontam>, consistency: &mut consistency::Consistency) -> Result<()> {
    funnel.apply(&mut PerRecord { name: "finish_reason", rule: |c: &Candidate| rules::finish_reason(c, s) }, alive)?;
    funnel.apply(&mut PerRecord { name: "length", rule: |c: &Candidate| rules::length(c, s) }, alive)?;
    funnel.apply(&mut PerRecord { name: "refusal", rule: |c: &Candidate| rules::refusal(c, s) }, alive)?;
    funnel.apply(&mut PerRecord { name: "code", rule: |c: &Candidate| rules::has_code(c, s) }, alive)?;
    funnel.apply(&mut Parse(s), alive)?;
    funnel.apply(&mut PerRecord { name: "copies_prompt", rule: rules::copies_prompt }, alive)?;
    if let Some(d) = decontaminator {
        funnel.apply(d, alive)?;
    }
    funnel.apply(consistency, alive)?;
    Ok(())
}
