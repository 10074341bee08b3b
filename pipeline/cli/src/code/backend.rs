//! Where `distill code` gets its answer, streamed to the caller piece by piece: the trained
//! student in-process (KV-cache greedy decoding, optionally quantized) or any OpenAI-compatible
//! endpoint (`stream: true`; Server-Sent Events `data: {...}` lines, or one JSON body from a
//! server that does not stream).

use std::path::Path;

use distill_model::generate::{generate_with_stop, GenerateParams};
use distill_model::CausalLm;

use super::task::Request;

pub trait Backend {
    /// Sends `req`, hands each new piece of text to `out` as it arrives, returns the whole answer.
    fn answer(&self, req: &Request, max_tokens: u32, out: &mut dyn FnMut(&str)) -> Result<String, String>;
}

/// The student (or any HF folder) in this process.
pub struct Student {
    model: CausalLm,
    tokenizer: tokenizers::Tokenizer,
}

impl Student {
    pub fn load(dir: &Path, quantize: Option<distill_model::Quantization>) -> Result<Self, String> {
        let mut model = distill_model::load_hf_dir(dir, &candle_core::Device::Cpu).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some(q) = quantize {
            model.quantize(q).map_err(|e| format!("{}: quantizing: {e}", dir.display()))?;
        }
        let path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Student { model, tokenizer })
    }
}

/// Chat as the server's `roles` template renders it (`distill serve`'s default).
fn render_chat(system: &str, user: &str) -> String {
    format!("<|system|>\n{system}\n<|user|>\n{user}\n<|assistant|>\n")
}

impl Backend for Student {
    fn answer(&self, req: &Request, max_tokens: u32, out: &mut dyn FnMut(&str)) -> Result<String, String> {
        let prompt = match req {
            Request::Completion(p) => p.clone(),
            Request::Chat { system, user } => render_chat(system, user),
        };
        let ids = self.tokenizer.encode(prompt.as_str(), false).map_err(|e| e.to_string())?.get_ids().to_vec();
        let room = self.model.config().max_positions().saturating_sub(ids.len());
        if room == 0 {
            return Err(format!("the prompt is {} tokens, the model's context {}: give a shorter --lines range", ids.len(), self.model.config().max_positions()));
        }
        let params = GenerateParams { max_new_tokens: (max_tokens as usize).min(room), stop_token_ids: self.model.config().eos_token_ids(), ..GenerateParams::default() };
        let mut shown = String::new();
        let tk = &self.tokenizer;
        // The stop test sees every step's tokens: print what decodes beyond what was shown.
        let mut stop = |_row: usize, tokens: &[u32]| -> bool {
            let text = tk.decode(tokens, false).unwrap_or_default();
            if let Some(new) = text.strip_prefix(shown.as_str()) {
                if !new.is_empty() && !new.ends_with('\u{fffd}') {
                    out(new);
                    shown = text;
                }
            }
            false
        };
        let g = generate_with_stop(&self.model, &[ids], &params, &mut stop).map_err(|e| e.to_string())?;
        let text = self.tokenizer.decode(&g[0].tokens, false).map_err(|e| e.to_string())?;
        if let Some(rest) = text.strip_prefix(shown.as_str()) {
            out(rest);
        }
        Ok(text)
    }
}

/// An OpenAI-compatible endpoint (`base_url` ending in `/v1`).
pub struct Endpoint {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
}

impl Backend for Endpoint {
    fn answer(&self, req: &Request, max_tokens: u32, out: &mut dyn FnMut(&str)) -> Result<String, String> {
        let (path, body) = match req {
            Request::Completion(p) => ("completions", serde_json::json!({"model": self.model, "prompt": p, "max_tokens": max_tokens, "temperature": 0, "stream": true})),
            Request::Chat { system, user } => (
                "chat/completions",
                serde_json::json!({"model": self.model, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}], "max_tokens": max_tokens, "temperature": 0, "stream": true}),
            ),
        };
        let url = format!("{}/{path}", self.base_url.trim_end_matches('/'));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = reqwest::Client::builder().build().map_err(|e| e.to_string())?;
            let mut rb = client.post(&url).json(&body);
            if let Some(k) = &self.api_key {
                rb = rb.bearer_auth(k);
            }
            let mut resp = rb.send().await.map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            let sse = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|c| c.starts_with("text/event-stream"));
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                return Err(format!("{url}: HTTP {status}: {}", text.chars().take(500).collect::<String>()));
            }
            let mut whole = String::new();
            if !sse {
                let v: serde_json::Value = resp.json().await.map_err(|e| format!("{url}: answer is not JSON: {e}"))?;
                let c = &v["choices"][0];
                let text = c["message"]["content"].as_str().or(c["text"].as_str()).ok_or_else(|| format!("{url}: no choices[0] text in the answer"))?;
                out(text);
                return Ok(text.to_string());
            }
            let mut buf = String::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(nl) = buf.find('\n') {
                    let line: String = buf.drain(..=nl).collect();
                    let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
                    if data == "[DONE]" {
                        return Ok(whole);
                    }
                    let v: serde_json::Value = serde_json::from_str(data).map_err(|e| format!("{url}: bad event '{data}': {e}"))?;
                    let c = &v["choices"][0];
                    if let Some(piece) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                        out(piece);
                        whole.push_str(piece);
                    }
                }
            }
            Ok(whole)
        })
    }
}
