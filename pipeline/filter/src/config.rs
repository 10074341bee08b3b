//! The `[filter]` config section (with `[filter.consistency]`, `[filter.dedup]`,
//! `[filter.decontamination]`, `[filter.sandbox]`) and its validated runtime form.

use std::time::Duration;

use distill_sandbox::SandboxConfig;
pub use distill_textdedup::{DecontaminationConfig, DedupConfig};
use serde::{Deserialize, Serialize};

/// `[filter]`: which teacher answers become training data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Interpreter for the parse check (only `ast.parse` runs in it, never the code).
    pub python: String,
    /// Finish reasons that count as a complete answer (`length` means it was cut off).
    pub allowed_finish_reasons: Vec<String>,
    /// Answers shorter than this many characters are dropped.
    pub min_chars: usize,
    /// Answers longer than this many characters are dropped.
    pub max_chars: usize,
    /// Extracted code longer than this many lines is dropped.
    pub max_code_lines: usize,
    /// Case-insensitive regexes for refusals and boilerplate, matched in the prose outside
    /// code blocks.
    pub refusal_patterns: Vec<String>,
    /// Task types (`meta.task_type`) whose answers may be prose without code.
    pub prose_task_types: Vec<String>,
    pub consistency: ConsistencyConfig,
    pub dedup: DedupConfig,
    pub decontamination: DecontaminationConfig,
    /// The sandbox that runs samples against tests.
    pub sandbox: SandboxConfig,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            python: "python3".into(),
            allowed_finish_reasons: vec!["stop".into()],
            min_chars: 8,
            max_chars: 16_000,
            max_code_lines: 400,
            refusal_patterns: [
                r"\bI(?:'m| am) (?:sorry|afraid)\b",
                r"\bI (?:can(?:no|')t|am unable to|won't) (?:help|assist|provide|do that|comply)",
                r"\bas an AI\b",
                r"\bas a (?:large )?language model\b",
                r"\bI don't have (?:access|the ability)\b",
            ]
            .map(String::from)
            .to_vec(),
            prose_task_types: vec!["explain".into()],
            consistency: ConsistencyConfig::default(),
            dedup: DedupConfig::default(),
            decontamination: DecontaminationConfig::default(),
            sandbox: SandboxConfig::default(),
        }
    }
}

/// `[filter.consistency]`: self-consistency by dual execution agreement (CodeT).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencyConfig {
    pub enabled: bool,
    /// Prompts with fewer surviving Python samples than this are not scored (kept as they are).
    pub min_samples: usize,
    /// `best_cluster`: keep the samples of the highest-scoring agreement cluster;
    /// `pass_rate`: keep every sample passing at least `min_pass_rate` of the tests.
    pub rule: String,
    pub min_pass_rate: f64,
    /// At most this many distinct test cases per prompt (first seen first).
    pub max_tests: usize,
    /// Wall-clock limit of one sample-against-one-test program, in seconds.
    pub timeout_secs: f64,
    /// Address-space limit of one program, in MiB.
    pub memory_mib: u64,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        ConsistencyConfig { enabled: true, min_samples: 2, rule: "best_cluster".into(), min_pass_rate: 0.5, max_tests: 16, timeout_secs: 3.0, memory_mib: 1024 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepRule {
    BestCluster,
    PassRate(f64),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cfg: FilterConfig,
    pub refusals: Vec<regex::Regex>,
    pub rule: KeepRule,
    pub timeout: Duration,
}

impl FilterConfig {
    /// Checks the section; every problem is reported with its key.
    pub fn settings(&self, file: &str) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            if let distill_core::Error::Config { problems: p } = distill_core::Error::config_value(file, None, &format!("filter.{key}"), format!("[filter] {key}: {msg}")) {
                problems.extend(p);
            }
        };
        let mut refusals = Vec::new();
        for (i, p) in self.refusal_patterns.iter().enumerate() {
            match regex::RegexBuilder::new(p).case_insensitive(true).build() {
                Ok(r) => refusals.push(r),
                Err(e) => bad("refusal_patterns", format!("pattern {} ({p:?}) is not a valid regex: {}", i + 1, e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))),
            }
        }
        if self.min_chars > self.max_chars {
            bad("min_chars", format!("{} is above max_chars = {}", self.min_chars, self.max_chars));
        }
        let c = &self.consistency;
        let rule = match c.rule.as_str() {
            "best_cluster" => KeepRule::BestCluster,
            "pass_rate" => KeepRule::PassRate(c.min_pass_rate),
            other => {
                bad("consistency.rule", format!("'{other}' is not a rule: use \"best_cluster\" or \"pass_rate\""));
                KeepRule::BestCluster
            }
        };
        if !(0.0..=1.0).contains(&c.min_pass_rate) {
            bad("consistency.min_pass_rate", format!("{} is outside [0, 1]", c.min_pass_rate));
        }
        if c.min_samples == 0 {
            bad("consistency.min_samples", "must be at least 1 (2 is usual)".into());
        }
        if !(c.timeout_secs > 0.0 && c.timeout_secs <= 600.0) {
            bad("consistency.timeout_secs", format!("{} is outside (0, 600]", c.timeout_secs));
        }
        if self.dedup.near {
            if let Err(e) = self.dedup.minhash.resolve() {
                bad("dedup.minhash", e.to_string());
            }
        }
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        Ok(Settings { cfg: self.clone(), refusals, rule, timeout: Duration::from_secs_f64(c.timeout_secs) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_benchmarks::Benchmark;

    #[test]
    fn bad_values_are_reported_together() {
        let mut cfg = FilterConfig { refusal_patterns: vec!["(".into()], min_chars: 10, max_chars: 5, ..Default::default() };
        cfg.consistency.rule = "majority".into();
        let e = cfg.settings("f.toml").unwrap_err().to_string();
        assert_eq!(e.lines().count(), 3, "{e}");
        assert!(e.contains("consistency.rule: 'majority'"), "{e}");
    }

    #[test]
    fn nested_sections_parse_from_toml() {
        #[derive(Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Doc {
            filter: FilterConfig,
        }
        let d: Doc = distill_core::config::parse(
            "[filter]\nmin_chars = 3\n[filter.consistency]\nrule = \"pass_rate\"\n[filter.decontamination]\nbenchmarks = [\"humaneval\"]\n[filter.sandbox]\nworkers = 2\n",
            "f.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.filter.min_chars, 3);
        assert_eq!(d.filter.decontamination.benchmarks, vec![Benchmark::HumanEval]);
        assert_eq!(d.filter.sandbox.workers, 2);
        assert_eq!(d.filter.settings("f").unwrap().rule, KeepRule::PassRate(0.5));
    }
}
