//! The batched KV-cache decoding loop's model side, shared by [`generate`](crate::generate)
//! and the server's engine: they differ in how a row picks its next token and when it stops,
//! not in how a batch is run.
//!
//! [`Decoder::new`] prefills: prompts of different lengths are left-padded to one (B, L)
//! batch, each row gets its own positions (0 at its first real token) and an attention mask
//! hiding the padding, so a prompt's continuation does not depend on what else is in the
//! batch. [`Decoder::logits`] gives each unfinished row's next-token logits; the caller picks
//! tokens and hands [`Decoder::step`] the rows that go on with their tokens. Each step feeds
//! (B', 1) tokens; rows left out leave the batch and the cache (`KvCache::select_rows`).

use candle_core::Tensor;

use crate::cache::KvCache;
use crate::error::{Error, Result};
use crate::model::CausalLm;
use crate::nn;

/// A batch being decoded (see the module docs). Rows are numbered by their prompt's index.
pub struct Decoder<'m> {
    model: &'m CausalLm,
    cache: KvCache,
    /// Logits (B', V) of the next token of each row in `rows`.
    last: Tensor,
    /// Per row in `rows`, 1 for real key positions and 0 for left padding.
    valid: Vec<Vec<u8>>,
    /// Batch slot -> row, ascending.
    rows: Vec<usize>,
    /// Per row (all of them), the position of the next token it is fed.
    next_pos: Vec<u32>,
}

impl<'m> Decoder<'m> {
    /// Runs the prompts (none empty) as one left-padded batch.
    pub fn new(model: &'m CausalLm, prompts: &[&[u32]]) -> Result<Self> {
        if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
            return Err(Error::Invalid("decoding needs at least one prompt, each with at least one token".into()));
        }
        let device = model.device();
        let (b, max_len) = (prompts.len(), prompts.iter().map(|p| p.len()).max().unwrap_or(0));
        let mut ids = Vec::with_capacity(b * max_len);
        let mut pos = Vec::with_capacity(b * max_len);
        let mut valid: Vec<Vec<u8>> = Vec::with_capacity(b);
        for p in prompts {
            let pad = max_len - p.len();
            ids.extend(std::iter::repeat_n(0u32, pad).chain(p.iter().copied()));
            pos.extend(std::iter::repeat_n(0u32, pad).chain(0..p.len() as u32));
            valid.push(std::iter::repeat_n(0u8, pad).chain(std::iter::repeat_n(1u8, p.len())).collect());
        }
        let mut cache = model.new_cache();
        let mask = nn::attention_mask(&valid, 0, max_len, device)?;
        let logits = model.forward_cached(&Tensor::from_vec(ids, (b, max_len), device)?, &Tensor::from_vec(pos, (b, max_len), device)?, &mask, &mut cache)?; // (B, L, V)
        let last = logits.narrow(1, max_len - 1, 1)?.squeeze(1)?; // (B, V)
        Ok(Decoder { model, cache, last, valid, rows: (0..b).collect(), next_pos: prompts.iter().map(|p| p.len() as u32).collect() })
    }

    /// The rows still in the batch, in the order of [`logits`](Self::logits).
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// Next-token logits of each row still in the batch, one `Vec` (V) per row.
    pub fn logits(&self) -> Result<Vec<Vec<f32>>> {
        Ok(self.last.to_vec2::<f32>()?)
    }

    /// Key positions the cache holds: the longest prompt plus the steps taken.
    pub fn context_len(&self) -> usize {
        self.cache.seq_len()
    }

    /// Feeds each `(row, token)` to its row and computes the rows' next logits. `next` lists
    /// the rows that go on, in the order of [`rows`](Self::rows); every other row leaves the
    /// batch for good. With `next` empty the batch is over and nothing runs.
    pub fn step(&mut self, next: &[(usize, u32)]) -> Result<()> {
        let slots = self.slots_of(next)?;
        if next.is_empty() {
            self.rows.clear();
            return Ok(());
        }
        let device = self.model.device().clone();
        if slots.len() < self.rows.len() {
            let keep = Tensor::from_vec(slots.iter().map(|&s| s as u32).collect::<Vec<_>>(), slots.len(), &device)?;
            self.cache.select_rows(&keep)?;
            self.valid = slots.iter().map(|&s| self.valid[s].clone()).collect();
            self.rows = slots.iter().map(|&s| self.rows[s]).collect();
        }
        for v in self.valid.iter_mut() {
            v.push(1);
        }
        let n = self.rows.len();
        let past = self.cache.seq_len();
        let positions: Vec<u32> = self.rows.iter().map(|&r| self.next_pos[r]).collect();
        for &r in &self.rows {
            self.next_pos[r] += 1;
        }
        let fed: Vec<u32> = next.iter().map(|&(_, t)| t).collect();
        let mask = nn::attention_mask(&self.valid, past, 1, &device)?; // (n, 1, 1, past + 1)
        let logits = self.model.forward_cached(&Tensor::from_vec(fed, (n, 1), &device)?, &Tensor::from_vec(positions, (n, 1), &device)?, &mask, &mut self.cache)?;
        self.last = logits.squeeze(1)?; // (n, V)
        Ok(())
    }

    /// The batch slots of `next`'s rows; an error unless they are in the batch, in its order.
    fn slots_of(&self, next: &[(usize, u32)]) -> Result<Vec<usize>> {
        let mut slots = Vec::with_capacity(next.len());
        let mut from = 0;
        for &(row, _) in next {
            let Some(i) = self.rows[from..].iter().position(|&r| r == row) else {
                return Err(Error::Invalid(format!("decoding step: row {row} is not in the batch, or not in the batch's order")));
            };
            slots.push(from + i);
            from += i + 1;
        }
        Ok(slots)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::{ModelConfig, TrainableLm};

    fn lm() -> TrainableLm {
        TrainableLm::init(&ModelConfig::preset("llama-nano").unwrap(), &Device::Cpu, 5).unwrap()
    }

    fn argmax(x: &[f32]) -> u32 {
        (0..x.len()).max_by(|&a, &b| x[a].total_cmp(&x[b]).then(b.cmp(&a))).unwrap() as u32
    }

    /// Greedy logits of one prompt decoded alone, `steps` of them.
    fn alone(model: &CausalLm, prompt: &[u32], steps: usize) -> Vec<Vec<f32>> {
        let mut d = Decoder::new(model, &[prompt]).unwrap();
        let mut out = Vec::new();
        for _ in 0..steps {
            let l = d.logits().unwrap().remove(0);
            let t = argmax(&l);
            out.push(l);
            d.step(&[(0, t)]).unwrap();
        }
        out
    }

    #[test]
    fn a_row_decodes_as_alone_while_its_batch_mates_leave() {
        let lm = lm();
        let prompts: [&[u32]; 3] = [&[5, 17, 42, 8, 99], &[7], &[11, 12, 13]];
        let mut d = Decoder::new(&lm.model, &prompts).unwrap();
        let mut seen: Vec<Vec<Vec<f32>>> = vec![Vec::new(); 3];
        // Row 1 leaves after its first token, row 0 after its third: the batch shrinks twice.
        for step in 0..5 {
            let logits = d.logits().unwrap();
            let mut next = Vec::new();
            for (&row, l) in d.rows().iter().zip(&logits) {
                seen[row].push(l.clone());
                if !(row == 1 && step >= 1 || row == 0 && step >= 3) {
                    next.push((row, argmax(l)));
                }
            }
            d.step(&next).unwrap();
        }
        assert_eq!(d.rows(), &[2]);
        assert_eq!(d.context_len(), 5 + 5);
        for (row, got) in seen.iter().enumerate() {
            let want = alone(&lm.model, prompts[row], got.len());
            for (a, b) in got.iter().zip(&want) {
                let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
                assert!(diff < 1e-4, "row {row}: left padding and batch-mates changed the logits by {diff}");
            }
        }
    }

    #[test]
    fn no_row_going_on_ends_the_batch_without_running_the_model() {
        let lm = lm();
        let mut d = Decoder::new(&lm.model, &[&[1, 2, 3]]).unwrap();
        d.step(&[]).unwrap();
        assert!(d.rows().is_empty());
        assert_eq!(d.context_len(), 3);
    }

    #[test]
    fn steps_name_rows_in_the_batch_in_its_order() {
        let lm = lm();
        let mut d = Decoder::new(&lm.model, &[&[1, 2], &[3], &[4, 5, 6]]).unwrap();
        assert!(d.step(&[(2, 1), (0, 1)]).is_err(), "out of order");
        assert!(d.step(&[(3, 1)]).is_err(), "not a row");
        d.step(&[(0, 1), (2, 1)]).unwrap();
        assert!(d.step(&[(1, 1)]).is_err(), "row 1 has left");
        assert_eq!(d.rows(), &[0, 2]);
    }

    #[test]
    fn empty_batches_and_prompts_are_refused() {
        let lm = lm();
        assert!(Decoder::new(&lm.model, &[]).is_err());
        assert!(Decoder::new(&lm.model, &[&[1], &[]]).is_err());
    }
}
