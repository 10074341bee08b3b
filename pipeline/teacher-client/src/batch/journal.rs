//! The journal of batches: `<cache_dir>/batches/journal.jsonl`, one event a line, appended and
//! fsynced before the run goes on.
//!
//! ```text
//! {"event":"uploaded","api":"openai","input_file_id":"file-1","requests":40,"bytes":9120,"unix":...,"keys":"keys-S-0.bin"}
//! {"event":"submitted","api":"openai","batch_id":"batch_1","input_file_id":"file-1","requests":40,"bytes":9120,"unix":...,"keys":"keys-S-0.bin"}
//! {"event":"done","batch_id":"batch_1","status":"completed","unix":...}
//! ```
//!
//! A batch is *open* from `submitted` until `done`, which is written only once every answer it
//! returned is durable in the cache. Before a batch is created, the cache keys of its requests
//! are written (fsynced) to `keys-*.bin` beside the journal (32 bytes each, in order), named by
//! the batch's events. A run starts by re-attaching to the open batches: it submits only what
//! the cache lacks and no open batch holds, then waits for old and new batches together, so a
//! request in flight in a batch is never submitted again, whatever instant a `kill -9` came.
//! (A batch without a readable keys file is waited for before anything is submitted.) `uploaded` (OpenAI) is
//! written before the batch is created: a run killed between the two finds the batch by its
//! input file. `creating` (Anthropic) is its counterpart: the next run looks for a message
//! batch created since then with as many requests and not in the journal (answers are keyed
//! by their request, so even a wrong match only adds correct answers to the cache). The journal sits beside the cache because it guards what the cache holds: the
//! same folder, the same lifetime, the same lock (sled's).
//!
//! A line cut short by a kill is ignored (it can only be the last one).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The input file of a batch was uploaded (OpenAI); the batch may or may not exist.
    Uploaded {
        api: String,
        input_file_id: String,
        requests: u64,
        bytes: u64,
        unix: u64,
        /// File (in the journal's folder) holding the cache keys of the batch's requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<String>,
    },
    /// A message batch is being created (Anthropic, whose requests go inline): it may or may
    /// not exist; the next `submitted` without an input file is its id.
    Creating {
        api: String,
        requests: u64,
        bytes: u64,
        unix: u64,
        /// File (in the journal's folder) holding the cache keys of the batch's requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<String>,
    },
    /// A batch exists and is paid for as it runs.
    Submitted {
        api: String,
        batch_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_file_id: Option<String>,
        requests: u64,
        bytes: u64,
        unix: u64,
        /// File (in the journal's folder) holding the cache keys of the batch's requests.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keys: Option<String>,
    },
    /// Every answer of the batch is in the cache (status: completed, expired, failed, cancelled).
    Done { batch_id: String, status: String, unix: u64 },
}

/// What a run must re-attach to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Open {
    /// Submitted and not done: (batch id, requests, keys file).
    pub batches: Vec<(String, u64, Option<String>)>,
    /// Uploaded input files without a batch (OpenAI): (file id, requests, keys file).
    pub uploads: Vec<(String, u64, Option<String>)>,
    /// Message batches being created when the run stopped (Anthropic): (unix time, requests,
    /// keys file).
    pub creating: Vec<(u64, u64, Option<String>)>,
    /// Batches done (never re-attached to).
    pub closed: Vec<String>,
}

/// The cache keys held by the open batches of the journal in `dir` whose keys files are
/// readable, read without opening the journal for writing (for dry runs).
pub fn held_keys(dir: &Path) -> std::collections::HashSet<[u8; 32]> {
    let mut held = std::collections::HashSet::new();
    let Ok(text) = std::fs::read_to_string(dir.join("journal.jsonl")) else { return held };
    let mut open: Vec<(String, u64, Option<String>)> = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Event>(line) {
            Ok(Event::Submitted { batch_id, requests, keys, .. }) => open.push((batch_id, requests, keys)),
            Ok(Event::Done { batch_id, .. }) => open.retain(|(b, _, _)| *b != batch_id),
            _ => {}
        }
    }
    for (_, requests, keys) in open {
        if let Some(bytes) = keys.and_then(|k| std::fs::read(dir.join(k)).ok()).filter(|b| b.len() as u64 == requests * 32) {
            held.extend(bytes.chunks_exact(32).map(|k| <[u8; 32]>::try_from(k).expect("32 bytes")));
        }
    }
    held
}

pub struct Journal {
    path: PathBuf,
    file: File,
}

fn io_err(path: &Path, e: std::io::Error) -> crate::Error {
    crate::Error::Cache { path: path.to_path_buf(), message: format!("batch journal: {e}") }
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and says which batches are still open.
    pub fn open(dir: &Path) -> crate::error::Result<(Journal, Open)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join("journal.jsonl");
        let mut open = Open::default();
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(|e| io_err(&path, e))?);
            for line in reader.lines() {
                let line = line.map_err(|e| io_err(&path, e))?;
                match serde_json::from_str::<Event>(&line) {
                    Ok(Event::Uploaded { input_file_id, requests, keys, .. }) => open.uploads.push((input_file_id, requests, keys)),
                    Ok(Event::Creating { unix, requests, keys, .. }) => open.creating.push((unix, requests, keys)),
                    Ok(Event::Submitted { batch_id, input_file_id, requests, keys, .. }) => {
                        match &input_file_id {
                            Some(file) => open.uploads.retain(|(f, _, _)| f != file),
                            None => {
                                open.creating.pop();
                            }
                        }
                        open.batches.push((batch_id, requests, keys));
                    }
                    Ok(Event::Done { batch_id, .. }) => {
                        open.batches.retain(|(b, _, _)| *b != batch_id);
                        open.closed.push(batch_id);
                    }
                    Err(_) if line.trim().is_empty() => {}
                    Err(e) => tracing::warn!("{}: a line that does not parse is ignored (cut short by a kill?): {e}", path.display()),
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_err(&path, e))?;
        // The folder entry of a new journal must be durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((Journal { path, file }, open))
    }

    /// Appends one event and returns once it is on disk. A torn last line (from a kill) gets
    /// a newline first, so the next event starts a line of its own.
    pub fn append(&mut self, event: &Event) -> crate::error::Result<()> {
        let mut line = b"\n".to_vec();
        serde_json::to_writer(&mut line, event).expect("events serialise");
        line.push(b'\n');
        self.file.write_all(&line).and_then(|()| self.file.sync_data()).map_err(|e| io_err(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_batches_are_those_submitted_and_not_done_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, open) = Journal::open(dir.path()).unwrap();
        assert_eq!(open, Open::default());
        let sub =
            |id: &str, file: &str| Event::Submitted { api: "openai".into(), batch_id: id.into(), input_file_id: Some(file.into()), requests: 3, bytes: 10, unix: 1, keys: None };
        j.append(&Event::Uploaded { api: "openai".into(), input_file_id: "f1".into(), requests: 3, bytes: 10, unix: 1, keys: None }).unwrap();
        j.append(&sub("b1", "f1")).unwrap();
        j.append(&Event::Uploaded { api: "openai".into(), input_file_id: "f2".into(), requests: 5, bytes: 10, unix: 1, keys: Some("k2".into()) }).unwrap();
        j.append(&sub("b0", "f0")).unwrap();
        j.append(&Event::Done { batch_id: "b0".into(), status: "completed".into(), unix: 2 }).unwrap();
        drop(j);
        // A kill in the middle of a line.
        let path = dir.path().join("journal.jsonl");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"event\":\"subm").unwrap();
        drop(f);
        let (mut j, open) = Journal::open(dir.path()).unwrap();
        assert_eq!(open.batches, vec![("b1".to_string(), 3, None)]);
        assert_eq!(open.uploads, vec![("f2".to_string(), 5, Some("k2".to_string()))]);
        j.append(&Event::Done { batch_id: "b1".into(), status: "expired".into(), unix: 3 }).unwrap();
        let (_, open) = Journal::open(dir.path()).unwrap();
        assert!(open.batches.is_empty());
    }
}
