//! The file's tests, run in the sandbox: the `test_*` functions of the file itself, or of a
//! sibling `test_<stem>.py` / `<stem>_test.py` (which imports the file as module `<stem>`).
//!
//! One program: the file's source is made module `<stem>` (and `__main__`'s globals when the
//! tests are in it), then each `test_*` function is called in definition order; a JSON line
//! per test says passed or the exception. The sandbox gives the usual isolation and limits.

use std::path::Path;

use distill_sandbox::{Program, Sandbox, SandboxConfig};

/// Where the tests of a file are.
#[derive(Debug, Clone, PartialEq)]
pub enum Tests {
    InFile,
    Sibling { path: std::path::PathBuf, source: String },
}

/// One run of the tests.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    pub passed: Vec<String>,
    /// (test name, "ExceptionType: message")
    pub failed: Vec<(String, String)>,
    /// The program did not get to run the tests (syntax error, import error, timeout).
    pub error: Option<String>,
}

impl TestRun {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty() && !self.passed.is_empty()
    }

    pub fn summary(&self) -> String {
        match &self.error {
            Some(e) => format!("the tests did not run: {e}"),
            None => format!("{} passed, {} failed", self.passed.len(), self.failed.len()),
        }
    }

    /// What `fix` tells the model.
    pub fn failures(&self) -> String {
        let mut s: Vec<String> = self.failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        s.extend(self.error.clone());
        s.join("\n")
    }
}

fn has_tests(src: &str) -> bool {
    src.lines().any(|l| l.starts_with("def test_"))
}

/// The tests of `path` (with content `src`), if it has any.
pub fn find(path: &Path, src: &str) -> Option<Tests> {
    if has_tests(src) {
        return Some(Tests::InFile);
    }
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let dir = path.parent().unwrap_or(Path::new("."));
    [format!("test_{stem}.py"), format!("{stem}_test.py")].into_iter().map(|n| dir.join(n)).find_map(|p| {
        let source = std::fs::read_to_string(&p).ok()?;
        has_tests(&source).then_some(Tests::Sibling { path: p, source })
    })
}

const HARNESS: &str = r#"
import json, sys, types, traceback
_mod = types.ModuleType(STEM)
_mod.__file__ = STEM + ".py"
sys.modules[STEM] = _mod
exec(compile(MODULE, STEM + ".py", "exec"), _mod.__dict__)
_ns = _mod.__dict__
if TESTS is not None:
    _ns = {"__name__": "tests"}
    exec(compile(TESTS, "tests.py", "exec"), _ns)
for _name, _f in list(_ns.items()):
    if _name.startswith("test_") and callable(_f):
        try:
            _f()
            print(json.dumps({"test": _name, "ok": True}))
        except BaseException as e:
            print(json.dumps({"test": _name, "ok": False, "error": f"{type(e).__name__}: {e}"}))
"#;

/// Runs the tests of the file whose (possibly edited) source is `module`, named `stem`.
pub fn run(sandbox: &Sandbox, stem: &str, module: &str, tests: &Tests) -> TestRun {
    let lit = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let tests_src = match tests {
        Tests::InFile => "None".to_string(),
        Tests::Sibling { source, .. } => lit(source),
    };
    let program = format!("STEM = {}\nMODULE = {}\nTESTS = {tests_src}\n{HARNESS}", lit(stem), lit(module));
    let out = sandbox.run(&Program::new(program));
    let mut run = TestRun { passed: Vec::new(), failed: Vec::new(), error: None };
    for line in out.stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let name = v["test"].as_str().unwrap_or("?").to_string();
        if v["ok"] == true {
            run.passed.push(name);
        } else {
            run.failed.push((name, v["error"].as_str().unwrap_or("").to_string()));
        }
    }
    if !out.passed() {
        run.error = Some(format!("{:?}: {}", out.status, [out.exception.clone(), out.message.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ")));
    } else if run.passed.is_empty() && run.failed.is_empty() {
        run.error = Some("no test_* function ran".into());
    }
    run
}

/// A sandbox with the default limits.
pub fn sandbox() -> Result<Sandbox, String> {
    Sandbox::new(SandboxConfig::default()).map_err(|e| format!("starting the sandbox: {e}"))
}
