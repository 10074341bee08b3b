//! The runner's promises, on a small DAG of real stages that write files:
//! staleness propagates downstream only, `--force` reruns, a killed stage leaves no
//! complete-looking output, shard parts merge into what an unsharded run writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use distill_core::runner::{Outcome, RunOptions};
use distill_core::{Runner, ShardSpec, StageContext, StageDef, StageState};
use serde_json::json;

/// `numbers` writes the ids 0..count as JSONL; `squares` reads them and writes their squares;
/// `sum` adds the squares up. Each counts its runs.
fn dag(count: u64, exponent: u32, runs: &Arc<[AtomicUsize; 3]>) -> Vec<StageDef> {
    let r0 = runs.clone();
    let r1 = runs.clone();
    let r2 = runs.clone();
    vec![
        StageDef {
            name: "numbers",
            deps: vec![],
            schema_version: 1,
            config: json!({"count": count}),
            external: BTreeMap::new(),
            shardable: true,
            run: Box::new(move |ctx: &StageContext| {
                r0[0].fetch_add(1, Ordering::SeqCst);
                let lines: Vec<_> = (0..count).map(|i| json!({"id": format!("n{i:04}"), "x": i})).filter(|v| ctx.owns(v["id"].as_str().unwrap())).collect();
                distill_core::jsonl::write(&ctx.out_dir.join("numbers.jsonl"), &lines)?;
                Ok(json!({"written": lines.len()}))
            }),
        },
        StageDef {
            name: "squares",
            deps: vec!["numbers"],
            schema_version: 1,
            config: json!({"exponent": exponent}),
            external: BTreeMap::new(),
            shardable: false,
            run: Box::new(move |ctx: &StageContext| {
                r1[1].fetch_add(1, Ordering::SeqCst);
                let input: Vec<serde_json::Value> = distill_core::jsonl::read_strict(&ctx.input_dir("numbers").join("numbers.jsonl"))?;
                let out: Vec<_> = input.iter().map(|v| json!({"id": v["id"], "y": v["x"].as_u64().unwrap().pow(exponent)})).collect();
                distill_core::jsonl::write(&ctx.out_dir.join("squares.jsonl"), &out)?;
                Ok(json!({"rows": out.len()}))
            }),
        },
        StageDef {
            name: "sum",
            deps: vec!["squares"],
            schema_version: 1,
            config: json!({}),
            external: BTreeMap::new(),
            shardable: false,
            run: Box::new(move |ctx: &StageContext| {
                r2[2].fetch_add(1, Ordering::SeqCst);
                let input: Vec<serde_json::Value> = distill_core::jsonl::read_strict(&ctx.input_dir("squares").join("squares.jsonl"))?;
                let total: u64 = input.iter().map(|v| v["y"].as_u64().unwrap()).sum();
                distill_core::atomic::write_file(&ctx.out_dir.join("sum.txt"), total.to_string().as_bytes())?;
                Ok(json!({"total": total}))
            }),
        },
    ]
}

fn counts(runs: &Arc<[AtomicUsize; 3]>) -> [usize; 3] {
    [0, 1, 2].map(|i| runs[i].load(Ordering::SeqCst))
}

fn new_runs() -> Arc<[AtomicUsize; 3]> {
    Arc::new([AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0)])
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn a_second_run_does_nothing_and_status_says_up_to_date() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    let runner = Runner::new(work.path(), dag(10, 2, &runs)).unwrap();
    assert!(runner.status().unwrap().iter().all(|s| s.state == StageState::NeverRun));
    runner.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(counts(&runs), [1, 1, 1]);
    assert_eq!(read(&work.path().join("sum/sum.txt")), "285");
    let again = runner.run(&["sum"], RunOptions::default()).unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::UpToDate));
    assert_eq!(counts(&runs), [1, 1, 1]);
    assert!(runner.status().unwrap().iter().all(|s| s.state == StageState::UpToDate));
    let stats: serde_json::Value = serde_json::from_str(&read(&work.path().join("sum/stats.json"))).unwrap();
    assert_eq!(stats["total"], 285);
    assert!(stats["elapsed_secs"].is_number());
}

#[test]
fn changing_a_setting_makes_that_stage_and_downstream_stale_and_leaves_upstream_alone() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    Runner::new(work.path(), dag(10, 2, &runs)).unwrap().run(&["sum"], RunOptions::default()).unwrap();

    let runs2 = new_runs();
    let changed = Runner::new(work.path(), dag(10, 3, &runs2)).unwrap();
    let status = changed.status().unwrap();
    assert_eq!(status[0].state, StageState::UpToDate);
    assert_eq!(status[1].state, StageState::Stale(vec!["config exponent: 2 -> 3".into()]));
    assert_eq!(status[2].state, StageState::Stale(vec!["input 'squares' is not up to date".into()]));
    changed.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(counts(&runs2), [0, 1, 1]);
    assert_eq!(read(&work.path().join("sum/sum.txt")), "2025");
}

#[test]
fn force_reruns_only_the_named_stage_and_missing_outputs_make_a_stage_stale() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    let runner = Runner::new(work.path(), dag(5, 2, &runs)).unwrap();
    runner.run(&["sum"], RunOptions::default()).unwrap();
    runner.run(&["squares"], RunOptions { force: true, ..Default::default() }).unwrap();
    assert_eq!(counts(&runs), [1, 2, 1]);

    std::fs::remove_file(work.path().join("squares/squares.jsonl")).unwrap();
    let status = runner.status().unwrap();
    assert_eq!(status[1].state, StageState::Stale(vec!["output squares.jsonl missing or modified".into()]));
    runner.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(counts(&runs), [1, 3, 1], "sum's inputs did not change fingerprint, so sum is still up to date");
}

/// Regression (#18): outputs were compared by size only, so a file edited to the same size
/// counted as up to date and the stages after it ran on data no stage produced.
#[test]
fn an_output_edited_to_the_same_size_is_stale_and_a_touched_one_is_not() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    let runner = Runner::new(work.path(), dag(5, 2, &runs)).unwrap();
    runner.run(&["sum"], RunOptions::default()).unwrap();
    let file = work.path().join("squares/squares.jsonl");

    // Rewritten with the same bytes (a copy, a `touch`): the time differs, the sha256 does not.
    let original = std::fs::read(&file).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&file, &original).unwrap();
    assert_eq!(runner.status().unwrap()[1].state, StageState::UpToDate);
    runner.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(counts(&runs), [1, 1, 1], "nothing reran");

    // One byte edited, same size: stale, and the run rewrites it.
    let mut edited = original.clone();
    let at = edited.iter().position(|&b| b == b'4').expect("a 4 in the squares");
    edited[at] = b'5';
    std::fs::write(&file, &edited).unwrap();
    assert_eq!(runner.status().unwrap()[1].state, StageState::Stale(vec!["output squares.jsonl missing or modified".into()]));
    runner.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(counts(&runs), [1, 2, 1]);
    assert_eq!(std::fs::read(&file).unwrap(), original);
}

#[test]
fn a_failing_stage_leaves_the_previous_output_and_no_temporaries() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    Runner::new(work.path(), dag(4, 2, &runs)).unwrap().run(&["numbers"], RunOptions::default()).unwrap();
    let before = read(&work.path().join("numbers/numbers.jsonl"));
    let failing = vec![StageDef {
        name: "numbers",
        deps: vec![],
        schema_version: 1,
        config: json!({"count": 99}),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(|ctx: &StageContext| {
            std::fs::write(ctx.out_dir.join("numbers.jsonl"), "half").unwrap();
            Err(distill_core::Error::Other("disk on fire".into()))
        }),
    }];
    let err = Runner::new(work.path(), failing).unwrap().run(&["numbers"], RunOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "stage 'numbers' failed: disk on fire");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(read(&work.path().join("numbers/numbers.jsonl")), before);
    let names: Vec<String> = std::fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["numbers".to_string()]);
}

#[test]
fn shard_parts_merge_into_the_unsharded_output() {
    let whole = tempfile::tempdir().unwrap();
    Runner::new(whole.path(), dag(50, 2, &new_runs())).unwrap().run(&["sum"], RunOptions::default()).unwrap();

    let sharded = tempfile::tempdir().unwrap();
    let runs = new_runs();
    let runner = Runner::new(sharded.path(), dag(50, 2, &runs)).unwrap();
    for index in [2, 0, 1] {
        let opts = RunOptions { shard: Some(ShardSpec { index, count: 3 }), ..Default::default() };
        runner.run(&["numbers"], opts).unwrap();
    }
    assert_eq!(runner.status().unwrap()[0].state, StageState::NeverRun);
    let outcomes = runner.run(&["sum"], RunOptions::default()).unwrap();
    assert_eq!(outcomes[0].1, Outcome::MergedParts { parts: 3 });
    assert_eq!(counts(&runs), [3, 1, 1]);
    assert_eq!(read(&sharded.path().join("numbers/numbers.jsonl")), read(&whole.path().join("numbers/numbers.jsonl")));
    let stats: serde_json::Value = serde_json::from_str(&read(&sharded.path().join("numbers/stats.json"))).unwrap();
    assert_eq!(stats["written"], 50);
    assert_eq!(read(&sharded.path().join("sum/sum.txt")), read(&whole.path().join("sum/sum.txt")));
}

#[test]
fn sharding_a_stage_that_cannot_be_sharded_is_a_usage_error() {
    let work = tempfile::tempdir().unwrap();
    let runner = Runner::new(work.path(), dag(5, 2, &new_runs())).unwrap();
    let err = runner.run(&["sum"], RunOptions { shard: Some(ShardSpec { index: 0, count: 2 }), ..Default::default() }).unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

/// `a` writes what `version` says (standing in for a code change), `b` copies it.
fn two_stages(version: Arc<AtomicUsize>, b_runs: Arc<AtomicUsize>) -> Vec<StageDef> {
    vec![
        StageDef {
            name: "a",
            deps: vec![],
            schema_version: 1,
            config: json!({}),
            external: BTreeMap::new(),
            shardable: false,
            run: Box::new(move |ctx: &StageContext| {
                distill_core::atomic::write_file(&ctx.out_dir.join("a.txt"), version.load(Ordering::SeqCst).to_string().as_bytes())?;
                Ok(json!({}))
            }),
        },
        StageDef {
            name: "b",
            deps: vec!["a"],
            schema_version: 1,
            config: json!({}),
            external: BTreeMap::new(),
            shardable: false,
            run: Box::new(move |ctx: &StageContext| {
                b_runs.fetch_add(1, Ordering::SeqCst);
                let text = std::fs::read_to_string(ctx.input_dir("a").join("a.txt")).unwrap();
                distill_core::atomic::write_file(&ctx.out_dir.join("b.txt"), text.as_bytes())?;
                Ok(json!({}))
            }),
        },
    ]
}

#[test]
fn a_forced_rerun_that_changes_its_output_makes_dependents_stale_and_one_that_does_not_leaves_them() {
    let work = tempfile::tempdir().unwrap();
    let version = Arc::new(AtomicUsize::new(1));
    let b_runs = Arc::new(AtomicUsize::new(0));
    let runner = Runner::new(work.path(), two_stages(version.clone(), b_runs.clone())).unwrap();
    runner.run(&["b"], RunOptions::default()).unwrap();
    assert_eq!(b_runs.load(Ordering::SeqCst), 1);

    runner.run(&["a"], RunOptions { force: true, ..Default::default() }).unwrap();
    assert_eq!(runner.status().unwrap()[1].state, StageState::UpToDate, "same bytes: b stays up to date");
    runner.run(&["b"], RunOptions::default()).unwrap();
    assert_eq!(b_runs.load(Ordering::SeqCst), 1);

    version.store(2, Ordering::SeqCst);
    runner.run(&["a"], RunOptions { force: true, ..Default::default() }).unwrap();
    assert_eq!(runner.status().unwrap()[1].state, StageState::Stale(vec!["input 'a' changed".into()]));
    runner.run(&["b"], RunOptions::default()).unwrap();
    assert_eq!(b_runs.load(Ordering::SeqCst), 2);
    assert_eq!(read(&work.path().join("b/b.txt")), "2");
}

#[test]
fn only_runs_the_named_stage_on_the_inputs_in_place() {
    let work = tempfile::tempdir().unwrap();
    let runs = new_runs();
    Runner::new(work.path(), dag(10, 2, &runs)).unwrap().run(&["squares"], RunOptions::default()).unwrap();
    // A changed setting upstream would normally rerun `numbers` first; --only leaves it.
    let runs2 = new_runs();
    let runner = Runner::new(work.path(), dag(11, 2, &runs2)).unwrap();
    let out = runner.run(&["sum"], RunOptions { only: true, ..Default::default() }).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(counts(&runs2), [0, 0, 1]);
    assert_eq!(read(&work.path().join("sum/sum.txt")), "285");
}
