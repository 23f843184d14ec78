//! Checkpoints: every tensor, the optimizer's moments, the step and the generator
//! state, so that a resumed run continues bit for bit. Little-endian binary, written
//! to a temporary name and renamed.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::adamw::AdamState;
use crate::params::Params;
use crate::rng::Rng;
use crate::TrainError;

const MAGIC: &[u8; 8] = b"MOTECKP1";

pub struct Checkpoint {
    pub step: usize,
    pub rng: Rng,
    pub adam: AdamState,
}

fn io(what: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(format!("checkpoint {}", what.display()), e)
}

fn put_f32s(w: &mut impl Write, v: &[f32]) -> std::io::Result<()> {
    w.write_all(&(v.len() as u64).to_le_bytes())?;
    for x in v {
        w.write_all(&x.to_le_bytes())?;
    }
    Ok(())
}

/// Writes `path` atomically.
pub fn save(path: &Path, p: &Params, ck: &Checkpoint) -> Result<(), TrainError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(MAGIC)?;
        w.write_all(&(ck.step as u64).to_le_bytes())?;
        for s in ck.rng.state() {
            w.write_all(&s.to_le_bytes())?;
        }
        w.write_all(&(ck.adam.step as u64).to_le_bytes())?;
        w.write_all(&(p.tensors.len() as u32).to_le_bytes())?;
        for (i, t) in p.tensors.iter().enumerate() {
            w.write_all(&(t.name.len() as u32).to_le_bytes())?;
            w.write_all(t.name.as_bytes())?;
            put_f32s(&mut w, &t.data)?;
            put_f32s(&mut w, &ck.adam.m[i])?;
            put_f32s(&mut w, &ck.adam.v[i])?;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

struct Reader<R: Read> {
    r: R,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn f32s(&mut self, expect: usize, what: &str) -> Result<Vec<f32>, TrainError> {
        let n = self.u64().map_err(|e| TrainError::Io(what.into(), e))? as usize;
        if n != expect {
            return Err(TrainError::Invalid(format!(
                "{what}: {n} values, the model has {expect}"
            )));
        }
        let mut buf = vec![0u8; n * 4];
        self.r
            .read_exact(&mut buf)
            .map_err(|e| TrainError::Io(what.into(), e))?;
        Ok(buf
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

/// Reads a checkpoint into `p` (whose tensors must have the same names and sizes) and
/// returns the rest of the state; `trainable` says which tensors have moments.
pub fn load(path: &Path, p: &mut Params, trainable: &[bool]) -> Result<Checkpoint, TrainError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut r = Reader {
        r: BufReader::with_capacity(1 << 20, f),
    };
    let head = || format!("checkpoint {}", path.display());
    let magic: [u8; 8] = r.bytes().map_err(io(path))?;
    if &magic != MAGIC {
        return Err(TrainError::Invalid(format!(
            "{} is not a mote checkpoint",
            head()
        )));
    }
    let step = r.u64().map_err(io(path))? as usize;
    let mut s = [0u64; 4];
    for v in &mut s {
        *v = r.u64().map_err(io(path))?;
    }
    let adam_step = r.u64().map_err(io(path))? as usize;
    let count = r.u32().map_err(io(path))? as usize;
    if count != p.tensors.len() {
        return Err(TrainError::Invalid(format!(
            "{}: {count} tensors, the model has {}",
            head(),
            p.tensors.len()
        )));
    }
    let mut adam = AdamState {
        step: adam_step,
        m: Vec::with_capacity(count),
        v: Vec::with_capacity(count),
    };
    for (t, &on) in p.tensors.iter_mut().zip(trainable) {
        let len = r.u32().map_err(io(path))? as usize;
        if len > 4096 {
            return Err(TrainError::Invalid(format!(
                "{}: corrupt tensor name",
                head()
            )));
        }
        let mut name = vec![0u8; len];
        r.r.read_exact(&mut name).map_err(io(path))?;
        if name != t.name.as_bytes() {
            return Err(TrainError::Invalid(format!(
                "{}: tensor {:?} where the model has {:?}",
                head(),
                String::from_utf8_lossy(&name),
                t.name
            )));
        }
        let what = format!("{}: {}", head(), t.name);
        t.data = r.f32s(t.data.len(), &what)?;
        let moments = if on { t.data.len() } else { 0 };
        // A checkpoint of a run that trained other tensors cannot resume this one.
        adam.m
            .push(r.f32s(moments, &format!("{what} (first moments)"))?);
        adam.v
            .push(r.f32s(moments, &format!("{what} (second moments)"))?);
    }
    Ok(Checkpoint {
        step,
        rng: Rng::from_state(s),
        adam,
    })
}
