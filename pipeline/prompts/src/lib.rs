//! The prompts stage: the task prompts the teacher answers.
//!
//! Sources: templates (task type x language x difficulty, `prompts/templates/`), problem specs
//! (`prompts/specs.jsonl`), whole functions and classes of a local code corpus (the Python
//! standard library by default, parsed with Python's `ast`), and user JSONL files. Generators:
//! `template` (deterministic from the seed), `self_instruct`, `evol_instruct` (depth and
//! breadth operators, k rounds) and `oss_instruct` (snippet -> problem), the last three through
//! the teacher stage's own client, limiter and cache.
//!
//! Cleaning (see [`clean`]): validation, decontamination against HumanEval(+), MBPP (all 974
//! and sanitized) and MBPP+ (n-gram overlap and docstring substrings), exact and MinHash-LSH
//! near-duplicate removal, all from `distill-textdedup` (which the filter stage reuses). Every
//! drop has a reason in `exclusions.jsonl`; `stats.json` counts kept and dropped per generator,
//! task type, language and reason.
//!
//! Wiring: `distill prompts` calls [`run`] with the `[prompts]` section ([`PromptsConfig`]) and
//! the `[teacher]` section; [`external_inputs`] gives the runner the digests of the files the
//! stage reads outside the work dir.

pub mod builtin;
pub mod clean;
pub mod config;
pub mod corpus;
pub mod data;
pub mod error;
pub mod generate;
pub mod record;
pub mod rng;
pub mod stage;
pub mod templates;

pub use config::PromptsConfig;
pub use error::{PromptsError, Result};
pub use stage::{external_inputs, run};

/// Version of the output format (`StageDef::schema_version`).
pub const SCHEMA_VERSION: u32 = 1;
