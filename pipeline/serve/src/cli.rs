//! Command-line flags of `distill serve`; each overrides the `[serve]` key of the same name.

use crate::config::ServeConfig;

/// `distill serve [--model-dir DIR] [--port N] ...`
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// HF-style model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<String>,
    /// Address to listen on (127.0.0.1 = this machine only; 0.0.0.0 = every interface).
    #[arg(long)]
    pub host: Option<String>,
    /// TCP port (0 = any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Model name clients send in `model` (default: the folder's name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Environment variable holding the API key clients must send ("" = no key).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Requests per minute before 429s (0 = unlimited).
    #[arg(long)]
    pub requests_per_minute: Option<u32>,
    /// Most sequences decoded together.
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    /// Milliseconds to wait for more requests before a batch starts.
    #[arg(long)]
    pub batch_wait_ms: Option<u64>,
    /// Chat template: roles or plain.
    #[arg(long)]
    pub chat_template: Option<String>,
    /// Quantize the weights for inference: q8_0 (int8) or q4_k (int4); f32 = as trained.
    #[arg(long, value_name = "q8_0|q4_k")]
    pub quantize: Option<String>,
    /// Shorten a request's max_tokens to the context left instead of answering 400.
    #[arg(long)]
    pub truncate_to_context: bool,
}

impl ServeArgs {
    /// Writes the flags that were given over `cfg`.
    pub fn apply(&self, cfg: &mut ServeConfig) {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut cfg.model_dir, &self.model_dir);
        set(&mut cfg.host, &self.host);
        set(&mut cfg.model_name, &self.model_name);
        set(&mut cfg.api_key_env, &self.api_key_env);
        set(&mut cfg.chat_template, &self.chat_template);
        set(&mut cfg.quantize, &self.quantize);
        if let Some(p) = self.port {
            cfg.port = p;
        }
        if let Some(r) = self.requests_per_minute {
            cfg.requests_per_minute = r;
        }
        if let Some(b) = self.max_batch_size {
            cfg.max_batch_size = b;
        }
        if let Some(w) = self.batch_wait_ms {
            cfg.batch_wait_ms = w;
        }
        if self.truncate_to_context {
            cfg.truncate_to_context = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flags_override_config_keys() {
        let cli = Cli::parse_from(["distill", "--model-dir", "m", "--port", "0", "--max-batch-size", "4"]);
        let mut cfg = ServeConfig { model_name: "keep".into(), ..Default::default() };
        cli.serve.apply(&mut cfg);
        assert_eq!((cfg.model_dir.as_str(), cfg.port, cfg.max_batch_size, cfg.model_name.as_str()), ("m", 0, 4, "keep"));
    }
}
