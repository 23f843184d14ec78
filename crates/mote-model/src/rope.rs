//! Rotary position embedding.

use crate::spec::RopeStyle;
use mote_tensor::ggml_math::fma;

/// Rotation angles of one layer kind: `angle(pos, i) = scale · pos · base^(-2i/n_rot) / factor_i`.
///
/// Computed as llama.cpp does (`ggml_rope_cache_init`): in f32, the per-pair frequency
/// by repeated multiplication with `base^(-2/n_rot)`, then libm's `cosf`/`sinf`. An f64
/// angle would be closer to the true one by a few f32 ulps, which is nothing for the
/// model but enough to make its 8-bit activation roundings drift from llama.cpp's
/// (see [`mote_tensor::ggml_math`]).
pub struct Rope {
    style: RopeStyle,
    n_rot: usize,
    /// `base^(-2/n_rot)`, the ratio between consecutive pairs' frequencies.
    theta_scale: f32,
    /// Frequency scale (linear RoPE scaling; 1 for none).
    scale: f32,
    /// Per dimension pair, the divisor of the angle (`rope_freqs`; 1 for none).
    factors: Vec<f32>,
}

/// cos/sin of every (position, pair) of one forward call.
#[derive(Default)]
pub struct RopeTable {
    n_pairs: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Rotated pairs per head (`n_rot / 2`).
    pub fn n_pairs(&self) -> usize {
        self.n_pairs
    }

    /// `(cos, sin)` of the angles of position index `t` of the table, one per pair.
    pub fn angles(&self, t: usize) -> (&[f32], &[f32]) {
        let r = t * self.n_pairs..(t + 1) * self.n_pairs;
        (&self.cos[r.clone()], &self.sin[r])
    }
}

impl Rope {
    pub fn new(
        style: RopeStyle,
        n_rot: usize,
        base: f32,
        scale: f32,
        factors: Option<&[f32]>,
    ) -> Rope {
        let half = n_rot / 2;
        let factors = (0..half)
            .map(|i| match factors.and_then(|fs| fs.get(i)) {
                Some(&d) if d != 0.0 => d,
                _ => 1.0,
            })
            .collect();
        Rope {
            style,
            n_rot,
            theta_scale: base.powf(-2.0 / n_rot as f32),
            scale,
            factors,
        }
    }

    /// Which dimensions rotate together.
    pub fn style(&self) -> RopeStyle {
        self.style
    }

    /// Leading dimensions of each head that rotate.
    pub fn n_rot(&self) -> usize {
        self.n_rot
    }

    /// Angles for `positions`.
    pub fn table(&self, positions: std::ops::Range<usize>) -> RopeTable {
        let mut t = RopeTable::default();
        self.fill_table(positions, &mut t);
        t
    }

    /// [`Rope::table`] into an existing table, re-using its memory.
    pub fn fill_table(&self, positions: std::ops::Range<usize>, table: &mut RopeTable) {
        table.n_pairs = self.factors.len();
        table.cos.clear();
        table.sin.clear();
        for p in positions {
            let mut theta = p as f32;
            for &ff in &self.factors {
                let t = self.scale * (theta / ff);
                table.cos.push(t.cos());
                table.sin.push(t.sin());
                theta *= self.theta_scale;
            }
        }
    }

    /// The rotation that moves an already-rotated vector from position `p` to `p + delta`
    /// (angles are linear in the position), as a one-row table for [`Rope::apply`].
    /// Computed in f64 so that re-rotating adds as little error as possible.
    pub fn delta_table(&self, delta: i64) -> RopeTable {
        let ts = self.theta_scale as f64;
        let mut theta = delta as f64;
        let mut t = RopeTable {
            n_pairs: self.factors.len(),
            ..Default::default()
        };
        for &ff in &self.factors {
            let a = self.scale as f64 * (theta / ff as f64);
            t.cos.push(a.cos() as f32);
            t.sin.push(a.sin() as f32);
            theta *= ts;
        }
        t
    }

    /// Rotates every `head_dim`-long head in `x` (the `t`-th token's heads), in place.
    pub fn apply(&self, table: &RopeTable, t: usize, x: &mut [f32], head_dim: usize) {
        let cos = &table.cos[t * table.n_pairs..(t + 1) * table.n_pairs];
        let sin = &table.sin[t * table.n_pairs..(t + 1) * table.n_pairs];
        for head in x.chunks_exact_mut(head_dim) {
            let rot = &mut head[..self.n_rot];
            match self.style {
                RopeStyle::Adjacent => {
                    for (i, pair) in rot.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (pair[0], pair[1]);
                        (pair[0], pair[1]) = rotate(a, b, cos[i], sin[i]);
                    }
                }
                RopeStyle::Neox => {
                    let (lo, hi) = rot.split_at_mut(self.n_rot / 2);
                    for i in 0..lo.len() {
                        let (a, b) = (lo[i], hi[i]);
                        (lo[i], hi[i]) = rotate(a, b, cos[i], sin[i]);
                    }
                }
            }
        }
    }
}

/// `(a·c − b·s, a·s + b·c)` with the first product of each fused, as ggml's
/// `rotate_pairs` compiles (GCC contracts `x0*cos - x1*sin` to `fma(x0, cos, -(x1*sin))`).
#[inline(always)]
fn rotate(a: f32, b: f32, c: f32, s: f32) -> (f32, f32) {
    (fma(a, c, -(b * s)), fma(a, s, b * c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
            let rope = Rope::new(style, 4, 10_000.0, 1.0, None);
            let table = rope.table(0..3);
            let orig = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
            let mut x = orig;
            rope.apply(&table, 0, &mut x, 6);
            assert_eq!(x, orig);
            rope.apply(&table, 2, &mut x, 6);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4);
            // Dimensions past n_rot are untouched.
            assert_eq!(&x[4..], &orig[4..]);
        }
    }

    #[test]
    fn delta_rotation_moves_between_positions() {
        for style in [RopeStyle::Adjacent, RopeStyle::Neox] {
            let rope = Rope::new(style, 8, 10_000.0, 0.5, Some(&[1.0, 2.0, 1.0, 4.0]));
            let table = rope.table(0..200);
            let orig: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
            let (mut at_150, mut at_40) = (orig.clone(), orig.clone());
            rope.apply(&table, 150, &mut at_150, 8);
            rope.apply(&table, 40, &mut at_40, 8);
            rope.apply(&rope.delta_table(-110), 0, &mut at_150, 8);
            for (a, b) in at_150.iter().zip(&at_40) {
                assert!((a - b).abs() < 1e-5, "{a} {b}");
            }
        }
    }

    #[test]
    fn first_pair_rotates_by_position() {
        let rope = Rope::new(RopeStyle::Adjacent, 2, 10_000.0, 1.0, None);
        let table = rope.table(0..2);
        let mut x = [1.0f32, 0.0];
        rope.apply(&table, 1, &mut x, 2);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
