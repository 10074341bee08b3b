//! Activation checkpointing gives the gradients of the plain backward: GPT-2 with every dropout
//! on (the replayed masks must be the ones drawn the first time) and Llama with tied
//! embeddings (a weight used in two segments), on the CPU.

use candle_core::{DType, Device, Tensor};
use distill_model::checkpoint::forward_backward;
use distill_model::nn::Dropout;
use distill_model::{ModelConfig, TrainableLm};

/// The loss of a next-token model: cross-entropy of ids[1..] at logits (B, T - 1, V).
fn loss(logits: &Tensor, ids: &Tensor) -> distill_model::Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let targets = ids.narrow(1, 1, t)?.flatten_all()?;
    let rows = distill_model::loss::cross_entropy(&logits.reshape((b * t, v))?.to_dtype(DType::F32)?, &targets)?;
    Ok(rows.mean_all()?)
}

fn compare(config: serde_json::Value) {
    let dev = Device::Cpu;
    let cfg = ModelConfig::from_json_value(config, std::path::Path::new("test.json")).unwrap();
    let lm = TrainableLm::init(&cfg, &dev, 3).unwrap();
    let vars = lm.vars();
    let ids = Tensor::new(&[[1u32, 5, 9, 2, 7, 3, 3, 8], [4, 4, 6, 1, 0, 2, 9, 5]], &dev).unwrap();

    let plain = loss(&lm.model.forward_next_native(&ids, Some(&mut Dropout::new(11))).unwrap(), &ids).unwrap();
    let store = plain.backward().unwrap();
    let just_vars: Vec<_> = vars.iter().map(|(_, v)| v.clone()).collect();
    let ck = forward_backward(&lm.model, &ids, Some(&mut Dropout::new(11)), &just_vars, |rows| Ok((loss(&rows.logits()?.reshape((2, 7, ()))?, &ids)?, ()))).unwrap();

    let (a, b) = (plain.to_scalar::<f32>().unwrap(), ck.loss.to_scalar::<f32>().unwrap());
    assert!((a - b).abs() < 1e-6, "loss {a} vs {b}");
    for (name, var) in &vars {
        let want = store.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no plain gradient"));
        let got = &ck.grads[&var.id()];
        let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
        let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 1e-5 * scale.max(1.0), "{name}: max difference {diff} (gradient scale {scale})");
    }
    assert_eq!(ck.grads.len(), vars.len(), "every weight gets a gradient");
}

#[test]
fn gpt2_with_dropout_gets_the_plain_gradients() {
    compare(serde_json::json!({"model_type": "gpt2", "vocab_size": 16, "n_positions": 16, "n_embd": 16, "n_layer": 3, "n_head": 2,
        "resid_pdrop": 0.2, "embd_pdrop": 0.1, "attn_pdrop": 0.3}));
}

#[test]
fn llama_with_tied_embeddings_gets_the_plain_gradients() {
    compare(serde_json::json!({"model_type": "llama", "vocab_size": 16, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 16, "tie_word_embeddings": true}));
}
