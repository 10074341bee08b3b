//! The Python parse check, batched: one interpreter parses every snippet with `ast.parse`
//! (nothing is executed), instead of one process per answer. The same pass removes
//! `if __name__ == "__main__":` blocks from solutions and splits test blocks into individual
//! cases (each top-level `assert`, each `test_*` function) with their setup (imports and
//! assignments), which self-consistency runs one by one.

use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const SCRIPT: &str = include_str!("pycheck.py");

#[derive(Debug, Clone, Serialize)]
pub struct Item<'a> {
    pub code: &'a str,
    pub tests: &'a [String],
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TestBlock {
    pub setup: String,
    pub cases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Checked {
    /// `SyntaxError: invalid syntax (line 3)`, or `None` when the code parses.
    pub error: Option<String>,
    pub runnable: String,
    pub tests: Vec<TestBlock>,
}

/// Checks every item in one `python` process.
pub fn check_all(python: &str, items: &[Item<'_>]) -> Result<Vec<Checked>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let fail = |message: String| Error::Python { python: python.to_string(), message };
    let input = serde_json::to_vec(items).map_err(|e| fail(e.to_string()))?;
    // -I: isolated (no user site, no PYTHON* variables, no cwd on sys.path); the script only
    // parses, but nothing of the environment should change how it parses.
    let mut child = Command::new(python).args(["-I", "-c", SCRIPT]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| fail(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Write from a thread: a large batch would otherwise fill the pipe while Python's output
    // fills the other one.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    writer.join().expect("writer thread").map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(format!("{} ({})", err.trim().lines().last().unwrap_or(""), out.status)));
    }
    let checked: Vec<Checked> = serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad output: {e}")))?;
    if checked.len() != items.len() {
        return Err(fail(format!("{} results for {} snippets", checked.len(), items.len())));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_snippets_are_checked_in_one_process() {
        let tests = vec!["import math\nX = 2\nassert f(X) == 4\nprint('noise')\nassert f(0) == 0\n".to_string()];
        let mut codes: Vec<String> = (0..200).map(|i| format!("def f(x):\n    return x * {i}\n")).collect();
        codes.push("def f(:\n  pass\n".into());
        codes.push("x = ((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))\n".repeat(3));
        codes.push("def f(x):\n    return x\n\nif __name__ == '__main__':\n    print(f(input()))\n".into());
        let none: Vec<String> = Vec::new();
        let items: Vec<Item> = codes.iter().enumerate().map(|(i, c)| Item { code: c, tests: if i == 0 { &tests } else { &none } }).collect();
        let r = check_all("python3", &items).unwrap();
        assert_eq!(r.len(), 203);
        assert!(r[..200].iter().all(|c| c.error.is_none()));
        assert!(r[200].error.as_deref().unwrap().starts_with("SyntaxError"), "{:?}", r[200].error);
        assert!(r[201].error.is_none());
        assert_eq!(r[202].runnable, "def f(x):\n    return x\n\n");
        assert_eq!(r[0].tests, vec![TestBlock { setup: "import math\nX = 2".into(), cases: vec!["assert f(X) == 4".into(), "assert f(0) == 0".into()] }]);
    }

    #[test]
    fn a_missing_interpreter_is_an_error_naming_it() {
        let e = check_all("/nonexistent/python", &[Item { code: "x", tests: &[] }]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/python"), "{e}");
    }
}
