//! A bias added to every row, and its gradient (the column sums of the output's gradient),
//! split over rayon's threads.
//!
//! ```text
//! forward:  y[r, c] = x[r, c] + b[c]        x, y (R, C), b (C,)
//! backward: db[c] = sum over r of dy[r, c]
//! ```
//!
//! candle's reduction behind the broadcast add's backward runs on one thread; in a GPT-2 CPU
//! training step it was about 8% of the wall time (the other core idle meanwhile). The column
//! sums here add rows in blocks of [`ROWS`], each block's sums on one thread, then the blocks'
//! sums in block order: the same result for any number of threads.
//!
//! ```
//! let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 rows of 3
//! let mut y = [0f32; 6];
//! distill_cpu_kernels::bias::add_rows(&x, &[10.0, 20.0, 30.0], &mut y);
//! assert_eq!(y, [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
//! assert_eq!(distill_cpu_kernels::bias::column_sums(&x, 3), vec![5.0, 7.0, 9.0]);
//! ```

use rayon::prelude::*;

/// Rows summed per rayon task in [`column_sums`].
const ROWS: usize = 64;

/// `y = x + b` with b repeated over the rows of x (module docs).
pub fn add_rows(x: &[f32], b: &[f32], y: &mut [f32]) {
    let c = b.len();
    assert!(c > 0 && x.len() == y.len() && x.len().is_multiple_of(c));
    y.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).for_each(|(y, x)| {
        for (y, x) in y.chunks_mut(c).zip(x.chunks(c)) {
            for ((y, &x), &b) in y.iter_mut().zip(x).zip(b) {
                *y = x + b;
            }
        }
    });
}

/// The sums over rows of `dy` (R, `cols`): (cols,) (module docs).
pub fn column_sums(dy: &[f32], cols: usize) -> Vec<f32> {
    assert!(cols > 0 && dy.len().is_multiple_of(cols));
    let blocks: Vec<Vec<f32>> = dy
        .par_chunks(cols * ROWS)
        .map(|block| {
            let mut sums = vec![0f32; cols];
            for row in block.chunks(cols) {
                for (s, &v) in sums.iter_mut().zip(row) {
                    *s += v;
                }
            }
            sums
        })
        .collect();
    let mut total = vec![0f32; cols];
    for block in blocks {
        for (t, s) in total.iter_mut().zip(block) {
            *t += s;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_sums_of_many_blocks_match_f64_sums() {
        let (rows, cols) = (1000, 7);
        let dy: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1013) as f32) / 100.0 - 5.0).collect();
        let got = super::column_sums(&dy, cols);
        for (c, &g) in got.iter().enumerate() {
            let want: f64 = (0..rows).map(|r| dy[r * cols + c] as f64).sum();
            assert!((g as f64 - want).abs() < 1e-3, "column {c}: {g} vs {want}");
        }
    }
}
