//! Folders that `transformers` itself wrote load in candle and give its logits within 1e-4:
//! Qwen2 (tied embeddings, q/k/v biases, rope_theta 1e6, as Qwen2.5-0.5B), Llama (grouped
//! query attention, untied head, Llama-3 rope scaling) and GPT-2, each stored in bf16 and
//! sharded over several files with `model.safetensors.index.json`, as released checkpoints
//! are. The folders come from `tests/fixtures/hf_make_model.py` (`save_pretrained`), so the
//! config keys and tensor names are transformers' own, not ours.

use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use distill_model::{load_hf_dir, TrainableLm};

const IDS: [[u32; 10]; 2] = [[5, 6, 7, 300, 2, 9, 10, 11, 400, 12], [100, 99, 98, 97, 3, 4, 200, 201, 202, 0]];

/// Makes the folder with transformers and returns its class name and logits (B, T, V).
fn transformers_folder(family: &str, out: &Path) -> (String, Vec<Vec<Vec<f32>>>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_make_model.py");
    let ids = serde_json::to_string(&IDS).unwrap();
    let run = Command::new(distill_core::testing::reference_python()).arg(&script).arg(family).arg(out).arg(&ids).output().unwrap();
    assert!(run.status.success(), "hf_make_model.py failed: {}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    (v["model_class"].as_str().unwrap().to_string(), serde_json::from_value(v["logits"].clone()).unwrap())
}

fn check(family: &str, expect_class: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (class, theirs) = transformers_folder(family, dir.path());
    assert_eq!(class, expect_class);
    assert!(dir.path().join("model.safetensors.index.json").exists() && !dir.path().join("model.safetensors").exists(), "{family}: expected a sharded checkpoint");
    let shards = std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".safetensors")).count();
    assert!(shards >= 2, "{family}: {shards} shard(s)");

    let ids = Tensor::new(&IDS, &Device::Cpu).unwrap();
    let inference = load_hf_dir(dir.path(), &Device::Cpu).unwrap();
    let trainable = TrainableLm::from_hf_dir(dir.path(), &Device::Cpu).unwrap();
    for (how, model) in [("load_hf_dir", &inference), ("TrainableLm::from_hf_dir", &trainable.model)] {
        let ours: Vec<Vec<Vec<f32>>> = model.forward(&ids).unwrap().to_vec3().unwrap();
        assert_eq!(ours.iter().flatten().flatten().count(), theirs.iter().flatten().flatten().count(), "{family}: logits shape");
        let (mut max_diff, mut max_abs) = (0f32, 0f32);
        for (a, b) in ours.iter().flatten().flatten().zip(theirs.iter().flatten().flatten()) {
            max_diff = max_diff.max((a - b).abs());
            max_abs = max_abs.max(b.abs());
        }
        assert!(max_abs > 1.0, "{family}: logits too small to tell implementations apart (max |logit| {max_abs})");
        assert!(max_diff < 1e-4, "{family} via {how}: candle and transformers differ by {max_diff} (max |logit| {max_abs})");
        eprintln!("{family} via {how}: {shards} shards, max |candle - transformers| = {max_diff:.2e}, max |logit| = {max_abs:.2}");
    }
}

#[test]
fn a_sharded_bf16_qwen2_saved_by_transformers_loads_with_its_logits() {
    check("qwen2", "Qwen2ForCausalLM");
}

#[test]
fn a_sharded_bf16_llama_saved_by_transformers_loads_with_its_logits() {
    check("llama", "LlamaForCausalLM");
}

#[test]
fn a_sharded_bf16_gpt2_saved_by_transformers_loads_with_its_logits() {
    check("gpt2", "GPT2LMHeadModel");
}
