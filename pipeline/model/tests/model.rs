//! Model construction, parameter counts, HF names, weight round trips.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use distill_model::config::ModelConfig;
use distill_model::weights::{read_safetensors, write_safetensors};
use distill_model::{load_hf_dir, CausalLm, TrainableLm};

/// Records every tensor the model asks for (name, shape) and hands out zeros: counting a
/// 124M-parameter model this way costs no random init.
struct Recorder(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let prev = self.0.lock().unwrap().insert(name.to_string(), s.dims().to_vec());
        assert!(prev.is_none(), "tensor {name} requested twice");
        Tensor::zeros(s, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected unchecked get of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// Builds the model and returns the parameter count and the (name, shape) of every tensor.
fn built_params(cfg: &ModelConfig) -> (usize, Vec<(String, Vec<usize>)>) {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let vb = VarBuilder::from_backend(Box::new(Recorder(seen.clone())), DType::F32, Device::Cpu);
    let _m = CausalLm::new(cfg, vb).unwrap();
    let shapes: Vec<(String, Vec<usize>)> = seen.lock().unwrap().clone().into_iter().collect();
    (shapes.iter().map(|(_, d)| d.iter().product::<usize>()).sum(), shapes)
}

#[test]
fn closed_form_parameter_counts_match_the_built_models() {
    for name in ["nano", "small", "medium", "gpt2-124m", "llama-nano", "qwen2-nano", "qwen2.5-0.5b"] {
        let cfg = ModelConfig::preset(name).unwrap();
        assert_eq!(built_params(&cfg).0, cfg.num_params(), "preset {name}");
    }
    // And the trainable model (real vars, seeded init) agrees for a small one.
    let cfg = ModelConfig::preset("qwen2-nano").unwrap();
    assert_eq!(TrainableLm::init(&cfg, &Device::Cpu, 0).unwrap().num_params(), cfg.num_params());
}

#[test]
fn closed_form_counts_match_the_published_sizes() {
    // GPT-2 small (HF `num_parameters()`), Llama 3.2 1B, Llama 2 7B.
    assert_eq!(ModelConfig::preset("gpt2-124m").unwrap().num_params(), 124_439_808);
    assert_eq!(ModelConfig::preset("llama-1b").unwrap().num_params(), 1_235_814_400);
    assert_eq!(ModelConfig::preset("llama-7b").unwrap().num_params(), 6_738_415_616);
    // Qwen2.5-0.5B (q/k/v biases, tied embeddings): 494,032,768 as HF reports it.
    assert_eq!(ModelConfig::preset("qwen2.5-0.5b").unwrap().num_params(), 494_032_768);
    // Qwen2.5-1.5B and 3B as HF reports them (the GPU benchmark's larger shapes).
    assert_eq!(ModelConfig::preset("qwen2.5-1.5b").unwrap().num_params(), 1_543_714_304);
    assert_eq!(ModelConfig::preset("qwen2.5-3b").unwrap().num_params(), 3_085_938_688);
}

#[test]
fn tensor_names_and_shapes_are_hf_s() {
    let (_, gpt2) = built_params(&ModelConfig::preset("nano").unwrap());
    let has = |v: &[(String, Vec<usize>)], n: &str, s: &[usize]| assert!(v.iter().any(|(k, d)| k == n && d == s), "{n} {s:?} not in {v:?}");
    has(&gpt2, "transformer.wte.weight", &[8192, 128]);
    has(&gpt2, "transformer.wpe.weight", &[512, 128]);
    has(&gpt2, "transformer.h.0.attn.c_attn.weight", &[128, 384]); // Conv1D: (in, out)
    has(&gpt2, "transformer.h.3.mlp.c_proj.bias", &[128]);
    has(&gpt2, "transformer.ln_f.bias", &[128]);
    assert!(!gpt2.iter().any(|(k, _)| k.starts_with("lm_head")), "GPT-2's head is tied");
    assert_eq!(gpt2.len(), 2 + 4 * 12 + 2);

    let (_, qwen) = built_params(&ModelConfig::preset("qwen2-nano").unwrap());
    has(&qwen, "model.embed_tokens.weight", &[512, 64]);
    has(&qwen, "model.layers.1.self_attn.q_proj.bias", &[64]);
    has(&qwen, "model.layers.1.self_attn.k_proj.weight", &[32, 64]); // 2 kv heads of 16
    has(&qwen, "model.layers.0.mlp.gate_proj.weight", &[176, 64]);
    has(&qwen, "model.norm.weight", &[64]);
    has(&qwen, "lm_head.weight", &[512, 64]);
    assert!(!qwen.iter().any(|(k, _)| k.contains("o_proj.bias")));

    let (_, llama) = built_params(&ModelConfig::preset("llama-nano").unwrap());
    assert!(!llama.iter().any(|(k, _)| k.ends_with(".bias") || k.starts_with("lm_head")), "tied, no biases");
}

#[test]
fn configs_round_trip_through_hf_json_with_unknown_keys_kept() {
    let text = r#"{"model_type":"qwen2","architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,
        "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
        "max_position_embeddings":64,"transformers_version":"4.46.0","use_sliding_window":false}"#;
    let cfg = ModelConfig::from_json_value(serde_json::from_str(text).unwrap(), "c.json".as_ref()).unwrap();
    let back = cfg.to_json();
    assert_eq!(back["transformers_version"], "4.46.0");
    assert_eq!(back["num_key_value_heads"], 2);
    assert_eq!(back["rms_norm_eps"], 1e-6);
    assert!(back.get("attention_bias").is_none(), "Qwen2Config has no attention_bias key");
    assert_eq!(ModelConfig::from_json_value(back, "c.json".as_ref()).unwrap(), cfg);
    let bad = serde_json::json!({"model_type": "mamba"});
    let err = ModelConfig::from_json_value(bad, "x/config.json".as_ref()).unwrap_err().to_string();
    assert!(err.contains("x/config.json") && err.contains("mamba"), "{err}");
    let bad = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3});
    assert!(ModelConfig::from_json_value(bad, "c.json".as_ref()).unwrap_err().to_string().contains("multiple"));
}

fn save_hf(lm: &TrainableLm, dir: &std::path::Path) {
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&lm.model.config().to_json()).unwrap()).unwrap();
    lm.save_weights(&dir.join("model.safetensors")).unwrap();
}

#[test]
fn weights_save_and_load_back_to_identical_logits() {
    let ids = Tensor::new(&[[1u32, 5, 9, 2, 7], [3, 3, 8, 1, 0]], &Device::Cpu).unwrap();
    for preset in ["nano", "llama-nano", "qwen2-nano"] {
        let lm = TrainableLm::init(&ModelConfig::preset(preset).unwrap(), &Device::Cpu, 11).unwrap();
        let dir = tempfile::tempdir().unwrap();
        save_hf(&lm, dir.path());
        let (_, meta) = read_safetensors(&dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"), "transformers requires format=pt");
        let want = lm.model.forward(&ids).unwrap();
        assert_eq!(want.dims(), &[2, 5, lm.model.config().vocab_size()]);
        let inference = load_hf_dir(dir.path(), &Device::Cpu).unwrap();
        let trainable = TrainableLm::from_hf_dir(dir.path(), &Device::Cpu).unwrap();
        for got in [inference.forward(&ids).unwrap(), trainable.model.forward(&ids).unwrap()] {
            let diff = (&got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "{preset}");
        }
    }
}

#[test]
fn seeded_init_is_reproducible_and_seed_dependent() {
    let cfg = ModelConfig::preset("llama-nano").unwrap();
    let a = TrainableLm::init(&cfg, &Device::Cpu, 1).unwrap();
    let b = TrainableLm::init(&cfg, &Device::Cpu, 1).unwrap();
    let c = TrainableLm::init(&cfg, &Device::Cpu, 2).unwrap();
    let w = |m: &TrainableLm| m.vars()[0].1.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(w(&a), w(&b));
    assert_ne!(w(&a), w(&c));
    // HF's init: N(0, 0.02) weights.
    let v = w(&a);
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.002, "std {std}");
}

#[test]
fn openai_era_gpt2_names_without_prefix_load() {
    let cfg = ModelConfig::preset("nano").unwrap();
    let lm = TrainableLm::init(&cfg, &Device::Cpu, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut old: BTreeMap<String, Tensor> = lm.vars().into_iter().map(|(k, v)| (k.trim_start_matches("transformer.").to_string(), v.as_tensor().clone())).collect();
    // The causal-mask buffers old files carry are not parameters.
    old.insert("h.0.attn.bias".into(), Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap());
    write_safetensors(&dir.path().join("model.safetensors"), &old, &BTreeMap::new()).unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.to_json().to_string()).unwrap();
    let loaded = load_hf_dir(dir.path(), &Device::Cpu).unwrap();
    let ids = Tensor::new(&[[4u32, 2, 8]], &Device::Cpu).unwrap();
    let a = lm.model.forward(&ids).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = loaded.forward(&ids).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_checkpoint_that_does_not_fit_the_config_says_so() {
    let lm = TrainableLm::init(&ModelConfig::preset("llama-nano").unwrap(), &Device::Cpu, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_hf(&lm, dir.path());
    let other = TrainableLm::init(&ModelConfig::preset("qwen2-nano").unwrap(), &Device::Cpu, 5).unwrap();
    let err = other.load_weights(&dir.path().join("model.safetensors")).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("config.json"), "{err}");
}

#[test]
fn logits_are_causal() {
    // Changing a later token leaves earlier positions' logits unchanged.
    for preset in ["nano", "llama-nano"] {
        let lm = TrainableLm::init(&ModelConfig::preset(preset).unwrap(), &Device::Cpu, 3).unwrap();
        let a = lm.model.forward(&Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap()).unwrap();
        let b = lm.model.forward(&Tensor::new(&[[1u32, 2, 3, 9]], &Device::Cpu).unwrap()).unwrap();
        let first = |t: &Tensor| t.narrow(1, 0, 3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(first(&a), first(&b), "{preset}");
        assert_ne!(a.narrow(1, 3, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.narrow(1, 3, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}

/// Cosine similarity of two tensors, flattened (f32).
fn cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_dtype(DType::F32).unwrap().to_vec1().unwrap();
    let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(&a) * norm(&b)).max(1e-30)
}

#[test]
fn the_bf16_compute_view_tracks_the_f32_model_and_sends_f32_gradients_to_the_masters() {
    for preset in ["qwen2-nano", "nano"] {
        let mut cfg = ModelConfig::preset(preset).unwrap();
        match &mut cfg {
            ModelConfig::Llama(c) => c.initializer_range = 0.2,
            ModelConfig::Gpt2(c) => c.initializer_range = 0.2,
        }
        let lm = TrainableLm::init(&cfg, &Device::Cpu, 3).unwrap();
        let ids = Tensor::new(&[[5u32, 9, 13, 2, 200, 31, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8]], &Device::Cpu).unwrap();
        let reference = lm.model.forward(&ids).unwrap();

        // An f32 view is the model itself, to the bit.
        let same = lm.compute_view(DType::F32).unwrap().forward(&ids).unwrap();
        assert_eq!(same.to_vec3::<f32>().unwrap(), reference.to_vec3::<f32>().unwrap(), "{preset}");

        // A bf16 view: f32 logits out, close to the f32 model's (bf16 keeps 8 bits of mantissa).
        let view = lm.compute_view(DType::BF16).unwrap();
        let logits = view.forward(&ids).unwrap();
        assert_eq!(logits.dtype(), DType::F32);
        let max_abs = reference.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let max_diff = (&logits - &reference).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max_abs > 0.5 && max_diff < 0.05 * max_abs, "{preset}: bf16 logits off by {max_diff} (max |logit| {max_abs})");

        // Gradients reach every f32 master var and point the same way as the f32 gradients.
        let loss = |l: &Tensor| candle_nn::ops::log_softmax(l, 2).unwrap().narrow(2, 7, 1).unwrap().sum_all().unwrap();
        let g32 = loss(&reference).backward().unwrap();
        let g16 = loss(&logits).backward().unwrap();
        for (name, var) in lm.vars() {
            let a = g32.get(var.as_tensor()).unwrap_or_else(|| panic!("{preset}: no f32 gradient for {name}"));
            let b = g16.get(var.as_tensor()).unwrap_or_else(|| panic!("{preset}: no gradient through the bf16 view for {name}"));
            assert_eq!(b.dtype(), DType::F32, "{name}");
            let c = cosine(a, b);
            assert!(c > 0.98, "{preset}: {name} gradient cosine {c}");
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn next_position_logits_are_the_full_logits_without_the_last_position() {
    // The trainer's forward drops the last position before the LM head (it predicts nothing
    // in the batch); what is left must be exactly what the full forward gives there.
    let ids = Tensor::new(&[[1u32, 5, 9, 2, 7, 4], [3, 3, 8, 1, 0, 6]], &Device::Cpu).unwrap();
    for preset in ["nano", "llama-nano", "qwen2-nano"] {
        let lm = TrainableLm::init(&ModelConfig::preset(preset).unwrap(), &Device::Cpu, 21).unwrap();
        let full = lm.model.forward(&ids).unwrap(); // (B, T, V)
        let next = lm.model.forward_next_native(&ids, None).unwrap(); // (B, T-1, V)
        assert_eq!(next.dims(), &[2, 5, lm.model.config().vocab_size()], "{preset}");
        let want = full.narrow(1, 0, 5).unwrap();
        let diff = max_abs_diff(&next.to_dtype(DType::F32).unwrap(), &want);
        assert!(diff <= 1e-6, "{preset}: next-position logits differ from forward[:, :-1] by {diff}");
    }
}

#[test]
fn dropout_is_on_in_training_and_off_in_evaluation() {
    use distill_model::nn::Dropout;
    let mut cfg = ModelConfig::preset("nano").unwrap().to_json();
    for key in ["resid_pdrop", "embd_pdrop", "attn_pdrop"] {
        cfg[key] = serde_json::json!(0.1);
    }
    let cfg = ModelConfig::from_json_value(cfg, "nano.json".as_ref()).unwrap();
    let lm = TrainableLm::init(&cfg, &Device::Cpu, 4).unwrap();
    let ids = Tensor::new(&[[1u32, 5, 9, 2, 7, 4]], &Device::Cpu).unwrap();
    let eval_a = lm.model.forward(&ids).unwrap();
    let eval_b = lm.model.forward_train(&ids, None).unwrap();
    assert_eq!(max_abs_diff(&eval_a, &eval_b), 0.0, "evaluation is deterministic and dropout-free");
    let train = |seed: u64| lm.model.forward_train(&ids, Some(&mut Dropout::new(seed))).unwrap();
    let (t1, t1_again, t2) = (train(1), train(1), train(2));
    assert!(max_abs_diff(&t1, &eval_a) > 1e-3, "dropout changed nothing in training");
    assert_eq!(max_abs_diff(&t1, &t1_again), 0.0, "the same dropout seed gives the same masks");
    assert!(max_abs_diff(&t1, &t2) > 1e-3, "another seed gives other masks");
    // Disabled in the config: the training forward equals evaluation.
    let plain = TrainableLm::init(&ModelConfig::preset("nano").unwrap(), &Device::Cpu, 4).unwrap();
    let off = plain.model.forward_train(&ids, Some(&mut Dropout::new(1))).unwrap();
    assert_eq!(max_abs_diff(&off, &plain.model.forward(&ids).unwrap()), 0.0);
}

#[test]
fn transformers_5_rope_parameters_set_theta_and_scaling() {
    // transformers 5 writes RoPE settings only under `rope_parameters` (a re-saved Qwen2.5
    // has no top-level rope_theta); reading it as the default 10,000 would be silently wrong.
    let qwen = serde_json::json!({"model_type": "qwen2", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}});
    let ModelConfig::Llama(c) = ModelConfig::from_json_value(qwen, "c.json".as_ref()).unwrap() else { panic!("not a llama-family config") };
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.rope_scaling, None);
    let llama3 = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}});
    let cfg = ModelConfig::from_json_value(llama3, "c.json".as_ref()).unwrap();
    let ModelConfig::Llama(c) = &cfg else { panic!("not a llama-family config") };
    assert_eq!(c.rope_theta, 5e5);
    let s = c.rope_scaling.as_ref().unwrap();
    assert_eq!((s.rope_type.as_str(), s.factor, s.original_max_position_embeddings), ("llama3", 32.0, 8192));
    assert_eq!(ModelConfig::from_json_value(cfg.to_json(), "c.json".as_ref()).unwrap(), cfg, "round trip");
    let yarn = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}});
    let err = ModelConfig::from_json_value(yarn, "c.json".as_ref()).unwrap_err().to_string();
    assert!(err.contains("yarn") && err.contains("c.json"), "{err}");
}
