//! A weight matrix in any supported type, and the products the model needs from it.
//!
//! Rows are stored contiguously in the matrix's type (ggml layout: `cols` is the row
//! length, `dims[0]` in GGUF). This is the seam where optimised kernels plug in; the
//! model only ever calls these methods.

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
    /// `x.len() == n * cols`, `y.len() == n * rows`.
    ///
    /// Reference implementation: decode each row once, dot it with every input.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<(), QuantError> {
        assert_eq!(x.len(), n * self.cols, "matmul input shape");
        assert_eq!(y.len(), n * self.rows, "matmul output shape");
        let mut row = vec![0f32; self.cols];
        for r in 0..self.rows {
            self.dequantize_row(r, &mut row)?;
            for b in 0..n {
                let xb = &x[b * self.cols..(b + 1) * self.cols];
                y[b * self.rows + r] = row.iter().zip(xb).map(|(w, v)| w * v).sum();
            }
        }
        Ok(())
    }
}
