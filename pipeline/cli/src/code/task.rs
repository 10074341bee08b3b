//! `distill code` tasks: what part of the file the model sees, the request it gets, and how
//! its answer goes back into the file.
//!
//! A *target* is a file and an optional 1-based inclusive line range `A:B` (the whole file
//! without one). Per task:
//!
//! | task | request | answer |
//! |---|---|---|
//! | complete | completion of the file up to the end of the range | appended after the range |
//! | infill | FIM: `<|fim_prefix|>` before the range `<|fim_suffix|>` after it `<|fim_middle|>` | replaces the range |
//! | explain | chat: explain the range, with the file as context | printed only |
//! | fix | chat: fix the range (the failing tests' output included) | the answer's code block replaces the range |
//! | refactor | chat: refactor the range, same behaviour | the answer's code block replaces the range |
//! | test | chat: write pytest-style tests for the range | the answer's code block, printed |

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    Complete,
    Infill,
    Explain,
    Fix,
    Refactor,
    Test,
}

impl Task {
    /// Tasks whose answer replaces the range, checked by the file's tests.
    pub fn edits(self) -> bool {
        matches!(self, Task::Fix | Task::Refactor)
    }
}

/// The file split around the range: `before`, `selected`, `after` (each with its newlines).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub before: String,
    pub selected: String,
    pub after: String,
    pub first_line: usize,
    pub last_line: usize,
}

impl Target {
    /// Splits `text` (the file at `path`, for messages) at the 1-based inclusive `lines`.
    pub fn split(text: &str, lines: Option<(usize, usize)>, path: &Path) -> Result<Self, String> {
        let all: Vec<&str> = text.split_inclusive('\n').collect();
        let (a, b) = lines.unwrap_or((1, all.len().max(1)));
        if a == 0 || a > b || b > all.len().max(1) {
            return Err(format!("{}: lines {a}:{b} are not within the file's 1:{} (give --lines FIRST:LAST, 1-based, inclusive)", path.display(), all.len()));
        }
        let join = |r: &[&str]| r.concat();
        let end = b.min(all.len());
        Ok(Target { before: join(&all[..a - 1]), selected: join(&all[(a - 1).min(all.len())..end]), after: join(&all[end..]), first_line: a, last_line: b })
    }

    /// The file with the range replaced by `code` (a final newline kept where the range had one).
    pub fn replaced(&self, code: &str) -> String {
        let mut code = code.to_string();
        if self.selected.ends_with('\n') && !code.ends_with('\n') {
            code.push('\n');
        }
        format!("{}{code}{}", self.before, self.after)
    }
}

/// Parses `A:B` (or a single line `A`).
pub fn parse_lines(s: &str) -> Result<(usize, usize), String> {
    let parse = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("--lines '{s}': use FIRST:LAST (1-based, inclusive), e.g. 10:24"));
    match s.split_once(':') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => parse(s).map(|a| (a, a)),
    }
}

/// What is sent: a raw completion prompt or chat messages (system, user).
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Completion(String),
    Chat { system: String, user: String },
}

const SYSTEM: &str = "You are an expert Python programmer. Answer concisely.";

/// The request for `task` on `t` (file name `name`); `failures`: the tests' output, for `fix`.
pub fn request(task: Task, t: &Target, name: &str, failures: Option<&str>) -> Request {
    let whole = format!("{}{}{}", t.before, t.selected, t.after);
    let range = format!("lines {}-{} of {name}", t.first_line, t.last_line);
    let code = |s: &str| format!("```python\n{}\n```", s.trim_end());
    let chat = |user: String| Request::Chat { system: SYSTEM.into(), user };
    match task {
        Task::Complete => Request::Completion(format!("{}{}", t.before, t.selected)),
        Task::Infill => Request::Completion(format!("<|fim_prefix|>{}<|fim_suffix|>{}<|fim_middle|>", t.before, t.after)),
        Task::Explain => chat(format!("File {name}:\n{}\n\nExplain what {range} do:\n{}", code(&whole), code(&t.selected))),
        Task::Fix => {
            let why = failures.map(|f| format!("\n\nIts tests fail:\n```\n{}\n```", f.trim_end())).unwrap_or_default();
            chat(format!(
                "File {name}:\n{}{why}\n\nFix the bug in {range}. Reply with the corrected code of exactly those lines in one ```python block.\n{}",
                code(&whole),
                code(&t.selected)
            ))
        }
        Task::Refactor => chat(format!(
            "File {name}:\n{}\n\nRefactor {range} for clarity without changing behaviour. Reply with the new code of exactly those lines in one ```python block.\n{}",
            code(&whole),
            code(&t.selected)
        )),
        Task::Test => chat(format!("File {name}:\n{}\n\nWrite pytest-style test functions (test_*) for {range}, in one ```python block.\n{}", code(&whole), code(&t.selected))),
    }
}

/// The code of an answer: its first fenced block, else the whole answer.
pub fn answer_code(answer: &str) -> String {
    let (blocks, _) = distill_filter::extract::fenced_blocks(answer);
    match blocks.first() {
        Some(b) => b.body.clone(),
        None => answer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "def add(a, b):\n    return a - b\n\n\ndef test_add():\n    assert add(2, 3) == 5\n";

    #[test]
    fn ranges_split_and_replace() {
        let t = Target::split(FILE, Some((2, 2)), Path::new("m.py")).unwrap();
        assert_eq!(t.selected, "    return a - b\n");
        assert_eq!(t.before, "def add(a, b):\n");
        assert_eq!(t.replaced("    return a + b"), FILE.replace("a - b", "a + b"));
        let whole = Target::split(FILE, None, Path::new("m.py")).unwrap();
        assert_eq!(whole.selected, FILE);
        let err = Target::split(FILE, Some((3, 9)), Path::new("m.py")).unwrap_err();
        assert!(err.contains("m.py") && err.contains("1:6"), "{err}");
        assert_eq!(parse_lines("4:7").unwrap(), (4, 7));
        assert!(parse_lines("x").unwrap_err().contains("FIRST:LAST"));
    }

    #[test]
    fn requests_carry_the_range_and_the_failures() {
        let t = Target::split(FILE, Some((2, 2)), Path::new("m.py")).unwrap();
        let Request::Chat { user, .. } = request(Task::Fix, &t, "m.py", Some("AssertionError")) else { panic!() };
        assert!(user.contains("lines 2-2 of m.py") && user.contains("AssertionError") && user.contains("return a - b"), "{user}");
        let Request::Completion(p) = request(Task::Infill, &t, "m.py", None) else { panic!() };
        assert_eq!(p, format!("<|fim_prefix|>def add(a, b):\n<|fim_suffix|>{}<|fim_middle|>", &FILE[32..]));
        assert_eq!(answer_code("Here:\n```python\n    return a + b\n```\ndone"), "    return a + b\n");
    }
}
