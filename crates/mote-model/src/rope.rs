//! Rotary position embedding.

use crate::spec::RopeStyle;

/// Rotation angles of one layer kind: `angle(pos, i) = pos * scale * base^(-2i/n_rot) / factor_i`.
pub struct Rope {
    style: RopeStyle,
    n_rot: usize,
    /// Per dimension pair, the angle per position.
    freqs: Vec<f64>,
}

/// cos/sin of every (position, pair) of one forward call.
#[derive(Default)]
pub struct RopeTable {
    n_pairs: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
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
        let freqs = (0..half)
            .map(|i| {
                let f = (base as f64).powf(-2.0 * i as f64 / n_rot as f64) * scale as f64;
                match factors.and_then(|fs| fs.get(i)) {
                    Some(&d) if d != 0.0 => f / d as f64,
                    _ => f,
                }
            })
            .collect();
        Rope {
            style,
            n_rot,
            freqs,
        }
    }

    /// Angles for `positions` (computed in f64, then rounded, to keep large positions exact).
    #[cfg(test)]
    pub fn table(&self, positions: std::ops::Range<usize>) -> RopeTable {
        let mut t = RopeTable::default();
        self.fill_table(positions, &mut t);
        t
    }

    /// [`Rope::table`] into an existing table, re-using its memory.
    pub fn fill_table(&self, positions: std::ops::Range<usize>, table: &mut RopeTable) {
        table.n_pairs = self.freqs.len();
        table.cos.clear();
        table.sin.clear();
        for p in positions {
            for &f in &self.freqs {
                let (s, c) = (p as f64 * f).sin_cos();
                table.cos.push(c as f32);
                table.sin.push(s as f32);
            }
        }
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
                        pair[0] = a * cos[i] - b * sin[i];
                        pair[1] = a * sin[i] + b * cos[i];
                    }
                }
                RopeStyle::Neox => {
                    let (lo, hi) = rot.split_at_mut(self.n_rot / 2);
                    for i in 0..lo.len() {
                        let (a, b) = (lo[i], hi[i]);
                        lo[i] = a * cos[i] - b * sin[i];
                        hi[i] = a * sin[i] + b * cos[i];
                    }
                }
            }
        }
    }
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
    fn first_pair_rotates_by_position() {
        let rope = Rope::new(RopeStyle::Adjacent, 2, 10_000.0, 1.0, None);
        let table = rope.table(0..2);
        let mut x = [1.0f32, 0.0];
        rope.apply(&table, 1, &mut x, 2);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
