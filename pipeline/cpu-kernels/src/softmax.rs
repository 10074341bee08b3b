//! Attention's masked softmax on the CPU: one pass over each row of the scores forward and one
//! backward, rows split over rayon's threads.
//!
//! ```text
//! forward:  y = softmax(s * scale + m)            per row; m the row's additive mask
//! backward: dx = scale * y * (dy - sum(y * dy))   per row
//! ```
//!
//! The composed candle graph these replace ran the scale and the backward's row sums on one
//! thread and made five to seven passes over the (B, H, T, T) scores, each into a fresh tensor.
//! The forward takes the row maximum first, as candle's softmax does, and `exp(z)` is taken
//! as 0 below z = -104, where f32's `exp` underflows to 0 anyway: masked entries (-1e9) skip
//! glibc's slow underflow path.
//!
//! ```
//! let s = [1.0f32, 2.0, 3.0, 4.0];
//! let m = [0.0f32, 0.0, 0.0, -1e9]; // the last key is masked
//! let mut y = [0f32; 4];
//! distill_cpu_kernels::softmax::masked_forward(&s, &m, 4, 1.0, distill_cpu_kernels::softmax::MaskRows::shared(1), &mut y);
//! assert_eq!(y[3], 0.0);
//! assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6 && y[2] > y[1]);
//! ```

use rayon::prelude::*;

/// Below this, `exp` of an f32 rounds to 0 (the smallest subnormal is e^-103.28).
const EXP_UNDERFLOW: f32 = -104.0;

/// Which mask row each row of the scores adds: the scores' rows come in batch entries of
/// `rows_per_batch`, and row r takes mask row `r mod t` of its entry's `t` rows (of entry 0
/// for every row unless `per_batch`).
///
/// A plain struct rather than a closure: a generic function would be compiled in the calling
/// crate, unoptimised in the dev build (see the crate docs).
#[derive(Debug, Clone, Copy)]
pub struct MaskRows {
    pub rows_per_batch: usize,
    pub t: usize,
    pub per_batch: bool,
}

impl MaskRows {
    /// One mask of `t` rows for every row.
    pub fn shared(t: usize) -> Self {
        MaskRows { rows_per_batch: t, t, per_batch: false }
    }

    fn row(&self, r: usize) -> usize {
        (if self.per_batch { r / self.rows_per_batch * self.t } else { 0 }) + r % self.t
    }
}

/// Softmax of each row (length `n`) of `s * scale + m`, where row r of `s` adds row
/// `rows.row(r)` of `mask`; into `y`, of `s`'s length.
pub fn masked_forward(s: &[f32], mask: &[f32], n: usize, scale: f32, rows: MaskRows, y: &mut [f32]) {
    assert!(n > 0 && s.len() == y.len() && s.len().is_multiple_of(n) && mask.len().is_multiple_of(n));
    y.par_chunks_mut(n).zip(s.par_chunks(n)).enumerate().for_each(|(r, (y, s))| {
        let m = &mask[rows.row(r) * n..][..n];
        let mut max = f32::NEG_INFINITY;
        for ((y, &s), &m) in y.iter_mut().zip(s).zip(m) {
            *y = s * scale + m;
            max = max.max(*y);
        }
        let mut sum = 0f32;
        for y in y.iter_mut() {
            let z = *y - max;
            *y = if z < EXP_UNDERFLOW { 0.0 } else { z.exp() };
            sum += *y;
        }
        for y in y.iter_mut() {
            *y /= sum;
        }
    });
}

/// `dx = scale * y * (dy - sum(y * dy))` per row (length `n`) of the softmax output `y` and
/// its gradient `dy`.
pub fn backward(y: &[f32], dy: &[f32], n: usize, scale: f32, dx: &mut [f32]) {
    assert!(n > 0 && y.len() == dy.len() && y.len() == dx.len() && y.len().is_multiple_of(n));
    dx.par_chunks_mut(n).zip(y.par_chunks(n).zip(dy.par_chunks(n))).for_each(|(dx, (y, dy))| {
        let dot: f32 = y.iter().zip(dy).map(|(y, dy)| y * dy).sum();
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = scale * (y * (dy - dot));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook softmax in f64 of one row.
    fn reference(row: &[f64]) -> Vec<f64> {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|x| x / sum).collect()
    }

    #[test]
    fn rows_match_the_f64_softmax_with_each_rows_mask_and_masked_keys_get_exactly_zero() {
        let (n, rows, t) = (37, 12, 3);
        let s: Vec<f32> = (0..rows * n).map(|i| ((i * 7919 % 1000) as f32 / 100.0) - 5.0).collect();
        // A causal-style mask of t rows: row i sees keys 0..=i + 30.
        let mask: Vec<f32> = (0..t * n).map(|i| if i % n <= i / n + 30 { 0.0 } else { -1e9 }).collect();
        let mut y = vec![0f32; s.len()];
        masked_forward(&s, &mask, n, 0.125, MaskRows::shared(t), &mut y);
        for r in 0..rows {
            let m = &mask[(r % t) * n..][..n];
            let row: Vec<f64> = s[r * n..][..n].iter().zip(m).map(|(&s, &m)| s as f64 * 0.125 + m as f64).collect();
            for (j, (&got, want)) in y[r * n..][..n].iter().zip(reference(&row)).enumerate() {
                if m[j] < 0.0 {
                    assert_eq!(got, 0.0, "row {r} key {j} is masked");
                } else {
                    assert!((got as f64 - want).abs() < 1e-6, "row {r} key {j}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn the_backward_is_the_softmax_jacobian_times_dy_scaled() {
        let n = 5;
        let s = [0.3f32, -1.2, 2.0, 0.0, 0.7];
        let dy = [1.0f32, -0.5, 0.25, 2.0, -1.0];
        let mut y = [0f32; 5];
        masked_forward(&s, &[0.0; 5], n, 1.0, MaskRows::shared(1), &mut y);
        let mut dx = [0f32; 5];
        backward(&y, &dy, n, 0.5, &mut dx);
        // J[i][j] = y_i (delta_ij - y_j); dx = 0.5 * J dy.
        for i in 0..n {
            let want: f64 = 0.5 * (0..n).map(|j| y[i] as f64 * ((i == j) as u8 as f64 - y[j] as f64) * dy[j] as f64).sum::<f64>();
            assert!((dx[i] as f64 - want).abs() < 1e-6, "{i}: {} vs {want}", dx[i]);
        }
    }
}
