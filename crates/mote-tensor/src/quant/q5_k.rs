//! Q5_K: 256 values in 176 bytes (5.5 bits per weight).
//!
//! Layout: `d: f16`, `dmin: f16`, `scales[12]` (as Q4_K), `qh[32]` (bit 4 of each
//! level: value v uses bit v/32 of byte v%32), `qs[128]` (low 4 bits, arranged as
//! Q4_K's). Value v of sub-block j = v/32: `d·sc_j·q − dmin·m_j`, q in `[0, 32)`.

use super::k_common::QK_K;
use super::q4_k::{self, HEADER_BYTES, SUB};
use super::search::MinSearch;

const BLOCK_BYTES: usize = 176;

pub(crate) fn dequantize(src: &[u8], out: &mut [f32]) {
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (qh, qs) = (&b[16..48], &b[48..176]);
        for (j, ys) in y.chunks_exact_mut(SUB).enumerate() {
            let (d, m) = q4_k::sub_block_scale_min(b, j);
            let low = &qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            for (l, o) in ys.iter_mut().enumerate() {
                let q = ((low[l] >> shift) & 0x0f) + (((qh[l] >> j) & 1) << 4);
                *o = d * f32::from(q) - m;
            }
        }
    }
}

fn pack(levels: &[u8; QK_K], rest: &mut [u8]) {
    let (qh, qs) = rest.split_at_mut(32);
    qh.fill(0);
    for (c, (chunk, out)) in levels
        .chunks_exact(64)
        .zip(qs.chunks_exact_mut(32))
        .enumerate()
    {
        for (l, q) in out.iter_mut().enumerate() {
            let (lo, hi) = (chunk[l], chunk[l + 32]);
            qh[l] |= ((lo >> 4) & 1) << (2 * c);
            qh[l] |= ((hi >> 4) & 1) << (2 * c + 1);
            *q = (lo & 0x0f) | ((hi & 0x0f) << 4);
        }
    }
}

pub(crate) fn quantize(src: &[f32], dst: &mut [u8]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    for (x, b) in src
        .chunks_exact(QK_K)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut levels = [0u8; QK_K];
        let (header, rest) = b.split_at_mut(HEADER_BYTES);
        q4_k::fit(x, 31, SEARCH, header, &mut levels);
        pack(&levels, rest);
    }
}

pub(crate) fn quantize_weighted(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let blocks = src.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K));
    for ((x, qw), b) in blocks.zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let mut levels = [0u8; QK_K];
        let (header, rest) = b.split_at_mut(HEADER_BYTES);
        q4_k::fit_weighted(x, qw, 31, true, header, &mut levels);
        pack(&levels, rest);
    }
}
