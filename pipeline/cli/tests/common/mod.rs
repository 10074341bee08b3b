//! Running the built binary as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `distill ARGS` run in `dir`, with RUST_LOG unset.
pub fn distill(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill")).args(args).current_dir(dir).env_remove("RUST_LOG").output().expect("the distill binary runs")
}

/// The repository root, where the default data (prompt templates, benchmark files) is.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}
