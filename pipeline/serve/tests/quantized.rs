//! `[serve] quantize`: the server answers from int8 / int4 weights, with the tokens the model
//! crate's quantized greedy decoding gives in-process (same weights, same quantization).

mod common;

use candle_core::Device;
use common::{post, serve};
use distill_model::{generate, load_hf_dir, GenerateParams, Quantization};
use serde_json::json;

#[tokio::test]
async fn quantized_serve_answers_with_the_quantized_models_greedy_tokens() {
    for q in [Quantization::Q8_0, Quantization::Q4K] {
        let s = serve(|c| c.quantize = q.name().into());
        let prompt = "def fib(n):";
        let body = json!({"model": "nano", "prompt": prompt, "max_tokens": 16, "temperature": 0, "logprobs": 1});
        let (status, _, b) = post(&s, "/completions", body).await;
        assert_eq!(status, 200, "{q}: {b}");
        let served: Vec<String> = b["choices"][0]["logprobs"]["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();

        let mut model = load_hf_dir(s.dir.path(), &Device::Cpu).unwrap();
        model.quantize(q).unwrap();
        let tk = tokenizers::Tokenizer::from_file(s.dir.path().join("tokenizer.json")).unwrap();
        let ids = tk.encode(prompt, false).unwrap().get_ids().to_vec();
        let params = GenerateParams { max_new_tokens: 16, stop_token_ids: model.config().eos_token_ids(), ..GenerateParams::default() };
        let want = generate(&model, &[ids], &params).unwrap().remove(0).tokens;
        assert!(!want.is_empty());
        assert_eq!(served.len(), want.len(), "{q}: served {served:?}");
        let text: String = want.iter().map(|&t| tk.decode(&[t], false).unwrap()).collect();
        assert_eq!(b["choices"][0]["text"].as_str().unwrap(), text, "{q}");
    }
}

#[test]
fn an_unknown_quantization_is_a_config_error_naming_the_key() {
    let cfg = distill_serve::ServeConfig { model_dir: "m".into(), quantize: "q3_k".into(), ..Default::default() };
    let msg = cfg.settings("c.toml").unwrap_err().to_string();
    assert!(msg.contains("[serve] quantize") && msg.contains("q8_0") && msg.contains("q4_k"), "{msg}");
}
