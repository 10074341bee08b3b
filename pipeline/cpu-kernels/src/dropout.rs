//! Dropout masks: `n` independent draws, each `scale` with probability `keep` and 0 otherwise.
//!
//! Element `i` is `scale` when the `i`-th `f64` drawn from `rng` (uniform in [0, 1)) is below
//! `keep`: the stream `distill_model::nn::Dropout` has always used, so masks (and the
//! activation checkpointing replay that depends on drawing them again) are unchanged.
//!
//! ```
//! use rand::{rngs::StdRng, SeedableRng};
//! let m = distill_cpu_kernels::dropout::mask(&mut StdRng::seed_from_u64(1), 10_000, 0.9, 1.0 / 0.9);
//! let kept = m.iter().filter(|&&x| x > 0.0).count();
//! assert!((8_800..9_200).contains(&kept));
//! assert!(m.iter().all(|&x| x == 0.0 || x == (1.0f64 / 0.9) as f32));
//! ```

use rand::rngs::StdRng;
use rand::Rng;

/// The mask of the module docs, `n` values.
pub fn mask(rng: &mut StdRng, n: usize, keep: f64, scale: f32) -> Vec<f32> {
    (0..n).map(|_| if rng.random::<f64>() < keep { scale } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The element loop it replaced in `distill_model::nn::Dropout::apply`, draw for draw.
    #[test]
    fn same_stream_as_one_draw_per_element() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let got = mask(&mut a, 1001, 0.9, 1.25);
        let want: Vec<f32> = (0..1001).map(|_| if b.random::<f64>() < 0.9 { 1.25 } else { 0.0 }).collect();
        assert_eq!(got, want);
        assert_eq!(a.random::<u64>(), b.random::<u64>(), "the RNG is left where the loop left it");
    }
}
