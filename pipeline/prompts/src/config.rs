//! The `[prompts]` section of the config (TOML layer) and its validated runtime form.
//!
//! Paths in a config file are relative to that file (the binary resolves them when it loads the
//! config); an empty data path means the copy built into the binary (`builtin.rs`).

use std::path::PathBuf;

use distill_benchmarks::Benchmark;
use distill_core::{Error, Result};
pub use distill_textdedup::{DecontaminationConfig, DedupConfig};
use serde::{Deserialize, Serialize};

/// `[prompts]`: where prompts come from and how they are cleaned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptsConfig {
    /// Seed of every random choice (template fills, few-shot examples, evolution operators).
    /// Same config and seed: byte-identical prompts.
    pub seed: u64,
    /// Folder of template files (`*.toml`, see `prompts/templates/python.toml` for the format).
    /// Empty: the built-in `prompts/templates/`.
    pub templates_dir: String,
    /// Problem specs (JSONL: name, signature, description, difficulty) that `source = "spec"`
    /// templates are filled from. Empty: the built-in `prompts/specs.jsonl`.
    pub specs_file: String,
    /// Seed tasks for Self-Instruct (JSONL: `{"instruction": ...}`). Empty: the built-in
    /// `prompts/seed_tasks.jsonl`.
    pub seed_tasks_file: String,
    /// User JSONL files. A line is a prompt (`{"prompt": ...}` or `{"messages": [...]}`, with
    /// optional `id` and `meta`) or a seed task for the teacher-driven generators
    /// (`{"instruction": ...}`). A malformed line is an error naming the file and line.
    pub user_files: Vec<String>,
    /// Keep only prompts in these languages (empty: all).
    pub languages: Vec<String>,
    /// System message put before every generated chat prompt ("" for none).
    pub system_prompt: String,
    pub template: TemplateGenConfig,
    pub corpus: CorpusConfig,
    pub self_instruct: SelfInstructConfig,
    pub evol_instruct: EvolInstructConfig,
    pub oss_instruct: OssInstructConfig,
    pub dedup: DedupConfig,
    pub decontamination: DecontaminationConfig,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        PromptsConfig {
            seed: 1,
            templates_dir: String::new(),
            specs_file: String::new(),
            seed_tasks_file: String::new(),
            user_files: Vec::new(),
            languages: Vec::new(),
            system_prompt: String::new(),
            template: TemplateGenConfig::default(),
            corpus: CorpusConfig::default(),
            self_instruct: SelfInstructConfig::default(),
            evol_instruct: EvolInstructConfig::default(),
            oss_instruct: OssInstructConfig::default(),
            dedup: DedupConfig::default(),
            decontamination: DecontaminationConfig::default(),
        }
    }
}

/// `[prompts.template]`: the template generator (no teacher needed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateGenConfig {
    pub enabled: bool,
    /// Prompts drawn from each template (fills chosen at random without repetition).
    pub per_template: usize,
}

impl Default for TemplateGenConfig {
    fn default() -> Self {
        TemplateGenConfig { enabled: true, per_template: 8 }
    }
}

/// `[prompts.corpus]`: the local code corpus seeds come from (templates with
/// `source = "corpus"`, and OSS-Instruct).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorpusConfig {
    /// Folder of Python sources; "" means the standard library of `python`
    /// (`sysconfig.get_paths()["stdlib"]`).
    pub path: String,
    /// Python interpreter that parses the corpus (its `ast` module finds whole definitions).
    pub python: String,
    /// Smallest and largest definition, in lines (decorators included).
    pub min_lines: usize,
    pub max_lines: usize,
    /// Folder and file names skipped anywhere in the tree.
    pub exclude: Vec<String>,
}

impl Default for CorpusConfig {
    fn default() -> Self {
        CorpusConfig {
            path: String::new(),
            python: "python3".into(),
            min_lines: 1,
            max_lines: 15,
            exclude: ["test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "ensurepip", "__pycache__"].map(String::from).to_vec(),
        }
    }
}

/// `[prompts.self_instruct]`: new tasks from few-shot examples of existing ones, in rounds
/// (each round's tasks join the example pool of the next).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfInstructConfig {
    pub enabled: bool,
    pub rounds: usize,
    /// Teacher requests per round.
    pub requests_per_round: usize,
    /// Example tasks shown in each request.
    pub examples_per_request: usize,
    /// New tasks asked for in each request.
    pub tasks_per_request: usize,
    pub temperature: f64,
    pub max_tokens: u32,
}

impl Default for SelfInstructConfig {
    fn default() -> Self {
        SelfInstructConfig { enabled: false, rounds: 2, requests_per_round: 10, examples_per_request: 3, tasks_per_request: 5, temperature: 0.7, max_tokens: 1024 }
    }
}

/// `[prompts.evol_instruct]`: rewrite prompts into harder (depth) or new (breadth) ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvolInstructConfig {
    pub enabled: bool,
    /// Evolution rounds (k): round i evolves the prompts round i-1 produced.
    pub rounds: usize,
    /// Prompts (from the other generators, already decontaminated) evolved in round 1.
    pub base_prompts: usize,
    /// Operators drawn from: add_constraints, deepen, concretize, increase_reasoning,
    /// complexity_requirement, misdirection (depth) and breadth. Empty: all.
    pub operators: Vec<String>,
    pub temperature: f64,
    pub max_tokens: u32,
}

impl Default for EvolInstructConfig {
    fn default() -> Self {
        EvolInstructConfig { enabled: false, rounds: 2, base_prompts: 20, operators: Vec::new(), temperature: 0.7, max_tokens: 1024 }
    }
}

/// `[prompts.oss_instruct]`: a problem written by the teacher around a corpus snippet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OssInstructConfig {
    pub enabled: bool,
    /// Seed snippets used (one request each).
    pub seeds: usize,
    pub temperature: f64,
    pub max_tokens: u32,
}

impl Default for OssInstructConfig {
    fn default() -> Self {
        OssInstructConfig { enabled: false, seeds: 20, temperature: 0.7, max_tokens: 1024 }
    }
}

/// Evolution operators (WizardLM's depth operators, plus breadth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvolOp {
    AddConstraints,
    Deepen,
    Concretize,
    IncreaseReasoning,
    ComplexityRequirement,
    Misdirection,
    Breadth,
}

impl EvolOp {
    pub const ALL: [EvolOp; 7] =
        [EvolOp::AddConstraints, EvolOp::Deepen, EvolOp::Concretize, EvolOp::IncreaseReasoning, EvolOp::ComplexityRequirement, EvolOp::Misdirection, EvolOp::Breadth];

    pub fn name(self) -> &'static str {
        match self {
            EvolOp::AddConstraints => "add_constraints",
            EvolOp::Deepen => "deepen",
            EvolOp::Concretize => "concretize",
            EvolOp::IncreaseReasoning => "increase_reasoning",
            EvolOp::ComplexityRequirement => "complexity_requirement",
            EvolOp::Misdirection => "misdirection",
            EvolOp::Breadth => "breadth",
        }
    }
}

/// The validated settings the stage runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cfg: PromptsConfig,
    /// `None`: the built-in data (`builtin.rs`).
    pub templates_dir: Option<PathBuf>,
    pub specs_file: Option<PathBuf>,
    pub seed_tasks_file: Option<PathBuf>,
    pub user_files: Vec<PathBuf>,
    pub evol_ops: Vec<EvolOp>,
    pub benchmarks: Vec<Benchmark>,
}

impl PromptsConfig {
    /// Checks values that TOML types cannot express; every problem at once.
    pub fn settings(&self) -> Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| {
            if let Error::Config { problems: p } = Error::config_value("config", None, &format!("prompts.{key}"), format!("[prompts] {key}: {msg}")) {
                problems.extend(p);
            }
        };
        if self.corpus.min_lines == 0 || self.corpus.min_lines > self.corpus.max_lines {
            bad("corpus.min_lines", format!("need 1 <= min_lines <= max_lines, got {}..{}", self.corpus.min_lines, self.corpus.max_lines));
        }
        if let Err(e) = self.dedup.minhash.resolve() {
            bad("dedup.minhash", e.to_string());
        }
        let m = &self.decontamination.matching;
        if m.ngram == 0 || m.min_matches == 0 {
            bad("decontamination.matching", "ngram and min_matches must be at least 1".into());
        }
        let si = &self.self_instruct;
        if si.enabled && (si.examples_per_request == 0 || si.tasks_per_request == 0 || si.tasks_per_request > 50) {
            bad("self_instruct", "examples_per_request must be >= 1 and tasks_per_request in 1..=50".into());
        }
        for (key, t) in [
            ("self_instruct.temperature", si.temperature),
            ("evol_instruct.temperature", self.evol_instruct.temperature),
            ("oss_instruct.temperature", self.oss_instruct.temperature),
        ] {
            if !(0.0..=2.0).contains(&t) {
                bad(key, format!("{t} is out of range 0..=2"));
            }
        }
        let mut evol_ops = Vec::new();
        for name in &self.evol_instruct.operators {
            match EvolOp::ALL.iter().find(|o| o.name() == name) {
                Some(o) => evol_ops.push(*o),
                None => bad("evol_instruct.operators", format!("unknown operator '{name}' (known: {})", EvolOp::ALL.map(EvolOp::name).join(", "))),
            }
        }
        if evol_ops.is_empty() {
            evol_ops = EvolOp::ALL.to_vec();
        }
        evol_ops.sort();
        evol_ops.dedup();
        if !problems.is_empty() {
            return Err(Error::Config { problems });
        }
        Ok(Settings {
            cfg: self.clone(),
            templates_dir: configured_path(&self.templates_dir),
            specs_file: configured_path(&self.specs_file),
            seed_tasks_file: configured_path(&self.seed_tasks_file),
            user_files: self.user_files.iter().map(PathBuf::from).collect(),
            evol_ops,
            benchmarks: self.decontamination.benchmarks.clone(),
        })
    }

    /// Whether a generator that calls the teacher is on.
    pub fn needs_teacher(&self) -> bool {
        self.self_instruct.enabled || self.evol_instruct.enabled || self.oss_instruct.enabled
    }
}

/// A data path key: empty means the built-in file.
fn configured_path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_validate_and_every_problem_is_reported() {
        PromptsConfig::default().settings().unwrap();
        let text = "[prompts]\nseed = 3\n[prompts.evol_instruct]\noperators = [\"deepen\", \"sideways\"]\n[prompts.self_instruct]\nenabled = true\ntasks_per_request = 0\n";
        #[derive(Debug, Deserialize)]
        struct Top {
            prompts: PromptsConfig,
        }
        let top: Top = distill_core::config::parse(text, "x.toml").unwrap();
        assert_eq!(top.prompts.seed, 3);
        let err = top.prompts.settings().unwrap_err().to_string();
        assert!(err.contains("unknown operator 'sideways'") && err.contains("tasks_per_request in 1..=50"), "{err}");
        // An unknown benchmark is refused when the file is read, with its line.
        let err = distill_core::config::parse::<Top>("[prompts.decontamination]\nbenchmarks = [\"humaneval\", \"apps\"]\n", "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml:2") && err.contains("apps"), "{err}");
        let err = distill_core::config::parse::<Top>("[prompts.dedup.minhash]\nnum_perms = 3\n", "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml:2") && err.contains("num_perm"), "{err}");
    }
}
