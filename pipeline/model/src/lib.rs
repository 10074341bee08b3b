//! Student and teacher language models in candle, their generation, and the distillation
//! losses.
//!
//! - [`config`]: serde mirrors of HF `config.json` (Llama, Qwen2, GPT-2) and the presets.
//! - [`CausalLm`]: logits at every position `(B, T, V)`; [`TrainableLm`] holds its weights
//!   as trainable vars with seeded init and HF `model.safetensors` load/save.
//! - [`generate`](generate::generate): batched KV-cache generation with log-probs, over
//!   [`decode::Decoder`], the batch-decoding loop the server's engine shares.
//! - [`loss`]: forward/reverse KL, JSD and CE on sparse top-k teacher log-probs;
//!   [`head_loss`]: the LM head and that loss chunk by chunk over rows, for training.
//! - [`quant`]: int8 / int4 (GGUF Q8_0, Q4_K) weights for inference, [`CausalLm::quantize`].
//! - [`gguf`]: export of a model folder to a GGUF file for llama.cpp-based tools.

pub mod cache;
pub mod checkpoint;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda_kernels;
pub mod decode;
pub mod error;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod gguf_vocab;
pub mod gpt2;
pub mod head_loss;
pub mod llama;
pub mod loss;
pub mod model;
pub mod nn;
pub mod quant;
pub mod recompute;
mod softmax_cpu;
pub mod weights;

pub use cache::KvCache;
pub use config::ModelConfig;
pub use error::{Error, Result};
pub use generate::{generate, generate_with_stop, FinishReason, GenerateParams, Generated};
pub use model::CausalLm;
pub use quant::{QuantStats, Quantization};
pub use recompute::AttentionBackward;
pub use weights::{load_hf_dir, TrainableLm};
