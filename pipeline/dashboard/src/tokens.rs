//! A teacher answer's tokens, each with its log-probability and the teacher's top-k, for the
//! sample browser (colour by probability, top-k on hover).
//!
//! They live in `teacher/logprobs.frames` (`distill_core::frames`), hundreds of megabytes at
//! the scale of issue #15. An index of where each frame starts is built once by reading only
//! the frames' headers (length and id) and seeking over the payloads; a request then reads one
//! frame and unpacks only the sample asked for.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use distill_core::error::{Error, IoContext};

use crate::error::{ApiError, ApiResult};

pub const FRAMES_FILE: &str = "teacher/logprobs.frames";

/// Frame ids (sorted, as the teacher writes them) and where each frame's length starts.
struct FrameIndex {
    len: u64,
    modified: Option<SystemTime>,
    ids: Vec<String>,
    offsets: Vec<u64>,
}

fn stamp(path: &Path) -> distill_core::Result<(u64, Option<SystemTime>)> {
    let meta = std::fs::metadata(path).at(path)?;
    Ok((meta.len(), meta.modified().ok()))
}

fn damaged(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Other(format!("{}: {what}; the file is damaged: re-run the teacher stage (--force)", path.display()))
}

impl FrameIndex {
    fn build(path: &Path) -> distill_core::Result<FrameIndex> {
        let (len, modified) = stamp(path)?;
        let mut f = BufReader::with_capacity(1 << 16, File::open(path).at(path)?);
        let mut magic = [0u8; 8];
        f.read_exact(&mut magic).at(path)?;
        if &magic != b"DFRAMES1" {
            return Err(damaged(path, "not a frames file (bad magic)"));
        }
        let (mut ids, mut offsets) = (Vec::new(), Vec::new());
        let mut at = 8u64;
        while at < len {
            let mut head = [0u8; 4];
            f.read_exact(&mut head).map_err(|e| damaged(path, format!("frame {}: {e}", ids.len() + 1)))?;
            let body = u32::from_le_bytes(head) as u64;
            // The id is a varint length and UTF-8: at most 10 + its bytes; read a small prefix.
            let mut prefix = vec![0u8; body.min(64) as usize];
            f.read_exact(&mut prefix).map_err(|e| damaged(path, format!("frame {}: {e}", ids.len() + 1)))?;
            let mut r = distill_core::varint::Reader::new(&prefix);
            let id = match r.get_str() {
                Ok(id) => id.to_string(),
                Err(_) => read_long_id(path, at + 4, body)?,
            };
            f.seek_relative((body - prefix.len() as u64) as i64).at(path)?;
            ids.push(id);
            offsets.push(at);
            at += 4 + body;
        }
        Ok(FrameIndex { len, modified, ids, offsets })
    }

    fn is_current(&self, path: &Path) -> bool {
        stamp(path).is_ok_and(|(len, modified)| len == self.len && modified == self.modified)
    }
}

/// An id longer than the prefix read: read the whole frame body for it.
fn read_long_id(path: &Path, body_at: u64, body: u64) -> distill_core::Result<String> {
    let mut f = File::open(path).at(path)?;
    f.seek(SeekFrom::Start(body_at)).at(path)?;
    let mut buf = vec![0u8; body as usize];
    f.read_exact(&mut buf).at(path)?;
    let mut r = distill_core::varint::Reader::new(&buf);
    Ok(r.get_str().map_err(|e| damaged(path, e))?.to_string())
}

#[derive(Default, Clone)]
pub struct FrameCache {
    inner: Arc<Mutex<HashMap<PathBuf, Arc<FrameIndex>>>>,
}

impl FrameCache {
    fn get(&self, path: &Path) -> distill_core::Result<Arc<FrameIndex>> {
        if let Some(ix) = self.inner.lock().expect("frame cache lock").get(path) {
            if ix.is_current(path) {
                return Ok(ix.clone());
            }
        }
        let ix = Arc::new(FrameIndex::build(path)?);
        self.inner.lock().expect("frame cache lock").insert(path.to_path_buf(), ix.clone());
        Ok(ix)
    }

    /// Builds the index now (at start-up, in the background).
    pub fn warm(&self, work_dir: &Path) {
        let path = work_dir.join(FRAMES_FILE);
        if path.is_file() {
            if let Err(e) = self.get(&path) {
                tracing::warn!("{e}");
            }
        }
    }
}

/// Sample `sample` of the teacher record `id`: `{id, sample, tokens: [{token, logprob, top:
/// [{token, logprob}]}]}`. Blocking.
pub fn sample_tokens(cache: &FrameCache, work_dir: &Path, id: &str, sample: usize) -> ApiResult<SampleTokens> {
    let path = work_dir.join(FRAMES_FILE);
    if !path.is_file() {
        return Err(ApiError::not_found(format!("{FRAMES_FILE} does not exist yet: run the teacher stage")));
    }
    let ix = cache.get(&path)?;
    let i = ix.ids.binary_search_by(|x| x.as_str().cmp(id)).map_err(|_| ApiError::not_found(format!("no teacher record with id '{id}' in {FRAMES_FILE}")))?;
    let frame = distill_core::frames::FrameReader::open_at(&path, ix.offsets[i])?
        .next_frame()?
        .ok_or_else(|| ApiError::internal(format!("{}: frame of '{id}' is missing; re-run the teacher stage", path.display())))?;
    let tokens = distill_core::logprobs::unpack_sample(&frame.payload, sample).map_err(|e| damaged(&path, format!("record '{id}': {e}")))?;
    let Some(tokens) = tokens else {
        return Err(ApiError::not_found(format!("record '{id}' has no log-probs for sample {sample} (no such sample, or the teacher sent none)")));
    };
    let tokens =
        tokens.into_iter().map(|t| Token { token: t.token, logprob: t.logprob, top: t.top.into_iter().map(|a| Alt { token: a.token, logprob: a.logprob }).collect() }).collect();
    Ok(SampleTokens { id: id.to_string(), sample, tokens })
}

// Serialised from structs, not a tree of JSON values: an answer of 500 tokens with top-20 is
// 10,000 entries, and building a map for each was most of the request's time.
#[derive(serde::Serialize)]
pub struct Alt {
    pub token: String,
    pub logprob: f32,
}

#[derive(serde::Serialize)]
pub struct Token {
    pub token: String,
    pub logprob: f32,
    pub top: Vec<Alt>,
}

/// One sample's tokens as the API returns them.
#[derive(serde::Serialize)]
pub struct SampleTokens {
    pub id: String,
    pub sample: usize,
    pub tokens: Vec<Token>,
}
