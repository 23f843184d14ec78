//! Slot files: the keys and values of a [`KvCache`], the token ids they belong to and the
//! identity of the model that computed them, as one checksummed byte string.
//!
//! Layout (version 1, all integers little-endian; documented in docs/context.md, "Slot
//! files"):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `MOTE-KV\n` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | flags (0) |
//! | 16 | 8 | model identity ([`crate::Model::identity`]) |
//! | 24 | 16 | layers, K/V heads, key head size, value head size (u32 each) |
//! | 40 | 8 | key and value cache types (ggml type ids: 0 f32, 1 f16, 8 q8_0; u32 each) |
//! | 48 | 8 | positions `n` and extra bytes `e` (u32 each) |
//! | 56 | 4n | token ids (u32) |
//! | | e | extra: the application's bytes (a chat's messages, say) |
//! | | | zero padding to a multiple of 64 from the start |
//! | | | per layer: keys, then values, of the `n` positions (see below) |
//! | end-4 | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Keys are position-major rows (`n × heads × key row`), in the cache type's encoding (a
//! Q8_0 row is blocks of an f16 scale and 32 int8). F32/F16 values are transposed as in
//! the cache: one row of `n` values per (head, dimension); Q8_0 values are position-major
//! like keys. So a file holds exactly the bytes of the used part of the cache, at its size.
//!
//! Reading checks everything before touching the cache (length, magic, version, checksum,
//! model, shape, cache types, sizes, token ids, capacity), so a refused file leaves the
//! cache as it was.

use std::io::{self, Write};

use crate::cache::{KvCache, KvPrecision};

/// First bytes of every slot file.
pub const SLOT_MAGIC: [u8; 8] = *b"MOTE-KV\n";
/// The format version written and the only one read.
pub const SLOT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 56;
const ALIGN: usize = 64;

/// Why a slot file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SlotFileError {
    #[error("not a slot file: {len} bytes is shorter than the {min}-byte header", min = HEADER_BYTES + 4)]
    TooShort { len: usize },
    #[error("not a slot file (the first bytes are not \"MOTE-KV\")")]
    BadMagic,
    #[error("slot file format version {found}; this build reads version {v} only", v = SLOT_VERSION)]
    Version { found: u32 },
    #[error("the slot file is truncated or has extra bytes: {actual} bytes, its header describes {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("the slot file is corrupt: checksum {stored:08x} stored, {computed:08x} computed")]
    Checksum { stored: u32, computed: u32 },
    #[error("the slot file was saved by another model (identity {file:016x}, this model is {model:016x})")]
    WrongModel { file: u64, model: u64 },
    #[error("the slot file's cache shape does not match this model: {what} is {file} in the file, {model} here")]
    WrongShape {
        what: &'static str,
        file: u32,
        model: usize,
    },
    #[error("unknown cache type id {0} in the slot file")]
    UnknownCacheType(u32),
    #[error("the slot file holds a {file_k}/{file_v} cache (K/V) but this one is {cache_k}/{cache_v}; start with --cache-type-k {file_k} --cache-type-v {file_v} to restore it")]
    WrongCacheType {
        file_k: KvPrecision,
        file_v: KvPrecision,
        cache_k: KvPrecision,
        cache_v: KvPrecision,
    },
    #[error("the slot file holds {tokens} positions but the context holds {capacity}")]
    TooLong { tokens: usize, capacity: usize },
    #[error("token id {token} in the slot file is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange { token: u32, vocab_size: usize },
    #[error("unsupported slot file flags {0:#x}")]
    Flags(u32),
    #[error("cannot save {tokens} tokens: the cache holds {cached} positions")]
    NotCached { tokens: usize, cached: usize },
    #[error("slot file: {0}")]
    Io(#[from] io::Error),
}

/// What a slot file held besides the keys and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The token ids of the restored positions, in order.
    pub tokens: Vec<u32>,
    /// The application's bytes saved with them.
    pub extra: Vec<u8>,
}

fn type_id(p: KvPrecision) -> u32 {
    match p {
        KvPrecision::F32 => 0,
        KvPrecision::F16 => 1,
        KvPrecision::Q8_0 => 8,
    }
}

fn type_of(id: u32) -> Result<KvPrecision, SlotFileError> {
    KvPrecision::ALL
        .into_iter()
        .find(|&p| type_id(p) == id)
        .ok_or(SlotFileError::UnknownCacheType(id))
}

/// Padding after `len` bytes to the next multiple of [`ALIGN`].
fn pad(len: usize) -> usize {
    (ALIGN - len % ALIGN) % ALIGN
}

/// A writer that counts bytes and keeps a CRC-32 of them.
struct Summed<'a, W: Write> {
    out: &'a mut W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Summed<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.written += bytes.len() as u64;
        self.out.write_all(bytes)
    }
}

/// Bytes of one layer's keys and values for `n` positions of `heads` K/V heads of sizes
/// `dims` stored as `types` (values transposed or not, the sizes are the same).
fn layer_bytes(
    heads: usize,
    dims: (usize, usize),
    types: (KvPrecision, KvPrecision),
    n: usize,
) -> (usize, usize) {
    (
        n * heads * types.0.bytes_for(dims.0),
        n * heads * types.1.bytes_for(dims.1),
    )
}

impl KvCache {
    fn layer_bytes(&self, n: usize) -> (usize, usize) {
        let dims = (self.head_dim_k, self.head_dim_v);
        layer_bytes(self.n_head_kv, dims, (self.k_type, self.v_type), n)
    }

    /// Writes the first `tokens.len()` positions (their keys and values, and `tokens`
    /// themselves) with `extra` as a slot file for a model of identity `model`. Returns
    /// the bytes written.
    pub fn save_slot(
        &self,
        model: u64,
        tokens: &[u32],
        extra: &[u8],
        out: &mut impl Write,
    ) -> Result<u64, SlotFileError> {
        let n = tokens.len();
        if n > self.len() {
            return Err(SlotFileError::NotCached {
                tokens: n,
                cached: self.len(),
            });
        }
        let too_big = |what: &str| io::Error::other(format!("{what} does not fit a slot file"));
        let n32 = u32::try_from(n).map_err(|_| too_big("the position count"))?;
        let e32 = u32::try_from(extra.len()).map_err(|_| too_big("the extra data"))?;
        let mut w = Summed {
            out,
            crc: crc32fast::Hasher::new(),
            written: 0,
        };
        let mut head = Vec::with_capacity(HEADER_BYTES + 4 * n + extra.len() + ALIGN);
        head.extend_from_slice(&SLOT_MAGIC);
        for v in [SLOT_VERSION, 0] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(&model.to_le_bytes());
        let shape = [
            self.layers.len(),
            self.n_head_kv,
            self.head_dim_k,
            self.head_dim_v,
        ];
        for d in shape {
            let d = u32::try_from(d).map_err(|_| too_big("the cache shape"))?;
            head.extend_from_slice(&d.to_le_bytes());
        }
        for v in [type_id(self.k_type), type_id(self.v_type), n32, e32] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend(tokens.iter().flat_map(|t| t.to_le_bytes()));
        head.extend_from_slice(extra);
        head.resize(head.len() + pad(head.len()), 0);
        w.put(&head)?;
        let (k_bytes, _) = self.layer_bytes(n);
        let eb = self.v_type.bytes_for(1);
        for layer in &self.layers {
            if n == 0 {
                break;
            }
            w.put(&layer.k[..k_bytes])?;
            if self.v_transposed() {
                for row in layer.v.chunks_exact(layer.v_slots * eb) {
                    w.put(&row[..n * eb])?;
                }
            } else {
                w.put(&layer.v[..n * self.n_head_kv * self.v_row_bytes()])?;
            }
        }
        let crc = w.crc.clone().finalize();
        w.out.write_all(&crc.to_le_bytes())?;
        Ok(w.written + 4)
    }

    /// Replaces this cache's contents with a slot file's, after checking that the file is
    /// whole, uncorrupted, from model `model` (identity), of this cache's shape and types,
    /// and fits. On any error the cache is left as it was.
    pub fn restore_slot(
        &mut self,
        model: u64,
        vocab_size: usize,
        bytes: &[u8],
    ) -> Result<Restored, SlotFileError> {
        let len = bytes.len();
        if len < HEADER_BYTES + 4 {
            return Err(SlotFileError::TooShort { len });
        }
        if bytes[..8] != SLOT_MAGIC {
            return Err(SlotFileError::BadMagic);
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let version = u32_at(8);
        if version != SLOT_VERSION {
            return Err(SlotFileError::Version { found: version });
        }
        let (n, e) = (u32_at(48) as usize, u32_at(52) as usize);
        let types = (type_of(u32_at(40))?, type_of(u32_at(44))?);
        // The size the header describes, in u64 so no count can overflow it.
        let per_layer = {
            let (k, v) = layer_bytes(self.n_head_kv, (self.head_dim_k, self.head_dim_v), types, 1);
            (k + v) as u64
        };
        let head = HEADER_BYTES as u64 + 4 * n as u64 + e as u64;
        let head_padded = head + pad((head % ALIGN as u64) as usize) as u64;
        let shape_ok = u32_at(24) as usize == self.layers.len()
            && u32_at(28) as usize == self.n_head_kv
            && u32_at(32) as usize == self.head_dim_k
            && u32_at(36) as usize == self.head_dim_v;
        if shape_ok {
            let expected = (per_layer.saturating_mul(n as u64))
                .saturating_mul(self.layers.len() as u64)
                .saturating_add(head_padded + 4);
            if expected != len as u64 {
                return Err(SlotFileError::Size {
                    expected,
                    actual: len as u64,
                });
            }
        }
        let stored = u32_at(len - 4);
        let computed = crc32fast::hash(&bytes[..len - 4]);
        if stored != computed {
            return Err(SlotFileError::Checksum { stored, computed });
        }
        let flags = u32_at(12);
        if flags != 0 {
            return Err(SlotFileError::Flags(flags));
        }
        let file_model = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
        if file_model != model {
            return Err(SlotFileError::WrongModel {
                file: file_model,
                model,
            });
        }
        let dims = [
            ("the layer count", self.layers.len()),
            ("the K/V head count", self.n_head_kv),
            ("the key head size", self.head_dim_k),
            ("the value head size", self.head_dim_v),
        ];
        for (i, (what, here)) in dims.into_iter().enumerate() {
            let file = u32_at(24 + 4 * i);
            if file as usize != here {
                return Err(SlotFileError::WrongShape {
                    what,
                    file,
                    model: here,
                });
            }
        }
        if types != (self.k_type, self.v_type) {
            return Err(SlotFileError::WrongCacheType {
                file_k: types.0,
                file_v: types.1,
                cache_k: self.k_type,
                cache_v: self.v_type,
            });
        }
        if n > self.capacity() {
            return Err(SlotFileError::TooLong {
                tokens: n,
                capacity: self.capacity(),
            });
        }
        // Sizes were checked above, so every slice below is in bounds.
        let tokens: Vec<u32> = (0..n).map(|i| u32_at(HEADER_BYTES + 4 * i)).collect();
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab_size) {
            return Err(SlotFileError::TokenOutOfRange { token, vocab_size });
        }
        let extra_at = HEADER_BYTES + 4 * n;
        let extra = bytes[extra_at..extra_at + e].to_vec();
        self.fill(n, &bytes[head_padded as usize..len - 4]);
        Ok(Restored { tokens, extra })
    }

    /// Sets the cache to the `n` positions of `data` (the checked per-layer sections).
    fn fill(&mut self, n: usize, data: &[u8]) {
        self.truncate(0);
        if n == 0 {
            return;
        }
        let (k_bytes, v_bytes) = self.layer_bytes(n);
        let transposed = self.v_transposed();
        let eb = self.v_type.bytes_for(1);
        let rows = self.n_head_kv * self.head_dim_v;
        // Room for the positions that will follow, as `write` would have grown it.
        let slots = n.max(32).min(self.capacity().max(n));
        for (layer, section) in self
            .layers
            .iter_mut()
            .zip(data.chunks_exact(k_bytes + v_bytes))
        {
            let (k, v) = section.split_at(k_bytes);
            layer.k.clear();
            layer.k.extend_from_slice(k);
            if !transposed {
                layer.v.clear();
                layer.v.extend_from_slice(v);
                continue;
            }
            layer.v = vec![0u8; rows * slots * eb];
            layer.v_slots = slots;
            for (dst, src) in layer
                .v
                .chunks_exact_mut(slots * eb)
                .zip(v.chunks_exact(n * eb))
            {
                dst[..n * eb].copy_from_slice(src);
            }
        }
        self.commit(n);
    }
}

#[cfg(test)]
mod tests;
