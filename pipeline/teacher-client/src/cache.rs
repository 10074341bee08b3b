//! The response cache: every answer that was paid for, kept durably, keyed by request.
//!
//! - [`Store`] is the small interface the client needs (get, durable batch put), so the
//!   engine can be swapped (DEPENDENCIES.md: sled 0.34 has open reports of corruption after an
//!   unclean shutdown; redb and fjall are alternatives). [`SledStore`] implements it.
//! - The tree name carries the format version ([`TREE`]). New answers go to
//!   `teacher-responses-v2`, whose values hold the parsed answer in compact form
//!   ([`crate::compact`], ~50 bytes per teacher token at top-20). Entries of the
//!   `teacher-responses-v1` tree ([`LEGACY_TREE`], the server's JSON body, 1.5-4 KB per token)
//!   are still read, never rewritten or deleted: every answer ever paid for stays usable.
//! - [`Entry`] is the value: the parsed answer with usage, latency and time, or a negative
//!   entry (a non-retriable failure with its reason). Values over 2 KB (answers) are kept in
//!   append-only files beside sled's, which holds a checksummed pointer ([`crate::valuelog`]):
//!   sled keeps every page it reads in memory, which a large cache cannot afford.
//! - [`Writer`] is the group commit: one thread takes entries from every request in flight,
//!   inserts all it has, flushes once (sled `flush` = write + fsync), then acknowledges them
//!   all. A response counts as done only after its acknowledgement, so a `kill -9` at any
//!   instant loses at most answers that were not yet acknowledged. One fsync per batch instead
//!   of per response keeps the CPU and latency cost per request small.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use distill_core::records::Usage;

use crate::compact;
use crate::error::{Error, Result};
use crate::response::{self, Parsed};
use crate::valuelog::{Pointer, ValueLog, INLINE_MAX};

/// The sled tree new entries go to.
pub const TREE: &str = "teacher-responses-v2";
/// The tree of the first release (JSON bodies), read when [`TREE`] lacks a key.
pub const LEGACY_TREE: &str = "teacher-responses-v1";

/// sled's page cache, in bytes.
const CACHE_CAPACITY: u64 = 64 << 20;

/// What the client needs from a key-value store.
pub trait Store: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Inserts every pair and returns only once they are durable.
    fn put_durable(&self, items: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;
    /// Number of entries.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// sled behind [`Store`]. Databases are shared per path within a process (sled locks its
/// folder, so a second open in the same process would fail).
pub struct SledStore {
    path: PathBuf,
    db: Arc<sled::Db>,
    tree: sled::Tree,
    /// Values over `valuelog::INLINE_MAX` bytes; sled holds `P ‖ pointer` for them.
    values: Arc<ValueLog>,
    /// The v1 tree, when this cache has one.
    legacy: Option<sled::Tree>,
}

type Opened = (Weak<sled::Db>, Weak<ValueLog>);

fn open_dbs() -> &'static Mutex<HashMap<PathBuf, Opened>> {
    static DBS: OnceLock<Mutex<HashMap<PathBuf, Opened>>> = OnceLock::new();
    DBS.get_or_init(Default::default)
}

/// The first byte of a sled value that points into the value log (entry tags are R, Z, F).
const POINTER_TAG: u8 = b'P';

impl SledStore {
    pub fn open(path: &Path) -> Result<Self> {
        let err = |message: String| Error::Cache { path: path.to_path_buf(), message };
        std::fs::create_dir_all(path).map_err(|e| err(format!("cannot create the folder: {e}")))?;
        let canonical = path.canonicalize().map_err(|e| err(e.to_string()))?;
        let mut dbs = open_dbs().lock().expect("cache registry lock");
        let shared = dbs.get(&canonical).and_then(|(db, log)| Some((db.upgrade()?, log.upgrade()?)));
        let (db, values) = match shared {
            Some(both) => both,
            None => {
                // sled caches pages up to 1 GiB by default, which grows the RSS of a stage that
                // reads a large cache once; answers are read once per run, so keep it small.
                let db = sled::Config::new()
                    .path(&canonical)
                    .cache_capacity(CACHE_CAPACITY)
                    .open()
                    .map_err(|e| err(format!("cannot open ({e}); is another `distill` process using it? Wait for it or set [teacher] cache_dir")))?;
                let db = Arc::new(db);
                let values = Arc::new(ValueLog::open(&canonical.join("values")).map_err(|e| err(format!("values: {e}")))?);
                dbs.insert(canonical.clone(), (Arc::downgrade(&db), Arc::downgrade(&values)));
                (db, values)
            }
        };
        let tree = db.open_tree(TREE).map_err(|e| err(e.to_string()))?;
        // open_tree would create the v1 tree in a new cache: open it only where it exists.
        let legacy = match db.tree_names().iter().any(|n| n.as_ref() == LEGACY_TREE.as_bytes()) {
            true => Some(db.open_tree(LEGACY_TREE).map_err(|e| err(e.to_string()))?),
            false => None,
        };
        Ok(SledStore { path: path.to_path_buf(), db, tree, values, legacy })
    }

    fn err(&self, e: sled::Error) -> Error {
        Error::Cache { path: self.path.clone(), message: e.to_string() }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.tree.get(key).map_err(|e| self.err(e))? {
            if v.first() != Some(&POINTER_TAG) {
                return Ok(Some(v.to_vec()));
            }
            let Some(p) = Pointer::decode(&v[1..]) else { return Ok(None) };
            let value = self.values.read(&p).map_err(|e| Error::Cache { path: self.path.clone(), message: format!("values: {e}") })?;
            if value.is_none() {
                tracing::warn!("a cache value is missing or damaged in {}; its request will be sent again", self.path.display());
            }
            return Ok(value);
        }
        match &self.legacy {
            Some(t) => Ok(t.get(key).map_err(|e| self.err(e))?.map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    fn put_durable(&self, items: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        // Large values first, synced, so that no pointer ever names bytes not on disk.
        let large: Vec<&[u8]> = items.iter().filter(|(_, v)| v.len() > INLINE_MAX).map(|(_, v)| v.as_slice()).collect();
        let mut pointers = self.values.append(&large).map_err(|e| Error::Cache { path: self.path.clone(), message: format!("values: {e}") })?.into_iter();
        for (k, v) in items {
            if v.len() > INLINE_MAX {
                let mut pointer = vec![POINTER_TAG];
                pointer.extend_from_slice(&pointers.next().expect("one pointer per large value").encode());
                self.tree.insert(k.as_slice(), pointer).map_err(|e| self.err(e))?;
            } else {
                self.tree.insert(k.as_slice(), v.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Entries of both trees (a key answered in both counts twice).
    fn len(&self) -> usize {
        self.tree.len() + self.legacy.as_ref().map_or(0, sled::Tree::len)
    }
}

/// Metadata stored before the body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Unix time (seconds) the answer arrived or the failure was recorded.
    pub unix: u64,
    /// Milliseconds from sending to having the whole body.
    #[serde(default)]
    pub latency_ms: u64,
    /// Usage as the server reported it (absent when it did not).
    #[serde(default)]
    pub usage: Option<Usage>,
    /// HTTP status.
    pub status: u16,
    /// For negative entries: the short reason and the server's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A cache value: `tag byte ‖ meta JSON ‖ '\n' ‖ payload`:
///
/// - `Z`: an answer; the payload is [`crate::compact`] (v2);
/// - `R`: an answer; the payload is the server's JSON body (v1, read only);
/// - `F`: a non-retriable failure; no payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Response { meta: Meta, parsed: Parsed },
    Failed { meta: Meta },
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, meta, payload): (u8, &Meta, Vec<u8>) = match self {
            Entry::Response { meta, parsed } => (b'Z', meta, compact::encode(parsed)),
            Entry::Failed { meta } => (b'F', meta, Vec::new()),
        };
        let mut out = Vec::with_capacity(payload.len() + 128);
        out.push(tag);
        serde_json::to_writer(&mut out, meta).expect("meta serialises");
        out.push(b'\n');
        out.extend_from_slice(&payload);
        out
    }

    /// A value's tag, metadata and payload (see the layout above).
    fn split(bytes: &[u8]) -> Option<(u8, Meta, &[u8])> {
        let (&tag, rest) = bytes.split_first()?;
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let meta: Meta = serde_json::from_slice(&rest[..nl]).ok()?;
        Some((tag, meta, &rest[nl + 1..]))
    }

    /// Whether the value is a failure, and its metadata, without decoding the answer.
    pub fn decode_meta(bytes: &[u8]) -> Option<(bool, Meta)> {
        let (tag, meta, _) = Self::split(bytes)?;
        match tag {
            b'Z' | b'R' => Some((false, meta)),
            b'F' => Some((true, meta)),
            _ => None,
        }
    }

    /// `None` for a value this version cannot read (it is then treated as missing, and the
    /// request is sent again).
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let (tag, meta, payload) = Self::split(bytes)?;
        let parsed = match tag {
            b'Z' => compact::decode(payload).map_err(|e| e.to_string()),
            b'R' => response::parse(payload).map(canonical).map_err(|e| format!("{e:?}")),
            b'F' => return Some(Entry::Failed { meta }),
            _ => return None,
        };
        match parsed {
            Ok(parsed) => Some(Entry::Response { meta, parsed }),
            Err(e) => {
                tracing::warn!("an unreadable cache entry will be requested again: {e}");
                None
            }
        }
    }
}

type Job = (Vec<u8>, Vec<u8>, oneshot::Sender<Result<(), String>>);

/// Group commit in front of a [`Store`]; see the module docs.
pub struct Writer {
    tx: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub fn start(store: Arc<dyn Store>) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("teacher-cache".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while let Ok(j) = rx.try_recv() {
                        jobs.push(j);
                        if jobs.len() >= 4096 {
                            break;
                        }
                    }
                    let items: Vec<(Vec<u8>, Vec<u8>)> = jobs.iter_mut().map(|j| (std::mem::take(&mut j.0), std::mem::take(&mut j.1))).collect();
                    let res = store.put_durable(&items).map_err(|e| e.to_string());
                    for (_, _, ack) in jobs {
                        let _ = ack.send(res.clone());
                    }
                }
            })
            .expect("spawn the cache writer thread");
        Writer { tx: Some(tx), thread: Some(thread) }
    }

    /// Stores an entry; resolves once it is durable.
    pub async fn put(&self, key: &[u8], entry: &Entry) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.tx.as_ref().expect("writer open").send((key.to_vec(), entry.encode(), ack)).map_err(|_| "the cache writer stopped".to_string())?;
        done.await.map_err(|_| "the cache writer stopped".to_string())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `p` with its log-probs as the v2 format keeps them, so an answer reads the same from
/// either tree.
fn canonical(mut p: Parsed) -> Parsed {
    p.samples.iter_mut().filter_map(|s| s.tokens.as_mut()).for_each(|t| distill_core::logprobs::canonicalize(t));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_v1_json_bodies_are_still_read() {
        let meta = Meta { unix: 1, latency_ms: 2, usage: Some(Usage { prompt_tokens: 3, completion_tokens: 4 }), status: 200, reason: None, message: None };
        let body = br#"{"model":"m","choices":[{"message":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let parsed = response::parse(body).unwrap();
        let e = Entry::Response { meta: meta.clone(), parsed: parsed.clone() };
        assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
        assert_eq!(e.encode()[0], b'Z');
        // The first release's layout: tag R, meta, the body as the server sent it.
        let mut v1 = vec![b'R'];
        v1.extend_from_slice(&serde_json::to_vec(&meta).unwrap());
        v1.push(b'\n');
        v1.extend_from_slice(body);
        assert_eq!(Entry::decode(&v1), Some(e));
        let f = Entry::Failed { meta: Meta { reason: Some("bad_request".into()), message: Some("x".into()), status: 400, ..meta } };
        assert_eq!(Entry::decode(&f.encode()), Some(f));
        assert_eq!(Entry::decode(b"Zjunk"), None);
    }

    #[test]
    fn the_writer_makes_entries_durable_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        {
            let store: Arc<dyn Store> = Arc::new(SledStore::open(&path).unwrap());
            let w = Writer::start(store.clone());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let jobs = (0..50u8).map(|i| {
                    let w = &w;
                    async move { w.put(&[i], &Entry::Failed { meta: Meta { unix: i as u64, latency_ms: 0, usage: None, status: 400, reason: None, message: None } }).await }
                });
                for r in futures::future::join_all(jobs).await {
                    r.unwrap();
                }
            });
            // A second open in the same process shares the database instead of failing on its lock.
            assert_eq!(SledStore::open(&path).unwrap().len(), 50);
        }
        let again = SledStore::open(&path).unwrap();
        assert_eq!(again.len(), 50);
        assert!(matches!(Entry::decode(&again.get(&[7]).unwrap().unwrap()), Some(Entry::Failed { meta }) if meta.unix == 7));
    }
}
