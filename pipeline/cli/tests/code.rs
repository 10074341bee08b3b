//! `distill code fix` against an OpenAI-compatible server on loopback (the teacher test
//! server, answering as a scripted model): the file's failing test is run in the sandbox
//! first, its failure goes into the request, the answer's code replaces the line range, and
//! the tests run again; `--write` keeps the fix only when they pass.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use distill_teacher_testserver::{spawn, ChatAnswer, ServerConfig, TestServer};

const BUGGY: &str = "def add(a, b):\n    return a - b\n\n\ndef test_add():\n    assert add(2, 3) == 5\n";

/// Answers the fix only when the request shows the failing test and the buggy line, as a
/// model given that context would; otherwise a wrong edit.
fn scripted(prompt: &str) -> String {
    if prompt.contains("test_add: AssertionError") && prompt.contains("return a - b") && prompt.contains("lines 2-2 of calc.py") {
        "The function subtracts instead of adding.\n\n```python\n    return a + b\n```\n".into()
    } else {
        "```python\n    return a * b\n```\n".into()
    }
}

/// A scripted server on loopback and a temporary folder holding `calc.py`.
struct Session {
    server: TestServer,
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Session {
    /// The server answers every request with `answer`; `calc.py` holds `source`.
    fn new(answer: ChatAnswer, source: &str) -> Self {
        let server = spawn(ServerConfig { chat_answer: Some(answer), ..Default::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("calc.py");
        std::fs::write(&file, source).unwrap();
        Session { server, dir, file }
    }

    /// `distill code <task> calc.py --lines <lines> <extra>` in the folder: whether it
    /// succeeded, its stdout and stderr.
    fn run(&self, task: &str, lines: &str, extra: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(self.dir.path())
            .args(["--quiet", "code", task, "calc.py", "--lines", lines, "--endpoint", &self.server.base_url, "--model", "scripted"])
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `calc.py` as it is now.
    fn source(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap()
    }
}

#[test]
fn code_fix_runs_the_failing_test_gets_a_fix_and_the_tests_pass_after() {
    let session = Session::new(Arc::new(scripted), BUGGY);
    let (ok, stdout, stderr) = session.run("fix", "2:2", &["--write"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("subtracts instead of adding") && stdout.contains("return a + b"), "the answer is printed: {stdout}");
    assert!(stderr.contains("tests before: 0 passed, 1 failed"), "{stderr}");
    assert!(stderr.contains("tests after the Fix: 1 passed, 0 failed (PASS)"), "{stderr}");
    assert_eq!(session.source(), BUGGY.replace("a - b", "a + b"));
    assert_eq!(session.server.counters().requests(), 1);
}

#[test]
fn a_wrong_fix_is_reported_and_not_written() {
    // The test lives beside the module (test_calc.py imports calc); the scripted model answers
    // with a wrong edit, which the tests catch.
    let module = "def add(a, b):\n    return a - b\n";
    let session = Session::new(Arc::new(|_: &str| "```python\n    return a * b\n```".to_string()), module);
    std::fs::write(session.dir.path().join("test_calc.py"), "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n").unwrap();
    let (ok, _, stderr) = session.run("fix", "2:2", &["--write"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("tests before: 0 passed, 1 failed") && stderr.contains("(FAIL)") && stderr.contains("not written"), "{stderr}");
    assert_eq!(session.source(), module);
}

/// `distill code complete` streams the same greedy text from `distill serve` (SSE) as from the
/// same model in-process, in f32 and with int4 weights on both sides.
#[test]
fn complete_streams_the_same_text_from_serve_and_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    distill_serve::fixture::write_model_dir(&model, "llama-nano", 7).unwrap();
    std::fs::write(dir.path().join("calc.py"), "def fib(n):\n    if n < 2:\n").unwrap();
    for q in ["", "q4_k"] {
        let cfg = distill_serve::ServeConfig { model_dir: model.display().to_string(), port: 0, model_name: "nano".into(), quantize: q.into(), ..Default::default() };
        let server = distill_serve::start(&cfg).unwrap();
        let run = |extra: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_distill"))
                .current_dir(dir.path())
                .args(["--quiet", "code", "complete", "calc.py", "--max-tokens", "12"])
                .args(extra)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let served = run(&["--endpoint", &server.base_url(), "--model", "nano"]);
        let mut local_args = vec!["--model-dir", model.to_str().unwrap()];
        if !q.is_empty() {
            local_args.extend(["--quantize", q]);
        }
        let local = run(&local_args);
        assert!(served.len() > 4, "{q}: {served:?}");
        assert_eq!(served, local, "{q}: served vs in-process");
    }
}

/// A scripted model that keeps every prompt it is sent (chat as `role: content` lines, a
/// completion's raw prompt) and answers each with `answer`.
fn recording(answer: &'static str) -> (ChatAnswer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    (
        Arc::new(move |prompt: &str| {
            log.lock().unwrap().push(prompt.to_string());
            answer.to_string()
        }),
        seen,
    )
}

const MATH: &str = "def add(a, b):\n    pass\n\n\ndef mul(a, b):\n    return a * b\n";

/// `infill` sends one FIM completion (the lines before the range as the prefix, after it as
/// the suffix), prints the middle, and with `--write` puts it in place of the range.
#[test]
fn infill_sends_prefix_and_suffix_and_the_middle_replaces_the_range() {
    let (answer, seen) = recording("    return a + b");
    let session = Session::new(answer, MATH);

    let (ok, stdout, stderr) = session.run("infill", "2:2", &[]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout, "    return a + b\n");
    assert_eq!(session.source(), MATH, "without --write the file is untouched");
    let expected = "<|fim_prefix|>def add(a, b):\n<|fim_suffix|>\n\ndef mul(a, b):\n    return a * b\n<|fim_middle|>";
    assert_eq!(seen.lock().unwrap().as_slice(), [expected.to_string()], "one completion request with the FIM prompt");

    let (ok, stdout, stderr) = session.run("infill", "2:2", &["--write"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("wrote calc.py"), "{stderr}");
    assert_eq!(session.source(), MATH.replace("    pass\n", "    return a + b\n"));
    assert_eq!(session.server.counters().requests(), 2);
}

/// `explain` asks about the range with the whole file as context, prints the answer, runs no
/// tests and writes nothing (even with `--write`).
#[test]
fn explain_prints_the_answer_and_changes_no_file() {
    const EXPLANATION: &str = "`add` returns the difference of its arguments, not their sum.";
    let (answer, seen) = recording(EXPLANATION);
    let session = Session::new(answer, BUGGY);
    let (ok, stdout, stderr) = session.run("explain", "1:2", &["--write"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout, format!("{EXPLANATION}\n"));
    assert!(!stderr.contains("tests") && !stderr.contains("wrote"), "explain runs no tests and writes nothing: {stderr}");
    assert_eq!(session.source(), BUGGY);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let prompt = &seen[0];
    assert!(prompt.starts_with("system: You are an expert Python programmer"), "{prompt}");
    assert!(prompt.contains("File calc.py:\n```python\ndef add(a, b):") && prompt.contains("def test_add():"), "the whole file as context: {prompt}");
    assert!(prompt.contains("Explain what lines 1-2 of calc.py do:\n```python\ndef add(a, b):\n    return a - b\n```"), "{prompt}");
}

const VERBOSE: &str = "def add(a, b):\n    total = a\n    total = total + b\n    return total\n\n\ndef test_add():\n    assert add(2, 3) == 5\n";

/// `refactor` runs the file's tests before and after: an answer that keeps them passing is
/// PASS and written with `--write`.
#[test]
fn refactor_that_keeps_the_tests_passing_is_reported_pass_and_written() {
    let (answer, seen) = recording("Simpler:\n\n```python\n    return a + b\n```\n");
    let session = Session::new(answer, VERBOSE);
    let (ok, stdout, stderr) = session.run("refactor", "2:4", &["--write"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("return a + b"), "{stdout}");
    assert!(stderr.contains("tests before: 1 passed, 0 failed"), "{stderr}");
    assert!(stderr.contains("tests after the Refactor: 1 passed, 0 failed (PASS)") && stderr.contains("wrote calc.py"), "{stderr}");
    assert_eq!(session.source(), "def add(a, b):\n    return a + b\n\n\ndef test_add():\n    assert add(2, 3) == 5\n");
    let prompt = &seen.lock().unwrap()[0];
    assert!(prompt.contains("Refactor lines 2-4 of calc.py for clarity without changing behaviour") && prompt.contains("    total = total + b"), "{prompt}");
    assert!(!prompt.contains("Its tests fail"), "passing tests are not reported as failures: {prompt}");
}

/// A refactor that changes behaviour breaks the tests: FAIL, a failing exit, the file untouched.
#[test]
fn refactor_that_breaks_the_tests_is_reported_fail_and_not_written() {
    let (answer, _) = recording("```python\n    return a - b\n```");
    let session = Session::new(answer, VERBOSE);
    let (ok, stdout, stderr) = session.run("refactor", "2:4", &["--write"]);
    assert!(!ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("tests before: 1 passed, 0 failed"), "{stderr}");
    assert!(stderr.contains("tests after the Refactor: 0 passed, 1 failed (FAIL)") && stderr.contains("test_add: AssertionError"), "{stderr}");
    assert!(stderr.contains("not written") && !stderr.contains("wrote"), "{stderr}");
    assert_eq!(session.source(), VERBOSE);
}

/// `test` asks for pytest-style tests of the range and prints the answer; as its task table
/// says, the generated tests are printed only: not run, not written anywhere.
#[test]
fn test_prints_the_generated_tests_and_writes_nothing() {
    const TESTS: &str = "```python\ndef test_mul_small():\n    assert mul(2, 3) == 6\n```";
    let (answer, seen) = recording(TESTS);
    let session = Session::new(answer, MATH);
    let (ok, stdout, stderr) = session.run("test", "5:6", &["--write"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout, format!("{TESTS}\n"));
    assert!(!stderr.contains("tests") && !stderr.contains("wrote"), "{stderr}");
    assert_eq!(session.source(), MATH);
    let files: Vec<_> = std::fs::read_dir(session.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["calc.py"], "no test file is written");
    let prompt = &seen.lock().unwrap()[0];
    assert!(
        prompt.contains("Write pytest-style test functions (test_*) for lines 5-6 of calc.py, in one ```python block.\n```python\ndef mul(a, b):\n    return a * b\n```"),
        "{prompt}"
    );
}
