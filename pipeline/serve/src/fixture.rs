//! Tiny model folders for tests and benchmarks: a byte-level BPE trained on a few lines of
//! Python (the same kind of tokenizer the `tokenizer` stage makes, `<|endoftext|>` at id 0),
//! and a randomly initialised model of a preset shape (`llama-nano`, `nano`, ...) with its
//! vocabulary set to the tokenizer's, saved as `config.json` + `model.safetensors`. Everything
//! is seeded, so the same call writes the same files.

use std::path::Path;

use candle_core::Device;
use tokenizers::Tokenizer;

use distill_model::{ModelConfig, TrainableLm};
use distill_tokenizer::config::ENDOFTEXT;
use distill_tokenizer::train::{train_byte_level, BpeSpec};

use crate::error::{Error, Result};

const CORPUS: &[&str] = &[
    "def add(a, b):\n    return a + b\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n",
    "import os\nimport sys\n\nprint(sys.argv, os.getcwd())\n",
    "# héllo wörld: ünïcode in comments — ok\n",
];

/// Trains the byte-level BPE of the module docs with `vocab_size` entries at most.
pub fn tiny_tokenizer(vocab_size: usize) -> Result<Tokenizer> {
    let spec = BpeSpec { vocab_size, min_frequency: 1, special_tokens: &[ENDOFTEXT], max_token_length: None };
    train_byte_level(CORPUS.iter(), &spec).map_err(|e| Error::model_dir("tokenizer.json", format!("training the fixture tokenizer: {e}")))
}

/// Writes a model folder for `preset` with random weights from `seed`, its vocabulary cut to
/// the tokenizer's; returns the config.
pub fn write_model_dir(dir: &Path, preset: &str, seed: u64) -> Result<ModelConfig> {
    write_model_dir_sized(dir, preset, seed, false)
}

/// Like [`write_model_dir`]; with `keep_vocab` the preset's vocabulary size stays (the
/// benchmark's cost per token then matches the preset; ids past the tokenizer decode to no
/// bytes).
pub fn write_model_dir_sized(dir: &Path, preset: &str, seed: u64, keep_vocab: bool) -> Result<ModelConfig> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { what: format!("creating {}", dir.display()), source })?;
    let tk = tiny_tokenizer(300)?;
    let tk_path = dir.join("tokenizer.json");
    tk.save(&tk_path, false).map_err(|e| Error::model_dir(&tk_path, e.to_string()))?;
    let mut cfg = ModelConfig::preset(preset)?;
    if !keep_vocab {
        cfg.set_vocab_size(tk.get_vocab_size(true));
    }
    let eot = tk.token_to_id(ENDOFTEXT);
    cfg.set_special_tokens(eot, eot);
    let lm = TrainableLm::init(&cfg, &Device::Cpu, seed)?;
    lm.save_weights(&dir.join("model.safetensors"))?;
    let text = serde_json::to_string_pretty(&cfg.to_json()).expect("config serialises");
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, text).map_err(|source| Error::Io { what: format!("writing {}", cfg_path.display()), source })?;
    Ok(cfg)
}
