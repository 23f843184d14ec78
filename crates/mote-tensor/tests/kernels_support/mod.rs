//! Shared helpers for the kernel tests: a seeded RNG, random weight blocks with sane
//! scales, random activation blocks, and reference decoders.

#![allow(dead_code)]

use mote_tensor::kernels::{scalar, BlockQ8, BlockQ8K, Kernels, Plan, Q8_BLOCK, QK_K};
use mote_tensor::{quant, DType};

/// splitmix64: small, seeded, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    /// Roughly normal (sum of four uniforms), mean 0, std ~`scale`.
    pub fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform(-1.0, 1.0)).sum();
        s * scale * 0.866
    }

    pub fn int(&mut self, lo: i32, hi_inclusive: i32) -> i32 {
        lo + (self.next_u64() % (hi_inclusive - lo + 1) as u64) as i32
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u64() as u8;
        }
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[(self.next_u64() % xs.len() as u64) as usize]
    }
}

pub const QUANT_TYPES: [DType; 10] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

pub const FLOAT_TYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Offsets of the f16 scale fields inside one block.
pub fn scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// `values` weights of `dtype` (one row or many), as bytes. Quantized blocks are random
/// bytes with their f16 scales overwritten by sane values: powers of two when `exact`
/// (so every product and partial sum is exactly representable and any summation order
/// gives the same f32), else random in [0.002, 0.05).
pub fn random_weights(rng: &mut Rng, dtype: DType, values: usize, exact: bool) -> Vec<u8> {
    match dtype {
        DType::F32 => (0..values)
            .flat_map(|_| rng.normal(0.1).to_le_bytes())
            .collect(),
        DType::F16 => (0..values)
            .flat_map(|_| half::f16::from_f32(rng.normal(0.1)).to_le_bytes())
            .collect(),
        DType::BF16 => (0..values)
            .flat_map(|_| half::bf16::from_f32(rng.normal(0.1)).to_le_bytes())
            .collect(),
        _ => {
            let (len, size) = dtype.block();
            let mut bytes = vec![0u8; values / len * size];
            rng.fill(&mut bytes);
            for block in bytes.chunks_exact_mut(size) {
                for &at in scale_offsets(dtype) {
                    let d = if exact {
                        rng.pick(&[0.125f32, 0.0625])
                    } else {
                        rng.uniform(0.002, 0.05)
                    };
                    block[at..at + 2].copy_from_slice(&half::f16::from_f32(d).to_le_bytes());
                }
            }
            bytes
        }
    }
}

/// Random Q8 activation blocks; in `exact` mode small values and power-of-two scales.
pub fn random_q8(rng: &mut Rng, blocks: usize, exact: bool) -> Vec<BlockQ8> {
    (0..blocks)
        .map(|_| {
            let mut b = BlockQ8::default();
            let lim = if exact { 3 } else { 127 };
            for q in &mut b.qs {
                *q = rng.int(-lim, lim) as i8;
            }
            b.d = if exact {
                rng.pick(&[0.25f32, 0.125])
            } else {
                rng.uniform(0.001, 0.02)
            };
            b.s = b.d * b.qs.iter().map(|&q| q as i32).sum::<i32>() as f32;
            b
        })
        .collect()
}

/// Random Q8_K activation blocks (with consistent `bsums`).
pub fn random_q8k(rng: &mut Rng, blocks: usize, exact: bool) -> Vec<BlockQ8K> {
    (0..blocks)
        .map(|_| {
            let mut b = BlockQ8K::default();
            let lim = if exact { 3 } else { 127 };
            for q in &mut b.qs {
                *q = rng.int(-lim, lim) as i8;
            }
            for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
                *s = qs.iter().map(|&q| q as i16).sum();
            }
            b.d = if exact {
                rng.pick(&[0.25f32, 0.125])
            } else {
                rng.uniform(0.001, 0.02)
            };
            b
        })
        .collect()
}

pub fn dequantize_q8(blocks: &[BlockQ8]) -> Vec<f32> {
    blocks
        .iter()
        .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
        .collect()
}

pub fn dequantize_q8k(blocks: &[BlockQ8K]) -> Vec<f32> {
    blocks
        .iter()
        .flat_map(|b| b.qs.map(|q| q as f32 * b.d))
        .collect()
}

/// Decodes one row with the scalar kernel itself: the dot product with a one-hot
/// activation (scale 1) is the weight at that position.
pub fn dequantize_with_scalar(dtype: DType, row: &[u8], cols: usize) -> Vec<f32> {
    let k = &scalar::KERNELS;
    (0..cols)
        .map(|j| match k.plan(dtype) {
            Plan::Float(dot) => {
                let mut x = vec![0f32; cols];
                x[j] = 1.0;
                (dot.one)(row, &x)
            }
            Plan::Q8(dot) => {
                let mut a = vec![BlockQ8::default(); cols / Q8_BLOCK];
                let blk = &mut a[j / Q8_BLOCK];
                blk.d = 1.0;
                blk.s = 1.0;
                blk.qs[j % Q8_BLOCK] = 1;
                (dot.one)(row, &a)
            }
            Plan::Q8K(dot) => {
                let mut a = vec![BlockQ8K::default(); cols / QK_K];
                let blk = &mut a[j / QK_K];
                blk.d = 1.0;
                blk.qs[j % QK_K] = 1;
                blk.bsums[(j % QK_K) / 16] = 1;
                (dot.one)(row, &a)
            }
            Plan::Dequantize => f32::NAN,
        })
        .collect()
}

/// The weights of one row: `quant::dequantize_row` where it supports the type, else the
/// scalar kernel's own reading (see [`dequantize_with_scalar`]).
pub fn dequantize(dtype: DType, row: &[u8], cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; cols];
    match quant::dequantize_row(dtype, row, &mut out) {
        Ok(()) => out,
        Err(_) => dequantize_with_scalar(dtype, row, cols),
    }
}

/// `Σ w·x` in f64, and `Σ |w·x|` as the scale for tolerances.
pub fn dot64(w: &[f32], x: &[f32]) -> (f64, f64) {
    w.iter().zip(x).fold((0.0, 0.0), |(s, m), (&a, &b)| {
        let p = a as f64 * b as f64;
        (s + p, m + p.abs())
    })
}

/// Every table this CPU runs, the scalar one first.
pub fn tables() -> Vec<&'static Kernels> {
    Kernels::available()
}
