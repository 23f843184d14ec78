//! Dot-product kernels behind [`crate::Matrix::matmul`].
//!
//! As ggml does, the activations are quantized once per call: to [`BlockQ8`] (32 values,
//! one scale) for the legacy block types and to [`BlockQ8K`] (256 values, plus sums of
//! every 16) for the k-quants. Each weight block is then multiplied with its activation
//! block in integer arithmetic and scaled in float. Float weights (F32/F16/BF16) are
//! widened to f32 and multiplied with the f32 activations.
//!
//! There is one [`Kernels`] table per instruction set: a scalar reference that every
//! target has, and SIMD tables (AVX2, AVX-512, NEON) that exist only when the running
//! CPU has the features, as checked at run time. [`Kernels::active`] picks the best one
//! once; `MOTE_KERNELS=scalar|avx2|avx512|neon` forces a path.

/// The safe [`Rows8`] wrapper `fn rows8` around a kernel entry point
/// `entry::<B>(row pointers, activation pointers, blocks)` that the expanding macro
/// defines next to it with its target features: it settles the rows and the block count
/// with [`rows8_setup`] and calls `entry` for the number of activation rows given.
///
/// Only expand this where `entry`'s target features have been checked at run time.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_macros)
)]
macro_rules! rows8_wrapper {
    ($A:ty, $block_bytes:expr) => {
        fn rows8(
            w: &[u8],
            row_bytes: usize,
            rows: usize,
            a: [&[$A]; 4],
            count: usize,
        ) -> [[f32; 8]; 4] {
            let mut out = [[0f32; 8]; 4];
            let Some((p, nb, count)) =
                $crate::kernels::rows8_setup(w, row_bytes, rows, &a, count, $block_bytes)
            else {
                return out;
            };
            let a = a.map(|s| s.as_ptr());
            // SAFETY: `entry` needs target features that the table builder checked
            // before expanding this; `rows8_setup` checked that `nb` blocks lie inside
            // every row pointed to and the first `count` activation rows.
            unsafe {
                match count {
                    1 => out[0] = entry::<1>(p, [a[0]], nb)[0],
                    2 => out[..2].copy_from_slice(&entry::<2>(p, [a[0], a[1]], nb)),
                    3 => out[..3].copy_from_slice(&entry::<3>(p, [a[0], a[1], a[2]], nb)),
                    _ => out = entry::<4>(p, a, nb),
                }
            }
            out
        }
    };
}

pub mod scalar;
mod unpack_k;

#[cfg(target_arch = "aarch64")]
mod aarch64_neon;
#[cfg(target_arch = "aarch64")]
mod aarch64_rows8;
#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_gemm_k;
#[cfg(target_arch = "x86_64")]
mod x86_rows8;

use std::fmt;
use std::sync::OnceLock;

use crate::DType;

pub use unpack_k::{GemmK, UnpackedK, KROWS};

/// Values per [`BlockQ8`].
pub const Q8_BLOCK: usize = 32;
/// Values per [`BlockQ8K`] (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// 32 activations quantized to `qs * d`; `s = d * Σ qs`, which the types with a
/// per-block offset (Q4_1, Q5_1) need. Like ggml's `block_q8_0`/`block_q8_1`, except the
/// scales are kept as f32 (holding the f16-rounded value ggml would store).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8 {
    pub d: f32,
    pub s: f32,
    /// In `-127..=127`: the SIMD kernels rely on `-128` never occurring.
    pub qs: [i8; Q8_BLOCK],
}

/// 256 activations quantized to `qs * d`, with `bsums[i] = Σ qs[16i..16i + 16]`, as in
/// ggml's `block_q8_K`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct BlockQ8K {
    pub d: f32,
    /// In `-127..=127`.
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        BlockQ8 {
            d: 0.0,
            s: 0.0,
            qs: [0; Q8_BLOCK],
        }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Quantizes `x` (whose length is `out.len() * 32`; extra values are ignored) to Q8 blocks:
/// `d = max|x| / 127` rounded to f16, `qs = round(x / d)` (ties to even).
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(Q8_BLOCK)) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        // ggml's x86 quantizer multiplies by 127/amax (not 1/d): the last bit of the
        // products, and so the 8-bit codes at ties, depend on it.
        let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in blk.qs.iter_mut().zip(xs) {
            // Ties to even with ggml's float trick (as its SIMD quantizers round):
            // `f32::round` is a libm call on x86-64 without SSE4.1. NaN/inf inputs give
            // garbage values, never UB; clamping keeps -128 out, which the sign trick in
            // the SIMD kernels cannot take.
            let r = crate::quant::search::nearest_int(v * id).clamp(-127, 127) as i8;
            *q = r;
            sum += r as i32;
        }
        blk.d = half::f16::from_f32(d).to_f32();
        // As ggml's block_q8_1: the sum is scaled by the unrounded d, then rounded to f16.
        blk.s = half::f16::from_f32(d * sum as f32).to_f32();
    }
}

/// Quantizes `x` (length `out.len() * 256`) to Q8_K blocks exactly as ggml's
/// `quantize_row_q8_K_ref`: the scale maps the largest-magnitude value to -127.
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8K]) {
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *blk = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in blk.qs.iter_mut().zip(xs) {
            // ggml's nearest_int (the float-add trick) rather than round_ties_even:
            // same result for these magnitudes, but a libm call on CPUs without SSE4.1
            // made this loop ~6% of a Gemma prefill.
            *q = crate::quant::search::nearest_int(iscale * v).clamp(-127, 127) as i8;
        }
        for (s, qs) in blk.bsums.iter_mut().zip(blk.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        blk.d = 1.0 / iscale;
    }
}

/// A dot product of one weight row (raw bytes in its type) with activation rows of
/// element `A`, for one activation row or four at once. The four-row form decodes every
/// weight block once and uses it four times; that is what makes batches faster than
/// repeated matrix-vector products.
///
/// The number of blocks is `a.len()` (the shortest of the four); weight bytes past those
/// blocks are ignored, and a weight slice too short for them reduces the count instead
/// of reading out of bounds.
pub struct Dot<A: 'static> {
    pub one: fn(&[u8], &[A]) -> f32,
    /// Two rows (a batch's leftover rows: two or three slots decoding together).
    pub two: fn(&[u8], [&[A]; 2]) -> [f32; 2],
    pub four: fn(&[u8], [&[A]; 4]) -> [f32; 4],
    /// For batches: four weight rows of an [`Unpacked`] tile times four activation rows,
    /// where this path has such a kernel (legacy block types on x86).
    pub gemm: Option<Gemm<A>>,
    /// For decoding (fewer activation rows than a batch kernel pays off for): eight
    /// weight rows times up to four activation rows, where this path has such a kernel
    /// (legacy block types on x86). Not ggml's float order, but one that does not depend
    /// on the number of activation rows; [`scalar::rows8_row`] defines it.
    pub rows8: Option<Rows8<A>>,
}

/// `rows8(w, row_bytes, rows, acts, count)[b][r]`: weight row `r` (of `rows ≤ 8`, starting
/// `row_bytes` apart at `w`) times `acts[b]`, for the first `count ≤ 4` activation rows
/// (the others are ignored, and their outputs are zero; outputs of rows past `rows` are
/// meaningless). A weight slice too short for the rows gives all zeros.
pub type Rows8<A> = fn(&[u8], usize, usize, [&[A]; 4], usize) -> [[f32; 8]; 4];

/// `gemm(tile, g, acts)[r][b]`: row `4g + r` of `tile` times `acts[b]`, over the tile's
/// blocks (every activation row must hold at least that many).
pub type Gemm<A> = fn(&Unpacked, usize, [&[A]; 4]) -> [[f32; 4]; 4];

/// Weight rows of a legacy block type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) decoded once, so
/// that a batch product decodes every weight block once for all its activation rows
/// instead of once per four.
///
/// Each weight is `d · (u − offset) + m`, with `u` an unsigned byte: the x86 kernels
/// multiply unsigned by signed bytes, and `Σ (u − offset) · y` is `Σ u · y` less
/// `offset · Σ y`, exactly. Rows are interleaved by four: for row group `g` and block
/// `k`, the 32 bytes of rows `4g..4g + 4` follow one another (128 bytes at
/// `(g · blocks + k) · 128`), and so do their four `d` and four `m` (at
/// `(g · blocks + k) · 4`). Rows past the last real one are zero.
#[derive(Clone, Debug, Default)]
pub struct Unpacked {
    pub dtype: Option<DType>,
    /// Blocks of 32 per row.
    pub blocks: usize,
    /// Groups of four rows.
    pub groups: usize,
    /// Subtracted from every `u`: 8 (Q4_0), 16 (Q5_0), 128 (Q8_0), 0 (types with `m`).
    pub offset: u8,
    /// Whether `m` is used (Q4_1, Q5_1); else it is all zero.
    pub has_min: bool,
    pub u: Vec<u8>,
    pub d: Vec<f32>,
    pub m: Vec<f32>,
}

impl Unpacked {
    /// Decodes `rows` rows of `dtype`, `row_bytes` apart from the start of `w`, `blocks`
    /// blocks each. Returns false (and leaves `self` empty) for types it does not take
    /// or when `w` is too short.
    pub fn fill(
        &mut self,
        dtype: DType,
        w: &[u8],
        row_bytes: usize,
        rows: usize,
        blocks: usize,
    ) -> bool {
        let (bb, offset, has_min) = match dtype {
            DType::Q4_0 => (18, 8, false),
            DType::Q4_1 => (20, 0, true),
            DType::Q5_0 => (22, 16, false),
            DType::Q5_1 => (24, 0, true),
            DType::Q8_0 => (34, 128, false),
            _ => return self.clear(),
        };
        if !rows_fit(w, row_bytes, rows, blocks * bb) {
            return self.clear();
        }
        let groups = rows.div_ceil(4);
        self.dtype = Some(dtype);
        self.blocks = blocks;
        self.groups = groups;
        self.offset = offset;
        self.has_min = has_min;
        // Every slot of a real row is overwritten below, so the buffers are only resized
        // (a memset of the whole tile per call cost as much as the decoding); the rows
        // past the last real one are zeroed explicitly.
        let slots = groups * blocks * 4;
        self.u.resize(slots * 32, 0);
        self.d.resize(slots, 0.0);
        self.m.resize(slots, 0.0);
        for r in rows..groups * 4 {
            for k in 0..blocks {
                let at = (r / 4 * blocks + k) * 4 + r % 4;
                self.u[at * 32..at * 32 + 32].fill(0);
                self.d[at] = 0.0;
                self.m[at] = 0.0;
            }
        }
        for r in 0..rows {
            let (g, lane) = (r / 4, r % 4);
            let row = &w[r * row_bytes..r * row_bytes + blocks * bb];
            for (k, b) in row.chunks_exact(bb).enumerate() {
                let at = (g * blocks + k) * 4 + lane;
                self.d[at] = f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]));
                self.m[at] = if has_min {
                    f16_bits_to_f32(u16::from_le_bytes([b[2], b[3]]))
                } else {
                    0.0
                };
                let u: &mut [u8] = &mut self.u[at * 32..at * 32 + 32];
                match dtype {
                    DType::Q4_0 => split_nibbles(&b[2..18], u),
                    DType::Q4_1 => split_nibbles(&b[4..20], u),
                    DType::Q5_0 => {
                        split_nibbles(&b[6..22], u);
                        add_fifth_bits(&b[2..6], u);
                    }
                    DType::Q5_1 => {
                        split_nibbles(&b[8..24], u);
                        add_fifth_bits(&b[4..8], u);
                    }
                    _ => {
                        for (v, &q) in u.iter_mut().zip(&b[2..34]) {
                            *v = q ^ 0x80;
                        }
                    }
                }
            }
        }
        true
    }

    fn clear(&mut self) -> bool {
        *self = Unpacked {
            u: std::mem::take(&mut self.u),
            d: std::mem::take(&mut self.d),
            m: std::mem::take(&mut self.m),
            ..Unpacked::default()
        };
        self.u.clear();
        self.d.clear();
        self.m.clear();
        false
    }
}

impl<A> Clone for Dot<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Dot<A> {}

/// Which instruction set a [`Kernels`] table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    Scalar,
    Avx2,
    Avx512,
    Neon,
}

impl KernelPath {
    pub const ALL: [KernelPath; 4] = [
        KernelPath::Scalar,
        KernelPath::Avx2,
        KernelPath::Avx512,
        KernelPath::Neon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Neon => "neon",
        }
    }

    pub fn from_name(name: &str) -> Option<KernelPath> {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One instruction set's dot products, one entry per weight type.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub path: KernelPath,
    pub f32: Dot<f32>,
    pub f16: Dot<f32>,
    pub bf16: Dot<f32>,
    pub q4_0: Dot<BlockQ8>,
    pub q4_1: Dot<BlockQ8>,
    pub q5_0: Dot<BlockQ8>,
    pub q5_1: Dot<BlockQ8>,
    pub q8_0: Dot<BlockQ8>,
    pub q2_k: Dot<BlockQ8K>,
    pub q3_k: Dot<BlockQ8K>,
    pub q4_k: Dot<BlockQ8K>,
    pub q5_k: Dot<BlockQ8K>,
    pub q6_k: Dot<BlockQ8K>,
    /// For batches of Q4_K and Q6_K weights: eight rows of an [`UnpackedK`] tile times
    /// four activation rows, where this path has such a kernel (x86).
    pub gemm_k: Option<GemmK>,
}

/// How a weight type is multiplied: which activation format and which kernel.
#[derive(Clone, Copy)]
pub enum Plan {
    /// F32, F16, BF16 weights against f32 activations.
    Float(Dot<f32>),
    /// Legacy 32-value blocks against [`BlockQ8`] activations.
    Q8(Dot<BlockQ8>),
    /// k-quants against [`BlockQ8K`] activations.
    Q8K(Dot<BlockQ8K>),
    /// No kernel: decode each row to f32 first (slow, but covers every decodable type).
    Dequantize,
}

impl Kernels {
    /// The table for `path`, if this CPU can run it.
    pub fn for_path(path: KernelPath) -> Option<&'static Kernels> {
        static TABLES: OnceLock<Vec<Kernels>> = OnceLock::new();
        TABLES
            .get_or_init(|| {
                std::iter::once(scalar::KERNELS)
                    .chain(simd_tables())
                    .collect()
            })
            .iter()
            .find(|k| k.path == path)
    }

    /// Every path this CPU can run, scalar first.
    pub fn available() -> Vec<&'static Kernels> {
        KernelPath::ALL
            .into_iter()
            .filter_map(Kernels::for_path)
            .collect()
    }

    /// The table in use: `MOTE_KERNELS` if set and supported, else the fastest available.
    /// Chosen once per process.
    pub fn active() -> &'static Kernels {
        static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();
        ACTIVE.get_or_init(|| {
            let best = Kernels::best();
            let Ok(wanted) = std::env::var("MOTE_KERNELS") else {
                return best;
            };
            match KernelPath::from_name(&wanted).and_then(Kernels::for_path) {
                Some(k) => k,
                None => {
                    // A library has no logger of its own; stderr is the one channel a
                    // user forcing a path is sure to see.
                    eprintln!(
                        "mote: MOTE_KERNELS={wanted:?} is not available on this CPU \
                         (choose from: {}); using {}",
                        Kernels::available()
                            .iter()
                            .map(|k| k.path.name())
                            .collect::<Vec<_>>()
                            .join(", "),
                        best.path
                    );
                    best
                }
            }
        })
    }

    fn best() -> &'static Kernels {
        [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Neon]
            .into_iter()
            .find_map(Kernels::for_path)
            .unwrap_or(&scalar::KERNELS)
    }

    /// The kernel and activation format for weights of `dtype`.
    pub fn plan(&self, dtype: DType) -> Plan {
        match dtype {
            DType::F32 => Plan::Float(self.f32),
            DType::F16 => Plan::Float(self.f16),
            DType::BF16 => Plan::Float(self.bf16),
            DType::Q4_0 => Plan::Q8(self.q4_0),
            DType::Q4_1 => Plan::Q8(self.q4_1),
            DType::Q5_0 => Plan::Q8(self.q5_0),
            DType::Q5_1 => Plan::Q8(self.q5_1),
            DType::Q8_0 => Plan::Q8(self.q8_0),
            DType::Q2_K => Plan::Q8K(self.q2_k),
            DType::Q3_K => Plan::Q8K(self.q3_k),
            DType::Q4_K => Plan::Q8K(self.q4_k),
            DType::Q5_K => Plan::Q8K(self.q5_k),
            DType::Q6_K => Plan::Q8K(self.q6_k),
            _ => Plan::Dequantize,
        }
    }
}

/// The SIMD tables this CPU can run (checked at run time).
#[cfg(target_arch = "x86_64")]
fn simd_tables() -> Vec<Kernels> {
    x86_avx2::kernels()
        .into_iter()
        .chain(x86_avx512::kernels())
        .collect()
}

#[cfg(target_arch = "aarch64")]
fn simd_tables() -> Vec<Kernels> {
    aarch64_neon::kernels().into_iter().collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn simd_tables() -> Vec<Kernels> {
    Vec::new()
}

/// Unpacks the twelve bytes of 6-bit scales and mins shared by Q4_K and Q5_K into eight
/// scales and eight mins (ggml's `get_scale_min_k4`, done four at a time).
#[inline]
pub(crate) fn unpack_k4_scales(b: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let (w0, w1, w2) = (word(0), word(1), word(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let sc_lo = w0 & LOW6;
    let sc_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let m_lo = w1 & LOW6;
    let m_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    sc[..4].copy_from_slice(&sc_lo.to_le_bytes());
    sc[4..].copy_from_slice(&sc_hi.to_le_bytes());
    m[..4].copy_from_slice(&m_lo.to_le_bytes());
    m[4..].copy_from_slice(&m_hi.to_le_bytes());
    (sc, m)
}

/// Unpacks Q3_K's twelve bytes of 6-bit scales into sixteen signed scales (`raw - 32`).
#[inline]
pub(crate) fn unpack_q3k_scales(b: &[u8]) -> [i8; 16] {
    let word = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let (a0, a1, hi) = (word(0), word(1), word(2));
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let words = [
        (a0 & LOW4) | ((hi & LOW2) << 4),
        (a1 & LOW4) | (((hi >> 2) & LOW2) << 4),
        ((a0 >> 4) & LOW4) | (((hi >> 4) & LOW2) << 4),
        ((a1 >> 4) & LOW4) | (((hi >> 6) & LOW2) << 4),
    ];
    let mut out = [0i8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        for (v, byte) in o.iter_mut().zip(w.to_le_bytes()) {
            *v = byte as i8 - 32;
        }
    }
    out
}

/// The legacy block types as the const `KIND` parameter of the SIMD bodies (a closure
/// per type would not be inlined, and one left out of line turns every intrinsic inside
/// it into a call), with their block sizes.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) mod legacy_kind {
    pub const Q4_0: u8 = 0;
    pub const Q4_1: u8 = 1;
    pub const Q5_0: u8 = 2;
    pub const Q5_1: u8 = 3;
    pub const Q8_0: u8 = 4;

    /// Bytes per 32-value block.
    pub const fn block_bytes(kind: u8) -> usize {
        match kind {
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            _ => 34,
        }
    }

    /// Whether the type has a per-block offset `m` (its values are unsigned).
    pub const fn has_min(kind: u8) -> bool {
        matches!(kind, Q4_1 | Q5_1)
    }
}

/// What every [`Rows8`] wrapper settles before its kernel runs: the pointers to eight
/// weight rows (those past `rows` repeat the last one), the block count (the shortest of
/// the first `count` activation rows, bounded by the row length) and `count` bounded to
/// 4. `None` when there is nothing to compute or the rows do not lie inside `w`.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(crate) fn rows8_setup<A>(
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    a: &[&[A]; 4],
    count: usize,
    block_bytes: usize,
) -> Option<([*const u8; 8], usize, usize)> {
    let (rows, count) = (rows.min(8), count.min(4));
    let nb = a[..count]
        .iter()
        .map(|s| s.len())
        .min()
        .unwrap_or(0)
        .min(row_bytes / block_bytes.max(1));
    if rows == 0 || count == 0 || !rows_fit(w, row_bytes, rows, nb * block_bytes) {
        return None;
    }
    let mut p = [w.as_ptr(); 8];
    for (r, ptr) in p.iter_mut().enumerate() {
        *ptr = w[r.min(rows - 1) * row_bytes..].as_ptr();
    }
    Some((p, nb, count))
}

/// Whether `rows` rows of `used` bytes each, `row_bytes` apart, lie inside `w`.
pub(crate) fn rows_fit(w: &[u8], row_bytes: usize, rows: usize, used: usize) -> bool {
    let last_end = rows.checked_sub(1).map_or(Some(0), |r| {
        r.checked_mul(row_bytes).and_then(|x| x.checked_add(used))
    });
    row_bytes >= used && last_end.is_some_and(|end| w.len() >= end)
}

#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// An f16 (as bits) widened to f32, exactly, in a few inlined instructions: the exponent
/// and mantissa moved into place and rescaled by 2^112 (which also normalises
/// subnormals), infinities and NaNs patched. `half`'s conversion is an out-of-line call
/// per value, which dominated decoding whole weight tiles.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let body = (h & 0x7fff) << 13;
    let value = if h & 0x7c00 == 0x7c00 {
        f32::from_bits(body | 0x7f80_0000)
    } else {
        f32::from_bits(body) * f32::from_bits(0x7780_0000) // 2^112
    };
    f32::from_bits(value.to_bits() | sign)
}

/// 16 bytes of 4-bit pairs → 32 values: low nibbles first, then high ones (ggml's
/// order), eight bytes at a time.
#[inline(always)]
pub(crate) fn split_nibbles(qs: &[u8], u: &mut [u8]) {
    for half in 0..2 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&qs[8 * half..8 * half + 8]);
        let x = u64::from_le_bytes(x);
        let mask = 0x0f0f_0f0f_0f0f_0f0f;
        u[8 * half..8 * half + 8].copy_from_slice(&(x & mask).to_le_bytes());
        u[16 + 8 * half..24 + 8 * half].copy_from_slice(&((x >> 4) & mask).to_le_bytes());
    }
}

/// ORs bit `j` of the 32-bit `qh` into bit 4 of value `j` (Q5_0/Q5_1's fifth bits).
#[inline(always)]
pub(crate) fn add_fifth_bits(qh: &[u8], u: &mut [u8]) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, v) in u.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) as u8) << 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_is_exact_for_every_value() {
        for bits in 0..=u16::MAX {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_bits_to_f32(bits);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{bits:#06x}: {got} vs {want}"
            );
        }
    }
}
