//! `distill code <task> FILE [--lines A:B]`: the model at work on a file, its answer streamed
//! to stdout (see [`task`] for what each task sends and does with the answer).
//!
//! The model is the trained student in this process (`--model-dir`, default
//! `<work-dir>/train`, `--quantize` for int8/int4) or any OpenAI-compatible endpoint
//! (`--endpoint URL --model NAME`, the key from `--api-key-env`). `fix` and `refactor` run the
//! file's tests in the sandbox ([`check`]) before and after (with the new code in place of the
//! range) and say whether they pass; `--write` puts the new code (or infill's middle) into the file.

pub mod backend;
pub mod check;
pub mod task;

use std::io::Write;
use std::path::{Path, PathBuf};

use distill_core::Error;

use backend::{Backend, Endpoint, Student};
use task::{Target, Task};

#[derive(Debug, clap::Args)]
pub struct CodeArgs {
    /// complete, infill, explain, fix, refactor or test.
    #[arg(value_enum)]
    pub task: Task,
    /// The Python file to work on.
    pub file: PathBuf,
    /// The lines to work on, FIRST:LAST (1-based, inclusive; default: the whole file).
    #[arg(long, value_name = "A:B")]
    pub lines: Option<String>,
    /// An OpenAI-compatible endpoint (e.g. http://127.0.0.1:8080/v1) instead of the student.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The endpoint's model name.
    #[arg(long, default_value = "student")]
    pub model: String,
    /// Environment variable holding the endpoint's API key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The in-process model folder (default: <work-dir>/train, the trained student).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Quantize the in-process model: q8_0 (int8) or q4_k (int4).
    #[arg(long, value_name = "q8_0|q4_k")]
    pub quantize: Option<String>,
    /// Most tokens of the answer.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// fix / refactor: write the new code into FILE (only when its tests pass, or it has none);
    /// infill: write the middle in place of the range.
    #[arg(long)]
    pub write: bool,
}

fn usage(m: String) -> Error {
    Error::Usage(m)
}

/// Runs the command; the answer goes to stdout as it arrives, the checks' report to stderr.
pub fn run(a: &CodeArgs, work_dir: &Path) -> distill_core::Result<()> {
    let src = std::fs::read_to_string(&a.file).map_err(|e| usage(format!("{}: {e}", a.file.display())))?;
    let lines = a.lines.as_deref().map(task::parse_lines).transpose().map_err(usage)?;
    let target = Target::split(&src, lines, &a.file).map_err(usage)?;
    let name = a.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = a.file.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let backend: Box<dyn Backend> = match &a.endpoint {
        Some(url) => {
            let api_key = match &a.api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| usage(format!("--api-key-env {var}: the variable is not set")))?),
                None => None,
            };
            Box::new(Endpoint { base_url: url.clone(), model: a.model.clone(), api_key })
        }
        None => {
            let q =
                a.quantize.as_deref().filter(|q| !q.is_empty() && *q != "f32").map(str::parse).transpose().map_err(|e: distill_model::Error| usage(format!("--quantize: {e}")))?;
            let dir = a.model_dir.clone().unwrap_or_else(|| work_dir.join("train"));
            Box::new(Student::load(&dir, q).map_err(Error::Other)?)
        }
    };

    // fix / refactor: the tests before, so the model sees the failures and the result is judged.
    let tests = if a.task.edits() { check::find(&a.file, &src) } else { None };
    let sandbox = match &tests {
        Some(_) => Some(check::sandbox().map_err(Error::Other)?),
        None => None,
    };
    let before = match (&tests, &sandbox) {
        (Some(t), Some(s)) => {
            let r = check::run(s, &stem, &src, t);
            eprintln!("tests before: {}", r.summary());
            Some(r)
        }
        _ => {
            if a.task.edits() {
                eprintln!("no tests found (test_* functions in {name}, or test_{stem}.py beside it): the result is not checked");
            }
            None
        }
    };
    let failures = before.as_ref().filter(|r| !r.ok()).map(check::TestRun::failures);
    let req = task::request(a.task, &target, &name, failures.as_deref());
    let mut stdout = std::io::stdout();
    let answer = backend
        .answer(&req, a.max_tokens, &mut |piece| {
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        })
        .map_err(Error::Other)?;
    println!();
    if !a.task.edits() {
        // infill: the middle takes the range's place (nothing to check it against).
        if a.write && a.task == Task::Infill {
            std::fs::write(&a.file, target.replaced(&answer)).map_err(|e| Error::Other(format!("{}: {e}", a.file.display())))?;
            eprintln!("wrote {}", a.file.display());
        }
        return Ok(());
    }
    let new_src = target.replaced(&task::answer_code(&answer));
    let after = match (&tests, &sandbox) {
        (Some(t), Some(s)) => {
            let r = check::run(s, &stem, &new_src, t);
            let verdict = if r.ok() { "PASS" } else { "FAIL" };
            eprintln!("tests after the {:?}: {} ({verdict})", a.task, r.summary());
            for (n, e) in &r.failed {
                eprintln!("  {n}: {e}");
            }
            Some(r.ok())
        }
        _ => None,
    };
    if a.write {
        if after == Some(false) {
            return Err(Error::Other(format!("{}: not written: the tests fail with the new code", a.file.display())));
        }
        std::fs::write(&a.file, &new_src).map_err(|e| Error::Other(format!("{}: {e}", a.file.display())))?;
        eprintln!("wrote {}", a.file.display());
    }
    if after == Some(false) {
        return Err(Error::Other("the tests fail with the new code".into()));
    }
    Ok(())
}
