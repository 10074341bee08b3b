//! Large cache values beside sled, in append-only segment files (issue #15).
//!
//! sled 0.34 keeps the pages it has read in memory whatever `cache_capacity` says: reading
//! 20,000 cached answers (1.8 GB of values) through `Tree::get` grew the process to 1.2-1.4 GiB
//! with a cache capacity of 8 or 64 MiB (measured here), so a teacher stage re-reading a large
//! cache grew with it. So sled keeps the index and the small entries, and a value over
//! [`INLINE_MAX`] bytes lives in `values/NNNNN.log` under the cache folder; sled holds a
//! [`Pointer`] to it (segment, offset, length, CRC-32).
//!
//! Durability: a batch's values are appended and `fsync`ed before the pointers go into sled
//! (which is flushed before the batch is acknowledged). A crash between the two leaves bytes no
//! pointer refers to, never a pointer to bytes that are not on disk. A value whose checksum
//! does not match reads as missing, so its request is sent again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Values up to this size stay inside sled.
pub const INLINE_MAX: usize = 2048;
/// A segment is closed once it holds this many bytes.
const SEGMENT_MAX: u64 = 1 << 30;

/// Where a value is: `segment`'s file, `len` bytes from `offset`, with their CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

impl Pointer {
    pub const BYTES: usize = 20;

    pub fn encode(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        out[..4].copy_from_slice(&self.segment.to_le_bytes());
        out[4..12].copy_from_slice(&self.offset.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Pointer> {
        let b: &[u8; Self::BYTES] = b.try_into().ok()?;
        Some(Pointer {
            segment: u32::from_le_bytes(b[..4].try_into().ok()?),
            offset: u64::from_le_bytes(b[4..12].try_into().ok()?),
            len: u32::from_le_bytes(b[12..16].try_into().ok()?),
            crc: u32::from_le_bytes(b[16..].try_into().ok()?),
        })
    }
}

struct Active {
    segment: u32,
    file: File,
    len: u64,
}

/// The segment files of one cache folder.
pub struct ValueLog {
    dir: PathBuf,
    active: Mutex<Active>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:05}.log"))
}

impl ValueLog {
    /// Opens (or creates) `dir`; new values are appended to its last segment.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let last = std::fs::read_dir(dir)?.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse::<u32>().ok()).max().unwrap_or(0);
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, last))?;
        let len = file.metadata()?.len();
        Ok(ValueLog { dir: dir.to_path_buf(), active: Mutex::new(Active { segment: last, file, len }), readers: Mutex::new(HashMap::new()) })
    }

    /// Appends every value, syncs once, and returns where each one is.
    pub fn append(&self, values: &[&[u8]]) -> std::io::Result<Vec<Pointer>> {
        if values.is_empty() {
            return Ok(Vec::new());
        }
        let mut a = self.active.lock().expect("value log lock");
        if a.len >= SEGMENT_MAX {
            let segment = a.segment + 1;
            let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, segment))?;
            *a = Active { segment, file, len: 0 };
        }
        let mut pointers = Vec::with_capacity(values.len());
        let mut buf = Vec::with_capacity(values.iter().map(|v| v.len()).sum());
        for v in values {
            let len = u32::try_from(v.len()).map_err(|_| std::io::Error::other("a cache value over 4 GiB"))?;
            pointers.push(Pointer { segment: a.segment, offset: a.len + buf.len() as u64, len, crc: crc32fast::hash(v) });
            buf.extend_from_slice(v);
        }
        a.file.write_all(&buf)?;
        a.file.sync_data()?;
        a.len += buf.len() as u64;
        Ok(pointers)
    }

    /// The value `p` points at; `None` when it is missing or its checksum does not match.
    pub fn read(&self, p: &Pointer) -> std::io::Result<Option<Vec<u8>>> {
        let file = {
            let mut readers = self.readers.lock().expect("value log lock");
            match readers.get(&p.segment) {
                Some(f) => f.clone(),
                None => match File::open(segment_path(&self.dir, p.segment)) {
                    Ok(f) => readers.entry(p.segment).or_insert(Arc::new(f)).clone(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                },
            }
        };
        let mut buf = vec![0u8; p.len as usize];
        match file.read_exact_at(&mut buf, p.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        Ok((crc32fast::hash(&buf) == p.crc).then_some(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_across_a_reopen_and_damage_reads_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<Vec<u8>> = (0..50u32).map(|i| (0..3000 + i * 97).map(|j| (j * 31 + i) as u8).collect()).collect();
        let pointers = {
            let log = ValueLog::open(dir.path()).unwrap();
            let first = log.append(&values[..20].iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
            let rest = log.append(&values[20..].iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
            [first, rest].concat()
        };
        let log = ValueLog::open(dir.path()).unwrap();
        for (p, v) in pointers.iter().zip(&values) {
            assert_eq!(Pointer::decode(&p.encode()), Some(*p));
            assert_eq!(log.read(p).unwrap().as_ref(), Some(v));
        }
        // Appending after a reopen continues the segment.
        let more = log.append(&[b"after".as_slice()]).unwrap();
        assert_eq!(more[0].offset, values.iter().map(|v| v.len() as u64).sum::<u64>());
        assert_eq!(log.read(&more[0]).unwrap().as_deref(), Some(&b"after"[..]));
        // A flipped byte or a pointer past the end is a miss, not garbage.
        let seg = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[pointers[3].offset as usize + 10] ^= 1;
        std::fs::write(&seg, bytes).unwrap();
        let log = ValueLog::open(dir.path()).unwrap();
        assert_eq!(log.read(&pointers[3]).unwrap(), None);
        assert_eq!(log.read(&pointers[4]).unwrap().as_ref(), Some(&values[4]));
        assert_eq!(log.read(&Pointer { offset: 1 << 40, ..pointers[0] }).unwrap(), None);
    }
}
