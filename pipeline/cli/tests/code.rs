//! `distill code fix` against an OpenAI-compatible server on loopback (the teacher test
//! server, answering as a scripted model): the file's failing test is run in the sandbox
//! first, its failure goes into the request, the answer's code replaces the line range, and
//! the tests run again; `--write` keeps the fix only when they pass.

use std::process::Command;
use std::sync::Arc;

use distill_teacher_testserver::{spawn, ServerConfig};

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

fn distill_code(dir: &std::path::Path, base_url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(dir)
        .args(["--quiet", "code", "fix", "calc.py", "--lines", "2:2", "--endpoint", base_url, "--model", "scripted"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn code_fix_runs_the_failing_test_gets_a_fix_and_the_tests_pass_after() {
    let server = spawn(ServerConfig { chat_answer: Some(Arc::new(scripted)), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("calc.py");
    std::fs::write(&file, BUGGY).unwrap();
    let out = distill_code(dir.path(), &server.base_url, &["--write"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("subtracts instead of adding") && stdout.contains("return a + b"), "the answer is printed: {stdout}");
    assert!(stderr.contains("tests before: 0 passed, 1 failed"), "{stderr}");
    assert!(stderr.contains("tests after the Fix: 1 passed, 0 failed (PASS)"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), BUGGY.replace("a - b", "a + b"));
    assert_eq!(server.counters().requests(), 1);
}

#[test]
fn a_wrong_fix_is_reported_and_not_written() {
    // The test lives beside the module (test_calc.py imports calc); the scripted model answers
    // with a wrong edit, which the tests catch.
    let server = spawn(ServerConfig { chat_answer: Some(Arc::new(|_: &str| "```python\n    return a * b\n```".to_string())), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let module = "def add(a, b):\n    return a - b\n";
    std::fs::write(dir.path().join("calc.py"), module).unwrap();
    std::fs::write(dir.path().join("test_calc.py"), "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n").unwrap();
    let out = distill_code(dir.path(), &server.base_url, &["--write"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("tests before: 0 passed, 1 failed") && stderr.contains("(FAIL)") && stderr.contains("not written"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("calc.py")).unwrap(), module);
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
