//! The `[serve]` section of the config and its validated runtime form.
//!
//! Two layers (STYLE.md): [`ServeConfig`] mirrors the TOML with defaults and unknown keys
//! rejected; [`ServeConfig::settings`] checks every value at once (all problems in one error,
//! each naming `serve.<key>`) and produces [`Settings`] with parsed addresses, `Duration`s and
//! the API key read from its environment variable. The key itself lives only in
//! [`Settings`], behind a `Debug` that prints `***`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use distill_core::config::ConfigProblem;
use distill_model::Quantization;

/// `[serve]`: which model folder to serve, where, and how hard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// HF-style model folder: `config.json`, `model.safetensors`, `tokenizer.json` (an exported
    /// student or the teacher checkpoint).
    pub model_dir: String,
    /// Address to listen on. The default, loopback, is reachable only from this machine.
    pub host: String,
    /// TCP port (0 = any free port; [`start`](crate::start) returns the one bound).
    pub port: u16,
    /// The model's name in `/v1/models` and in requests' `model` field (empty = the model
    /// folder's name). Requests naming another model get 404 `model_not_found`.
    pub model_name: String,
    /// Name of an environment variable holding the API key clients must send as
    /// `Authorization: Bearer <key>` (empty = no authentication). The server refuses to start
    /// when the variable is named but unset, rather than serve without the key.
    pub api_key_env: String,
    /// Requests per minute the server accepts before answering 429 with `retry-after-ms` and
    /// `x-ratelimit-*` headers (0 = unlimited). A token bucket of this size refilled per minute.
    pub requests_per_minute: u32,
    /// Most sequences decoded together in one batch (a request with `n = 4` is 4 sequences).
    pub max_batch_size: usize,
    /// How long the scheduler waits for more requests after the first one arrives before it
    /// starts a batch, in milliseconds.
    pub batch_wait_ms: u64,
    /// Largest `max_tokens` a request may ask for (larger is a 400).
    pub max_tokens_limit: u32,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: u32,
    /// When a request's prompt plus `max_tokens` exceeds the model's context: `false` answers
    /// 400 `context_length_exceeded` (OpenAI's behaviour); `true` shortens `max_tokens` to the
    /// room left (the answer then ends with `finish_reason: "length"`). Useful for a small
    /// local teacher whose context is shorter than the teacher stage's `max_tokens`.
    pub truncate_to_context: bool,
    /// How chat messages become a prompt: `roles` (`<|role|>\ncontent\n` per message, then
    /// `<|assistant|>\n`) or `plain` (contents joined by newlines; for base code models).
    pub chat_template: String,
    /// Compute device: `cpu` (the only one this build serves on).
    pub device: String,
    /// Weights for inference: `""` (f32, as trained), `"q8_0"` (int8) or `"q4_k"` (int4);
    /// see `distill_model::quant`.
    /// Left out of the serialized section when empty, so that runs made before the key
    /// existed keep their stage fingerprints (nothing reruns for a key left at its default).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quantize: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            model_dir: String::new(),
            host: "127.0.0.1".into(),
            port: 8080,
            model_name: String::new(),
            api_key_env: String::new(),
            requests_per_minute: 0,
            max_batch_size: 8,
            batch_wait_ms: 5,
            max_tokens_limit: 2048,
            default_max_tokens: 256,
            truncate_to_context: false,
            chat_template: "roles".into(),
            device: "cpu".into(),
            quantize: String::new(),
        }
    }
}

/// How chat messages are rendered into a prompt (see [`ServeConfig::chat_template`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplate {
    Roles,
    Plain,
}

/// The API key, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub(crate) String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// The validated runtime form of [`ServeConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub model_dir: PathBuf,
    pub addr: SocketAddr,
    pub model_name: String,
    pub api_key: Option<ApiKey>,
    pub requests_per_minute: u32,
    pub max_batch_size: usize,
    pub batch_wait: Duration,
    pub max_tokens_limit: u32,
    pub default_max_tokens: u32,
    pub truncate_to_context: bool,
    pub chat_template: ChatTemplate,
    pub quantize: Option<Quantization>,
}

impl ServeConfig {
    /// Checks every value (all problems reported at once, `file` naming the config) and reads
    /// the API key from its environment variable.
    pub fn settings(&self, file: &str) -> distill_core::Result<Settings> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(ConfigProblem { file: file.to_string(), line: None, key: format!("serve.{key}"), message: format!("[serve] {key}: {message}") })
        };
        if self.model_dir.trim().is_empty() {
            bad("model_dir", "is empty: set it to an HF-style model folder (config.json, model.safetensors, tokenizer.json)".into());
        }
        let host: Option<IpAddr> = match self.host.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                bad("host", format!("'{}' is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)", self.host));
                None
            }
        };
        let api_key = if self.api_key_env.trim().is_empty() {
            None
        } else {
            match std::env::var(&self.api_key_env) {
                Ok(k) if !k.is_empty() => Some(ApiKey(k)),
                _ => {
                    bad("api_key_env", format!("environment variable {} is not set: export it, or set api_key_env = \"\" to serve without a key", self.api_key_env));
                    None
                }
            }
        };
        if self.max_batch_size == 0 || self.max_batch_size > 256 {
            bad("max_batch_size", format!("{} is out of range: use 1 to 256", self.max_batch_size));
        }
        if self.batch_wait_ms > 10_000 {
            bad("batch_wait_ms", format!("{} ms is too long: use 0 to 10000", self.batch_wait_ms));
        }
        if self.max_tokens_limit == 0 {
            bad("max_tokens_limit", "must be at least 1".into());
        }
        if self.default_max_tokens == 0 || self.default_max_tokens > self.max_tokens_limit {
            bad("default_max_tokens", format!("{} must be between 1 and max_tokens_limit ({})", self.default_max_tokens, self.max_tokens_limit));
        }
        let chat_template = match self.chat_template.as_str() {
            "roles" => Some(ChatTemplate::Roles),
            "plain" => Some(ChatTemplate::Plain),
            other => {
                bad("chat_template", format!("'{other}' is not a template: use \"roles\" or \"plain\""));
                None
            }
        };
        if self.device != "cpu" {
            bad("device", format!("'{}' is not supported: the server runs on \"cpu\"", self.device));
        }
        let quantize = match self.quantize.as_str() {
            "" | "f32" => None,
            q => match q.parse::<Quantization>() {
                Ok(q) => Some(q),
                Err(_) => {
                    bad("quantize", format!("'{q}' is not a quantization: use \"\" (f32), {}", Quantization::NAMES));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(distill_core::Error::Config { problems });
        }
        let model_dir = PathBuf::from(&self.model_dir);
        let model_name =
            if self.model_name.is_empty() { model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "local".into()) } else { self.model_name.clone() };
        Ok(Settings {
            model_dir,
            addr: SocketAddr::new(host.expect("checked above"), self.port),
            model_name,
            api_key,
            requests_per_minute: self.requests_per_minute,
            max_batch_size: self.max_batch_size,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            max_tokens_limit: self.max_tokens_limit,
            default_max_tokens: self.default_max_tokens,
            truncate_to_context: self.truncate_to_context,
            chat_template: chat_template.expect("checked above"),
            quantize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_model_dir() {
        let cfg = ServeConfig { model_dir: "models/teacher".into(), ..Default::default() };
        let s = cfg.settings("x.toml").unwrap();
        assert_eq!(s.model_name, "teacher");
        assert_eq!(s.addr.to_string(), "127.0.0.1:8080");
        assert!(s.api_key.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg = ServeConfig {
            host: "localhost:1".into(),
            max_batch_size: 0,
            chat_template: "jinja".into(),
            device: "cuda".into(),
            quantize: "q5".into(),
            api_key_env: "DISTILL_SERVE_TEST_SURELY_UNSET".into(),
            ..Default::default()
        };
        let msg = cfg.settings("c.toml").unwrap_err().to_string();
        for key in ["model_dir", "host", "max_batch_size", "chat_template", "device", "api_key_env", "quantize"] {
            assert!(msg.contains(&format!("[serve] {key}:")), "{key} missing from:\n{msg}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let s = Settings {
            model_dir: "m".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: "m".into(),
            api_key: Some(ApiKey("sk-planted-secret".into())),
            requests_per_minute: 0,
            max_batch_size: 1,
            batch_wait: Duration::ZERO,
            max_tokens_limit: 1,
            default_max_tokens: 1,
            truncate_to_context: false,
            chat_template: ChatTemplate::Plain,
            quantize: None,
        };
        assert!(!format!("{s:?}").contains("planted"));
    }

    #[test]
    fn toml_section_parses_with_core_loader() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct Doc {
            serve: ServeConfig,
        }
        let doc: Doc = distill_core::config::parse("[serve]\nmodel_dir = \"m\"\nport = 0\nmax_batch_size = 4\n", "t.toml").unwrap();
        assert_eq!(doc.serve.max_batch_size, 4);
        let err = distill_core::config::parse::<Doc>("[serve]\nmax_batch = 4\n", "t.toml").unwrap_err().to_string();
        assert!(err.contains("t.toml:2"), "{err}");
    }
}
