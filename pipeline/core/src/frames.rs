//! Record files of binary frames keyed by id (`*.frames`): the inter-stage form of data too
//! large for JSON, such as the teacher's per-token log-probs (`teacher/logprobs.frames`).
//!
//! ```text
//! file  = magic "DFRAMES1" ‖ frame*
//! frame = u32 LE length of the rest ‖ varint id length ‖ id (UTF-8) ‖ payload
//! ```
//!
//! Frames are written in id order like every record file here, so a reader can merge-join them
//! with a JSONL file of the same ids, and shard parts merge by a streaming k-way merge
//! ([`merge`]). Reading and writing stream: memory is one frame.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::varint::{self, Reader};

const MAGIC: &[u8; 8] = b"DFRAMES1";

/// Writes frames to a temporary sibling; [`FrameWriter::finish`] syncs and renames it into place.
pub struct FrameWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
    pub bytes: u64,
    pub frames: u64,
}

impl FrameWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let tmp = crate::atomic::temp_sibling(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).at(&tmp)?);
        out.write_all(MAGIC).at(&tmp)?;
        Ok(FrameWriter { path: path.to_path_buf(), tmp, out, buf: Vec::new(), bytes: MAGIC.len() as u64, frames: 0 })
    }

    pub fn write(&mut self, id: &str, payload: &[u8]) -> Result<()> {
        self.buf.clear();
        varint::put_bytes(&mut self.buf, id.as_bytes());
        self.buf.extend_from_slice(payload);
        let len = u32::try_from(self.buf.len()).map_err(|_| Error::Other(format!("{}: a frame of {} bytes is too large", self.path.display(), self.buf.len())))?;
        self.out.write_all(&len.to_le_bytes()).at(&self.tmp)?;
        self.out.write_all(&self.buf).at(&self.tmp)?;
        self.bytes += 4 + self.buf.len() as u64;
        self.frames += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let f = self.out.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().at(&self.tmp)?;
        std::fs::rename(&self.tmp, &self.path).at(&self.path)
    }
}

/// One frame read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: String,
    pub payload: Vec<u8>,
}

/// Streams the frames of a file in order.
pub struct FrameReader {
    path: PathBuf,
    input: BufReader<File>,
    /// 1-based number of the next frame, for messages.
    index: u64,
}

impl FrameReader {
    pub fn open(path: &Path) -> Result<Self> {
        let mut input = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).at(path)?;
        if &magic != MAGIC {
            return Err(Error::Other(format!("{}: not a frames file (bad magic); re-run the stage that writes it", path.display())));
        }
        Ok(FrameReader { path: path.to_path_buf(), input, index: 1 })
    }

    /// Reads from the frame that starts at byte `offset` (found by an index of the file, such
    /// as the dashboard's): the file's magic is not checked again.
    pub fn open_at(path: &Path, offset: u64) -> Result<Self> {
        use std::io::Seek;
        let mut file = File::open(path).at(path)?;
        file.seek(std::io::SeekFrom::Start(offset)).at(path)?;
        Ok(FrameReader { path: path.to_path_buf(), input: BufReader::with_capacity(1 << 16, file), index: 1 })
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::Other(format!("{}: frame {}: {what}; the file is damaged: re-run the stage that writes it (--force)", self.path.display(), self.index))
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        let mut len = [0u8; 4];
        // The end of the file is only clean between frames; inside a length it is damage.
        match self.input.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        self.input.read_exact(&mut len[1..]).map_err(|e| self.corrupt(e))?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.input.read_exact(&mut body).map_err(|e| self.corrupt(e))?;
        let mut r = Reader::new(&body);
        let id = r.get_str().map_err(|e| self.corrupt(e))?.to_string();
        let start = body.len() - r.rest().len();
        body.drain(..start);
        self.index += 1;
        Ok(Some(Frame { id, payload: body }))
    }
}

impl Iterator for FrameReader {
    type Item = Result<Frame>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Merges frame files, each sorted by id, into one sorted file (equal ids: earlier source
/// first), streaming.
pub fn merge(sources: &[PathBuf], dest: &Path) -> Result<()> {
    let mut readers = sources.iter().map(|p| FrameReader::open(p)).collect::<Result<Vec<_>>>()?;
    let mut heads: Vec<Option<Frame>> = readers.iter_mut().map(FrameReader::next_frame).collect::<Result<_>>()?;
    let mut out = FrameWriter::create(dest)?;
    while let Some(i) = (0..heads.len()).filter(|&i| heads[i].is_some()).min_by(|&a, &b| heads[a].as_ref().map(|f| &f.id).cmp(&heads[b].as_ref().map(|f| &f.id))) {
        let f = heads[i].take().expect("chosen head exists");
        out.write(&f.id, &f.payload)?;
        heads[i] = readers[i].next_frame()?;
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_merge_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, m) = (dir.path().join("a.frames"), dir.path().join("b.frames"), dir.path().join("m.frames"));
        let mut w = FrameWriter::create(&a).unwrap();
        for id in ["a", "c", "e"] {
            w.write(id, id.repeat(3).as_bytes()).unwrap();
        }
        w.write("f", b"").unwrap();
        w.finish().unwrap();
        let mut w = FrameWriter::create(&b).unwrap();
        for id in ["b", "d"] {
            w.write(id, &[0u8, 255, 7]).unwrap();
        }
        w.finish().unwrap();
        merge(&[a.clone(), b], &m).unwrap();
        let got: Vec<Frame> = FrameReader::open(&m).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(got.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c", "d", "e", "f"]);
        assert_eq!(got[2].payload, b"ccc");
        assert_eq!(got[3].payload, [0, 255, 7]);
        assert!(got[5].payload.is_empty());

        // A file cut in the middle of a frame is an error naming the frame, not a silent end.
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() - 3]).unwrap();
        let err = FrameReader::open(&a).unwrap().collect::<Result<Vec<_>>>().unwrap_err().to_string();
        assert!(err.contains("frame 4"), "{err}");
    }
}
