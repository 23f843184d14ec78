//! Where a model file's bytes live. A memory map keeps load instant and shares pages with
//! the OS cache; a buffer is used where mapping is unavailable (wasm32) or for in-memory
//! data. Both GGUF and safetensors readers hand out zero-copy [`Bytes`] views into it.

use std::path::Path;
use std::sync::Arc;

use mote_tensor::Bytes;

enum Storage {
    #[cfg(feature = "mmap")]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Storage {
    fn as_ref(&self) -> &[u8] {
        match self {
            #[cfg(feature = "mmap")]
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// Map (or read) a whole file.
pub(crate) fn load(path: &Path) -> std::io::Result<Bytes> {
    let file = std::fs::File::open(path)?;
    #[cfg(feature = "mmap")]
    {
        // SAFETY: the map is read-only and private to this process. Like every mmap
        // reader (llama.cpp included) we rely on the file not being truncated by another
        // process while mapped; all offsets are checked against its length.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Bytes::new(Arc::new(Storage::Mapped(map))))
    }
    #[cfg(not(feature = "mmap"))]
    {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut file = file;
        file.read_to_end(&mut buf)?;
        Ok(owned(buf))
    }
}

pub(crate) fn owned(bytes: Vec<u8>) -> Bytes {
    Bytes::new(Arc::new(Storage::Owned(bytes)))
}
