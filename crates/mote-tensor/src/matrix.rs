//! A weight matrix in any supported type, and the products the model needs from it.
//!
//! Rows are stored contiguously in the matrix's type (ggml layout: `cols` is the row
//! length, `dims[0]` in GGUF). This is the seam where optimised kernels plug in; the
//! model only ever calls these methods.

use std::sync::Mutex;

use crate::kernels::{
    quantize_q8, quantize_q8k, BlockQ8, BlockQ8K, Dot, Kernels, Plan, Q8_BLOCK, QK_K,
};
use crate::parallel::{self, Pool};
use crate::quant::{self, QuantError};
use crate::{Bytes, DType};

#[derive(Clone, Debug)]
pub struct Matrix {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    data: Bytes,
}

impl Matrix {
    pub fn new(dtype: DType, rows: usize, cols: usize, data: Bytes) -> Result<Matrix, QuantError> {
        let values = rows.checked_mul(cols).ok_or(QuantError::SizeMismatch {
            dtype,
            values: usize::MAX,
            expected: usize::MAX,
            got: data.len(),
        })?;
        quant::check_len(dtype, data.len(), values)?;
        Ok(Matrix {
            dtype,
            rows,
            cols,
            data,
        })
    }

    pub fn data(&self) -> &[u8] {
        self.data.as_slice()
    }

    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// Decodes row `r` into `out` (`out.len() == cols`). Used for embedding lookups.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), QuantError> {
        let rb = self.row_bytes();
        quant::dequantize_row(self.dtype, &self.data()[r * rb..(r + 1) * rb], out)
    }

    /// `y[b][r] = Σ_c W[r][c] · x[b][c]` for `n` input vectors laid out one after another:
    /// `x.len() == n * cols`, `y.len() == n * rows`. Runs on the global thread pool
    /// ([`parallel::global`]) with the kernels chosen for this CPU ([`Kernels::active`]).
    ///
    /// Quantized weights are multiplied with the inputs quantized to 8 bits per block (as
    /// llama.cpp does), so results differ from an f32 product by that rounding.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), QuantError> {
        self.matmul_using(&parallel::global(), Kernels::active(), x, n, y)
    }

    /// [`Matrix::matmul`] on a given pool.
    pub fn matmul_with(
        &self,
        pool: &Pool,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        self.matmul_using(pool, Kernels::active(), x, n, y)
    }

    /// [`Matrix::matmul`] on a given pool with a given kernel table (tests and benchmarks
    /// compare the tables with this).
    pub fn matmul_using(
        &self,
        pool: &Pool,
        kernels: &Kernels,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        check_f32_len(x.len(), n, self.cols)?;
        check_f32_len(y.len(), n, self.rows)?;
        if n == 0 || self.rows == 0 {
            return Ok(());
        }
        match kernels.plan(self.dtype) {
            Plan::Float(dot) => self.run(pool, dot, x, self.cols, n, y),
            Plan::Q8(dot) => {
                let per_row = self.cols / Q8_BLOCK;
                let mut acts = vec![BlockQ8::default(); n * per_row];
                for (xb, ab) in x
                    .chunks_exact(self.cols)
                    .zip(acts.chunks_exact_mut(per_row.max(1)))
                {
                    quantize_q8(xb, ab);
                }
                self.run(pool, dot, &acts, per_row, n, y)
            }
            Plan::Q8K(dot) => {
                let per_row = self.cols / QK_K;
                let mut acts = vec![BlockQ8K::default(); n * per_row];
                for (xb, ab) in x
                    .chunks_exact(self.cols)
                    .zip(acts.chunks_exact_mut(per_row.max(1)))
                {
                    quantize_q8k(xb, ab);
                }
                self.run(pool, dot, &acts, per_row, n, y)
            }
            Plan::Dequantize => return self.matmul_dequantized(pool, x, n, y),
        }
        Ok(())
    }

    /// Splits the output rows into tasks for `pool` and fills `y` with `dot`, where each
    /// of the `n` activation rows is `per_row` elements of `acts`.
    fn run<A: Sync>(
        &self,
        pool: &Pool,
        dot: Dot<A>,
        acts: &[A],
        per_row: usize,
        n: usize,
        y: &mut [f32],
    ) {
        let (rows, row_bytes, w) = (self.rows, self.row_bytes(), self.data());
        let tasks = task_count(pool, rows, self.cols * n);
        let chunk = rows.div_ceil(tasks).next_multiple_of(ROW_TILE);
        let mut slots: Vec<Mutex<Vec<&mut [f32]>>> = (0..rows.div_ceil(chunk))
            .map(|_| Mutex::new(Vec::with_capacity(n)))
            .collect();
        for yb in y.chunks_exact_mut(rows) {
            for (slot, piece) in slots.iter_mut().zip(yb.chunks_mut(chunk)) {
                slot.get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(piece);
            }
        }
        pool.run(slots.len(), &|t| {
            let mut outs = slots[t].lock().unwrap_or_else(|e| e.into_inner());
            let first = t * chunk;
            let w = &w[first * row_bytes..];
            tile(dot, w, row_bytes, acts, per_row, &mut outs);
        });
    }

    /// The product for types without a kernel: decode each weight row to f32, then dot
    /// it with every input.
    fn matmul_dequantized(
        &self,
        pool: &Pool,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), QuantError> {
        let mut row = vec![0f32; self.cols];
        // Fail before starting threads if the type cannot be decoded at all.
        self.dequantize_row(0, &mut row)?;
        let rows = self.rows;
        let tasks = task_count(pool, rows, self.cols * n);
        let chunk = rows.div_ceil(tasks);
        let mut slots: Vec<Mutex<Vec<&mut [f32]>>> = (0..rows.div_ceil(chunk))
            .map(|_| Mutex::new(Vec::with_capacity(n)))
            .collect();
        for yb in y.chunks_exact_mut(rows) {
            for (slot, piece) in slots.iter_mut().zip(yb.chunks_mut(chunk)) {
                slot.get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(piece);
            }
        }
        let error = Mutex::new(None);
        pool.run(slots.len(), &|t| {
            let mut outs = slots[t].lock().unwrap_or_else(|e| e.into_inner());
            let mut row = vec![0f32; self.cols];
            for r in 0..outs[0].len() {
                if let Err(e) = self.dequantize_row(t * chunk + r, &mut row) {
                    *error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return;
                }
                for (out, xb) in outs.iter_mut().zip(x.chunks_exact(self.cols)) {
                    out[r] = dot_f32(&row, xb);
                }
            }
        });
        match error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Output rows per tile: the weights of this many rows are reused for every activation
/// row while they are still in L1.
const ROW_TILE: usize = 16;

/// Below this many multiply-adds a product runs on one thread: waking workers costs a
/// few microseconds, more than they would save.
const PARALLEL_MIN_WORK: usize = 64 * 1024;

/// How many tasks to split `rows` output rows into, `work` multiply-adds per row.
fn task_count(pool: &Pool, rows: usize, work: usize) -> usize {
    let threads = pool.threads();
    if threads == 1 || rows.saturating_mul(work) < PARALLEL_MIN_WORK {
        return 1;
    }
    // Two tasks per thread lets a thread that started late (woken from sleep, or
    // descheduled on a busy machine) take fewer rows.
    (2 * threads).min(rows.div_ceil(ROW_TILE)).max(1)
}

/// Fills `outs[b][r]` with weight row `r` (of `w`) times activation row `b`, four
/// activation rows at a time so each decoded weight block serves four products.
fn tile<A>(
    dot: Dot<A>,
    w: &[u8],
    row_bytes: usize,
    acts: &[A],
    per_row: usize,
    outs: &mut [&mut [f32]],
) {
    let n = outs.len();
    let rows = outs.first().map_or(0, |o| o.len());
    let act = |b: usize| &acts[b * per_row..(b + 1) * per_row];
    let weights = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
    for r0 in (0..rows).step_by(ROW_TILE) {
        let r1 = (r0 + ROW_TILE).min(rows);
        let mut b = 0;
        while b + 4 <= n {
            let a4 = [act(b), act(b + 1), act(b + 2), act(b + 3)];
            if let [o0, o1, o2, o3] = &mut outs[b..b + 4] {
                for r in r0..r1 {
                    [o0[r], o1[r], o2[r], o3[r]] = (dot.four)(weights(r), a4);
                }
            }
            b += 4;
        }
        for (b, out) in outs.iter_mut().enumerate().skip(b) {
            for (r, o) in out.iter_mut().enumerate().take(r1).skip(r0) {
                *o = (dot.one)(weights(r), act(b));
            }
        }
    }
}

/// f32 dot product with eight partial sums (vectorisable, and less rounding drift).
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Checks that an f32 buffer holds `n` vectors of `len` values.
fn check_f32_len(got: usize, n: usize, len: usize) -> Result<(), QuantError> {
    let values = n.checked_mul(len);
    if values == Some(got) {
        return Ok(());
    }
    // QuantError has no shape variant; an f32 buffer of the wrong size is a size
    // mismatch of F32 values, which is what this reports.
    Err(QuantError::SizeMismatch {
        dtype: DType::F32,
        values: values.unwrap_or(usize::MAX),
        expected: values.map_or(usize::MAX, |v| v.saturating_mul(4)),
        got: got.saturating_mul(4),
    })
}
