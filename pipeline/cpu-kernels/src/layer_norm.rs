//! LayerNorm over the last dim of row-major `(rows, C)` f32, forward and backward in one pass
//! over the rows each, rows split over rayon's threads.
//!
//! ```text
//! mean = sum(x) / C,   var = sum((x - mean)^2) / C (biased),   r = 1 / sqrt(var + eps)
//! xhat = (x - mean) r,   y = xhat w + b
//! g = dy w,   dx = r (g - mean(g) - xhat mean(g xhat)),   dw = sum_rows(dy xhat),   db = sum_rows(dy)
//! ```
//!
//! The forward recomputes nothing the backward needs: the backward recomputes mean and r from
//! x (one more read of a row it reads anyway). The weight and bias gradients are summed per
//! block of rows and the blocks added in order, so results do not depend on the thread count
//! or on scheduling.

use rayon::prelude::*;

/// Rows per rayon task.
const ROWS: usize = 64;

fn stats(x: &[f32], eps: f64) -> (f32, f32) {
    let c = x.len() as f32;
    let mean = x.iter().sum::<f32>() / c;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c;
    (mean, (1.0 / (var as f64 + eps).sqrt()) as f32)
}

/// `y = layer_norm(x) * w + b` for each row of `c` elements.
pub fn forward(x: &[f32], w: &[f32], b: &[f32], eps: f64, y: &mut [f32]) {
    let c = w.len();
    assert!(b.len() == c && x.len() == y.len() && x.len().is_multiple_of(c));
    y.par_chunks_mut(c * ROWS).zip(x.par_chunks(c * ROWS)).for_each(|(y, x)| {
        for (y, x) in y.chunks_mut(c).zip(x.chunks(c)) {
            let (mean, r) = stats(x, eps);
            for (((y, &v), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                *y = (v - mean) * r * w + b;
            }
        }
    });
}

/// `dx` for each row, and the weight and bias gradients `(dw, db)` summed over the rows.
pub fn backward(x: &[f32], w: &[f32], dy: &[f32], eps: f64, dx: &mut [f32]) -> (Vec<f32>, Vec<f32>) {
    let c = w.len();
    assert!(x.len() == dy.len() && x.len() == dx.len() && x.len().is_multiple_of(c));
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(c * ROWS)
        .zip(x.par_chunks(c * ROWS).zip(dy.par_chunks(c * ROWS)))
        .map(|(dx, (x, dy))| {
            let (mut dw, mut db) = (vec![0f32; c], vec![0f32; c]);
            for ((dx, x), dy) in dx.chunks_mut(c).zip(x.chunks(c)).zip(dy.chunks(c)) {
                let (mean, r) = stats(x, eps);
                let (mut g_mean, mut gx_mean) = (0f32, 0f32);
                for j in 0..c {
                    let xhat = (x[j] - mean) * r;
                    let g = dy[j] * w[j];
                    g_mean += g;
                    gx_mean += g * xhat;
                    dw[j] += dy[j] * xhat;
                    db[j] += dy[j];
                }
                g_mean /= c as f32;
                gx_mean /= c as f32;
                for j in 0..c {
                    let xhat = (x[j] - mean) * r;
                    dx[j] = r * (dy[j] * w[j] - g_mean - xhat * gx_mean);
                }
            }
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![0f32; c], vec![0f32; c]);
    for (bw, bb) in &blocks {
        for j in 0..c {
            dw[j] += bw[j];
            db[j] += bb[j];
        }
    }
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loss `sum(y * t)` against central differences in f64, for x, w and b.
    #[test]
    fn backward_is_the_gradient_of_forward() {
        let (rows, c, eps) = (70, 9, 1e-5);
        let x: Vec<f32> = (0..rows * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let w: Vec<f32> = (0..c).map(|j| 0.5 + j as f32 * 0.1).collect();
        let b: Vec<f32> = (0..c).map(|j| j as f32 * 0.05 - 0.2).collect();
        let t: Vec<f32> = (0..rows * c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let mut y = vec![0f32; x.len()];
            forward(x, w, b, eps, &mut y);
            y.iter().zip(&t).map(|(y, t)| *y as f64 * *t as f64).sum()
        };
        let mut dx = vec![0f32; x.len()];
        let (dw, db) = backward(&x, &w, &t, eps, &mut dx);
        let h = 1e-2f32;
        let numeric = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * h as f64);
        for i in [0, 5, 100, 333, rows * c - 1] {
            let d = numeric(&|e| {
                let mut x2 = x.clone();
                x2[i] += e;
                loss(&x2, &w, &b)
            });
            assert!((dx[i] as f64 - d).abs() < 2e-3 * (1.0 + d.abs()), "dx[{i}] {} vs {d}", dx[i]);
        }
        for j in 0..c {
            let d = numeric(&|e| {
                let mut w2 = w.clone();
                w2[j] += e;
                loss(&x, &w2, &b)
            });
            assert!((dw[j] as f64 - d).abs() < 2e-3 * (1.0 + d.abs()), "dw[{j}] {} vs {d}", dw[j]);
            let d = numeric(&|e| {
                let mut b2 = b.clone();
                b2[j] += e;
                loss(&x, &w, &b2)
            });
            assert!((db[j] as f64 - d).abs() < 2e-3 * (1.0 + d.abs()), "db[{j}] {} vs {d}", db[j]);
        }
    }
}
