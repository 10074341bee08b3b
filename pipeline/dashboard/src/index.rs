//! Line indexes of JSONL record files, so that a page of records costs the page.
//!
//! One pass over a file records where every line starts (8 bytes a line) and, for the fields a
//! kind of record is filtered by (an exclusion's `filter` and `reason`, a prompt's `task_type`,
//! an eval result's `task_id` and `passed`...), the numbers of the lines holding each value.
//! A page is then a seek to each of its lines. Indexes are cached per file and rebuilt when the
//! file's size or modification time changes (a stage re-ran); the server builds the indexes of
//! the work dir's files in the background when it starts, so the first click does not wait.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use distill_core::error::{Error, IoContext};

/// Which fields of a record are filterable: `(parameter name, JSON pointer)`.
pub type Facets = &'static [(&'static str, &'static str)];

/// Where each line of one version of a file starts, and the lines of each facet value.
#[derive(Debug)]
pub struct LineIndex {
    pub path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
    /// Start of each non-blank line.
    pub starts: Vec<u64>,
    /// facet -> value -> line numbers (0-based, into `starts`), in file order.
    pub facets: BTreeMap<&'static str, BTreeMap<String, Vec<u32>>>,
}

fn stamp(path: &Path) -> distill_core::Result<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).at(path)?;
    Ok((meta.len(), meta.modified().ok()))
}

/// A facet value as a string: strings as they are, other JSON as its text (`true`, `3`).
fn facet_value(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl LineIndex {
    /// Reads `path` once.
    pub fn build(path: &Path, facets: Facets) -> distill_core::Result<LineIndex> {
        let (len, modified) = stamp(path)?;
        let mut input = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
        let mut starts = Vec::new();
        let mut by: BTreeMap<&'static str, BTreeMap<String, Vec<u32>>> = facets.iter().map(|(name, _)| (*name, BTreeMap::new())).collect();
        let mut line = Vec::new();
        let mut at = 0u64;
        loop {
            line.clear();
            let n = input.read_until(b'\n', &mut line).at(path)?;
            if n == 0 {
                break;
            }
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                let number = starts.len() as u32;
                starts.push(at);
                if !facets.is_empty() {
                    // A line that does not parse is still a record (shown as it is), with no facets.
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                        for (name, pointer) in facets {
                            if let Some(value) = v.pointer(pointer).and_then(facet_value) {
                                by.get_mut(name).expect("facet listed").entry(value).or_default().push(number);
                            }
                        }
                    }
                }
            }
            at += n as u64;
        }
        Ok(LineIndex { path: path.to_path_buf(), len, modified, starts, facets: by })
    }

    fn is_current(&self) -> bool {
        stamp(&self.path).is_ok_and(|(len, modified)| len == self.len && modified == self.modified)
    }

    /// The text of the given lines, read by seeking to each.
    pub fn read_lines(&self, lines: &[u32]) -> distill_core::Result<Vec<(u32, String)>> {
        let mut f = File::open(&self.path).at(&self.path)?;
        let mut out = Vec::with_capacity(lines.len());
        let mut buf = Vec::new();
        for &n in lines {
            let start = self.starts[n as usize];
            let end = self.starts.get(n as usize + 1).copied().unwrap_or(self.len);
            f.seek(SeekFrom::Start(start)).at(&self.path)?;
            buf.resize((end - start) as usize, 0);
            f.read_exact(&mut buf).at(&self.path)?;
            let text = std::str::from_utf8(&buf).map_err(|e| Error::Input { path: self.path.clone(), line: n as usize + 1, message: format!("not UTF-8: {e}") })?;
            out.push((n, text.trim_end().to_string()));
        }
        Ok(out)
    }
}

/// Indexes by file, rebuilt when a file changes.
#[derive(Default, Clone)]
pub struct IndexCache {
    inner: Arc<Mutex<HashMap<PathBuf, Arc<LineIndex>>>>,
}

impl IndexCache {
    /// The current index of `path` (built now if there is none or the file changed).
    /// Blocking: call from a blocking task.
    pub fn get(&self, path: &Path, facets: Facets) -> distill_core::Result<Arc<LineIndex>> {
        if let Some(ix) = self.inner.lock().expect("index cache lock").get(path) {
            if ix.is_current() {
                return Ok(ix.clone());
            }
        }
        // Built outside the lock: another file's page need not wait for this scan.
        let ix = Arc::new(LineIndex::build(path, facets)?);
        self.inner.lock().expect("index cache lock").insert(path.to_path_buf(), ix.clone());
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_facets_read_only_their_lines_and_a_changed_file_is_reindexed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"id\":\"a\",\"f\":\"parse\"}\n\n{\"id\":\"b\",\"f\":\"length\"}\nnot json\n{\"id\":\"c\",\"f\":\"parse\"}").unwrap();
        let cache = IndexCache::default();
        let ix = cache.get(&p, &[("filter", "/f")]).unwrap();
        assert_eq!(ix.starts.len(), 4);
        assert_eq!(ix.facets["filter"]["parse"], vec![0, 3]);
        let lines = ix.read_lines(&[3, 2]).unwrap();
        assert_eq!(lines, vec![(3, "{\"id\":\"c\",\"f\":\"parse\"}".to_string()), (2, "not json".to_string())]);
        std::fs::write(&p, "{\"id\":\"z\",\"f\":\"parse\"}\n").unwrap();
        let ix = cache.get(&p, &[("filter", "/f")]).unwrap();
        assert_eq!(ix.starts.len(), 1, "a rewritten file is indexed again");
    }
}
