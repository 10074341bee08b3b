//! Quantized inference weights: GGUF block formats through candle's quantized tensors.
//!
//! A weight matrix `W (rows, cols)` is stored row by row in blocks along `cols` (the input
//! features of a linear layer; GGUF/ggml's `ne[0]`). Per block of `b` values:
//!
//! - **Q8_0** (8.5 bits/weight): `b = 32`, one f16 scale `d = max|w| / 127`, `q = round(w / d)`
//!   in int8; `w' = d q`, so `|w - w'| <= d / 2`.
//! - **Q4_K** (4.5 bits/weight): super-blocks of `b = 256` = 8 sub-blocks of 32, each with a
//!   6-bit scale and min (themselves scaled by two f16 per super-block), `q` in 0..=15;
//!   `w' = d_s q - m_s`.
//! - **Q4_0** (4.5 bits/weight): `b = 32`, `d = max|w| / -8` (signed by the extreme), `q` in
//!   0..=15, `w' = d (q - 8)`: int4 for matrices whose `cols` is not a multiple of 256.
//!
//! [`Quantization::Q4K`] picks Q4_K where `cols % 256 == 0` and Q4_0 elsewhere (llama.cpp
//! falls back the same way for shapes a k-quant cannot tile; it picks Q5_0 there, we keep
//! 4 bits because "int4" is what was asked for). A matrix whose `cols` is not a multiple of 32
//! stays f32. Norms, biases and position tables (1-D or tiny) stay f32, as in llama.cpp.
//!
//! Matmuls run through candle's `QMatMul`: on the CPU it quantizes the activations per row
//! (Q8_0 for Q8_0/Q4_0, Q8_K for Q4_K) and takes int dot products, so quantized outputs carry
//! the activation rounding too. Embedding lookups dequantize only the rows they read.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

use crate::error::{Error, Result};

/// The quantization asked for by a config's `quantize` key or a `--quantize` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Quantization {
    /// Int8 blocks of 32.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// Int4 k-quant super-blocks of 256 (Q4_0 where a matrix's width is not a multiple of 256).
    #[serde(rename = "q4_k")]
    Q4K,
}

impl Quantization {
    pub const NAMES: &'static str = "\"q8_0\" (int8) or \"q4_k\" (int4)";

    pub fn name(self) -> &'static str {
        match self {
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4K => "q4_k",
        }
    }

    /// The block format for a matrix of `cols` input features, or None when it stays f32.
    pub fn dtype_for(self, cols: usize) -> Option<GgmlDType> {
        match self {
            Quantization::Q8_0 if cols.is_multiple_of(32) => Some(GgmlDType::Q8_0),
            Quantization::Q4K if cols.is_multiple_of(256) => Some(GgmlDType::Q4K),
            Quantization::Q4K if cols.is_multiple_of(32) => Some(GgmlDType::Q4_0),
            _ => None,
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Quantization {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" | "q8" | "int8" => Ok(Quantization::Q8_0),
            "q4_k" | "q4" | "int4" => Ok(Quantization::Q4K),
            other => Err(Error::Invalid(format!("unknown quantization '{other}': use {}", Quantization::NAMES))),
        }
    }
}

/// Largest absolute rounding error a block format allows for a block whose largest magnitude
/// is `amax`: what a round trip through the format is checked against. Q8_0: half a step of
/// `amax / 127` (plus the f16 rounding of the scale). Q4_0: half a step of `amax / 8`, and a
/// whole step at the clipped end (+8 is not representable). Q4_K: its scales and mins are
/// 6-bit, so a value may be off by up to one step of `range / 15` plus the min's rounding;
/// `range <= 2 amax`.
pub fn error_bound(dtype: GgmlDType, amax: f32) -> f32 {
    let f16_rel = 1.0 + 2f32.powi(-10);
    match dtype {
        GgmlDType::F32 => 0.0,
        GgmlDType::F16 => amax * 2f32.powi(-11),
        GgmlDType::Q8_0 => amax / 127.0 * 0.5 * f16_rel + amax * 2f32.powi(-11),
        GgmlDType::Q4_0 => amax / 8.0 * f16_rel + amax * 2f32.powi(-11),
        GgmlDType::Q4K => 2.0 * amax / 15.0 * 2.0 * f16_rel,
        _ => f32::INFINITY,
    }
}

/// What [`crate::CausalLm::quantize`] did: bytes of the weights it replaced, before and after,
/// and how many matrices went to each format.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct QuantStats {
    pub dense_bytes: usize,
    pub quantized_bytes: usize,
    /// Matrices per format ("q8_0", "q4_0", "q4k", "f32" for those left dense).
    pub matrices: BTreeMap<String, usize>,
}

impl QuantStats {
    fn count(&mut self, what: &str) {
        *self.matrices.entry(what.to_string()).or_default() += 1;
    }
}

/// Quantizes `w (rows, cols)` row-wise, or None (counted as "f32") when `q` does not fit `cols`.
pub fn quantize_rows(w: &Tensor, q: Quantization, stats: &mut QuantStats) -> Result<Option<Arc<QTensor>>> {
    let (_, cols) = w.dims2()?;
    let Some(dtype) = q.dtype_for(cols) else {
        stats.count("f32");
        return Ok(None);
    };
    let qt = QTensor::quantize(&w.to_dtype(DType::F32)?.contiguous()?, dtype)?;
    stats.dense_bytes += w.elem_count() * 4;
    stats.quantized_bytes += qt.storage_size_in_bytes();
    stats.count(&format!("{dtype:?}").to_ascii_lowercase());
    Ok(Some(Arc::new(qt)))
}

/// A linear layer's weight: dense in the layer's own layout, or quantized as (out, in).
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    Dense(Tensor),
    Quant(QMatMul),
}

/// `x (..., in)` times a quantized `(out, in)` matrix -> `(..., out)`, in f32 (candle's CPU
/// quantized matmul takes f32 activations), cast back to `x`'s dtype.
pub(crate) fn qmatmul(q: &QMatMul, x: &Tensor) -> candle_core::Result<Tensor> {
    let y = q.forward(&x.to_dtype(DType::F32)?.contiguous()?)?;
    y.to_dtype(x.dtype())
}

/// An embedding table (V, C) that may also be the tied LM head.
#[derive(Debug, Clone)]
pub(crate) enum Table {
    Dense(Tensor),
    Quant(Arc<QTensor>),
}

impl Table {
    /// Rows `ids` (any shape) -> (..., C).
    pub fn lookup(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Table::Dense(w) => crate::fused::embedding(w, ids),
            Table::Quant(q) => q.embedding(ids),
        }
    }

    /// The (V, C) matrix for training; `None` once quantized (inference only).
    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            Table::Dense(w) => Some(w),
            Table::Quant(_) => None,
        }
    }

    /// The tied head: `x (..., C) @ W^T` -> (..., V).
    pub fn project(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Table::Dense(w) => crate::nn::matmul_last(x, &w.t()?),
            Table::Quant(q) => qmatmul(&QMatMul::from_arc(q.clone())?, x),
        }
    }

    pub fn quantize(&mut self, q: Quantization, stats: &mut QuantStats) -> Result<()> {
        if let Table::Dense(w) = self {
            if let Some(qt) = quantize_rows(w, q, stats)? {
                *self = Table::Quant(qt);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn formats_follow_the_width() {
        assert_eq!(Quantization::Q4K.dtype_for(512), Some(GgmlDType::Q4K));
        assert_eq!(Quantization::Q4K.dtype_for(128), Some(GgmlDType::Q4_0));
        assert_eq!(Quantization::Q8_0.dtype_for(128), Some(GgmlDType::Q8_0));
        assert_eq!(Quantization::Q8_0.dtype_for(100), None);
        assert_eq!("Q4_K".parse::<Quantization>().unwrap(), Quantization::Q4K);
        assert!("q3".parse::<Quantization>().unwrap_err().to_string().contains("q8_0"));
    }

    #[test]
    fn round_trip_stays_within_the_bound_and_shrinks() {
        for (q, cols, bits) in [(Quantization::Q8_0, 64, 8.5), (Quantization::Q4K, 256, 4.5), (Quantization::Q4K, 96, 5.0)] {
            let w = ramp(8, cols);
            let mut stats = QuantStats::default();
            let qt = quantize_rows(&w, q, &mut stats).unwrap().unwrap();
            let back = qt.dequantize(&Device::Cpu).unwrap();
            let err = (back - &w).unwrap().abs().unwrap().max_keepdim(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let amax = w.abs().unwrap().max_keepdim(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (e, a) in err.iter().zip(&amax) {
                assert!(*e <= error_bound(qt.dtype(), *a), "{q} cols {cols}: error {e} above the bound {}", error_bound(qt.dtype(), *a));
                assert!(*e > 0.0, "{q}: a lossy format must round something");
            }
            let per_weight = stats.quantized_bytes as f64 * 8.0 / w.elem_count() as f64;
            assert!(per_weight <= bits, "{q}: {per_weight} bits/weight");
        }
    }

    #[test]
    fn quantized_matmul_is_close_to_dense() {
        let w = ramp(48, 256); // (out, in)
        let x = ramp(3, 256);
        let dense = x.matmul(&w.t().unwrap()).unwrap();
        for q in [Quantization::Q8_0, Quantization::Q4K] {
            let qt = quantize_rows(&w, q, &mut QuantStats::default()).unwrap().unwrap();
            let y = qmatmul(&QMatMul::from_arc(qt).unwrap(), &x).unwrap();
            let rel =
                ((&y - &dense).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() / dense.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()).sqrt();
            let limit = if q == Quantization::Q8_0 { 0.01 } else { 0.1 };
            assert!(rel < limit, "{q}: relative error {rel}");
        }
    }
}
