//! A weight matrix in any supported type, and the products the model needs from it.
//!
//! Rows are stored contiguously in the matrix's type (ggml layout: `cols` is the row
//! length, `dims[0]` in GGUF). This is the seam where optimised kernels plug in; the
//! model only ever calls these methods.

use std::sync::Mutex;

use crate::kernels::{
    quantize_q8, quantize_q8k, BlockQ8, BlockQ8K, Dot, Gemm, GemmK, Kernels, Plan, Rows8, Unpacked,
    UnpackedK, KROWS, Q8_BLOCK, QK_K,
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
        let mut products = [Product { matrix: self, y }];
        matmul_many_using(
            pool,
            kernels,
            &mut products,
            x,
            n,
            &mut ActScratch::default(),
        )
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

/// One product of a [`matmul_many`] call: `y = matrix · x`.
pub struct Product<'a> {
    pub matrix: &'a Matrix,
    /// `n * matrix.rows` outputs, one row of `matrix.rows` per input vector.
    pub y: &'a mut [f32],
}

/// Quantized copies of the activations, kept between calls so that a forward pass does
/// not allocate them for every product.
#[derive(Default)]
pub struct ActScratch {
    q8: Vec<BlockQ8>,
    q8k: Vec<BlockQ8K>,
}

/// Several products of the same inputs `x` (`n` vectors of `cols` values), run as one job
/// on the global pool: the inputs are quantized once per activation format and the rows
/// of all matrices are split over the threads together, so Q/K/V (or gate/up) cost one
/// wake-up and one quantization instead of three.
pub fn matmul_many(
    products: &mut [Product],
    x: &[f32],
    n: usize,
    scratch: &mut ActScratch,
) -> Result<(), QuantError> {
    matmul_many_using(
        &parallel::global(),
        Kernels::active(),
        products,
        x,
        n,
        scratch,
    )
}

/// One task of a fused product: rows `first..` of product `product`, for every input.
struct Task<'a> {
    product: usize,
    first: usize,
    outs: Mutex<Vec<&'a mut [f32]>>,
}

/// [`matmul_many`] on a given pool with a given kernel table.
pub fn matmul_many_using(
    pool: &Pool,
    kernels: &Kernels,
    products: &mut [Product],
    x: &[f32],
    n: usize,
    scratch: &mut ActScratch,
) -> Result<(), QuantError> {
    let Some(cols) = products.first().map(|p| p.matrix.cols) else {
        return Ok(());
    };
    for p in products.iter() {
        if p.matrix.cols != cols {
            return Err(QuantError::SizeMismatch {
                dtype: p.matrix.dtype,
                values: p.matrix.cols,
                expected: cols,
                got: p.matrix.cols,
            });
        }
        check_f32_len(x.len(), n, cols)?;
        check_f32_len(p.y.len(), n, p.matrix.rows)?;
    }
    if n == 0 {
        return Ok(());
    }
    let matrices: Vec<&Matrix> = products.iter().map(|p| p.matrix).collect();
    let plans: Vec<Plan> = matrices.iter().map(|m| kernels.plan(m.dtype)).collect();
    // Quantize the inputs once for every format some product needs.
    let (q8_row, q8k_row) = ((cols / Q8_BLOCK).max(1), (cols / QK_K).max(1));
    if plans.iter().any(|p| matches!(p, Plan::Q8(_))) {
        scratch.q8.resize(n * q8_row, BlockQ8::default());
        quantize_rows(pool, x, cols, &mut scratch.q8, q8_row, quantize_q8);
    }
    if plans.iter().any(|p| matches!(p, Plan::Q8K(_))) {
        scratch.q8k.resize(n * q8k_row, BlockQ8K::default());
        quantize_rows(pool, x, cols, &mut scratch.q8k, q8k_row, quantize_q8k);
    }

    // Split every product's rows in proportion to its share of all rows.
    let total_rows: usize = products.iter().map(|p| p.matrix.rows).sum();
    let tasks_wanted = task_count(pool, total_rows, cols * n);
    let mut tasks: Vec<Task> = Vec::with_capacity(tasks_wanted + products.len());
    for (i, (p, plan)) in products.iter_mut().zip(&plans).enumerate() {
        let rows = p.matrix.rows;
        if rows == 0 {
            continue;
        }
        if matches!(plan, Plan::Dequantize) {
            p.matrix.matmul_dequantized(pool, x, n, p.y)?;
            continue;
        }
        let share = (tasks_wanted * rows).div_ceil(total_rows).max(1);
        let chunk = rows.div_ceil(share).next_multiple_of(ROW_TILE);
        let base = tasks.len();
        for t in 0..rows.div_ceil(chunk) {
            tasks.push(Task {
                product: i,
                first: t * chunk,
                outs: Mutex::new(Vec::with_capacity(n)),
            });
        }
        for yb in p.y.chunks_exact_mut(rows) {
            for (task, piece) in tasks[base..].iter_mut().zip(yb.chunks_mut(chunk)) {
                task.outs
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(piece);
            }
        }
    }
    let (q8, q8k) = (&scratch.q8[..], &scratch.q8k[..]);
    pool.run(tasks.len(), &|t| {
        let task = &tasks[t];
        let mut outs = task.outs.lock().unwrap_or_else(|e| e.into_inner());
        let m = matrices[task.product];
        let row_bytes = m.row_bytes();
        let w = &m.data()[task.first * row_bytes..];
        match plans[task.product] {
            Plan::Float(dot) => tile(dot, w, row_bytes, x, cols, &mut outs),
            Plan::Q8(dot) => match (dot.gemm, dot.rows8) {
                (Some(gemm), _) if outs.len() >= GEMM_MIN_INPUTS => {
                    let layout = (m.dtype, row_bytes, q8_row);
                    let mut unpacked = LegacyTile(gemm, Unpacked::default());
                    tile_unpacked(&mut unpacked, dot, layout, w, q8, &mut outs)
                }
                (_, Some(rows8)) if outs.len() < GEMM_MIN_INPUTS => {
                    tile_rows8(rows8, w, row_bytes, q8, q8_row, &mut outs)
                }
                _ => tile(dot, w, row_bytes, q8, q8_row, &mut outs),
            },
            Plan::Q8K(dot) => match (kernels.gemm_k, dot.rows8) {
                (Some(gemm), _) if outs.len() >= GEMM_MIN_INPUTS && has_gemm_k(m.dtype) => {
                    let layout = (m.dtype, row_bytes, q8k_row);
                    let mut unpacked = KQuantTile(gemm, UnpackedK::default());
                    tile_unpacked(&mut unpacked, dot, layout, w, q8k, &mut outs)
                }
                (_, Some(rows8)) if outs.len() < GEMM_MIN_INPUTS => {
                    tile_rows8(rows8, w, row_bytes, q8k, q8k_row, &mut outs)
                }
                _ => tile(dot, w, row_bytes, q8k, q8k_row, &mut outs),
            },
            Plan::Dequantize => {}
        }
    });
    Ok(())
}

/// Quantizes every input row (`cols` values of `x`) into its `per_row` blocks of `out`,
/// split over the pool when there are enough rows to pay for the wake-up (a prefill
/// quantizes hundreds of rows, which on one thread would cap the speed-up of the
/// products that follow).
fn quantize_rows<T: Send>(
    pool: &Pool,
    x: &[f32],
    cols: usize,
    out: &mut [T],
    per_row: usize,
    quantize: fn(&[f32], &mut [T]),
) {
    let n = out.len() / per_row.max(1);
    let tasks = if pool.threads() > 1 && n.saturating_mul(cols) >= PARALLEL_MIN_WORK / 4 {
        (2 * pool.threads()).min(n)
    } else {
        1
    };
    if tasks <= 1 {
        for (xb, ab) in x.chunks_exact(cols).zip(out.chunks_exact_mut(per_row)) {
            quantize(xb, ab);
        }
        return;
    }
    let chunk = n.div_ceil(tasks);
    let parts: Vec<Mutex<&mut [T]>> = out.chunks_mut(chunk * per_row).map(Mutex::new).collect();
    pool.run(parts.len(), &|t| {
        let mut part = parts[t].lock().unwrap_or_else(|e| e.into_inner());
        let xs = &x[t * chunk * cols..];
        for (xb, ab) in xs.chunks_exact(cols).zip(part.chunks_exact_mut(per_row)) {
            quantize(xb, ab);
        }
    });
}

/// Output rows per tile: the weights of this many rows are reused for every activation
/// row while they are still in L1.
const ROW_TILE: usize = 16;

/// Below this many multiply-adds a product runs on one thread: waking workers costs a
/// few microseconds, more than they would save.
const PARALLEL_MIN_WORK: usize = 64 * 1024;

/// Multiply-adds per task that [`task_count`] aims at for large products.
const TASK_WORK: usize = 1 << 20;

/// How many tasks to split `rows` output rows into, `work` multiply-adds per row.
fn task_count(pool: &Pool, rows: usize, work: usize) -> usize {
    let threads = pool.threads();
    if threads == 1 || rows.saturating_mul(work) < PARALLEL_MIN_WORK {
        return 1;
    }
    // Two tasks per thread lets a thread that started late (woken from sleep, or
    // descheduled on a busy machine) take fewer rows. Batch products get more, about
    // TASK_WORK multiply-adds each (up to eight per thread): with only two, a worker
    // that wakes a little late leaves the caller three quarters of the product.
    let by_work = rows.saturating_mul(work) / TASK_WORK;
    by_work
        .clamp(2 * threads, 8 * threads)
        .min(rows.div_ceil(ROW_TILE))
        .max(1)
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
        // Two or three rows left (two or three slots decoding together): the two-row form,
        // so that each weight block is decoded once for two of them, not once per row.
        if b + 2 <= n {
            let a2 = [act(b), act(b + 1)];
            if let [o0, o1] = &mut outs[b..b + 2] {
                for r in r0..r1 {
                    [o0[r], o1[r]] = (dot.two)(weights(r), a2);
                }
            }
            b += 2;
        }
        for (b, out) in outs.iter_mut().enumerate().skip(b) {
            for (r, o) in out.iter_mut().enumerate().take(r1).skip(r0) {
                *o = (dot.one)(weights(r), act(b));
            }
        }
    }
}

/// [`tile`] for decoding sizes with a [`Dot::rows8`] kernel: eight weight rows times up
/// to four activation rows per call. Every activation row takes this path below
/// [`GEMM_MIN_INPUTS`], so a sequence's results do not depend on how many others decode
/// with it.
fn tile_rows8<A>(
    rows8: Rows8<A>,
    w: &[u8],
    row_bytes: usize,
    acts: &[A],
    per_row: usize,
    outs: &mut [&mut [f32]],
) {
    let n = outs.len();
    let rows = outs.first().map_or(0, |o| o.len());
    let act = |b: usize| &acts[b * per_row..(b + 1) * per_row];
    for r0 in (0..rows).step_by(8) {
        let count_rows = (rows - r0).min(8);
        let wr = &w[r0 * row_bytes..];
        for b0 in (0..n).step_by(4) {
            let count = (n - b0).min(4);
            // Unused places repeat the last real row; the kernel ignores them.
            let a4 = [0, 1, 2, 3].map(|i| act(b0 + i.min(count - 1)));
            let y = rows8(wr, row_bytes, count_rows, a4, count);
            for (out, yb) in outs[b0..b0 + count].iter_mut().zip(&y) {
                out[r0..r0 + count_rows].copy_from_slice(&yb[..count_rows]);
            }
        }
    }
}

/// From this many activation rows on, legacy-type weights are unpacked once per
/// [`GEMM_ROWS`] rows and multiplied with [`Dot::gemm`] (Q4_K/Q6_K with
/// [`Kernels::gemm_k`]); below it the unpacking would cost more than it saves, and
/// types with a [`Dot::rows8`] kernel take that one (so a product's results for one
/// activation row follow [`Dot::rows8`]'s definition below this size, [`Dot::one`]'s
/// from it on).
pub const GEMM_MIN_INPUTS: usize = 16;

/// Weight rows unpacked at a time (about 20 KiB at 640 columns): they stay in L1 while
/// every activation row passes by.
const GEMM_ROWS: usize = 32;

/// Weight rows decoded once for a batch kernel, and that kernel: [`Unpacked`] with
/// [`Dot::gemm`] for the legacy types, [`UnpackedK`] with [`GemmK`] for Q4_K/Q6_K.
trait UnpackedTile<A> {
    /// Decodes `rows` weight rows, `row_bytes` apart, `blocks` blocks each; false when
    /// it does not take the type (or `w` is too short).
    fn unpack(
        &mut self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        blocks: usize,
    ) -> bool;
    /// Writes `outs[b + j][r0 + i]`: unpacked row `i` times activation row `a4[j]`, for
    /// every unpacked row (`r1 - r0` of them).
    fn four_inputs(&self, a4: [&[A]; 4], outs: &mut [&mut [f32]], b: usize, r0: usize, r1: usize);
}

struct LegacyTile(Gemm<BlockQ8>, Unpacked);

impl UnpackedTile<BlockQ8> for LegacyTile {
    fn unpack(
        &mut self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        blocks: usize,
    ) -> bool {
        self.1.fill(dtype, w, row_bytes, rows, blocks)
    }
    fn four_inputs(
        &self,
        a4: [&[BlockQ8]; 4],
        outs: &mut [&mut [f32]],
        b: usize,
        r0: usize,
        r1: usize,
    ) {
        for g in 0..self.1.groups {
            // Four weight rows × four activation rows, indexed [row][input].
            let y = (self.0)(&self.1, g, a4);
            for (i, yr) in y.iter().enumerate() {
                let r = r0 + 4 * g + i;
                if r < r1 {
                    for (j, &v) in yr.iter().enumerate() {
                        outs[b + j][r] = v;
                    }
                }
            }
        }
    }
}

struct KQuantTile(GemmK, UnpackedK);

impl UnpackedTile<BlockQ8K> for KQuantTile {
    fn unpack(
        &mut self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        blocks: usize,
    ) -> bool {
        self.1.fill(dtype, w, row_bytes, rows, blocks)
    }
    fn four_inputs(
        &self,
        a4: [&[BlockQ8K]; 4],
        outs: &mut [&mut [f32]],
        b: usize,
        r0: usize,
        r1: usize,
    ) {
        for g in 0..self.1.groups {
            // KROWS weight rows × four activation rows, indexed [input][row].
            let y = (self.0)(&self.1, g, a4);
            let first = r0 + KROWS * g;
            let last = (first + KROWS).min(r1);
            for (j, yb) in y.iter().enumerate() {
                outs[b + j][first..last].copy_from_slice(&yb[..last - first]);
            }
        }
    }
}

/// The k-quants that [`UnpackedK`] takes.
fn has_gemm_k(dtype: DType) -> bool {
    matches!(dtype, DType::Q4_K | DType::Q6_K)
}

/// [`tile`] for weights with a batch kernel: unpacks [`GEMM_ROWS`] weight rows at a time,
/// then multiplies them with four activation rows per kernel call (the kernels give the
/// same bits as [`Dot::one`], which takes the last `n % 4` activation rows). `layout`:
/// the weight type, bytes per weight row, blocks per activation row.
fn tile_unpacked<A>(
    unpacked: &mut impl UnpackedTile<A>,
    dot: Dot<A>,
    layout: (DType, usize, usize),
    w: &[u8],
    acts: &[A],
    outs: &mut [&mut [f32]],
) {
    let (dtype, row_bytes, per_row) = layout;
    let n = outs.len();
    let rows = outs.first().map_or(0, |o| o.len());
    let act = |b: usize| &acts[b * per_row..(b + 1) * per_row];
    for r0 in (0..rows).step_by(GEMM_ROWS) {
        let r1 = (r0 + GEMM_ROWS).min(rows);
        let wr = &w[r0 * row_bytes..];
        if !unpacked.unpack(dtype, wr, row_bytes, r1 - r0, per_row) {
            // Not a type the tile takes: the per-row kernels do it all.
            let mut rest: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[r0..r1]).collect();
            tile(dot, wr, row_bytes, acts, per_row, &mut rest);
            continue;
        }
        let mut b = 0;
        while b + 4 <= n {
            let a4 = [act(b), act(b + 1), act(b + 2), act(b + 3)];
            unpacked.four_inputs(a4, outs, b, r0, r1);
            b += 4;
        }
        for (b, out) in outs.iter_mut().enumerate().skip(b) {
            for (r, o) in out.iter_mut().enumerate().take(r1).skip(r0) {
                *o = (dot.one)(&w[r * row_bytes..(r + 1) * row_bytes], act(b));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q8_0 matrix with pseudo-random blocks.
    fn q8_0(rows: usize, cols: usize, seed: u32) -> Matrix {
        let mut bytes = Vec::new();
        let mut s = seed;
        for _ in 0..rows * cols / 32 {
            bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            for _ in 0..32 {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                bytes.push((s >> 24) as u8 & 0x7f);
            }
        }
        Matrix::new(DType::Q8_0, rows, cols, Bytes::from_vec(bytes)).unwrap()
    }

    fn f32m(rows: usize, cols: usize) -> Matrix {
        let bytes = (0..rows * cols)
            .flat_map(|i| ((i % 13) as f32 * 0.1 - 0.6).to_le_bytes())
            .collect();
        Matrix::new(DType::F32, rows, cols, Bytes::from_vec(bytes)).unwrap()
    }

    #[test]
    fn fused_products_equal_separate_ones() {
        let (cols, n) = (64, 5);
        let x: Vec<f32> = (0..n * cols).map(|i| (i % 7) as f32 - 3.0).collect();
        let mats = [q8_0(96, cols, 1), f32m(40, cols), q8_0(33, cols, 2)];
        for threads in [1, 3] {
            let pool = Pool::new(threads);
            let mut fused: Vec<Vec<f32>> = mats.iter().map(|m| vec![0.0; n * m.rows]).collect();
            let mut products: Vec<Product> = mats
                .iter()
                .zip(fused.iter_mut())
                .map(|(matrix, y)| Product { matrix, y })
                .collect();
            let mut scratch = ActScratch::default();
            matmul_many_using(&pool, Kernels::active(), &mut products, &x, n, &mut scratch)
                .unwrap();
            for (m, y) in mats.iter().zip(&fused) {
                let mut alone = vec![0.0; n * m.rows];
                m.matmul_with(&pool, &x, n, &mut alone).unwrap();
                assert_eq!(&alone, y);
            }
        }
        // Different input widths are refused.
        let other = f32m(4, 32);
        let mut a = vec![0.0; 96];
        let mut b = vec![0.0; 4];
        let mut bad = [
            Product {
                matrix: &mats[0],
                y: &mut a,
            },
            Product {
                matrix: &other,
                y: &mut b,
            },
        ];
        assert!(matmul_many(&mut bad, &x[..cols], 1, &mut ActScratch::default()).is_err());
    }
}
