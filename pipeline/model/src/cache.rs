//! The key/value cache for incremental decoding: per layer, keys and values (B, Hkv, T_past, D)
//! of every position already processed, so a decoding step only computes the new position.

use candle_core::Tensor;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: vec![None; num_layers] }
    }

    /// Cached positions (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map(|(k, _)| k.dims().get(2).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Appends this step's k, v (B, Hkv, T, D) to layer `i` and returns all of them.
    pub fn append(&mut self, i: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.layers[i] {
            Some((pk, pv)) => (Tensor::cat(&[pk, k], 2)?.contiguous()?, Tensor::cat(&[pv, v], 2)?.contiguous()?),
            None => (k.clone(), v.clone()),
        };
        self.layers[i] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Keeps only the batch rows in `keep` (finished sequences leave the batch).
    pub fn select_rows(&mut self, keep: &Tensor) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(keep, 0)?;
            *v = v.index_select(keep, 0)?;
        }
        Ok(())
    }
}
