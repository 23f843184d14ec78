//! The output folder, built under a hidden temporary name next to the destination and
//! renamed into place when complete; dropped without [`StagedDir::commit`], it is removed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ConvertError, Result};
use crate::export::ExportedFile;

pub struct StagedDir {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// `dir/.name.tag-pid`, beside `dest`.
fn sibling(dest: &Path, tag: &str) -> Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| ConvertError::Invalid(format!("{}: not a folder name", dest.display())))?;
    let hidden = format!(".{}.{tag}-{}", name.to_string_lossy(), std::process::id());
    Ok(dest.with_file_name(hidden))
}

impl StagedDir {
    pub fn new(dest: &Path) -> Result<StagedDir> {
        if dest.is_file() {
            return Err(ConvertError::Invalid(format!(
                "{} is a file; export writes a folder",
                dest.display()
            )));
        }
        let tmp = sibling(dest, "tmp")?;
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(write_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(write_err(&tmp))?;
        Ok(StagedDir {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// Where the file `name` of the output is written for now.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Writes a whole small file.
    pub fn write(&self, name: &str, data: &[u8]) -> Result<()> {
        let path = self.path(name);
        let mut f = fs::File::create(&path).map_err(write_err(&path))?;
        f.write_all(data).map_err(write_err(&path))
    }

    /// Writes a JSON file, pretty-printed, with a final newline.
    pub fn write_json(&self, name: &str, value: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string_pretty(value)
            .map_err(|e| ConvertError::Invalid(format!("{name}: {e}")))?;
        text.push('\n');
        self.write(name, text.as_bytes())
    }

    /// The files written so far, by name.
    pub fn files(&self) -> Result<Vec<ExportedFile>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.tmp).map_err(write_err(&self.tmp))? {
            let entry = entry.map_err(write_err(&self.tmp))?;
            let bytes = entry.metadata().map_err(write_err(&self.tmp))?.len();
            files.push(ExportedFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                bytes,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// Moves the folder into place, replacing an earlier export at the destination.
    pub fn commit(mut self) -> Result<()> {
        let old = sibling(&self.dest, "old")?;
        let replacing = self.dest.exists();
        if replacing {
            fs::rename(&self.dest, &old).map_err(write_err(&self.dest))?;
        }
        if let Err(source) = fs::rename(&self.tmp, &self.dest) {
            if replacing {
                // Put the earlier export back.
                let _ = fs::rename(&old, &self.dest);
            }
            return Err(ConvertError::Write {
                path: self.dest.clone(),
                source,
            });
        }
        self.committed = true;
        if replacing {
            fs::remove_dir_all(&old).map_err(write_err(&old))?;
        }
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}
