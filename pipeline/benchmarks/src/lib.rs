//! The code benchmarks this project scores against: the files vendored in `evals/data/` (see
//! `evals/SOURCES.md` and `evals/README.md` for where each came from and under which licence),
//! compiled into the binary gzipped, or read from a folder of the same files.
//!
//! - [`Benchmark`] names a benchmark: `humaneval` (164), `humaneval+` (164, EvalPlus v0.1.10),
//!   `mbpp` (the test split, task ids 11..=510, 500 tasks), `mbpp-full` (all 974),
//!   `mbpp-sanitized` (427) and `mbpp+` (378, EvalPlus v0.2.0); `humaneval-infill-single`
//!   (1,033) and `humaneval-infill-multi` (5,815), built from HumanEval's canonical solutions
//!   (see `infill.rs`).
//! - [`load`] (the built-in copies) / [`load_from`] (a folder) / [`DataSource::load`] read one,
//!   after checking the file's sha256 against the value recorded in `SOURCES.md`: a mismatch is an [`Error::Checksum`] naming the file, the expected
//!   and the actual hash. Nothing is ever downloaded.
//! - A [`Task`] carries the model prompt under the bigcode-evaluation-harness convention, the
//!   natural-language text, the canonical solution, the tests and the entry point;
//!   [`Task::contamination_texts`] lists what a decontaminator should compare training data with.
//!
//! ```no_run
//! let ds = distill_benchmarks::load(distill_benchmarks::Benchmark::HumanEval).unwrap();
//! assert_eq!(ds.tasks.len(), 164);
//! ```

mod builtin;
mod error;
mod infill;
mod load;
mod rawjson;
mod source;
mod task;

pub use error::{Error, Result};
pub use load::{load, load_from, DataSource, Dataset};
pub use source::{Benchmark, DataFile};
pub use task::{PlusTests, Task, TextKind};
