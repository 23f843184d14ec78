//! Reference distributions for KL divergence: a run of the reference model stores, for
//! every scored position, its top-k log-probabilities plus the probability mass of all
//! other tokens; a later run of a compressed model compares its own distributions with
//! them.
//!
//! Keeping only the top k is what makes the file small (k = 64 costs ~0.5 KB a position
//! where a full f16 row of a 262k vocabulary costs 0.5 MB). Folding the remaining tokens
//! into one "tail" outcome gives KL over a coarser distribution, which is a lower bound
//! of the exact KL and, with the tail holding little mass, very close to it. Setting k to
//! the vocabulary size stores everything and gives the exact value.
//!
//! File layout (little-endian): magic `MOTEKL01`; u32 top_k, vocab, ctx, chunks, first
//! (first scored position), n_tokens; n_tokens u32 tokens (the evaluated text, so a
//! comparison run can check it sees the same tokens); then per scored position:
//! f32 nll of the true next token, f32 ln(tail mass) (−inf when none), and top_k pairs
//! (u32 token id, f32 log-prob), most likely first.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{CompressError, Result};
use crate::perplexity::NllStats;

const MAGIC: &[u8; 8] = b"MOTEKL01";
/// Upper bound on what a header may claim, so a damaged file cannot make us allocate
/// without limit.
const MAX_TOKENS: usize = 1 << 28;

/// Default number of reference log-probs kept per position.
pub const DEFAULT_TOP_K: usize = 64;

/// Writes a reference file to a temporary name and renames it on [`KlWriter::finish`].
pub struct KlWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    top_k: usize,
    order: Vec<u32>,
    done: bool,
}

impl KlWriter {
    pub fn create(path: &Path, top_k: usize) -> Result<KlWriter> {
        if top_k == 0 {
            return Err(CompressError::Invalid(
                "--kl-top-k must be at least 1".into(),
            ));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).map_err(|source| CompressError::Write {
            path: tmp.clone(),
            source,
        })?;
        Ok(KlWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            top_k,
            order: Vec::new(),
            done: false,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let tmp = &self.tmp;
        match self.out.as_mut() {
            Some(out) => out.write_all(bytes).map_err(|source| CompressError::Write {
                path: tmp.clone(),
                source,
            }),
            None => Err(CompressError::Invalid("KL writer already finished".into())),
        }
    }

    pub(crate) fn begin(
        &mut self,
        vocab: usize,
        ctx: usize,
        chunks: usize,
        first: usize,
        tokens: &[u32],
    ) -> Result<()> {
        self.top_k = self.top_k.min(vocab);
        let mut header = Vec::with_capacity(32 + tokens.len() * 4);
        header.extend_from_slice(MAGIC);
        for v in [self.top_k, vocab, ctx, chunks, first, tokens.len()] {
            let v = u32::try_from(v)
                .map_err(|_| CompressError::Invalid(format!("{v} does not fit the KL file")))?;
            header.extend_from_slice(&v.to_le_bytes());
        }
        for t in tokens {
            header.extend_from_slice(&t.to_le_bytes());
        }
        self.put(&header)
    }

    pub(crate) fn record(&mut self, row: &[f32], lse: f64, nll: f64) -> Result<()> {
        let k = self.top_k.min(row.len());
        self.order.clear();
        self.order.extend(0..row.len() as u32);
        let by_logit_desc = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
        if k < row.len() {
            self.order.select_nth_unstable_by(k, by_logit_desc);
        }
        self.order.truncate(k);
        self.order.sort_unstable_by(by_logit_desc);
        let kept: f64 = self
            .order
            .iter()
            .map(|&i| (row[i as usize] as f64 - lse).exp())
            .sum();
        let tail = (1.0 - kept).max(0.0);
        let ln_tail = if tail > 0.0 {
            tail.ln()
        } else {
            f64::NEG_INFINITY
        };
        let mut rec = Vec::with_capacity(8 + 8 * k);
        rec.extend_from_slice(&(nll as f32).to_le_bytes());
        rec.extend_from_slice(&(ln_tail as f32).to_le_bytes());
        for &i in &self.order {
            rec.extend_from_slice(&i.to_le_bytes());
            rec.extend_from_slice(&((row[i as usize] as f64 - lse) as f32).to_le_bytes());
        }
        self.put(&rec)
    }

    pub(crate) fn finish(&mut self) -> Result<()> {
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let werr = |path: &Path, source| CompressError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = out
            .into_inner()
            .map_err(|e| werr(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| werr(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| werr(&self.path, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for KlWriter {
    fn drop(&mut self) {
        if !self.done {
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Divergence of a run from the reference.
#[derive(Clone, Debug, Serialize)]
pub struct KlStats {
    pub positions: usize,
    pub mean_kl: f64,
    pub kl_error: f64,
    pub median_kl: f64,
    pub p99_kl: f64,
    pub max_kl: f64,
    /// Fraction of positions where both models rank the same token first.
    pub top1_agreement: f64,
    pub base_ppl: f64,
    pub base_ppl_error: f64,
    /// This run's PPL minus the reference's, on the same tokens.
    pub delta_ppl: f64,
    /// Mean of ln(p_base(token) / p_this(token)) = ln(PPL / PPL_base).
    pub mean_ln_ppl_ratio: f64,
}

/// Reads a reference file record by record while a run compares against it.
pub struct KlReader {
    path: PathBuf,
    input: BufReader<File>,
    top_k: usize,
    vocab: usize,
    ctx: usize,
    chunks: usize,
    first: usize,
    tokens: Vec<u32>,
    record: Vec<u8>,
    kls: Vec<f64>,
    top1_same: usize,
    base: NllStats,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i * 4..i * 4 + 4]);
    u32::from_le_bytes(w)
}

impl KlReader {
    pub fn open(path: &Path) -> Result<KlReader> {
        let file = File::open(path).map_err(|source| CompressError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let bad = |reason: &str| CompressError::KlBase {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut head = [0u8; 32];
        input
            .read_exact(&mut head)
            .map_err(|_| bad("too short for a header"))?;
        if &head[..8] != MAGIC {
            return Err(bad("not a mote KL reference file (bad magic)"));
        }
        let field = |i| u32_at(&head[8..], i) as usize;
        let (top_k, vocab, ctx, chunks, first, n_tokens) =
            (field(0), field(1), field(2), field(3), field(4), field(5));
        if top_k == 0 || top_k > vocab || n_tokens > MAX_TOKENS || first >= ctx {
            return Err(bad("header values are inconsistent"));
        }
        if chunks.checked_mul(ctx) != Some(n_tokens) {
            return Err(bad("token count does not match chunks x ctx"));
        }
        let mut raw = vec![0u8; n_tokens * 4];
        input
            .read_exact(&mut raw)
            .map_err(|_| bad("truncated token list"))?;
        let tokens = (0..n_tokens).map(|i| u32_at(&raw, i)).collect();
        Ok(KlReader {
            path: path.to_path_buf(),
            input,
            top_k,
            vocab,
            ctx,
            chunks,
            first,
            tokens,
            record: vec![0u8; 8 + 8 * top_k],
            kls: Vec::new(),
            top1_same: 0,
            base: NllStats::default(),
        })
    }

    /// Context size and chunk count the reference was made with, so a comparison run
    /// can default to them.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    pub fn chunks(&self) -> usize {
        self.chunks
    }

    fn bad(&self, reason: String) -> CompressError {
        CompressError::KlBase {
            path: self.path.clone(),
            reason,
        }
    }

    pub(crate) fn check(
        &mut self,
        vocab: usize,
        ctx: usize,
        chunks: usize,
        first: usize,
        tokens: &[u32],
    ) -> Result<()> {
        if vocab != self.vocab {
            return Err(self.bad(format!(
                "reference vocabulary has {} tokens, this model {vocab}",
                self.vocab
            )));
        }
        if ctx != self.ctx || first != self.first || chunks != self.chunks {
            return Err(self.bad(format!(
                "reference used ctx {} x {} chunks; this run ctx {ctx} x {chunks} chunks \
                 (use the same -c and --chunks)",
                self.ctx, self.chunks
            )));
        }
        if tokens != self.tokens.as_slice() {
            return Err(
                self.bad("the text tokenizes differently (different text or tokenizer)".into())
            );
        }
        Ok(())
    }

    pub(crate) fn compare(&mut self, row: &[f32], lse: f64, nll: f64) -> Result<()> {
        let _ = nll;
        if self.input.read_exact(&mut self.record).is_err() {
            return Err(self.bad("ends before the run does (truncated?)".into()));
        }
        let rec = &self.record;
        let base_nll = f32::from_bits(u32_at(rec, 0)) as f64;
        let ln_tail = f32::from_bits(u32_at(rec, 1)) as f64;
        self.base.add(base_nll);
        let mut kl = 0.0f64;
        let mut q_kept = 0.0f64;
        let mut top_id = None;
        for j in 0..self.top_k {
            let id = u32_at(&rec[8..], 2 * j) as usize;
            let logp = f32::from_bits(u32_at(&rec[8..], 2 * j + 1)) as f64;
            let Some(&logit) = row.get(id) else {
                return Err(self.bad(format!("token id {id} is outside the vocabulary")));
            };
            let logq = logit as f64 - lse;
            kl += logp.exp() * (logp - logq);
            q_kept += logq.exp();
            if j == 0 {
                top_id = Some(id);
            }
        }
        if ln_tail.is_finite() {
            let q_tail = (1.0 - q_kept).max(1e-30);
            kl += ln_tail.exp() * (ln_tail - q_tail.ln());
        }
        self.kls.push(kl.max(0.0));
        let argmax = row
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 {
                    (i, l)
                } else {
                    best
                }
            })
            .0;
        if top_id == Some(argmax) {
            self.top1_same += 1;
        }
        Ok(())
    }

    pub(crate) fn stats(&mut self, run: &NllStats) -> KlStats {
        let n = self.kls.len().max(1) as f64;
        let mean = self.kls.iter().sum::<f64>() / n;
        let var = self.kls.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let mut sorted = self.kls.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if sorted.is_empty() {
                f64::NAN
            } else {
                sorted[((sorted.len() - 1) as f64 * q).round() as usize]
            }
        };
        KlStats {
            positions: self.kls.len(),
            mean_kl: mean,
            kl_error: (var / n).sqrt(),
            median_kl: pick(0.5),
            p99_kl: pick(0.99),
            max_kl: pick(1.0),
            top1_agreement: self.top1_same as f64 / n,
            base_ppl: self.base.ppl(),
            base_ppl_error: self.base.ppl_error(),
            delta_ppl: run.ppl() - self.base.ppl(),
            mean_ln_ppl_ratio: run.mean() - self.base.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perplexity::log_sum_exp;

    fn lse(row: &[f32]) -> f64 {
        log_sum_exp(row)
    }

    #[test]
    fn identical_distributions_have_zero_kl_and_full_agreement() {
        let dir = std::env::temp_dir().join(format!("mote-kl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("same.kl");
        let rows = [
            vec![1.0f32, 2.0, 0.5, -1.0, 3.0],
            vec![0.0f32, 0.0, 5.0, 1.0, 2.0],
        ];
        let tokens = [1u32, 2, 3, 4];
        let mut w = KlWriter::create(&path, 2).unwrap();
        w.begin(5, 4, 1, 2, &tokens).unwrap();
        for r in &rows {
            w.record(r, lse(r), 0.7).unwrap();
        }
        w.finish().unwrap();

        let mut rd = KlReader::open(&path).unwrap();
        rd.check(5, 4, 1, 2, &tokens).unwrap();
        assert!(rd.check(5, 4, 1, 2, &[1, 2, 3, 5]).is_err());
        let mut run = NllStats::default();
        for r in &rows {
            rd.compare(r, lse(r), 0.7).unwrap();
            run.add(0.7);
        }
        let s = rd.stats(&run);
        assert!(s.mean_kl.abs() < 1e-6, "{}", s.mean_kl);
        assert_eq!(s.top1_agreement, 1.0);
        assert!(s.delta_ppl.abs() < 1e-6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_top_k_gives_exact_kl() {
        let dir = std::env::temp_dir().join(format!("mote-kl2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("exact.kl");
        let p = [0.0f32, 1.0, 2.0];
        let q = [2.0f32, 1.0, 0.0];
        let mut w = KlWriter::create(&path, 3).unwrap();
        w.begin(3, 4, 1, 2, &[0, 1, 2, 0]).unwrap();
        w.record(&p, lse(&p), 1.0).unwrap();
        w.finish().unwrap();
        let mut rd = KlReader::open(&path).unwrap();
        rd.compare(&q, lse(&q), 1.0).unwrap();
        let (lp, lq) = (lse(&p), lse(&q));
        let want: f64 = (0..3)
            .map(|i| {
                let a = p[i] as f64 - lp;
                let b = q[i] as f64 - lq;
                a.exp() * (a - b)
            })
            .sum();
        let mut run = NllStats::default();
        run.add(1.0);
        let s = rd.stats(&run);
        assert!((s.mean_kl - want).abs() < 1e-5, "{} vs {want}", s.mean_kl);
        assert_eq!(s.top1_agreement, 0.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_rejected() {
        let dir = std::env::temp_dir().join(format!("mote-kl3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.kl");
        std::fs::write(&path, b"hello world, not a kl file at all....").unwrap();
        assert!(KlReader::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
