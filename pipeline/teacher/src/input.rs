//! Reading the prompts: one JSON record a line, each checked; bad lines are reported with
//! their number and counted, never silently dropped (or, with `--strict`, fatal).
//!
//! The file is read twice, streaming: [`index_prompts`] checks every line and keeps only each
//! good prompt's id and place in the file (sorted by id), and [`PromptIndex::prompts`] reads
//! the prompts back one at a time in id order. Memory is the index (the ids), never the
//! prompts: a 1 GB prompt file costs its ids.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use distill_core::error::{Error, IoContext, Result};
use distill_core::records::PromptRecord;
use distill_core::ShardSpec;

/// A line that is not a usable prompt: the project's one bad-line type.
pub use distill_core::jsonl::BadLine;

/// Where each good prompt of a file is, in id order.
pub struct PromptIndex {
    pub path: PathBuf,
    /// (id, byte offset, byte length) of each prompt this run owns, sorted by id.
    entries: Vec<(String, u64, u32)>,
    pub bad: Vec<BadLine>,
    /// Good prompts left to other shards.
    pub other_shards: u64,
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Usage(format!("{}: no such file; run the prompts stage first, or give a prompt file with --prompts FILE", path.display()))
        } else {
            Error::io(path, e)
        }
    })
}

/// Checks every line of `path`. A line that does not parse, is not a valid prompt (see
/// `PromptRecord::validate`) or repeats an earlier id is a [`BadLine`]; with `strict` the
/// first one is an error naming the file and the line. Prompts of other shards are counted,
/// not indexed.
pub fn index_prompts(path: &Path, strict: bool, shard: Option<ShardSpec>) -> Result<PromptIndex> {
    let mut input = BufReader::with_capacity(1 << 20, open(path)?);
    let mut index = PromptIndex { path: path.to_path_buf(), entries: Vec::new(), bad: Vec::new(), other_shards: 0 };
    // id -> first line, to name it in a duplicate's message.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut line, mut offset, mut number) = (String::new(), 0u64, 0usize);
    loop {
        line.clear();
        let n = input.read_line(&mut line).at(path)?;
        if n == 0 {
            break;
        }
        number += 1;
        let start = offset;
        offset += n as u64;
        if line.trim().is_empty() {
            continue;
        }
        let checked = serde_json::from_str::<PromptRecord>(&line).map_err(|e| e.to_string()).and_then(|p| {
            p.validate()?;
            match seen.get(&p.id) {
                Some(first) => Err(format!("duplicate id '{}' (first on line {first})", p.id)),
                None => Ok(p),
            }
        });
        match checked {
            Ok(p) => {
                seen.insert(p.id.clone(), number);
                if shard.is_some_and(|s| !s.owns(&p.id)) {
                    index.other_shards += 1;
                } else {
                    let len = u32::try_from(n).map_err(|_| Error::Input { path: path.to_path_buf(), line: number, message: "a prompt line over 4 GB".into() })?;
                    index.entries.push((p.id, start, len));
                }
            }
            Err(message) if strict => return Err(Error::Input { path: path.to_path_buf(), line: number, message }),
            Err(message) => {
                tracing::warn!("{}:{number}: skipped: {message}", path.display());
                index.bad.push(BadLine { line: number, message });
            }
        }
    }
    index.entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(index)
}

impl PromptIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The indexed prompts in id order, read one at a time. The file was checked by
    /// [`index_prompts`]; a line that changed since is an error naming it.
    pub fn prompts(&self) -> Result<impl Iterator<Item = Result<PromptRecord>> + '_> {
        let file = open(&self.path)?;
        let mut buf = Vec::new();
        Ok(self.entries.iter().map(move |(id, offset, len)| {
            buf.resize(*len as usize, 0);
            file.read_exact_at(&mut buf, *offset).at(&self.path)?;
            let changed = || Error::Other(format!("{}: the prompt '{id}' changed while the stage ran; run it again", self.path.display()));
            let p: PromptRecord = serde_json::from_slice(&buf).map_err(|_| changed())?;
            if &p.id != id {
                return Err(changed());
            }
            Ok(p)
        }))
    }
}

/// Every prompt of `path`, in id order, with the bad lines (see [`index_prompts`]).
pub fn read_prompts(path: &Path, strict: bool) -> Result<(Vec<PromptRecord>, Vec<BadLine>)> {
    let index = index_prompts(path, strict, None)?;
    let prompts = index.prompts()?.collect::<Result<Vec<_>>>()?;
    Ok((prompts, index.bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_numbered_and_strict_makes_them_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prompts.jsonl");
        std::fs::write(
            &p,
            "{\"id\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"z\"}]}\n{\"id\":\"a\",\"prompt\":\"x\"}\n\nnot json\n{\"id\":\"b\"}\n{\"id\":\"a\",\"prompt\":\"y\"}\n",
        )
        .unwrap();
        let (ok, bad) = read_prompts(&p, false).unwrap();
        // In id order, whatever the order of the file.
        assert_eq!(ok.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["a", "c"]);
        assert_eq!(ok[0].prompt.as_deref(), Some("x"));
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert!(bad[2].message.contains("duplicate id 'a' (first on line 2)"));
        let err = read_prompts(&p, true).unwrap_err();
        assert!(err.to_string().contains("prompts.jsonl:4:"), "{err}");
        assert_eq!(err.exit_code(), 1);
    }
}
