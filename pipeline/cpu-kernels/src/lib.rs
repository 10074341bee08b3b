//! The per-element loops of a CPU training step that are ours rather than candle's: dropout
//! masks, GELU, LayerNorm, attention's masked softmax and bias adds, forward and backward.
//!
//! `make distill` and the tests run the dev build, where candle and gemm are compiled at
//! `opt-level = 3` (the workspace `Cargo.toml`) but our own crates are not. A loop that runs
//! once per activation element at `opt-level = 0` costs more than the matmuls around it: GPT-2
//! 124M's dropout draws ~95 M random numbers per 2 x 512-token micro-batch (attention
//! probabilities and residuals), and drawing them in `distill-model` took ~80% of a CPU
//! training step (`perf`, issue #24). Such loops live here, in a small crate that changes
//! rarely and that `Cargo.toml` optimises in the dev build too; the model crates call them.
//!
//! Each function gives exactly what the loop it replaced gave (same RNG stream, same
//! arithmetic), so moving a loop here changes speed, not numbers.

pub mod bias;
pub mod dropout;
pub mod gelu;
pub mod layer_norm;
pub mod softmax;
