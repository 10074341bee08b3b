//! A small deterministic random stream (splitmix64) for every choice the stage makes.
//!
//! Why not `rand`: the stage promises byte-identical output for the same config and seed, also
//! across dependency upgrades; splitmix64 is a fixed, 5-line function whose stream never
//! changes. Streams are derived per purpose (`Rng::derive(seed, "template:py-fix-bug")`), so
//! adding a template does not reshuffle the choices of the others.

use distill_textdedup::normalize::{fmix64, splitmix64};

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream for one purpose, independent of every other label's.
    pub fn derive(seed: u64, label: &str) -> Rng {
        let mut h = fmix64(seed ^ 0x2545_f491_4f6c_dd1d);
        for b in label.bytes() {
            h = fmix64(h ^ u64::from(b));
        }
        Rng(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift (bias < n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// `k` distinct items (fewer if there are fewer), in random order.
    pub fn sample<T: Clone>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut idx: Vec<usize> = (0..items.len()).collect();
        self.shuffle(&mut idx);
        idx.into_iter().take(k).map(|i| items[i].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_fixed_and_independent_per_label() {
        let a: Vec<u64> = (0..3)
            .map({
                let mut r = Rng::derive(1, "x");
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..3)
            .map({
                let mut r = Rng::derive(1, "x");
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(Rng::derive(1, "x").next_u64(), Rng::derive(1, "y").next_u64());
        assert_ne!(Rng::derive(1, "x").next_u64(), Rng::derive(2, "x").next_u64());
        let mut r = Rng::derive(3, "s");
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
