//! Q4_K and Q6_K weight rows decoded once for batch products ([`UnpackedK`]).
//!
//! The per-row kernels decode every 256-value block (nibbles, 6-bit scales, mins) again
//! for each group of four activation rows, and then spend most of their time in the
//! per-output float tail (ggml's accumulation order, one scalar FMA chain per output).
//! Unpacked, eight weight rows sit side by side in the 32-bit lanes of a vector: the
//! integer dots of eight rows with one activation row come out in one vector of eight
//! sums, with no horizontal reduction, and the float tail runs eight outputs per
//! instruction, each lane doing exactly the scalar kernel's operations.

use super::{f16_at, rows_fit, unpack_k4_scales, BlockQ8K, QK_K};
use crate::DType;

/// Weight rows per group: the i32 lanes of a 256-bit vector.
pub const KROWS: usize = 8;

/// `gemm(tile, g, acts)[b][r]`: row `8g + r` of `tile` times `acts[b]`, over the tile's
/// super-blocks (every activation row must hold at least that many), with the same
/// bits as the type's one-row kernel.
pub type GemmK = fn(&UnpackedK, usize, [&[BlockQ8K]; 4]) -> [[f32; KROWS]; 4];

/// Rows of Q4_K or Q6_K decoded once, eight at a time. For row group `G` and super-block
/// `k` (`idx = G · blocks + k`):
///
/// - `u[idx · 2048 ..]`: the 256 unsigned values (Q4_K 0..16, Q6_K 0..64, without the
///   −32) as 64 chunks of four consecutive values, each chunk 32 bytes: four bytes per
///   row, rows in order. Lane `r` of a vector load is row `r`'s four values.
/// - `s[(idx · scales + j) · 16 ..]`: scale `j` of each row as an i16 pair (both halves
///   the same) in lane `r`, for `vpmaddwd`-style scaling. Q4_K has eight scales (one per
///   32 values), Q6_K sixteen (one per 16).
/// - `m[(idx · 8 + j) · 16 ..]`: eight i16-pair vectors applied to the activations'
///   `bsums` read as i32 pairs (`bsums[2j], bsums[2j + 1]`). Q4_K: the min of group `j`
///   twice (`j`'s two 16-value sums make its group sum). Q6_K: `−32 · scale[2j]`,
///   `−32 · scale[2j + 1]`, the offset that makes the unsigned values signed.
/// - `d[idx · 8 + r]`, `dmin[idx · 8 + r]`: the block's f16 scales as f32 (Q6_K has no
///   `dmin`; it stays zero).
///
/// Rows past the last real one are zero.
#[derive(Clone, Debug, Default)]
pub struct UnpackedK {
    pub dtype: Option<DType>,
    /// Super-blocks of 256 per row.
    pub blocks: usize,
    /// Groups of [`KROWS`] rows.
    pub groups: usize,
    pub u: Vec<u8>,
    pub s: Vec<i16>,
    pub m: Vec<i16>,
    pub d: Vec<f32>,
    pub dmin: Vec<f32>,
}

/// Bytes of `u` per row group and super-block.
pub const KU_BYTES: usize = QK_K * KROWS;

/// Scales per super-block: 8 for Q4_K, 16 for Q6_K.
pub const fn k_scales(dtype: DType) -> usize {
    match dtype {
        DType::Q6_K => 16,
        _ => 8,
    }
}

impl UnpackedK {
    /// Decodes `rows` rows of `dtype` (Q4_K or Q6_K), `row_bytes` apart from the start of
    /// `w`, `blocks` super-blocks each. Returns false (and leaves `self` empty) for other
    /// types or when `w` is too short.
    pub fn fill(
        &mut self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        blocks: usize,
    ) -> bool {
        let bb = match dtype {
            DType::Q4_K => 144,
            DType::Q6_K => 210,
            _ => return self.clear(),
        };
        if !rows_fit(w, row_bytes, rows, blocks * bb) {
            return self.clear();
        }
        let groups = rows.div_ceil(KROWS);
        let nsc = k_scales(dtype);
        let idxs = groups * blocks;
        self.dtype = Some(dtype);
        self.blocks = blocks;
        self.groups = groups;
        reset(&mut self.u, idxs * KU_BYTES, 0);
        reset(&mut self.s, idxs * nsc * 16, 0);
        reset(&mut self.m, idxs * 8 * 16, 0);
        reset(&mut self.d, idxs * KROWS, 0.0);
        reset(&mut self.dmin, idxs * KROWS, 0.0);
        for r in 0..rows {
            let (g, lane) = (r / KROWS, r % KROWS);
            let row = &w[r * row_bytes..r * row_bytes + blocks * bb];
            for (k, b) in row.chunks_exact(bb).enumerate() {
                let idx = g * blocks + k;
                let u = &mut self.u[idx * KU_BYTES..(idx + 1) * KU_BYTES];
                // Four consecutive values at a time, as one little-endian u32.
                let mut put = |v: usize, x: u32| {
                    let at = (v / 4) * 32 + 4 * lane;
                    u[at..at + 4].copy_from_slice(&x.to_le_bytes());
                };
                let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                let s = &mut self.s[idx * nsc * 16..(idx + 1) * nsc * 16];
                let m = &mut self.m[idx * 128..(idx + 1) * 128];
                let pair = |v: &mut [i16], j: usize, lo: i16, hi: i16| {
                    v[j * 16 + 2 * lane] = lo;
                    v[j * 16 + 2 * lane + 1] = hi;
                };
                if dtype == DType::Q4_K {
                    self.d[idx * KROWS + lane] = f16_at(b, 0);
                    self.dmin[idx * KROWS + lane] = f16_at(b, 2);
                    let (sc, mn) = unpack_k4_scales(&b[4..16]);
                    for j in 0..8 {
                        pair(s, j, sc[j] as i16, sc[j] as i16);
                        pair(m, j, mn[j] as i16, mn[j] as i16);
                    }
                    // Group 2c in the low nibbles of qs[32c..32c + 32], 2c + 1 in the high.
                    for c in 0..4 {
                        for l in (0..32).step_by(4) {
                            let x = word(16 + 32 * c + l);
                            put(64 * c + l, x & 0x0f0f_0f0f);
                            put(64 * c + 32 + l, (x >> 4) & 0x0f0f_0f0f);
                        }
                    }
                } else {
                    self.d[idx * KROWS + lane] = f16_at(b, 208);
                    let sc = |j: usize| b[192 + j] as i8 as i16;
                    for j in 0..16 {
                        pair(s, j, sc(j), sc(j));
                    }
                    for j in 0..8 {
                        pair(m, j, -32 * sc(2 * j), -32 * sc(2 * j + 1));
                    }
                    // Value 128h + 32k + l: low nibble of ql[64h + 32(k % 2) + l] (high
                    // nibble when k ≥ 2), top bits 2k, 2k + 1 of qh[32h + l].
                    for h in 0..2 {
                        for k in 0..4 {
                            for l in (0..32).step_by(4) {
                                let low = word(64 * h + 32 * (k % 2) + l) >> (4 * (k / 2));
                                let high = word(128 + 32 * h + l) >> (2 * k);
                                let x = (low & 0x0f0f_0f0f) | ((high & 0x0303_0303) << 4);
                                put(128 * h + 32 * k + l, x);
                            }
                        }
                    }
                }
            }
        }
        true
    }

    fn clear(&mut self) -> bool {
        self.dtype = None;
        self.blocks = 0;
        self.groups = 0;
        self.u.clear();
        self.s.clear();
        self.m.clear();
        self.d.clear();
        self.dmin.clear();
        false
    }
}

/// `v` as `len` copies of `fill`, keeping its allocation.
fn reset<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) {
    v.clear();
    v.resize(len, fill);
}
