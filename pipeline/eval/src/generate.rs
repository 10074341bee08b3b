//! Generation: what the evaluator asks of a model, and the bigcode harness's post-processing.
//!
//! A [`Generator`] turns prompts into `n` raw continuations each. The student checkpoint
//! (batched KV-cache decoding in the `model` crate) and the OpenAI-compatible endpoint (the
//! teacher client, with its cache) implement it in the binary; the evaluator does not care
//! which. Continuations are then cut at the benchmark's stop sequences, as the bigcode harness
//! does (`_stop_at_stop_token`: at the earliest occurrence of any of them), and that is the
//! `completion` scored.

use distill_benchmarks::{Benchmark, Task};
use serde::Serialize;

use crate::config::EvalSettings;
use crate::error::Result;
use crate::programs::model_prompt;

/// One prompt to complete `n` times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenRequest {
    pub task_id: String,
    /// The exact text to continue (no chat template: these are completion benchmarks).
    pub prompt: String,
    pub n: u32,
    /// Generation may stop at any of these; the evaluator truncates at them anyway.
    pub stop: Vec<String>,
    pub max_new_tokens: u32,
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: u32,
    /// Seed for this prompt: the configured seed mixed with the task id, so a task's samples
    /// do not depend on which other tasks share its batch.
    pub seed: u64,
    /// The configured seed itself (for generators that take one seed per batch, such as the
    /// endpoint, where the prompt already makes each request distinct).
    pub run_seed: u64,
}

/// A model that completes prompts.
pub trait Generator: Send + Sync {
    /// The model's name as result files record it (checkpoint path, endpoint model id).
    fn name(&self) -> String;

    /// `n` continuations (text after the prompt) per request, in request order.
    fn generate(&self, requests: &[GenRequest]) -> Result<Vec<Vec<String>>>;
}

/// The bigcode harness's stop sequences for a benchmark ("+" sets use their base set's;
/// multi-line infilling HumanEval's, single-line infilling the first newline).
pub fn stop_sequences(b: Benchmark) -> &'static [&'static str] {
    if b == Benchmark::HumanEvalInfillSingle {
        // The middle is one line: the first newline ends it.
        &["\n"]
    } else if b.is_humaneval_family() {
        &["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]
    } else {
        &["\nclass", "\nassert", "\n\"\"\"", "\nprint", "\nif", "\n<|/", "\n```"]
    }
}

/// The continuation up to the earliest stop sequence.
pub fn truncate_at_stop<'a>(text: &'a str, stops: &[&str]) -> &'a str {
    let end = stops.iter().filter_map(|s| text.find(s)).min().unwrap_or(text.len());
    &text[..end]
}

/// The generation request of each task.
pub fn requests(tasks: &[Task], settings: &EvalSettings) -> Vec<GenRequest> {
    tasks
        .iter()
        .map(|t| {
            let s = &settings.sampling;
            GenRequest {
                task_id: t.task_id.clone(),
                prompt: if t.benchmark.is_infill() { settings.fim.prompt(&t.prompt, &t.suffix) } else { model_prompt(t, settings.strip_prompt) },
                n: s.n,
                stop: stop_sequences(t.benchmark).iter().map(|x| x.to_string()).collect(),
                max_new_tokens: s.max_new_tokens,
                temperature: s.temperature,
                top_p: s.top_p,
                top_k: s.top_k,
                seed: task_seed(s.seed, &t.task_id),
                run_seed: s.seed,
            }
        })
        .collect()
}

/// FNV-1a of the task id, mixed into the seed.
fn task_seed(seed: u64, task_id: &str) -> u64 {
    let h = task_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    seed ^ h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_stops_at_the_earliest_stop_sequence() {
        let he = stop_sequences(Benchmark::HumanEval);
        assert_eq!(truncate_at_stop("    return x\n\ndef other():\n    pass\n", he), "    return x\n");
        assert_eq!(truncate_at_stop("    return x\nprint(1)\nclass A: pass", he), "    return x");
        assert_eq!(truncate_at_stop("    return x\n", he), "    return x\n");
        let mbpp = stop_sequences(Benchmark::MbppPlus);
        assert_eq!(truncate_at_stop("def f(x):\n    return x\nassert f(1) == 1\n", mbpp), "def f(x):\n    return x");
        assert_ne!(task_seed(1, "HumanEval/1"), task_seed(1, "HumanEval/2"));
    }
}
