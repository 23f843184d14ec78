//! Dense products of row-major matrices, the three shapes training needs: activations
//! times weights (`X·Wᵀ`), output gradients times weights (`dY·W`) and weight gradients
//! (`dYᵀ·X`). All three run through one register-blocked `A·Bᵀ` kernel (four rows of each
//! side, eight lanes per dot product) on the global thread pool; the other two
//! transpose an operand first (linear cost, against the product's cubic one).

use std::sync::Mutex;

use mote_tensor::{Bytes, DType, Matrix};

use crate::real::Real;

const LANES: usize = 8;
/// Rows of `B` kept hot (in L2) while every row of `A` of a task passes over them.
const B_BLOCK: usize = 64;

/// `c[i][j] (+)= Σ_p a[i][p]·b[j][p]` with `a` m×k, `b` n×k, `c` m×n; `accumulate` adds
/// to `c` instead of overwriting it.
pub fn matmul_nt<R: Real>(
    a: &[R],
    b: &[R],
    (m, n, k): (usize, usize, usize),
    c: &mut [R],
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= n * k && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if let (Some(a32), Some(b32), Some(c32)) = (R::as_f32(a), R::as_f32(b), R::as_f32_mut(c)) {
        if m * n * k >= SIMD_MIN_FLOPS && simd_nt(a32, b32, (m, n, k), c32, accumulate) {
            return;
        }
    }
    let pool = mote_tensor::parallel::global();
    let flops = m * n * k;
    let tasks = if flops < 1 << 18 {
        1
    } else {
        (m.div_ceil(4)).min(2 * pool.threads())
    };
    let rows_per = m.div_ceil(tasks).next_multiple_of(4);
    let chunks: Vec<Mutex<&mut [R]>> = c[..m * n]
        .chunks_mut(rows_per * n)
        .map(Mutex::new)
        .collect();
    let run = |t: usize| {
        let mut c = chunks[t].lock().unwrap_or_else(|e| e.into_inner());
        let i0 = t * rows_per;
        let rows = c.len() / n;
        nt_rows(
            &a[i0 * k..(i0 + rows) * k],
            b,
            (rows, n, k),
            &mut c,
            accumulate,
        );
    };
    if chunks.len() == 1 {
        run(0);
    } else {
        pool.run(chunks.len(), &run);
    }
}

/// Products at least this large (multiply-adds) go to mote-tensor's kernels.
const SIMD_MIN_FLOPS: usize = 1 << 16;

/// `A·Bᵀ` in f32 through mote-tensor's F32 weight kernels (SIMD picked at run time,
/// on the global pool): `b` is the "weight" matrix. False if the kernel refused.
fn simd_nt(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    c: &mut [f32],
    acc: bool,
) -> bool {
    let bytes: Vec<u8> = b[..n * k].iter().flat_map(|v| v.to_le_bytes()).collect();
    let Ok(w) = Matrix::new(DType::F32, n, k, Bytes::from_vec(bytes)) else {
        return false;
    };
    if acc {
        let mut tmp = vec![0f32; m * n];
        if w.matmul(&a[..m * k], m, &mut tmp).is_err() {
            return false;
        }
        c[..m * n].iter_mut().zip(&tmp).for_each(|(o, v)| *o += v);
        true
    } else {
        w.matmul(&a[..m * k], m, &mut c[..m * n]).is_ok()
    }
}

fn nt_rows<R: Real>(a: &[R], b: &[R], (m, n, k): (usize, usize, usize), c: &mut [R], acc: bool) {
    for jb in (0..n).step_by(B_BLOCK) {
        let je = (jb + B_BLOCK).min(n);
        let mut i = 0;
        while i < m {
            let mi = (m - i).min(4);
            let mut j = jb;
            while j < je {
                let nj = (je - j).min(4);
                if mi == 4 && nj == 4 {
                    let ar = [0, 1, 2, 3].map(|x| &a[(i + x) * k..(i + x + 1) * k]);
                    let br = [0, 1, 2, 3].map(|y| &b[(j + y) * k..(j + y + 1) * k]);
                    let out = block4(ar, br);
                    for (x, row) in out.iter().enumerate() {
                        for (y, &v) in row.iter().enumerate() {
                            store(&mut c[(i + x) * n + j + y], v, acc);
                        }
                    }
                } else {
                    for x in i..i + mi {
                        for y in j..j + nj {
                            let v = dot(&a[x * k..(x + 1) * k], &b[y * k..(y + 1) * k]);
                            store(&mut c[x * n + y], v, acc);
                        }
                    }
                }
                j += nj;
            }
            i += mi;
        }
    }
}

#[inline(always)]
fn store<R: Real>(c: &mut R, v: R, accumulate: bool) {
    if accumulate {
        *c += v;
    } else {
        *c = v;
    }
}

#[inline(always)]
fn block4<R: Real>(a: [&[R]; 4], b: [&[R]; 4]) -> [[R; 4]; 4] {
    let k = a[0].len();
    let body = k / LANES * LANES;
    let mut acc = [[[R::ZERO; LANES]; 4]; 4];
    let mut p = 0;
    while p < body {
        let av = a.map(|r| <[R; LANES]>::try_from(&r[p..p + LANES]).unwrap_or_default());
        let bv = b.map(|r| <[R; LANES]>::try_from(&r[p..p + LANES]).unwrap_or_default());
        for x in 0..4 {
            for y in 0..4 {
                for l in 0..LANES {
                    acc[x][y][l] += av[x][l] * bv[y][l];
                }
            }
        }
        p += LANES;
    }
    let mut out = [[R::ZERO; 4]; 4];
    for x in 0..4 {
        for y in 0..4 {
            let mut s = acc[x][y].iter().fold(R::ZERO, |s, &v| s + v);
            for q in body..k {
                s += a[x][q] * b[y][q];
            }
            out[x][y] = s;
        }
    }
    out
}

/// `Σ a[i]·b[i]` in eight lanes.
#[inline]
pub fn dot<R: Real>(a: &[R], b: &[R]) -> R {
    let mut acc = [R::ZERO; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().fold(R::ZERO, |s, &v| s + v);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += *x * *y;
    }
    s
}

/// `a` (rows×cols) transposed into a new cols×rows matrix.
pub fn transpose<R: Real>(a: &[R], rows: usize, cols: usize) -> Vec<R> {
    let mut t = vec![R::ZERO; rows * cols];
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    t
}

/// `c[i][j] (+)= Σ_p a[i][p]·b[p][j]` with `a` m×k, `b` k×n: input gradients `dY·W`.
pub fn matmul_nn<R: Real>(
    a: &[R],
    b: &[R],
    (m, n, k): (usize, usize, usize),
    c: &mut [R],
    accumulate: bool,
) {
    let bt = transpose(&b[..k * n], k, n);
    matmul_nt(a, &bt, (m, n, k), c, accumulate);
}

/// `c[i][j] += Σ_p a[p][i]·b[p][j]` with `a` k×m, `b` k×n: weight gradients `dYᵀ·X`.
pub fn matmul_tn_acc<R: Real>(a: &[R], b: &[R], (m, n, k): (usize, usize, usize), c: &mut [R]) {
    let at = transpose(&a[..k * m], k, m);
    let bt = transpose(&b[..k * n], k, n);
    matmul_nt(&at, &bt, (m, n, k), c, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
            }
        }
        c
    }

    #[test]
    fn all_shapes_match_the_definition() {
        let mut rng = crate::rng::Rng::new(1);
        for &(m, n, k) in &[(1, 1, 1), (5, 7, 3), (9, 130, 19), (70, 66, 40), (4, 4, 8)] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.normal()).collect();
            let b: Vec<f64> = (0..n * k).map(|_| rng.normal()).collect();
            let want = naive(&a, &b, m, n, k);
            let mut c = vec![1.0; m * n];
            matmul_nt(&a, &b, (m, n, k), &mut c, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-9);
            }
            matmul_nt(&a, &b, (m, n, k), &mut c, true);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - 2.0 * y).abs() < 1e-9);
            }
            // dY·W with W = bᵀ (k×n stored as n×k transposed).
            let bt = transpose(&b, n, k);
            let mut c2 = vec![0.0; m * n];
            matmul_nn(&a, &bt, (m, n, k), &mut c2, false);
            for (x, y) in c2.iter().zip(&want) {
                assert!((x - y).abs() < 1e-9);
            }
            let at = transpose(&a, m, k);
            let mut c3 = vec![0.0; m * n];
            matmul_tn_acc(&at, &bt, (m, n, k), &mut c3);
            for (x, y) in c3.iter().zip(&want) {
                assert!((x - y).abs() < 1e-9);
            }
            // The f32 instantiation (mote-tensor's kernels above SIMD_MIN_FLOPS).
            let (a32, b32): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            let mut c32 = vec![1f32; m * n];
            matmul_nt(&a32, &b32, (m, n, k), &mut c32, true);
            for (x, y) in c32.iter().zip(&want) {
                assert!((*x as f64 - 1.0 - y).abs() < 1e-4 * (1.0 + y.abs()));
            }
        }
    }

    #[test]
    #[ignore = "timing; run with --ignored --nocapture"]
    fn speed() {
        let (m, n, k) = (512, 1536, 576);
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; n * k];
        let mut c = vec![0f32; m * n];
        for simd in [false, true] {
            let t = std::time::Instant::now();
            if simd {
                simd_nt(&a, &b, (m, n, k), &mut c, false);
            } else {
                nt_rows(&a, &b, (m, n, k), &mut c, false);
            }
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "simd {simd}: {:.1} GFLOP/s",
                2.0 * (m * n * k) as f64 / s / 1e9
            );
        }
    }
}
