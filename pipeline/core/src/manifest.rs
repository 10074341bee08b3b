//! A stage's manifest (`<work-dir>/<stage>/manifest.json`): what went in, what came out.
//!
//! The **fingerprint** is sha256 over the canonical JSON of
//! `{stage, schema_version, config, inputs, external}`: the stage's own config section, the
//! fingerprints of the stages it reads, digests of files from outside the work dir (a corpus,
//! benchmark data, a user's prompt file) and the version of its output format. A stage is up to
//! date when its manifest's fingerprint equals the one computed now and its output files are
//! still what it wrote: same size, and same modification time or, when the time differs (a file
//! copied or touched), the same sha256.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::{digest_json, sha256_file};
use crate::error::{Error, IoContext, Result};
use crate::shard::ShardSpec;

pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the stage's output folder.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    /// Modification time when the stage published it (ns since the Unix epoch); absent in
    /// manifests of earlier versions, whose files are checked by size only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
}

impl OutputFile {
    /// Whether the file at `path` is still the one the stage wrote: the size first, then the
    /// modification time, and the sha256 only when the time differs.
    fn unchanged(&self, path: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(path) else { return false };
        if meta.len() != self.bytes {
            return false;
        }
        match self.mtime_ns {
            None => true,
            Some(t) if mtime_ns(&meta) == Some(t) => true,
            Some(_) => sha256_file(path).is_ok_and(|h| h == self.sha256),
        }
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> Option<u64> {
    meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_nanos() as u64)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub stage: String,
    pub schema_version: u32,
    pub fingerprint: String,
    pub config: serde_json::Value,
    pub inputs: BTreeMap<String, String>,
    pub external: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardSpec>,
    pub outputs: Vec<OutputFile>,
    pub started_unix: u64,
    pub elapsed_secs: f64,
    pub tool_version: String,
}

/// What determines a stage's output, hashed into its fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct FingerprintInputs<'a> {
    pub stage: &'a str,
    pub schema_version: u32,
    pub config: &'a serde_json::Value,
    pub inputs: &'a BTreeMap<String, String>,
    pub external: &'a BTreeMap<String, String>,
}

impl FingerprintInputs<'_> {
    pub fn fingerprint(&self) -> String {
        digest_json(self)
    }
}

impl Manifest {
    pub fn read(stage_dir: &Path) -> Result<Option<Manifest>> {
        let path = stage_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| Error::json(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Output files that are gone or no longer what the stage wrote (see the module docs):
    /// cheap while files keep their times; a file whose time changed is hashed.
    pub fn missing_outputs(&self, stage_dir: &Path) -> Vec<String> {
        self.outputs.iter().filter(|o| !o.unchanged(&stage_dir.join(&o.path))).map(|o| o.path.clone()).collect()
    }
}

/// Lists every file under `dir` (recursively, sorted) with size and sha256, skipping the
/// manifest itself.
pub fn list_outputs(dir: &Path) -> Result<Vec<OutputFile>> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<OutputFile>) -> Result<()> {
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let path = entry.path();
        let meta = entry.metadata().at(&path)?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).expect("walked under root").to_string_lossy().into_owned();
            if rel != FILE_NAME {
                out.push(OutputFile { sha256: sha256_file(&path)?, bytes: meta.len(), mtime_ns: mtime_ns(&meta), path: rel });
            }
        }
    }
    Ok(())
}

/// Human-readable differences between two config sections: `temperature: 0.7 -> 0.2`.
pub fn config_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => None,
            (x, y) => Some(format!("{k}: {} -> {}", x.map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into()), y.map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into()))),
        })
        .collect()
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_changes_name_the_keys() {
        let old = json!({"temperature": 0.7, "n": 1, "sub": {"a": 1}});
        let new = json!({"temperature": 0.2, "n": 1, "sub": {"a": 2, "b": true}});
        assert_eq!(config_changes(&old, &new), vec!["sub.a: 1 -> 2", "sub.b: (unset) -> true", "temperature: 0.7 -> 0.2"]);
    }
}
