//! Progress bars for long work: rate and ETA on stderr, hidden with `--quiet` or when stderr
//! is not a terminal (indicatif hides itself then), so logs stay clean in CI.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` items with a rate and an ETA; hidden when `quiet`.
pub fn bar(len: u64, what: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}").expect("template is valid").progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar
}
