//! Reading the folder's JSON files with typed errors for missing or mistyped fields.

use std::path::Path;

use serde_json::{Map, Value};

use super::HfError;

/// Reads and parses `dir/name`; `Ok(None)` when the file does not exist.
pub(crate) fn read_optional(dir: &Path, name: &str) -> Result<Option<Value>, HfError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|source| HfError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| HfError::Json {
            path,
            message: e.to_string(),
        })
}

/// Like [`read_optional`], but the file must exist.
pub(crate) fn read_required(dir: &Path, name: &'static str) -> Result<Value, HfError> {
    read_optional(dir, name)?.ok_or_else(|| HfError::MissingFile(dir.to_path_buf(), name))
}

/// A JSON object together with the file it came from, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub file: &'static str,
    pub map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    pub fn new(file: &'static str, value: &'a Value) -> Result<Obj<'a>, HfError> {
        match value {
            Value::Object(map) => Ok(Obj { file, map }),
            _ => Err(HfError::BadField {
                file,
                field: String::new(),
                problem: "is not a JSON object".into(),
            }),
        }
    }

    fn bad(&self, key: &str, problem: &str) -> HfError {
        HfError::BadField {
            file: self.file,
            field: key.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The value of `key`, treating JSON `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                file: self.file,
                map,
            })),
            Some(_) => Err(self.bad(key, "is not an object")),
        }
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| self.bad(key, "is not a non-negative integer")),
        }
    }

    pub fn req_usize(&self, key: &str) -> Result<usize, HfError> {
        self.usize(key)?.ok_or_else(|| HfError::MissingField {
            file: self.file,
            field: key.to_string(),
        })
    }

    /// The first of `keys` that is present.
    pub fn usize_any(&self, keys: &[&str]) -> Result<Option<usize>, HfError> {
        for k in keys {
            if let Some(v) = self.usize(k)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.bad(key, "is not a finite number")),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(key, "is not a string")),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, HfError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.bad(key, "is not a boolean")),
        }
    }
}
