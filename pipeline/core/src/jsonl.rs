//! JSON Lines in and out. Readers report a bad line with its file and line number and go on,
//! so one malformed record never hides the rest; the caller decides whether that is fatal.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// A line that did not parse, or is not a usable record: 1-based line number and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub line: usize,
    pub message: String,
}

/// Streams the records of a JSONL file, one line in memory at a time: each item is a record,
/// or the bad line (number and parser message) in its place. Blank lines are skipped.
pub struct Records<T> {
    path: PathBuf,
    input: BufReader<fs::File>,
    line: String,
    number: usize,
    _record: std::marker::PhantomData<T>,
}

/// Opens `path` for [`Records`].
pub fn records<T: DeserializeOwned>(path: &Path) -> Result<Records<T>> {
    let input = BufReader::with_capacity(1 << 20, fs::File::open(path).at(path)?);
    Ok(Records { path: path.to_path_buf(), input, line: String::new(), number: 0, _record: std::marker::PhantomData })
}

impl<T: DeserializeOwned> Iterator for Records<T> {
    type Item = Result<std::result::Result<T, BadLine>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line.clear();
            match self.input.read_line(&mut self.line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::io(&self.path, e))),
            }
            self.number += 1;
            if self.line.trim().is_empty() {
                continue;
            }
            return Some(Ok(serde_json::from_str::<T>(&self.line).map_err(|e| BadLine { line: self.number, message: e.to_string() })));
        }
    }
}

/// Reads every record of a JSONL file. Blank lines are skipped; bad lines are returned
/// beside the good records, in file order.
pub fn read_lenient<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, Vec<BadLine>)> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for r in records::<T>(path)? {
        match r? {
            Ok(v) => good.push(v),
            Err(b) => bad.push(b),
        }
    }
    Ok((good, bad))
}

/// Reads every record; the first bad line is an error naming the file and the line.
pub fn read_strict<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let (records, bad) = read_lenient(path)?;
    match bad.into_iter().next() {
        Some(b) => Err(Error::Input { path: path.to_path_buf(), line: b.line, message: b.message }),
        None => Ok(records),
    }
}

/// Writes records as JSON Lines (one compact object a line), atomically.
pub fn write<T: serde::Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut w = Writer::create(path)?;
    for r in records {
        w.write(r)?;
    }
    w.finish()
}

/// Writes JSON Lines one record at a time to a temporary sibling; [`Writer::finish`] syncs it
/// and renames it into place (dropped unfinished, the final name is never touched).
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<fs::File>,
    pub records: u64,
}

impl Writer {
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).at(dir)?;
        }
        let tmp = crate::atomic::temp_sibling(path);
        let out = BufWriter::with_capacity(1 << 20, fs::File::create(&tmp).at(&tmp)?);
        Ok(Writer { path: path.to_path_buf(), tmp, out, records: 0 })
    }

    pub fn write<T: serde::Serialize + ?Sized>(&mut self, record: &T) -> Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(|e| Error::json(&self.tmp, e))?;
        self.out.write_all(b"\n").at(&self.tmp)?;
        self.records += 1;
        Ok(())
    }

    /// Writes a line that is already JSON (no newline).
    pub fn write_raw(&mut self, line: &str) -> Result<()> {
        self.out.write_all(line.as_bytes()).at(&self.tmp)?;
        self.out.write_all(b"\n").at(&self.tmp)?;
        self.records += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let f = self.out.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        f.sync_all().at(&self.tmp)?;
        fs::rename(&self.tmp, &self.path).at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        fs::write(&p, "{\"a\":1}\n\nnot json\n{\"a\":2}\n").unwrap();
        let (ok, bad) = read_lenient::<serde_json::Value>(&p).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        let err = read_strict::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(err.contains("x.jsonl:3:"), "{err}");
    }
}
