//! The benchmark files compiled into the binary, so that an installed `distill` scores and
//! decontaminates with no `evals/data/` on disk. Each is carried gzipped: the three vendored
//! `.jsonl.gz` files as they are, `mbpp.jsonl` and `sanitized-mbpp.json` compressed by
//! `build.rs`. What [`vendored_bytes`] returns is the file as vendored, so the loader checks the
//! same sha256 (`evals/SOURCES.md`) whichever source it reads.

use std::io::Read;

use crate::source::DataFile;

/// The bytes of `file` exactly as vendored in `evals/data/` (compressed where the vendored file is).
pub(crate) fn vendored_bytes(file: DataFile) -> Vec<u8> {
    match file {
        DataFile::HumanEval => include_bytes!("../../../evals/data/HumanEval.jsonl.gz").to_vec(),
        DataFile::HumanEvalPlus => include_bytes!("../../../evals/data/HumanEvalPlus-v0.1.10.jsonl.gz").to_vec(),
        DataFile::MbppPlus => include_bytes!("../../../evals/data/MbppPlus-v0.2.0.jsonl.gz").to_vec(),
        DataFile::Mbpp => gunzip(include_bytes!(concat!(env!("OUT_DIR"), "/mbpp.jsonl.gz"))),
        DataFile::MbppSanitized => gunzip(include_bytes!(concat!(env!("OUT_DIR"), "/sanitized-mbpp.json.gz"))),
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("build.rs wrote a valid gzip stream");
    out
}
