//! Files of published stage folders (`/api/v1/files/<stage>/<path>`): the static report, a
//! shard, a stats file. Nothing else under or outside the work dir is reachable:
//!
//! - the first component must be a stage of the DAG, every other component a plain name that
//!   does not start with a dot (no `..`, no `.scratch`, no temporary folders, no absolute path);
//! - the file is resolved (links followed) and must still lie inside that stage's folder, so a
//!   link planted in an output cannot lead out.

use std::path::{Component, Path, PathBuf};

use crate::error::{ApiError, ApiResult};

/// The checked path of `rel` (`<stage>/<file>`) under `work_dir`, given the DAG's stage names.
pub fn resolve(work_dir: &Path, stages: &[String], rel: &str) -> ApiResult<PathBuf> {
    let bad = |why: &str| ApiError::bad_request(format!("path '{rel}': {why}; give <stage>/<file> inside a stage's published folder"));
    if rel.contains('\\') || rel.contains('\0') {
        return Err(bad("backslashes and NUL are not allowed"));
    }
    let mut parts = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => {
                let p = p.to_str().ok_or_else(|| bad("not UTF-8"))?;
                if p.starts_with('.') {
                    return Err(bad("names starting with '.' are not served"));
                }
                parts.push(p);
            }
            Component::ParentDir => return Err(bad("'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute paths are not allowed")),
            Component::CurDir => return Err(bad("'.' is not allowed")),
        }
    }
    let Some((stage, rest)) = parts.split_first() else { return Err(bad("empty")) };
    if !stages.iter().any(|s| s == stage) {
        return Err(ApiError::not_found(format!("path '{rel}': '{stage}' is not a stage of this pipeline ({})", stages.join(", "))));
    }
    if rest.is_empty() {
        return Err(bad("names a stage folder, not a file"));
    }
    let root = work_dir.join(stage).canonicalize().map_err(|_| ApiError::not_found(format!("stage '{stage}' has no output yet")))?;
    let full = rest.iter().fold(root.clone(), |p, c| p.join(c));
    let real = full.canonicalize().map_err(|_| ApiError::not_found(format!("{rel} does not exist")))?;
    if !real.starts_with(&root) {
        return Err(ApiError::not_found(format!("{rel} does not exist")));
    }
    if !real.is_file() {
        return Err(bad("not a file"));
    }
    Ok(real)
}

/// The content type of a served file, by extension.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "png" => "image/png",
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_published_stage_folders_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("report")).unwrap();
        std::fs::create_dir_all(work.join(".scratch/train")).unwrap();
        std::fs::write(work.join("report/index.html"), "ok").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), work.join("report/link.txt")).unwrap();
        let stages = vec!["report".to_string(), "train".to_string()];
        assert!(resolve(&work, &stages, "report/index.html").is_ok());
        for (rel, code) in [
            ("report/../../secret.txt", 400),
            ("../secret.txt", 400),
            ("/etc/passwd", 400),
            (".scratch/train/metrics.jsonl", 400),
            ("report/.hidden", 400),
            ("report\\..\\x", 400),
            ("report/link.txt", 404),
            ("secret.txt", 404),
            ("train/metrics.jsonl", 404),
            ("report", 400),
        ] {
            let e = resolve(&work, &stages, rel).unwrap_err();
            assert_eq!(e.status.as_u16(), code, "{rel}: {}", e.message);
        }
    }
}
