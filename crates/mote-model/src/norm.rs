//! RMS normalisation: `x / sqrt(mean(x²) + eps) * weight`.

/// Normalises each `weight.len()`-long row of `x` in place.
///
/// As ggml computes it: each square rounded to f32, the squares summed in f64 in order,
/// the mean rounded to f32, then `x · (1/sqrt(mean + eps)) · weight` in f32.
pub fn rms_norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    if dim == 0 {
        return;
    }
    // Rows are independent: long prompts split them over the pool.
    let pool = mote_tensor::parallel::global();
    mote_tensor::parallel::for_rows(&pool, x, dim, &|_, rows| norm_rows(rows, weight, eps));
}

/// Rows at a time whose sums of squares run side by side: each sum is one sequential
/// f64 chain (ggml's order), latency-bound when rows go one after another.
const ROWS_TOGETHER: usize = 8;

fn norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    for group in x.chunks_mut(ROWS_TOGETHER * dim) {
        let rows = group.len() / dim;
        let mut sums = [0f64; ROWS_TOGETHER];
        for i in 0..dim {
            for (r, sum) in sums.iter_mut().enumerate().take(rows) {
                let v = group[r * dim + i];
                *sum += (v * v) as f64;
            }
        }
        for (row, &sum_sq) in group.chunks_exact_mut(dim).zip(&sums) {
            let mean = (sum_sq / dim as f64) as f32;
            let scale = 1.0 / (mean + eps).sqrt();
            for (v, w) in row.iter_mut().zip(weight) {
                *v = *v * scale * w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_each_row() {
        let mut x = vec![3.0, 4.0, 1.0, 1.0];
        rms_norm_rows(&mut x, &[1.0, 2.0], 0.0);
        let r = (12.5f32).sqrt();
        assert!((x[0] - 3.0 / r).abs() < 1e-6);
        assert!((x[1] - 8.0 / r).abs() < 1e-6);
        assert!((x[2] - 1.0).abs() < 1e-6);
        assert!((x[3] - 2.0).abs() < 1e-6);
    }
}
