//! Which benchmark lives in which vendored file, and the sha256 each file must have.
//!
//! The hashes are those of `evals/SOURCES.md` (the whole file as stored, compressed or not).
//! A benchmark is a view of one file: MBPP's test split and the full MBPP both read
//! `mbpp.jsonl`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One of the five vendored data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFile {
    HumanEval,
    HumanEvalPlus,
    Mbpp,
    MbppSanitized,
    MbppPlus,
}

impl DataFile {
    pub const ALL: [DataFile; 5] = [DataFile::HumanEval, DataFile::HumanEvalPlus, DataFile::Mbpp, DataFile::MbppSanitized, DataFile::MbppPlus];

    /// The file name under the data folder.
    pub fn file_name(self) -> &'static str {
        match self {
            DataFile::HumanEval => "HumanEval.jsonl.gz",
            DataFile::HumanEvalPlus => "HumanEvalPlus-v0.1.10.jsonl.gz",
            DataFile::Mbpp => "mbpp.jsonl",
            DataFile::MbppSanitized => "sanitized-mbpp.json",
            DataFile::MbppPlus => "MbppPlus-v0.2.0.jsonl.gz",
        }
    }

    /// The sha256 of the file as vendored (evals/SOURCES.md).
    pub fn sha256(self) -> &'static str {
        match self {
            DataFile::HumanEval => "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
            DataFile::HumanEvalPlus => "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
            DataFile::Mbpp => "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
            DataFile::MbppSanitized => "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9",
            DataFile::MbppPlus => "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
        }
    }

    pub fn gzipped(self) -> bool {
        self.file_name().ends_with(".gz")
    }

    /// Licence of the data, as recorded in evals/SOURCES.md.
    pub fn license(self) -> &'static str {
        match self {
            DataFile::HumanEval => "MIT",
            DataFile::HumanEvalPlus | DataFile::MbppPlus => "Apache-2.0",
            DataFile::Mbpp | DataFile::MbppSanitized => "CC-BY-4.0",
        }
    }
}

/// A benchmark: a data file plus the selection of its tasks that is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Benchmark {
    /// OpenAI HumanEval, 164 tasks.
    #[serde(rename = "humaneval")]
    HumanEval,
    /// EvalPlus HumanEval+ v0.1.10: HumanEval with base and plus inputs.
    #[serde(rename = "humaneval+")]
    HumanEvalPlus,
    /// MBPP's test split: task ids 11..=510 (500 tasks), what "MBPP" scores mean.
    #[serde(rename = "mbpp")]
    MbppTest,
    /// All 974 MBPP tasks (for decontamination; not a scoring split).
    #[serde(rename = "mbpp-full")]
    MbppFull,
    /// The hand-verified MBPP subset, 427 tasks.
    #[serde(rename = "mbpp-sanitized")]
    MbppSanitized,
    /// EvalPlus MBPP+ v0.2.0, 378 tasks.
    #[serde(rename = "mbpp+")]
    MbppPlus,
    /// HumanEval single-line infilling: each non-blank line of a canonical solution masked in
    /// turn (1,033 tasks; see `infill.rs`).
    #[serde(rename = "humaneval-infill-single")]
    HumanEvalInfillSingle,
    /// HumanEval multi-line infilling: every block of two or more lines of a canonical
    /// solution that starts and ends on a non-blank line (5,815 tasks).
    #[serde(rename = "humaneval-infill-multi")]
    HumanEvalInfillMulti,
}

impl Benchmark {
    pub const ALL: [Benchmark; 8] = [
        Benchmark::HumanEval,
        Benchmark::HumanEvalPlus,
        Benchmark::MbppTest,
        Benchmark::MbppFull,
        Benchmark::MbppSanitized,
        Benchmark::MbppPlus,
        Benchmark::HumanEvalInfillSingle,
        Benchmark::HumanEvalInfillMulti,
    ];

    /// The name used on the command line, in configs and as the output folder name.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::HumanEval => "humaneval",
            Benchmark::HumanEvalPlus => "humaneval+",
            Benchmark::MbppTest => "mbpp",
            Benchmark::MbppFull => "mbpp-full",
            Benchmark::MbppSanitized => "mbpp-sanitized",
            Benchmark::MbppPlus => "mbpp+",
            Benchmark::HumanEvalInfillSingle => "humaneval-infill-single",
            Benchmark::HumanEvalInfillMulti => "humaneval-infill-multi",
        }
    }

    pub fn data_file(self) -> DataFile {
        match self {
            Benchmark::HumanEval | Benchmark::HumanEvalInfillSingle | Benchmark::HumanEvalInfillMulti => DataFile::HumanEval,
            Benchmark::HumanEvalPlus => DataFile::HumanEvalPlus,
            Benchmark::MbppTest | Benchmark::MbppFull => DataFile::Mbpp,
            Benchmark::MbppSanitized => DataFile::MbppSanitized,
            Benchmark::MbppPlus => DataFile::MbppPlus,
        }
    }

    /// Whether tasks carry EvalPlus base/plus inputs ([`crate::PlusTests`]).
    pub fn is_plus(self) -> bool {
        matches!(self, Benchmark::HumanEvalPlus | Benchmark::MbppPlus)
    }

    /// HumanEval-style (function signature + docstring prompt) rather than MBPP-style; the
    /// infilling sets are built from HumanEval and run its tests.
    pub fn is_humaneval_family(self) -> bool {
        matches!(self, Benchmark::HumanEval | Benchmark::HumanEvalPlus | Benchmark::HumanEvalInfillSingle | Benchmark::HumanEvalInfillMulti)
    }

    /// An infilling benchmark: tasks have a `suffix`, the model fills the middle.
    pub fn is_infill(self) -> bool {
        matches!(self, Benchmark::HumanEvalInfillSingle | Benchmark::HumanEvalInfillMulti)
    }
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Benchmark {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Benchmark::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| Error::UnknownBenchmark(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for b in Benchmark::ALL {
            assert_eq!(b.name().parse::<Benchmark>().unwrap(), b);
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{}\"", b.name()));
        }
        let err = "mbpp++".parse::<Benchmark>().unwrap_err().to_string();
        assert!(err.contains("unknown benchmark 'mbpp++'") && err.contains("humaneval+"), "{err}");
    }
}
