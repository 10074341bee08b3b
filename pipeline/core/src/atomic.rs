//! Outputs appear complete or not at all.
//!
//! Files are written to a temporary name in the same directory, synced, then renamed over the
//! final name (rename is atomic within a filesystem). A stage's whole output directory is built
//! under a temporary name and published by [`publish_dir`]; a crash at any point leaves either
//! the previous complete output, or no output, never a half-written one that looks complete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).at(dir)?;
    let tmp = temp_sibling(path);
    {
        let mut f = fs::File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| crate::Error::json(path, e))?;
    text.push('\n');
    write_file(path, text.as_bytes())
}

/// `dir/.name.tmp-<pid>`: where a file or directory is built before it is renamed to `path`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Replaces the directory `dest` by `staged` as close to atomically as POSIX allows:
/// the old output is moved aside, the new one renamed in, the old one removed. Between the two
/// renames `dest` does not exist, which readers (and `status`) treat as "never run".
pub fn publish_dir(staged: &Path, dest: &Path) -> Result<()> {
    let aside = dest.with_file_name(format!(".{}.old-{}", dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    if dest.exists() {
        fs::rename(dest, &aside).at(dest)?;
    }
    fs::rename(staged, dest).at(dest)?;
    if aside.exists() {
        fs::remove_dir_all(&aside).at(&aside)?;
    }
    Ok(())
}

/// Removes leftovers of interrupted runs next to `dest` (`.name.tmp-*`, `.name.old-*`).
pub fn remove_leftovers(dest: &Path) -> Result<()> {
    let Some(parent) = dest.parent() else { return Ok(()) };
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned()) else { return Ok(()) };
    let Ok(entries) = fs::read_dir(parent) else { return Ok(()) };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&format!(".{name}.tmp-")) || file_name.starts_with(&format!(".{name}.old-")) {
            let p = entry.path();
            if p.is_dir() {
                fs::remove_dir_all(&p).at(&p)?;
            } else {
                fs::remove_file(&p).at(&p)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_the_old_output_and_leaves_no_temporaries() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("stage");
        fs::create_dir_all(&dest).unwrap();
        fs::write(dest.join("old.txt"), "old").unwrap();
        let staged = temp_sibling(&dest);
        fs::create_dir_all(&staged).unwrap();
        fs::write(staged.join("new.txt"), "new").unwrap();
        publish_dir(&staged, &dest).unwrap();
        assert!(dest.join("new.txt").exists());
        assert!(!dest.join("old.txt").exists());
        let names: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("stage")]);
    }

    #[test]
    fn write_file_overwrites_atomically() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("a.json");
        write_json(&p, &serde_json::json!({"x": 1})).unwrap();
        write_json(&p, &serde_json::json!({"x": 2})).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["x"], 2);
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }
}
