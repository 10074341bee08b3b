//! GELU with the tanh approximation (GPT-2's `gelu_new`), forward and derivative in one pass
//! each over the activation, split over rayon's threads.
//!
//! ```text
//! y      = 0.5 x (1 + t),   t = tanh(u),   u = sqrt(2 / pi) x (1 + 0.044715 x^2)
//! dy/dx  = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
//! ```
//!
//! The forward is candle's f32 `gelu` expression with `tanh(u) = (e^2u - 1) / (e^2u + 1)`
//! (|u| clamped to 9, where tanh is 1 in f32): within 2e-7 of candle's values, and glibc's
//! `tanhf` (through `expm1f`) was about 7% of a GPT-2 CPU training step. candle's backward
//! composes the derivative from about fifteen tensor ops, two of them `powf`, each a pass over
//! the (N, 4C) activation; here it is one.
//!
//! ```
//! let x = [-3.0f32, -0.5, 0.0, 0.7, 2.5];
//! let mut y = [0f32; 5];
//! distill_cpu_kernels::gelu::forward(&x, &mut y);
//! assert_eq!(y[2], 0.0);
//! assert!((y[3] - 0.53057).abs() < 1e-5 && (y[4] - 2.48492).abs() < 1e-5);
//! ```

use rayon::prelude::*;

const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
const CUBIC: f32 = 0.044715;
/// Elements per rayon task: large enough that the split costs nothing next to the tanh.
const CHUNK: usize = 1 << 15;

/// tanh through one `exp` (module docs): absolute error ~1e-7, the rounding of `e - 1` near 0.
#[inline]
fn tanh(u: f32) -> f32 {
    let e = (2.0 * u.clamp(-9.0, 9.0)).exp();
    (e - 1.0) / (e + 1.0)
}

/// `y[i] = gelu(x[i])`.
pub fn forward(x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (y, &v) in y.iter_mut().zip(x) {
            *y = 0.5 * v * (1.0 + tanh(SQRT_TWO_OVER_PI * v * (1.0 + CUBIC * v * v)));
        }
    });
}

/// `dx[i] = dy[i] * gelu'(x[i])`.
pub fn backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert!(x.len() == dy.len() && x.len() == dx.len());
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (x, dy))| {
        for ((dx, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
            let v2 = v * v;
            let t = tanh(SQRT_TWO_OVER_PI * v * (1.0 + CUBIC * v2));
            let du = SQRT_TWO_OVER_PI * (1.0 + 3.0 * CUBIC * v2);
            *dx = g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_is_within_2e_7_of_std() {
        for i in -200_000..=200_000 {
            let u = i as f32 * 1e-4;
            assert!((tanh(u) - u.tanh()).abs() <= 2e-7, "tanh({u}): {} vs {}", tanh(u), u.tanh());
        }
        assert_eq!((tanh(50.0), tanh(-50.0), tanh(0.0)), (1.0, -1.0, 0.0));
    }

    /// The derivative against central differences of the forward, in f64.
    #[test]
    fn backward_is_the_derivative_of_forward() {
        let f = |v: f64| 0.5 * v * (1.0 + (0.797_884_560_802_865_4 * v * (1.0 + 0.044715 * v * v)).tanh());
        let x: Vec<f32> = (0..2001).map(|i| -6.0 + 0.006 * i as f32).collect();
        let dy: Vec<f32> = (0..2001).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
        let mut dx = vec![0f32; x.len()];
        backward(&x, &dy, &mut dx);
        for ((&v, &g), &d) in x.iter().zip(&dy).zip(&dx) {
            let (v, h) = (v as f64, 1e-4);
            let want = g as f64 * (f(v + h) - f(v - h)) / (2.0 * h);
            assert!((d as f64 - want).abs() < 2e-6 * (1.0 + want.abs()), "x {v}: {d} vs {want}");
        }
    }
}
