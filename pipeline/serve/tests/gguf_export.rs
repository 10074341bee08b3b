//! GGUF export (`distill_model::gguf`): each family (GPT-2, Llama, Qwen2) in f32, Q8_0 and
//! Q4_K, read back by llama.cpp's own Python reader (`gguf`, tests/gguf_check.py) and checked
//! against the HF folder: names, layouts, every tensor within its format's error bound,
//! architecture and tokenizer metadata.

use std::process::Command;

use distill_model::{gguf, Quantization};
use distill_serve::fixture::write_model_dir;

#[test]
fn gguf_export_round_trips_every_tensor_through_the_gguf_reader() {
    let python = distill_core::testing::reference_python();
    let check = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf_check.py");
    for preset in ["nano", "llama-nano", "qwen2-nano"] {
        let dir = tempfile::tempdir().unwrap();
        write_model_dir(dir.path(), preset, 3).unwrap();
        for q in [None, Some(Quantization::Q8_0), Some(Quantization::Q4K)] {
            let out = dir.path().join(format!("m-{}.gguf", q.map_or("f32", |q| q.name())));
            let report = gguf::export(dir.path(), &out, q).unwrap();
            let run = Command::new(&python).arg(check).arg(&out).arg(dir.path()).output().unwrap();
            let stdout = String::from_utf8_lossy(&run.stdout);
            assert!(run.status.success(), "{preset} {q:?}: {stdout}\n{}", String::from_utf8_lossy(&run.stderr));
            let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(summary["tensors"].as_u64().unwrap() as usize, report.tensors, "{preset} {q:?}");
            let types = summary["types"].as_object().unwrap();
            match q {
                None => assert_eq!(types.keys().collect::<Vec<_>>(), ["F32"], "{preset}"),
                Some(Quantization::Q8_0) => assert!(types.contains_key("Q8_0"), "{preset}: {types:?}"),
                // The presets are 64 or 128 wide: int4 falls back to Q4_0 below 256.
                Some(Quantization::Q4K) => assert!(types.contains_key("Q4_0"), "{preset}: {types:?}"),
            }
        }
    }
}

#[test]
fn a_non_bpe_tokenizer_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path(), "llama-nano", 3).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), r#"{"model": {"type": "Unigram", "vocab": []}, "pre_tokenizer": null}"#).unwrap();
    let err = gguf::export(dir.path(), &dir.path().join("m.gguf"), None).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("byte-level BPE"), "{err}");
}
