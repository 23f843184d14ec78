//! Pieces shared by the k-quant super-block types (256 values per block).

/// Values per k-quant super-block.
pub(crate) const QK_K: usize = 256;

/// Packs 256 two-bit levels the way Q2_K and Q3_K store them: each 128-value half
/// uses 32 bytes, and byte `l` of half `h` holds values `128h + 32k + l` in bits
/// `2k..2k+2` for k = 0..4.
pub(crate) fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8]) {
    for (chunk, out) in levels.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (l, q) in out.iter_mut().enumerate() {
            *q = (chunk[l] & 3)
                | ((chunk[l + 32] & 3) << 2)
                | ((chunk[l + 64] & 3) << 4)
                | ((chunk[l + 96] & 3) << 6);
        }
    }
}

/// The 2-bit level of value `v` (0..256) in a Q2_K/Q3_K `qs` array.
#[inline]
pub(crate) fn level_2bit(qs: &[u8], v: usize) -> u8 {
    let (h, k, l) = (v / 128, (v % 128) / 32, v % 32);
    (qs[32 * h + l] >> (2 * k)) & 3
}

/// Q4_K/Q5_K pack eight 6-bit scales and eight 6-bit minimums into 12 bytes:
/// bytes 0..4 hold scales 0..4 (low 6 bits) and the top 2 bits of scales 4..8;
/// bytes 4..8 hold mins 0..4 and the top 2 bits of mins 4..8; bytes 8..12 hold the
/// low nibbles of scale j+4 (low half) and min j+4 (high half).
#[inline]
pub(crate) fn scale_min_6bit(packed: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// Inverse of [`scale_min_6bit`]; inputs must be < 64.
pub(crate) fn pack_scale_min_6bit(scales: &[u8; 8], mins: &[u8; 8], packed: &mut [u8]) {
    packed[..12].fill(0);
    for j in 0..8 {
        let (ls, lm) = (scales[j], mins[j]);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
}

/// Sum of squares, accumulated in order (as ggml does, for identical rounding).
#[inline]
pub(crate) fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// Importance weights for one sub-block: `qw·√(σ² + x²)`.
#[inline]
pub(crate) fn importance_weights(x: &[f32], qw: &[f32], sigma2: f32, out: &mut [f32]) {
    for ((w, &x), &q) in out.iter_mut().zip(x).zip(qw) {
        *w = q * (sigma2 + x * x).sqrt();
    }
}

/// Sum in order.
#[inline]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_bit_scales_round_trip() {
        let scales = [0, 1, 17, 63, 32, 5, 48, 63];
        let mins = [63, 2, 0, 31, 7, 62, 33, 16];
        let mut packed = [0u8; 12];
        pack_scale_min_6bit(&scales, &mins, &mut packed);
        for j in 0..8 {
            assert_eq!(scale_min_6bit(&packed, j), (scales[j], mins[j]));
        }
    }

    #[test]
    fn two_bit_levels_round_trip() {
        let mut levels = [0u8; QK_K];
        for (i, l) in levels.iter_mut().enumerate() {
            *l = (i * 7 % 4) as u8;
        }
        let mut qs = [0u8; 64];
        pack_2bit(&levels, &mut qs);
        for (v, &l) in levels.iter().enumerate() {
            assert_eq!(level_2bit(&qs, v), l);
        }
    }
}
