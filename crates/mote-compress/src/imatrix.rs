//! Importance matrices: per weight tensor, the sum of squared inputs per column over
//! calibration tokens, and the number of tokens. Stored in llama.cpp's imatrix GGUF
//! layout (`<tensor>.in_sum2` [cols, 1] and `<tensor>.counts` [1, 1], both F32, plus
//! `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`), so llama-quantize
//! reads ours and we read theirs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use mote_file::{GgufFile, GgufWriter, MetaArray, MetaValue, TensorSpec};
use mote_model::MatmulObserver;
use mote_tensor::DType;

use crate::error::{CompressError, Result};
use crate::quantize::Importance;

const SUM2_SUFFIX: &str = ".in_sum2";
const COUNTS_SUFFIX: &str = ".counts";

/// Sums for one tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImatrixEntry {
    /// Σx² per input column (f64 while accumulating; stored as F32).
    pub sum2: Vec<f64>,
    /// Input rows seen.
    pub count: u64,
}

/// A whole importance matrix with its provenance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
}

impl Imatrix {
    /// Per-column importance (mean x²) for `quantize_row_weighted`; tensors seen zero
    /// times get all ones, as llama-quantize does.
    pub fn importance(&self) -> Importance {
        self.entries
            .iter()
            .map(|(name, e)| {
                let v = if e.count == 0 {
                    vec![1.0; e.sum2.len()]
                } else {
                    e.sum2.iter().map(|s| (s / e.count as f64) as f32).collect()
                };
                (name.clone(), v)
            })
            .collect()
    }

    /// Writes the llama.cpp imatrix GGUF layout.
    pub fn write(&self, path: &Path) -> Result<()> {
        let meta = vec![
            (
                "general.type".to_string(),
                MetaValue::String("imatrix".into()),
            ),
            (
                "imatrix.datasets".to_string(),
                MetaValue::Array(MetaArray::String(self.datasets.clone())),
            ),
            (
                "imatrix.chunk_count".to_string(),
                MetaValue::U32(self.chunk_count),
            ),
            (
                "imatrix.chunk_size".to_string(),
                MetaValue::U32(self.chunk_size),
            ),
        ];
        let mut specs = Vec::with_capacity(self.entries.len() * 2);
        for (name, e) in &self.entries {
            specs.push(TensorSpec {
                name: format!("{name}{SUM2_SUFFIX}"),
                dims: vec![e.sum2.len() as u64, 1],
                dtype: DType::F32,
            });
            specs.push(TensorSpec {
                name: format!("{name}{COUNTS_SUFFIX}"),
                dims: vec![1, 1],
                dtype: DType::F32,
            });
        }
        let mut w = GgufWriter::create(path, &meta, specs)?;
        for (name, e) in &self.entries {
            let sums: Vec<u8> = e
                .sum2
                .iter()
                .flat_map(|&s| (s as f32).to_le_bytes())
                .collect();
            w.write_tensor(&format!("{name}{SUM2_SUFFIX}"), &sums)?;
            w.write_tensor(
                &format!("{name}{COUNTS_SUFFIX}"),
                &(e.count as f32).to_le_bytes(),
            )?;
        }
        w.finish()?;
        Ok(())
    }

    /// Reads an imatrix GGUF (ours or llama-imatrix's). Tensors with several count
    /// rows (mixture-of-experts) are not supported.
    pub fn read(path: &Path) -> Result<Imatrix> {
        let file = GgufFile::open(path)?;
        let bad = |reason: String| CompressError::Invalid(format!("{}: {reason}", path.display()));
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let info = file
                .tensor(name)
                .ok_or_else(|| bad(format!("tensor {name:?} is missing")))?;
            if info.dtype != DType::F32 {
                return Err(bad(format!("tensor {name:?} is {}, not F32", info.dtype)));
            }
            Ok(file
                .tensor_bytes(info)
                .as_slice()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut entries = BTreeMap::new();
        for info in file.tensors() {
            let Some(name) = info.name.strip_suffix(SUM2_SUFFIX) else {
                continue;
            };
            let sums = f32s(&info.name)?;
            let counts = f32s(&format!("{name}{COUNTS_SUFFIX}"))?;
            if counts.len() != 1 {
                return Err(bad(format!(
                    "{name}: {} count rows (expert tensors are not supported)",
                    counts.len()
                )));
            }
            entries.insert(
                name.to_string(),
                ImatrixEntry {
                    sum2: sums.into_iter().map(f64::from).collect(),
                    count: counts[0].max(0.0).round() as u64,
                },
            );
        }
        if entries.is_empty() {
            return Err(bad("no `.in_sum2` tensors: not an imatrix file".into()));
        }
        let datasets = file
            .get_array("imatrix.datasets")?
            .and_then(|a| a.as_strings().map(<[String]>::to_vec))
            .unwrap_or_default();
        Ok(Imatrix {
            entries,
            datasets,
            chunk_count: file.get_u32("imatrix.chunk_count")?.unwrap_or(0),
            chunk_size: file.get_u32("imatrix.chunk_size")?.unwrap_or(0),
        })
    }
}

/// Accumulates Σx² per column for every `blk.*` weight (llama-imatrix leaves the output
/// matrix out by default; `with_output` keeps it).
pub struct ImatrixCollector {
    with_output: bool,
    sums: Mutex<HashMap<String, ImatrixEntry>>,
}

impl ImatrixCollector {
    pub fn new(with_output: bool) -> ImatrixCollector {
        ImatrixCollector {
            with_output,
            sums: Mutex::new(HashMap::new()),
        }
    }

    /// The sums collected so far.
    pub fn entries(&self) -> BTreeMap<String, ImatrixEntry> {
        let sums = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        sums.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl MatmulObserver for ImatrixCollector {
    fn observe(&self, weights: &[&str], x: &[f32], n: usize, cols: usize) {
        let wanted: Vec<&str> = weights
            .iter()
            .copied()
            .filter(|w| w.starts_with("blk.") || (self.with_output && *w == "output.weight"))
            .collect();
        if wanted.is_empty() || cols == 0 {
            return;
        }
        // One pass over the rows serves every tensor sharing this input.
        let mut local = vec![0f64; cols];
        for row in x.chunks_exact(cols).take(n) {
            for (acc, &v) in local.iter_mut().zip(row) {
                *acc += (v as f64) * (v as f64);
            }
        }
        let mut sums = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        for w in wanted {
            let e = sums.entry(w.to_string()).or_insert_with(|| ImatrixEntry {
                sum2: vec![0.0; cols],
                count: 0,
            });
            if e.sum2.len() != cols {
                continue;
            }
            e.sum2.iter_mut().zip(&local).for_each(|(a, b)| *a += b);
            e.count += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_and_round_trips() {
        let c = ImatrixCollector::new(false);
        c.observe(
            &[
                "blk.0.attn_q.weight",
                "blk.0.attn_k.weight",
                "output.weight",
            ],
            &[1.0, 2.0, 3.0, -1.0],
            2,
            2,
        );
        let entries = c.entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries["blk.0.attn_q.weight"].sum2, vec![10.0, 5.0]);
        assert_eq!(entries["blk.0.attn_k.weight"].count, 2);
        let m = Imatrix {
            entries,
            datasets: vec!["moby.txt".into()],
            chunk_count: 1,
            chunk_size: 2,
        };
        let dir = std::env::temp_dir().join(format!("mote-imatrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.gguf");
        m.write(&path).unwrap();
        let back = Imatrix::read(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.importance()["blk.0.attn_q.weight"], vec![5.0, 2.5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
