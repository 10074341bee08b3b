//! MinHash signatures over word shingles.
//!
//! A text's shingle set `S` is the set of hashes of its `k` consecutive word tokens
//! ([`crate::normalize::tokens`]); a text shorter than `k` tokens has one shingle, the whole
//! text, and an empty text none. For two texts the Jaccard similarity is
//! `J(A, B) = |S_A ∩ S_B| / |S_A ∪ S_B|`.
//!
//! Permutation `i` of `P` is the multiply-add-shift hash `π_i(h) = (a_i·h + b_i mod 2^64) >> 32`
//! with odd `a_i` and any `b_i` drawn from splitmix64 seeded by `seed`; the signature is
//! `sig_i = min_{h ∈ S} π_i(h)` (a `u32`). Since `P(sig_i(A) = sig_i(B)) ≈ J(A, B)`, the fraction
//! of equal positions estimates `J` with standard error `sqrt(J(1-J)/P)` (0.035 at `J = 0.8`,
//! `P = 128`).
//!
//! Cost: one shingle hash per token, then `P` multiply-adds per distinct shingle: the inner loop
//! is a straight pass over two `u64` arrays that the compiler unrolls. datasketch instead
//! hashes every shingle with SHA-1 and runs numpy over `P` values per update.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TextDedupError};
use crate::normalize::{ngram_hash, splitmix64, tokens};

/// The `[...minhash]` settings: what a near duplicate is and how hard to look for one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinHashConfig {
    /// Words per shingle (k). Larger k makes the similarity stricter about word order.
    pub shingle_size: usize,
    /// Number of hash permutations (signature length). More is more precise and slower.
    pub num_perm: usize,
    /// Jaccard similarity at or above which two texts are near duplicates (0 < t <= 1).
    pub threshold: f64,
    /// LSH bands. 0 (default) derives bands and rows from `threshold` as datasketch does
    /// (minimising the integrated false-positive + false-negative probability, equal weights).
    pub bands: usize,
    /// Rows per band; give it together with `bands` (bands * rows <= num_perm), or leave 0.
    pub rows: usize,
    /// Seed of the permutations: same seed, same signatures, same clusters.
    pub seed: u64,
    /// Confirm each LSH candidate pair by its signature similarity (estimated Jaccard >=
    /// threshold) before clustering it. Off: every pair that shares a band is a duplicate
    /// (datasketch's behaviour), which merges more false positives.
    pub verify: bool,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        MinHashConfig { shingle_size: 5, num_perm: 128, threshold: 0.8, bands: 0, rows: 0, seed: 1, verify: true }
    }
}

impl MinHashConfig {
    /// Checks ranges and resolves the banding: `(bands, rows)`.
    pub fn resolve(&self) -> Result<(usize, usize)> {
        let bad = |key: &str, msg: String| Err(TextDedupError::Config { key: key.to_string(), message: msg });
        if self.shingle_size == 0 {
            return bad("shingle_size", "must be at least 1".into());
        }
        if self.num_perm == 0 || self.num_perm > 4096 {
            return bad("num_perm", format!("{} is out of range: use 16..=4096 (128 is usual)", self.num_perm));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad("threshold", format!("{} is out of range: use a Jaccard similarity in (0, 1]", self.threshold));
        }
        match (self.bands, self.rows) {
            (0, 0) => Ok(optimal_bands(self.threshold, self.num_perm)),
            (b, r) if b > 0 && r > 0 && b * r <= self.num_perm => Ok((b, r)),
            (b, r) if b > 0 && r > 0 => bad("bands", format!("bands * rows = {b} * {r} = {} exceeds num_perm = {}", b * r, self.num_perm)),
            _ => bad("bands", "give both bands and rows (each >= 1), or neither to derive them from threshold".into()),
        }
    }
}

/// The probability that two texts of Jaccard `s` share at least one band: `1 - (1 - s^r)^b`.
pub fn collision_probability(s: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

/// Simpson's rule over `[lo, hi]` with 200 intervals: smooth integrands, error far below the
/// gaps between neighbouring (b, r) choices.
fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    let n = 200;
    let h = (hi - lo) / n as f64;
    let mut sum = f(lo) + f(hi);
    for i in 1..n {
        sum += f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    sum * h / 3.0
}

/// datasketch's `_optimal_param(threshold, num_perm, 0.5, 0.5)`: the (bands, rows) that
/// minimise `0.5 * ∫_0^t P_collide + 0.5 * ∫_t^1 (1 - P_collide)`.
pub fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    let mut best = (f64::INFINITY, (1, 1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let fp = integrate(|s| collision_probability(s, b, r), 0.0, threshold);
            let fneg = integrate(|s| 1.0 - collision_probability(s, b, r), threshold, 1.0);
            let err = 0.5 * fp + 0.5 * fneg;
            if err < best.0 {
                best = (err, (b, r));
            }
        }
    }
    best.1
}

/// Computes signatures; cheap to share across threads.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    shingle_size: usize,
}

impl MinHasher {
    pub fn new(num_perm: usize, shingle_size: usize, seed: u64) -> Self {
        let mut state = seed ^ 0x5851_f42d_4c95_7f2d;
        let mut a = Vec::with_capacity(num_perm);
        let mut b = Vec::with_capacity(num_perm);
        for _ in 0..num_perm {
            a.push(splitmix64(&mut state) | 1);
            b.push(splitmix64(&mut state));
        }
        MinHasher { a, b, shingle_size: shingle_size.max(1) }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The distinct shingle hashes of `text`, sorted (see the module docs).
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        shingle_set(text, self.shingle_size)
    }

    /// Writes the signature of `text` into `out` (length `num_perm`). An empty text gets all
    /// `u32::MAX`, which callers treat as "no signature".
    pub fn signature_into(&self, text: &str, out: &mut [u32]) {
        debug_assert_eq!(out.len(), self.a.len());
        out.fill(u32::MAX);
        for h in self.shingles(text) {
            for ((o, &a), &b) in out.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(h).wrapping_add(b) >> 32) as u32;
                if v < *o {
                    *o = v;
                }
            }
        }
    }

    pub fn signature(&self, text: &str) -> Vec<u32> {
        let mut out = vec![0; self.a.len()];
        self.signature_into(text, &mut out);
        out
    }
}

/// Distinct hashes of the `k`-token windows of `text`, sorted; the whole text when it has
/// fewer than `k` tokens; empty for a text without word tokens.
pub fn shingle_set(text: &str, k: usize) -> Vec<u64> {
    let toks = tokens(text);
    if toks.is_empty() {
        return Vec::new();
    }
    let mut set: Vec<u64> = if toks.len() < k { vec![ngram_hash(&toks)] } else { toks.windows(k).map(ngram_hash).collect() };
    set.sort_unstable();
    set.dedup();
    set
}

/// Exact Jaccard similarity of two sorted, deduplicated sets.
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Estimated Jaccard: the fraction of equal signature positions.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
    eq as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banding_matches_datasketch_for_common_settings() {
        // datasketch 1.6.5 MinHashLSH(threshold, num_perm).b, .r (scipy quad integration).
        assert_eq!(optimal_bands(0.8, 128), (9, 13));
        assert_eq!(optimal_bands(0.5, 128), (25, 5));
        assert_eq!(optimal_bands(0.7, 256), (25, 10));
        assert_eq!(optimal_bands(0.85, 128), (8, 16));
        assert_eq!(optimal_bands(0.9, 128), (5, 25));
    }

    #[test]
    fn estimated_jaccard_tracks_the_exact_value() {
        let h = MinHasher::new(256, 3, 7);
        let base: Vec<String> = (0..200).map(|i| format!("w{}", i)).collect();
        let mut edited = base.clone();
        for i in (0..200).step_by(10) {
            edited[i] = format!("x{i}");
        }
        let (ta, tb) = (base.join(" "), edited.join(" "));
        let exact = jaccard(&h.shingles(&ta), &h.shingles(&tb));
        let est = estimated_jaccard(&h.signature(&ta), &h.signature(&tb));
        // Standard error at P = 256 is about 0.03; allow 3 of them.
        assert!((exact - est).abs() < 0.1, "exact {exact} vs estimate {est}");
        assert!(exact > 0.4 && exact < 0.8, "{exact}");
    }

    #[test]
    fn bad_settings_name_the_key() {
        let c = MinHashConfig { bands: 20, rows: 10, ..Default::default() };
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("bands") && e.contains("exceeds num_perm"), "{e}");
        let c = MinHashConfig { threshold: 1.5, ..Default::default() };
        assert!(c.resolve().unwrap_err().to_string().contains("threshold"));
    }
}
