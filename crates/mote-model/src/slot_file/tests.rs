use super::*;

const MODEL: u64 = 0x1234_5678_9abc_def0;
const VOCAB: usize = 1000;

/// xorshift64*: deterministic noise without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn values(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect()
    }
}

/// A 3-layer cache of 2 heads of 32 (keys) and 64 (values) holding `n` random positions,
/// written in uneven chunks as prefill and decoding would.
fn filled(types: (KvPrecision, KvPrecision), n: usize, rng: &mut Rng) -> KvCache {
    let mut c = KvCache::new(3, 2, (32, 64), 200, types);
    let mut done = 0;
    while done < n {
        let step = (1 + rng.below(9)).min(n - done);
        for il in 0..3 {
            let k = rng.values(step * 2 * 32);
            let v = rng.values(step * 2 * 64);
            c.write(il, &k, &v, step);
        }
        c.commit(step);
        done += step;
    }
    c
}

fn save(c: &KvCache, tokens: &[u32], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let n = c.save_slot(MODEL, tokens, extra, &mut out).unwrap();
    assert_eq!(n as usize, out.len());
    out
}

fn tokens(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37) % VOCAB as u32).collect()
}

const TYPES: [(KvPrecision, KvPrecision); 4] = [
    (KvPrecision::F16, KvPrecision::F16),
    (KvPrecision::F32, KvPrecision::F32),
    (KvPrecision::Q8_0, KvPrecision::Q8_0),
    (KvPrecision::Q8_0, KvPrecision::F16),
];

#[test]
fn save_restore_save_is_byte_identical_and_keeps_going() {
    let mut rng = Rng(7);
    for types in TYPES {
        for n in [0, 1, 31, 33, 70] {
            let mut a = filled(types, n, &mut rng);
            let file = save(&a, &tokens(n), b"{\"x\":1}");
            let (k, v) = a.layer_bytes(n);
            let head = file.len() - 4 - 3 * (k + v);
            assert_eq!(head % 64, 0, "the keys and values start aligned");
            let mut b = KvCache::new(3, 2, (32, 64), 200, types);
            let r = b.restore_slot(MODEL, VOCAB, &file).unwrap();
            assert_eq!((r.tokens, &r.extra[..]), (tokens(n), &b"{\"x\":1}"[..]));
            assert_eq!(b.len(), n);
            assert_eq!(save(&b, &tokens(n), b"{\"x\":1}"), file, "{types:?} n={n}");
            // Both caches take more positions the same way.
            for il in 0..3 {
                let (k, v) = (rng.values(5 * 64), rng.values(5 * 128));
                a.write(il, &k, &v, 5);
                b.write(il, &k, &v, 5);
            }
            a.commit(5);
            b.commit(5);
            assert_eq!(save(&a, &tokens(n + 5), b""), save(&b, &tokens(n + 5), b""));
        }
    }
}

#[test]
fn a_prefix_of_the_cache_can_be_saved() {
    let mut rng = Rng(3);
    let a = filled((KvPrecision::F16, KvPrecision::F16), 40, &mut rng);
    let mut short = a.clone();
    short.truncate(25);
    assert_eq!(save(&a, &tokens(25), b""), save(&short, &tokens(25), b""));
    let mut out = Vec::new();
    assert!(matches!(
        a.save_slot(MODEL, &tokens(41), b"", &mut out),
        Err(SlotFileError::NotCached {
            tokens: 41,
            cached: 40
        })
    ));
}

/// Restores `file` into a cache already holding other positions: must fail, and leave
/// the cache exactly as it was.
fn refused(file: &[u8], types: (KvPrecision, KvPrecision)) -> SlotFileError {
    let mut rng = Rng(99);
    let mut c = filled(types, 12, &mut rng);
    let before = save(&c, &tokens(12), b"");
    let err = c.restore_slot(MODEL, VOCAB, file).unwrap_err();
    assert_eq!(save(&c, &tokens(12), b""), before, "cache changed by {err}");
    err
}

#[test]
fn mismatches_are_named() {
    let mut rng = Rng(5);
    let f16 = (KvPrecision::F16, KvPrecision::F16);
    let c = filled(f16, 20, &mut rng);
    let file = save(&c, &tokens(20), b"");

    let err = refused(&file, (KvPrecision::F32, KvPrecision::F32));
    assert!(matches!(err, SlotFileError::WrongCacheType { .. }), "{err}");
    assert!(err.to_string().contains("--cache-type-k f16"), "{err}");

    let mut other = Vec::new();
    c.save_slot(MODEL ^ 1, &tokens(20), b"", &mut other)
        .unwrap();
    assert!(matches!(
        refused(&other, f16),
        SlotFileError::WrongModel { .. }
    ));

    let mut bumped = file.clone();
    bumped[8] = 2;
    assert!(matches!(
        refused(&bumped, f16),
        SlotFileError::Version { found: 2 }
    ));

    let mut wide = KvCache::new(3, 2, (32, 64), 10, f16);
    assert!(matches!(
        wide.restore_slot(MODEL, VOCAB, &file),
        Err(SlotFileError::TooLong {
            tokens: 20,
            capacity: 10
        })
    ));
    let mut shaped = KvCache::new(4, 2, (32, 64), 200, f16);
    assert!(matches!(
        shaped.restore_slot(MODEL, VOCAB, &file),
        Err(SlotFileError::WrongShape { .. })
    ));
    let bad_tokens = save(&c, &[5, 4000, 6], b"");
    assert!(matches!(
        refused(&bad_tokens, f16),
        SlotFileError::TokenOutOfRange { token: 4000, .. }
    ));
    assert!(matches!(
        refused(&file[..file.len() - 1], f16),
        SlotFileError::Size { .. }
    ));
    assert!(matches!(
        refused(b"GGUF", f16),
        SlotFileError::TooShort { .. }
    ));
    let mut magic = file.clone();
    magic[0] = b'X';
    assert!(matches!(refused(&magic, f16), SlotFileError::BadMagic));
}

#[test]
fn random_corruptions_are_refused_without_a_panic() {
    let mut rng = Rng(11);
    for types in TYPES {
        let c = filled(types, 17, &mut rng);
        let file = save(&c, &tokens(17), b"extra");
        for _ in 0..300 {
            let mut bad = file.clone();
            match rng.below(4) {
                // One to four bytes changed anywhere.
                0 | 1 => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(bad.len());
                        bad[at] ^= 1 + rng.below(255) as u8;
                    }
                }
                // Cut short, or grown.
                2 => bad.truncate(rng.below(file.len())),
                _ => bad.extend((0..1 + rng.below(100)).map(|_| rng.next() as u8)),
            }
            refused(&bad, types);
        }
        // Headers that claim huge sizes, with a valid checksum.
        for _ in 0..100 {
            let mut bad = file[..HEADER_BYTES].to_vec();
            let at = 24 + 4 * rng.below(8);
            bad[at..at + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
            let crc = crc32fast::hash(&bad);
            bad.extend_from_slice(&crc.to_le_bytes());
            refused(&bad, types);
        }
    }
}
