//! Keys and values of the positions processed so far, for one sequence.
//!
//! Storage is in the cache's element type (F16 by default, as llama.cpp's default cache),
//! laid out so that attention can use the matrix kernels of `mote-tensor` directly:
//! - keys are position-major: position `p` holds one row of `head_dim_k` values per
//!   key/value head, so a score is a kernel dot of a key row with a query;
//! - values are transposed for F32/F16 (`[kv head][dim][position]`), so the weighted sum
//!   of values is a kernel dot of a value row with a row of attention weights. Q8_0
//!   values are stored position-major instead (a 32-value block cannot straddle positions
//!   that arrive one at a time) and summed by decoding them to f32.

use std::fmt;
use std::str::FromStr;

use half::slice::HalfFloatSliceExt;
use mote_tensor::kernels::{quantize_q8, BlockQ8, Q8_BLOCK};
use mote_tensor::DType;

/// How keys and values are held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvPrecision {
    /// Half precision: half the memory of F32, and the arithmetic llama.cpp uses with its
    /// default cache (queries and attention weights are rounded to f16 before their
    /// products with keys and values).
    #[default]
    F16,
    /// Full f32.
    F32,
    /// 8-bit blocks of 32 values with an f16 scale (ggml's Q8_0): a quarter of F32.
    /// Needs head sizes that are multiples of 32; other models fall back to F16.
    Q8_0,
}

impl KvPrecision {
    pub const ALL: [KvPrecision; 3] = [KvPrecision::F16, KvPrecision::F32, KvPrecision::Q8_0];

    /// The name llama.cpp's `--cache-type-k/-v` flags use.
    pub fn name(self) -> &'static str {
        match self {
            KvPrecision::F16 => "f16",
            KvPrecision::F32 => "f32",
            KvPrecision::Q8_0 => "q8_0",
        }
    }

    /// The element type of the stored rows.
    pub fn dtype(self) -> DType {
        match self {
            KvPrecision::F16 => DType::F16,
            KvPrecision::F32 => DType::F32,
            KvPrecision::Q8_0 => DType::Q8_0,
        }
    }

    /// Bytes of `values` values (a multiple of 32 for Q8_0).
    pub(crate) fn bytes_for(self, values: usize) -> usize {
        let dt = self.dtype();
        values / dt.block_len() * dt.block_bytes()
    }
}

impl fmt::Display for KvPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown cache type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown KV cache type {0:?} (choose from f16, f32, q8_0)")]
pub struct UnknownKvPrecision(pub String);

impl FromStr for KvPrecision {
    type Err = UnknownKvPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KvPrecision::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownKvPrecision(s.to_string()))
    }
}

/// One layer's keys and values.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerKv {
    /// Position-major key rows.
    pub k: Vec<u8>,
    /// Values: transposed rows of `v_slots` positions (F32/F16), or position-major rows
    /// (Q8_0).
    pub v: Vec<u8>,
    /// Positions each transposed value row has room for.
    pub v_slots: usize,
}

/// Keys and values of the positions processed so far, for one sequence.
///
/// Memory grows with the positions actually used, up to `capacity`.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) n_head_kv: usize,
    pub(crate) head_dim_k: usize,
    pub(crate) head_dim_v: usize,
    /// Key and value precision (they may differ, as llama.cpp's `-ctk`/`-ctv`).
    pub(crate) k_type: KvPrecision,
    pub(crate) v_type: KvPrecision,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(
        n_layer: usize,
        n_head_kv: usize,
        head_dims: (usize, usize),
        capacity: usize,
        types: (KvPrecision, KvPrecision),
    ) -> KvCache {
        let (head_dim_k, head_dim_v) = head_dims;
        let fits = |p: KvPrecision, dim: usize| match p {
            KvPrecision::Q8_0 if !dim.is_multiple_of(Q8_BLOCK) => KvPrecision::F16,
            p => p,
        };
        KvCache {
            layers: vec![LayerKv::default(); n_layer],
            n_head_kv,
            head_dim_k,
            head_dim_v,
            k_type: fits(types.0, head_dim_k),
            v_type: fits(types.1, head_dim_v),
            len: 0,
            capacity,
        }
    }

    /// Positions already in the cache; the next token goes at this position.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The key precision (kept for callers that set one precision for both).
    pub fn precision(&self) -> KvPrecision {
        self.k_type
    }

    /// Key and value precisions.
    pub fn precisions(&self) -> (KvPrecision, KvPrecision) {
        (self.k_type, self.v_type)
    }

    /// The keys of position `pos` in layer `layer` (all K/V heads, `n_head_kv ×
    /// head_dim_k` values, already rotated), decoded to f32; `None` past the end.
    pub fn key_row(&self, layer: usize, pos: usize) -> Option<Vec<f32>> {
        let keys = &self.layers.get(layer)?.k;
        if pos >= self.len {
            return None;
        }
        let pos_bytes = self.n_head_kv * self.k_row_bytes();
        let mut out = vec![0f32; self.n_head_kv * self.head_dim_k];
        decode_into(
            self.k_type,
            &keys[pos * pos_bytes..(pos + 1) * pos_bytes],
            &mut out,
        );
        Some(out)
    }

    /// Bytes of keys and values held now (all layers).
    pub fn memory_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.k.len() + l.v.len()).sum()
    }

    /// Forget positions `n..` (to re-use a shared prompt prefix, or to reset with 0).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        self.shrink_layers();
    }

    /// Removes positions `start..start + n` and moves the later ones down by `n`, in
    /// place, in every layer. The moved keys keep the rotation of their old positions;
    /// [`crate::Model::shift_cache`] re-rotates them (use that, not this, on a model's
    /// cache). Does nothing when the range is empty or past the end.
    pub(crate) fn remove_positions(&mut self, start: usize, n: usize) {
        let len = self.len;
        if n == 0 || start >= len {
            return;
        }
        let n = n.min(len - start);
        let k_pos = self.n_head_kv * self.k_row_bytes();
        let v_pos = self.n_head_kv * self.v_row_bytes();
        let transposed = self.v_transposed();
        let eb = self.v_type.bytes_for(1);
        for layer in &mut self.layers {
            layer.k.drain(start * k_pos..(start + n) * k_pos);
            if transposed {
                let slots = layer.v_slots;
                for row in layer.v.chunks_exact_mut(slots * eb) {
                    row.copy_within((start + n) * eb..len * eb, start * eb);
                }
            } else {
                layer.v.drain(start * v_pos..(start + n) * v_pos);
            }
        }
        self.len -= n;
    }

    /// Decodes the keys of each position in `positions` of layer `il` (all its K/V heads,
    /// `n_head_kv * head_dim_k` values), lets `f` change them, and stores them back in the
    /// cache's precision (F16 and Q8_0 round again).
    pub(crate) fn map_keys(
        &mut self,
        il: usize,
        positions: std::ops::Range<usize>,
        f: &mut dyn FnMut(&mut [f32]),
    ) {
        let width = self.n_head_kv * self.head_dim_k;
        let pos_bytes = self.n_head_kv * self.k_row_bytes();
        let k_type = self.k_type;
        let mut row = vec![0f32; width];
        let mut encoded = Vec::with_capacity(pos_bytes);
        let keys = &mut self.layers[il].k;
        for p in positions.start..positions.end.min(self.len) {
            let bytes = &mut keys[p * pos_bytes..(p + 1) * pos_bytes];
            decode_into(k_type, bytes, &mut row);
            f(&mut row);
            encoded.clear();
            append_encoded(&mut encoded, k_type, &row);
            bytes.copy_from_slice(&encoded);
        }
    }

    /// Marks `n` more positions as filled (their K/V were written to every layer).
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Bytes of one key row (one head of one position).
    pub(crate) fn k_row_bytes(&self) -> usize {
        self.k_type.bytes_for(self.head_dim_k)
    }

    /// Bytes of one position-major value row (Q8_0 values only).
    pub(crate) fn v_row_bytes(&self) -> usize {
        self.v_type.bytes_for(self.head_dim_v)
    }

    /// Whether values are stored transposed (F32/F16) rather than position-major.
    pub(crate) fn v_transposed(&self) -> bool {
        self.v_type != KvPrecision::Q8_0
    }

    /// Drops K/V written past `len` (after a failed forward call, or a truncate).
    /// Transposed values need nothing: slots past `len` are simply overwritten later.
    pub(crate) fn shrink_layers(&mut self) {
        let kl = self.len * self.n_head_kv * self.k_row_bytes();
        let vl = self.len * self.n_head_kv * self.v_row_bytes();
        let transposed = self.v_transposed();
        for layer in &mut self.layers {
            layer.k.truncate(kl);
            if !transposed {
                layer.v.truncate(vl);
            }
        }
    }

    /// Appends the keys and values of `n` positions starting at `len()` to layer `il`:
    /// `k` is `n * n_head_kv * head_dim_k` values, `v` likewise with `head_dim_v`.
    pub(crate) fn write(&mut self, il: usize, k: &[f32], v: &[f32], n: usize) {
        let start = self.len;
        let (k_type, v_type, transposed) = (self.k_type, self.v_type, self.v_transposed());
        let v_width = self.n_head_kv * self.head_dim_v;
        let capacity = self.capacity;
        let layer = &mut self.layers[il];
        append_encoded(&mut layer.k, k_type, k);
        if !transposed {
            append_encoded(&mut layer.v, v_type, v);
            return;
        }
        let eb = v_type.bytes_for(1);
        if start + n > layer.v_slots {
            // Grow by doubling (bounded by the capacity) so that appending one position
            // at a time stays linear overall, and memory follows the positions used.
            let slots = (start + n)
                .max(2 * layer.v_slots)
                .max(32)
                .min(capacity.max(start + n));
            let mut grown = vec![0u8; v_width * slots * eb];
            if layer.v_slots > 0 {
                for (new_row, old_row) in grown
                    .chunks_exact_mut(slots * eb)
                    .zip(layer.v.chunks_exact(layer.v_slots * eb))
                {
                    new_row[..start * eb].copy_from_slice(&old_row[..start * eb]);
                }
            }
            layer.v = grown;
            layer.v_slots = slots;
        }
        let row = layer.v_slots * eb;
        if v_type == KvPrecision::F16 {
            // Converted a slice at a time (F16C where the CPU has it), then scattered.
            let v = &v[..n * v_width];
            let mut halves = vec![half::f16::ZERO; v.len()];
            halves.convert_from_f32_slice(v);
            for (t, ht) in halves.chunks_exact(v_width).enumerate() {
                let at = (start + t) * 2;
                for (c, h) in ht.iter().enumerate() {
                    layer.v[c * row + at..c * row + at + 2].copy_from_slice(&h.to_le_bytes());
                }
            }
            return;
        }
        for (t, vt) in v.chunks_exact(v_width).take(n).enumerate() {
            let at = (start + t) * eb;
            for (c, &x) in vt.iter().enumerate() {
                layer.v[c * row + at..c * row + at + eb].copy_from_slice(&x.to_le_bytes());
            }
        }
    }
}

/// Decodes `bytes` (whole rows stored as `p`) into `out`.
pub(crate) fn decode_into(p: KvPrecision, bytes: &[u8], out: &mut [f32]) {
    match p {
        KvPrecision::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        KvPrecision::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        KvPrecision::Q8_0 => {
            for (o, b) in out
                .chunks_exact_mut(Q8_BLOCK)
                .zip(bytes.chunks_exact(2 + Q8_BLOCK))
            {
                let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                for (v, &q) in o.iter_mut().zip(&b[2..]) {
                    *v = d * (q as i8) as f32;
                }
            }
        }
    }
}

/// Appends `x` to `out` encoded as `p` (`x.len()` a multiple of 32 for Q8_0).
fn append_encoded(out: &mut Vec<u8>, p: KvPrecision, x: &[f32]) {
    out.reserve(p.bytes_for(x.len()));
    match p {
        KvPrecision::F32 => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
        KvPrecision::F16 => {
            // A slice at a time (F16C where the CPU has it): one call per value cost
            // several percent of a prefill.
            let mut halves = vec![half::f16::ZERO; x.len()];
            halves.convert_from_f32_slice(x);
            out.extend(halves.iter().flat_map(|h| h.to_le_bytes()));
        }
        KvPrecision::Q8_0 => {
            let mut block = [BlockQ8::default()];
            for xs in x.chunks_exact(Q8_BLOCK) {
                quantize_q8(xs, &mut block);
                out.extend_from_slice(&half::f16::from_f32(block[0].d).to_le_bytes());
                out.extend(block[0].qs.iter().map(|&q| q as u8));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(p: KvPrecision) -> KvCache {
        KvCache::new(2, 1, (32, 32), 100, (p, p))
    }

    #[test]
    fn truncate_drops_values() {
        for p in KvPrecision::ALL {
            let mut c = cache(p);
            for il in 0..2 {
                c.write(il, &[0.5; 4 * 32], &[0.25; 4 * 32], 4);
            }
            c.commit(4);
            assert_eq!(c.len(), 4);
            c.truncate(6);
            assert_eq!(c.len(), 4);
            c.truncate(1);
            assert_eq!(c.len(), 1);
            assert_eq!(c.layers[1].k.len(), c.k_row_bytes());
            assert!(!c.is_empty());
            c.truncate(0);
            assert!(c.is_empty());
        }
    }

    #[test]
    fn f16_takes_half_the_memory_of_f32_and_q8_0_less() {
        let mut sizes = Vec::new();
        for p in [KvPrecision::F32, KvPrecision::F16, KvPrecision::Q8_0] {
            let mut c = KvCache::new(1, 2, (64, 64), 64, (p, p));
            c.write(0, &[1.0; 64 * 128], &[1.0; 64 * 128], 64);
            sizes.push(c.memory_bytes());
        }
        assert_eq!(sizes[0], 2 * sizes[1]);
        assert!(sizes[2] * 3 < sizes[0]);
    }

    #[test]
    fn transposed_values_survive_growth() {
        let mut c = KvCache::new(1, 1, (2, 2), 1000, (KvPrecision::F32, KvPrecision::F32));
        for pos in 0..70 {
            let v = [pos as f32, -(pos as f32)];
            c.write(0, &[0.0, 0.0], &v, 1);
            c.commit(1);
        }
        let layer = &c.layers[0];
        let at = |row: usize, pos: usize| {
            let o = (row * layer.v_slots + pos) * 4;
            f32::from_le_bytes(layer.v[o..o + 4].try_into().unwrap())
        };
        assert_eq!((at(0, 0), at(0, 69), at(1, 33)), (0.0, 69.0, -33.0));
    }

    #[test]
    fn removing_positions_moves_the_later_ones_down() {
        for p in KvPrecision::ALL {
            let mut c = KvCache::new(2, 1, (32, 32), 100, (p, p));
            for pos in 0..40 {
                for il in 0..2 {
                    let x = [pos as f32; 32];
                    c.write(il, &x, &x, 1);
                }
                c.commit(1);
            }
            c.remove_positions(4, 10);
            assert_eq!(c.len(), 30);
            let mut seen = Vec::new();
            c.map_keys(1, 0..100, &mut |row| seen.push(row[0]));
            let want: Vec<f32> = (0..4).chain(14..40).map(|v| v as f32).collect();
            let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 0.02);
            assert!(
                seen.len() == want.len() && close(&seen, &want),
                "{p}: {seen:?}"
            );
            // Values moved the same way (transposed or not).
            let layer = &c.layers[0];
            let value = |pos: usize| {
                let mut out = [0f32; 32];
                if c.v_transposed() {
                    let eb = c.v_type.bytes_for(1);
                    let mut one = [0f32; 1];
                    decode_into(c.v_type, &layer.v[pos * eb..(pos + 1) * eb], &mut one);
                    out[0] = one[0];
                } else {
                    let rb = c.v_row_bytes();
                    decode_into(c.v_type, &layer.v[pos * rb..(pos + 1) * rb], &mut out);
                }
                out[0]
            };
            let got = [value(3), value(4), value(29)];
            assert!(close(&got, &[3.0, 14.0, 39.0]), "{p}: {got:?}");
        }
    }

    #[test]
    fn names_parse() {
        for p in KvPrecision::ALL {
            assert_eq!(p.name().parse::<KvPrecision>(), Ok(p));
        }
        assert_eq!("Q8_0".parse::<KvPrecision>(), Ok(KvPrecision::Q8_0));
        assert!("q4_0".parse::<KvPrecision>().is_err());
        // Q8_0 needs head sizes that are multiples of 32.
        let c = KvCache::new(1, 1, (16, 64), 8, (KvPrecision::Q8_0, KvPrecision::Q8_0));
        assert_eq!(c.precisions(), (KvPrecision::F16, KvPrecision::Q8_0));
    }
}
