//! A stage killed with SIGKILL part-way through leaves nothing that looks complete: no
//! published folder, no manifest; `status` says "never run" and the next run starts clean.
//!
//! The test re-executes its own test binary as the child that runs the slow stage
//! (`KILLED_STAGE_CHILD=<work dir>`), waits until the child has written half its output, kills it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use distill_core::runner::RunOptions;
use distill_core::{Runner, StageContext, StageDef, StageState};

fn slow_stage() -> Vec<StageDef> {
    vec![StageDef {
        name: "slow",
        deps: vec![],
        schema_version: 1,
        config: serde_json::json!({"rows": 1000}),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(|ctx: &StageContext| {
            let path = ctx.out_dir.join("rows.jsonl");
            let mut text = String::new();
            for i in 0..1000 {
                text.push_str(&format!("{{\"id\":{i}}}\n"));
                if i == 500 {
                    std::fs::write(&path, &text).unwrap();
                    if std::env::var_os("KILLED_STAGE_CHILD").is_some() {
                        std::thread::sleep(Duration::from_secs(60));
                    }
                }
            }
            std::fs::write(&path, &text).unwrap();
            Ok(serde_json::json!({"rows": 1000}))
        }),
    }]
}

#[test]
fn child_runs_the_slow_stage() {
    // Only does work when started by the test below.
    if let Some(dir) = std::env::var_os("KILLED_STAGE_CHILD") {
        Runner::new(Path::new(&dir), slow_stage()).unwrap().run(&["slow"], RunOptions::default()).unwrap();
    }
}

#[test]
fn a_killed_stage_leaves_no_complete_looking_output() {
    let work = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runs_the_slow_stage", "--nocapture", "--test-threads=1"])
        .env("KILLED_STAGE_CHILD", work.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let half_written = loop {
        let found = std::fs::read_dir(work.path()).unwrap().flatten().map(|e| e.path().join("rows.jsonl")).find(|p| p.exists());
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "child never started writing");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(half_written.exists(), "the partial output exists, under a temporary name");
    assert!(!work.path().join("slow").exists(), "no published folder");

    let runner = Runner::new(work.path(), slow_stage()).unwrap();
    assert_eq!(runner.status().unwrap()[0].state, StageState::NeverRun);
    runner.run(&["slow"], RunOptions::default()).unwrap();
    assert_eq!(std::fs::read_to_string(work.path().join("slow/rows.jsonl")).unwrap().lines().count(), 1000);
    let leftovers: Vec<_> = std::fs::read_dir(work.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("slow")], "leftovers of the killed run are cleaned up");
}
