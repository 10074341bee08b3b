//! Loads every benchmark from the vendored files and checks the counts, ids and fields that
//! the evaluator and the decontaminator rely on; and that a changed file is refused.

use distill_benchmarks::{load_from, Benchmark, Error, TextKind};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    distill_core::testing::repo_root().join("evals/data")
}

#[test]
fn every_benchmark_loads_with_the_documented_counts() {
    let expect = [
        (Benchmark::HumanEval, 164, "HumanEval/0", "HumanEval/163"),
        (Benchmark::HumanEvalPlus, 164, "HumanEval/0", "HumanEval/163"),
        (Benchmark::MbppTest, 500, "Mbpp/11", "Mbpp/510"),
        (Benchmark::MbppFull, 974, "Mbpp/1", "Mbpp/974"),
        (Benchmark::MbppSanitized, 427, "Mbpp/2", "Mbpp/809"),
        (Benchmark::MbppPlus, 378, "Mbpp/2", "Mbpp/809"),
    ];
    for (b, n, first, last) in expect {
        let ds = load_from(&data_dir(), b).unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(ds.tasks.len(), n, "{b}");
        assert_eq!(ds.tasks.first().unwrap().task_id, first, "{b}");
        assert_eq!(ds.tasks.last().unwrap().task_id, last, "{b}");
        assert_eq!(ds.sha256, b.data_file().sha256());
        for t in &ds.tasks {
            assert!(!t.prompt.is_empty() && !t.text.is_empty() && !t.entry_point.is_empty(), "{}", t.task_id);
            assert!(!t.canonical_solution.is_empty() && !t.tests.is_empty(), "{}", t.task_id);
            assert_eq!(t.plus.is_some(), b.is_plus(), "{}", t.task_id);
        }
    }
}

#[test]
fn plus_inputs_are_kept_verbatim_and_counted() {
    let he = load_from(&data_dir(), Benchmark::HumanEvalPlus).unwrap();
    let base: usize = he.tasks.iter().map(|t| t.plus.as_ref().unwrap().base_inputs).sum();
    let plus: usize = he.tasks.iter().map(|t| t.plus.as_ref().unwrap().plus_inputs).sum();
    // The totals evals/SOURCES.md gives for HumanEval+ v0.1.10.
    assert_eq!((base, plus), (1570, 122_683));
    let mbpp = load_from(&data_dir(), Benchmark::MbppPlus).unwrap();
    let plus: usize = mbpp.tasks.iter().map(|t| t.plus.as_ref().unwrap().plus_inputs).sum();
    assert_eq!(plus, 39_841);
    // Python-style infinities survive (strict JSON cannot hold them).
    assert!(mbpp.tasks.iter().any(|t| t.plus.as_ref().unwrap().plus_input_json.contains("-Infinity")));
    let t120 = mbpp.task("Mbpp/120").unwrap();
    assert!(t120.tests.contains("math.isclose") && !t120.canonical_solution.contains("import math"));
}

#[test]
fn prompts_follow_the_bigcode_conventions() {
    let mbpp = load_from(&data_dir(), Benchmark::MbppTest).unwrap();
    let t = mbpp.task("Mbpp/11").unwrap();
    assert_eq!(
        t.prompt,
        "\"\"\"\nWrite a python function to remove first and last occurrence of a given character from the string.\nassert remove_Occ(\"hello\",\"l\") == \"heo\"\n\"\"\"\n"
    );
    assert_eq!(t.entry_point, "remove_Occ");
    assert_eq!(t.test_list.len(), 3);
    assert!(mbpp.task("Mbpp/367").unwrap().test_setup.contains("root = Node(1)"));
    let he = load_from(&data_dir(), Benchmark::HumanEval).unwrap();
    let t = &he.tasks[0];
    assert!(t.prompt.starts_with("from typing import List\n\n\ndef has_close_elements"));
    assert!(t.text.starts_with("Check if in given list of numbers, are any two numbers closer"), "{}", t.text);
    let kinds: Vec<TextKind> = t.contamination_texts().iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, vec![TextKind::Prompt, TextKind::Text, TextKind::Solution, TextKind::Tests]);
    let plus = load_from(&data_dir(), Benchmark::MbppPlus).unwrap();
    assert_eq!(plus.tasks[0].text, "Write a function to find the shared elements from the given two lists.");
}

#[test]
fn a_changed_file_is_refused_with_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(data_dir().join("mbpp.jsonl")).unwrap();
    bytes[10] ^= 1;
    std::fs::write(dir.path().join("mbpp.jsonl"), &bytes).unwrap();
    let err = load_from(dir.path(), Benchmark::MbppTest).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }));
    let msg = err.to_string();
    assert!(msg.contains("mbpp.jsonl") && msg.contains(Benchmark::MbppTest.data_file().sha256()), "{msg}");
    assert!(msg.contains(&distill_core::digest::sha256_hex(&bytes)), "{msg}");
    let missing = load_from(dir.path(), Benchmark::HumanEval).unwrap_err().to_string();
    assert!(missing.contains("HumanEval.jsonl.gz"), "{missing}");
}

/// An installed binary carries the benchmarks: the same checked files, the same tasks.
#[test]
fn the_built_in_copies_are_the_vendored_files() {
    for b in Benchmark::ALL {
        let built_in = distill_benchmarks::load(b).unwrap_or_else(|e| panic!("{b}: {e}"));
        let on_disk = load_from(&data_dir(), b).unwrap();
        assert_eq!(built_in.sha256, b.data_file().sha256(), "{b}");
        assert!(built_in.path.starts_with("<built-in>"), "{}", built_in.path.display());
        assert_eq!(built_in.tasks, on_disk.tasks, "{b}");
        assert_eq!(distill_benchmarks::DataSource::from_config("").load(b).unwrap().tasks.len(), on_disk.tasks.len());
    }
}

/// The infilling sets of the FIM paper (Bavarian et al. 2022) have 1,033 single-line and 5,815
/// multi-line tasks; each puts its HumanEval task's canonical program back together.
#[test]
fn the_infilling_sets_have_the_fim_papers_task_counts() {
    let he = distill_benchmarks::load(Benchmark::HumanEval).unwrap();
    for (b, n) in [(Benchmark::HumanEvalInfillSingle, 1033), (Benchmark::HumanEvalInfillMulti, 5815)] {
        let ds = distill_benchmarks::load(b).unwrap();
        assert_eq!((ds.tasks.len(), ds.sha256.as_str()), (n, he.sha256.as_str()), "{b}");
        for t in &ds.tasks {
            let base = he.task(t.task_id.rsplit_once('/').unwrap().0).unwrap();
            assert_eq!(format!("{}{}{}", t.prompt, t.canonical_solution, t.suffix), format!("{}{}", base.prompt, base.canonical_solution), "{}", t.task_id);
            assert!(b.is_infill() && !t.canonical_solution.trim().is_empty(), "{}", t.task_id);
        }
    }
}
