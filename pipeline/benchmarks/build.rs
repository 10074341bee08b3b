//! Compresses the two vendored benchmark files that are stored uncompressed (`mbpp.jsonl`,
//! `sanitized-mbpp.json`) into `OUT_DIR`, so the binary carries every benchmark gzipped
//! (`src/builtin.rs`). The other three are vendored as `.jsonl.gz` and included as they are.

use std::io::Write;
use std::path::PathBuf;

fn main() {
    let data = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../evals/data");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for name in ["mbpp.jsonl", "sanitized-mbpp.json"] {
        let src = data.join(name);
        println!("cargo:rerun-if-changed={}", src.display());
        let bytes = std::fs::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes).unwrap();
        std::fs::write(out.join(format!("{name}.gz")), gz.finish().unwrap()).unwrap();
    }
}
