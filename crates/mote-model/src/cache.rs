//! Keys and values of the positions processed so far, for one sequence.

/// One layer's cache, position-major: position `p` holds `width` values (all key/value
/// heads of that position, head after head).
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// How keys and values are held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvPrecision {
    /// Full f32.
    #[default]
    F32,
    /// Values rounded to f16, and attention products taken at f16 inputs, as llama.cpp
    /// does with its default F16 cache. (Storage is still f32 for now; the rounding is
    /// what makes results line up with llama.cpp.)
    F16,
}

/// Keys and values of the positions processed so far, for one sequence.
///
/// Memory grows with the positions actually used, up to `capacity`.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    /// Values per position in each layer's K and V.
    pub(crate) k_width: usize,
    pub(crate) v_width: usize,
    pub(crate) precision: KvPrecision,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(
        n_layer: usize,
        k_width: usize,
        v_width: usize,
        capacity: usize,
        precision: KvPrecision,
    ) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); n_layer],
            k_width,
            v_width,
            precision,
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

    pub fn precision(&self) -> KvPrecision {
        self.precision
    }

    /// Forget positions `n..` (to re-use a shared prompt prefix, or to reset with 0).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
        self.shrink_layers();
    }

    /// Marks `n` more positions as filled (their K/V were appended to every layer).
    pub(crate) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Drops K/V written past `len` (after a failed forward call, or a truncate).
    pub(crate) fn shrink_layers(&mut self) {
        let (kl, vl) = (self.len * self.k_width, self.len * self.v_width);
        for layer in &mut self.layers {
            layer.k.truncate(kl);
            layer.v.truncate(vl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_drops_values() {
        let mut c = KvCache::new(2, 3, 2, 10, KvPrecision::F32);
        for l in &mut c.layers {
            l.k.extend_from_slice(&[0.0; 12]);
            l.v.extend_from_slice(&[0.0; 8]);
        }
        c.commit(4);
        assert_eq!(c.len(), 4);
        c.truncate(6);
        assert_eq!(c.len(), 4);
        c.truncate(1);
        assert_eq!(c.len(), 1);
        assert_eq!(c.layers[1].k.len(), 3);
        assert_eq!(c.layers[1].v.len(), 2);
        assert!(!c.is_empty());
        c.truncate(0);
        assert!(c.is_empty());
    }
}
