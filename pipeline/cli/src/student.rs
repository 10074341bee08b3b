//! The student as an evaluator [`Generator`]: an HF model folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`) decoded with the model crate's batched KV-cache
//! generation. Rows are batched by prompt length (less padding), each row is stopped as soon
//! as its decoded text contains one of the benchmark's stop sequences.

use std::path::Path;

use distill_eval::{GenRequest, Generator};
use distill_model::generate::{generate_with_stop, GenerateParams};
use distill_model::CausalLm;

pub struct StudentGenerator {
    model: CausalLm,
    tokenizer: tokenizers::Tokenizer,
    name: String,
    batch_size: usize,
}

fn gen_err(e: impl std::fmt::Display) -> distill_eval::Error {
    distill_eval::Error::Generation(e.to_string())
}

impl StudentGenerator {
    /// Loads the model folder `dir`, its weights quantized when `quantize` names a format
    /// (`q8_0`, `q4_k`; empty = f32).
    pub fn load(dir: &Path, batch_size: usize, quantize: &str) -> distill_core::Result<Self> {
        let device = candle_core::Device::Cpu;
        let err = |e: distill_model::Error| distill_core::Error::Other(format!("{}: {e}", dir.display()));
        let mut model = distill_model::weights::load_hf_dir(dir, &device).map_err(err)?;
        let quantize = if quantize == "f32" { "" } else { quantize };
        if !quantize.is_empty() {
            let stats = model.quantize(quantize.parse().map_err(err)?).map_err(err)?;
            tracing::info!(quantize, matrices = ?stats.matrices, "student weights quantized");
        }
        let path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| distill_core::Error::Other(format!("{}: {e}", path.display())))?;
        let name = if quantize.is_empty() { dir.display().to_string() } else { format!("{} ({quantize})", dir.display()) };
        Ok(StudentGenerator { model, tokenizer, name, batch_size: batch_size.max(1) })
    }
}

impl Generator for StudentGenerator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn generate(&self, requests: &[GenRequest]) -> distill_eval::Result<Vec<Vec<String>>> {
        // One row per (request, sample); rows of one batch share sampling settings.
        let mut rows: Vec<(usize, u32, Vec<u32>)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let ids = self.tokenizer.encode(r.prompt.as_str(), false).map_err(gen_err)?.get_ids().to_vec();
            for s in 0..r.n {
                rows.push((i, s, ids.clone()));
            }
        }
        rows.sort_by_key(|(i, s, ids)| (ids.len(), *i, *s));
        let mut out: Vec<Vec<String>> = requests.iter().map(|r| vec![String::new(); r.n as usize]).collect();
        let eos = self.model.config().eos_token_ids();
        for batch in rows.chunks(self.batch_size) {
            let first = &requests[batch[0].0];
            let params = GenerateParams {
                max_new_tokens: first.max_new_tokens as usize,
                temperature: first.temperature as f32,
                top_k: first.top_k as usize,
                top_p: first.top_p as f32,
                seed: first.seed ^ (batch[0].1 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                stop_token_ids: eos.clone(),
                stop_sequences: Vec::new(),
                top_logprobs: 0,
            };
            let prompts: Vec<Vec<u32>> = batch.iter().map(|(_, _, ids)| ids.clone()).collect();
            let stops: Vec<&Vec<String>> = batch.iter().map(|(i, _, _)| &requests[*i].stop).collect();
            let tokenizer = &self.tokenizer;
            let mut stop = |row: usize, tokens: &[u32]| -> bool {
                let text = tokenizer.decode(tokens, false).unwrap_or_default();
                stops[row].iter().any(|s| text.contains(s.as_str()))
            };
            let generated = generate_with_stop(&self.model, &prompts, &params, &mut stop).map_err(gen_err)?;
            for ((i, s, _), g) in batch.iter().zip(generated) {
                out[*i][*s as usize] = self.tokenizer.decode(&g.tokens, false).map_err(gen_err)?;
            }
        }
        Ok(out)
    }
}
