//! The filter stage end to end: real Python parse checks, real sandboxed test runs, real
//! benchmark files for decontamination.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use distill_core::records::{Exclusion, KeptSample, PromptRecord, TeacherRecord, TeacherSample, Usage};
use distill_core::StageContext;
use distill_filter::{run, FilterConfig};

fn record(id: &str, prompt: &str, task_type: &str, answers: &[(&str, &str)]) -> TeacherRecord {
    let mut meta = BTreeMap::new();
    meta.insert("language".to_string(), serde_json::json!("python"));
    meta.insert("task_type".to_string(), serde_json::json!(task_type));
    TeacherRecord {
        id: id.into(),
        prompt: PromptRecord { id: id.into(), messages: None, prompt: Some(prompt.into()), meta },
        model: "t".into(),
        endpoint: "completions".into(),
        temperature: 0.8,
        samples: answers.iter().map(|(text, fr)| TeacherSample { text: text.to_string(), finish_reason: Some(fr.to_string()), tokens: None }).collect(),
        usage: Usage::default(),
    }
}

fn answer(body: &str) -> String {
    format!("Here is the function:\n```python\n{body}```\nAnd tests:\n```python\nassert clamp(5, 0, 3) == 3\nassert clamp(-1, 0, 3) == 0\nassert clamp(2, 0, 3) == 2\n```\n")
}

fn config() -> FilterConfig {
    let mut cfg = FilterConfig::default();
    cfg.decontamination.data_dir = distill_core::testing::repo_root().join("evals/data").display().to_string();
    cfg.decontamination.benchmarks = vec![distill_benchmarks::Benchmark::HumanEval];
    cfg.consistency.timeout_secs = 1.0;
    cfg
}

fn read<T: serde::de::DeserializeOwned>(p: &Path) -> Vec<T> {
    distill_core::jsonl::read_strict(p).unwrap()
}

#[test]
fn the_funnel_keeps_the_agreeing_samples_and_says_why_it_dropped_the_rest() {
    let good_a = answer("def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n");
    let good_b = answer("def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    if x > hi:\n        return hi\n    return x\n");
    let wrong = answer("def clamp(x, lo, hi):\n    return min(lo, max(x, hi))\n");
    let hangs = answer("def clamp(x, lo, hi):\n    while True:\n        pass\n");
    let spec = "Write clamp(x, lo, hi) that limits x to [lo, hi], with assert tests.";
    let humaneval_0 = "```python\nfrom typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    \"\"\" Check if in given list of numbers, are any two numbers closer to each other than\n    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    \"\"\"\n    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n            if idx != idx2:\n                distance = abs(elem - elem2)\n                if distance < threshold:\n                    return True\n\n    return False\n```\n";
    let records = vec![
        record("p1", spec, "implement_from_spec", &[(&good_a, "stop"), (&good_b, "stop"), (&wrong, "stop"), (&hangs, "stop")]),
        record("p2", spec, "implement_from_spec", &[(&good_a, "length")]),
        record("p3", spec, "implement_from_spec", &[("I'm sorry, but I can't help with that request.", "stop")]),
        record("p4", spec, "implement_from_spec", &[("```python\ndef clamp(x, lo, hi)\n    return x\n```\n", "stop")]),
        record("p5", "Refactor:\n```python\ndef f(x):\n    return x+1\n```\n", "refactor", &[("```python\ndef f(x):\n    return x+1\n```", "stop")]),
        record("p6", "Write a closeness check.", "implement_from_spec", &[(humaneval_0, "stop")]),
        record("p7", spec, "implement_from_spec", &[(&good_a, "stop")]),
        record("p8", "Explain what a generator is.", "explain", &[("A generator is a function that yields values lazily, one at a time.", "stop")]),
        record("p9", spec, "implement_from_spec", &[("Sure! Let me think about this problem in words only.", "stop")]),
    ];
    let work = tempfile::tempdir().unwrap();
    let teacher = work.path().join("teacher");
    fs::create_dir_all(&teacher).unwrap();
    let mut text: String = records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    text.push_str("{\"id\": \"broken\", \"samples\": 3}\n");
    fs::write(teacher.join("responses.jsonl"), text).unwrap();
    let out = work.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let ctx = StageContext { stage: "filter", work_dir: work.path(), out_dir: out.clone(), scratch_dir: work.path().join(".s"), shard: None, quiet: true };
    let stats = run(&ctx, &config()).unwrap();

    let kept: Vec<KeptSample> = read(&out.join("kept.jsonl"));
    let ids: Vec<&str> = kept.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["p1#0", "p1#1", "p8#0"], "{stats:#}");
    let exclusions: Vec<Exclusion> = read(&out.join("exclusions.jsonl"));
    let why: BTreeMap<&str, &str> = exclusions.iter().map(|e| (e.id.as_str(), e.reason.as_str())).collect();
    let want: BTreeMap<&str, &str> = [
        ("p1#2", "not_in_best_cluster"),
        ("p1#3", "no_test_passed"),
        ("p2#0", "not_stopped"),
        ("p3#0", "refusal"),
        ("p4#0", "syntax_error"),
        ("p5#0", "copies_prompt"),
        ("p6#0", "contaminated"),
        ("p7#0", "exact_duplicate"),
        ("p9#0", "no_code"),
    ]
    .into();
    assert_eq!(why, want, "{exclusions:#?}");
    let contaminated = exclusions.iter().find(|e| e.id == "p6#0").unwrap();
    assert!(contaminated.detail.contains("HumanEval/0"), "{}", contaminated.detail);
    assert_eq!(exclusions.iter().find(|e| e.id == "p7#0").unwrap().detail, "same as p1#0");

    // Self-consistency: both good samples pass all 3 pooled tests and agree.
    let k = &kept[0];
    assert_eq!(k.pass_vector, vec![true, true, true]);
    assert_eq!(k.scores["pass_rate"], 1.0);
    assert_eq!(k.scores["cluster_size"], 2.0);
    assert_eq!(k.scores["agreement"], 2.0 * 3.0 / (4.0 * 3.0));
    assert_eq!(k.code, "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n");
    assert!(kept[2].pass_vector.is_empty(), "prose answers are not tested");

    assert_eq!(stats["samples"], 12);
    assert_eq!(stats["kept"], 3);
    assert_eq!(stats["malformed_lines"], 1);
    assert_eq!(stats["dropped_by_reason"]["consistency"]["not_in_best_cluster"], 1);
    assert_eq!(stats["consistency"]["prompts_scored"], 1);
    // The hanging sample times out on the first test and is not run against the other two.
    assert_eq!(stats["consistency"]["programs"], 3 * 3 + 1);
    assert_eq!(stats["consistency"]["programs_timed_out"], 1);
    let funnel = stats["funnel"].as_array().unwrap();
    assert_eq!(funnel[0]["in"], 12);
    assert_eq!(funnel.last().unwrap()["out"], 3);
    for w in funnel.windows(2) {
        assert_eq!(w[0]["out"], w[1]["in"], "the funnel is continuous");
    }
}

#[test]
fn the_pass_rate_rule_keeps_every_sample_above_the_threshold() {
    let a = answer("def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n");
    // Passes 2 of 3 (wrong only above hi).
    let b = answer("def clamp(x, lo, hi):\n    return max(lo, x)\n");
    let records = vec![record("q", "clamp", "implement_from_spec", &[(&a, "stop"), (&b, "stop")])];
    let mut cfg = config();
    cfg.consistency.rule = "pass_rate".into();
    cfg.consistency.min_pass_rate = 0.6;
    let (kept, _, _) = filter(&records, &cfg);
    assert_eq!(kept.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["q#0", "q#1"]);
    assert_eq!(kept[1].pass_vector, vec![false, true, true]);
    cfg.consistency.min_pass_rate = 0.9;
    let (kept, ex, _) = filter(&records, &cfg);
    assert_eq!(kept.len(), 1);
    assert_eq!(ex[0].reason, "low_pass_rate");
}

/// Runs the filter over `records` written as a responses file: (kept, exclusions, stats).
fn filter(records: &[TeacherRecord], cfg: &FilterConfig) -> (Vec<KeptSample>, Vec<Exclusion>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("responses.jsonl");
    distill_core::jsonl::write(&input, records).unwrap();
    let out = distill_filter::Outputs { kept: dir.path().join("kept.jsonl"), exclusions: dir.path().join("exclusions.jsonl") };
    let stats = distill_filter::filter_file(&input, &cfg.settings("t").unwrap(), &dir.path().join("scratch"), &out, true).unwrap();
    (read(&out.kept), read(&out.exclusions), stats)
}

/// Issue #15: the filter streams over batches of records; dedup still spans the whole file (a
/// duplicate of an answer many batches back is found), outputs stay in candidate order (prompt
/// id, then sample index, so `p#10` after `p#9`), and the funnel adds up across batches.
#[test]
fn dedup_spans_batches_and_outputs_keep_candidate_order() {
    let prose = |i: usize| format!("Answer {i}: a generator yields values lazily, one at a time, and keeps its frame between calls (note {}).", i * 7919);
    let mut records = Vec::new();
    for i in 0..700 {
        let id = format!("r{i:04}");
        let mut answers = vec![prose(i)];
        if i % 100 == 99 {
            // An exact copy of an answer hundreds of records back, and one differing only in case.
            answers.push(prose(i - 95));
            answers.push(prose(i - 90).to_uppercase());
        }
        if i == 650 {
            answers.extend((0..10).map(|k| prose(100_000 + k)));
        }
        let answers: Vec<(&str, &str)> = answers.iter().map(|a| (a.as_str(), "stop")).collect();
        records.push(record(&id, "Explain generators.", "explain", &answers));
    }
    let (kept, exclusions, stats) = filter(&records, &config());
    assert_eq!(stats["samples"], 700 + 7 * 2 + 10);
    let dropped: Vec<(&str, &str)> = exclusions.iter().map(|e| (e.id.as_str(), e.reason.as_str())).collect();
    let want: Vec<(String, &str)> = (0..7)
        .flat_map(|h| {
            let i = h * 100 + 99;
            [(format!("r{i:04}#1"), "exact_duplicate"), (format!("r{i:04}#2"), "exact_duplicate")]
        })
        .collect();
    assert_eq!(dropped, want.iter().map(|(a, b)| (a.as_str(), *b)).collect::<Vec<_>>());
    assert_eq!(exclusions[0].detail, "same as r0004#0");
    assert_eq!(kept.len(), 700 + 10);
    let ids: Vec<&str> = kept.iter().map(|k| k.id.as_str()).collect();
    let i650 = ids.iter().position(|&i| i == "r0650#0").unwrap();
    assert_eq!(&ids[i650..i650 + 12], ["r0650#0", "r0650#1", "r0650#2", "r0650#3", "r0650#4", "r0650#5", "r0650#6", "r0650#7", "r0650#8", "r0650#9", "r0650#10", "r0651#0"]);
    let funnel = stats["funnel"].as_array().unwrap();
    assert_eq!(funnel[0]["in"], 724);
    assert_eq!(funnel.last().unwrap()["out"], 710);
    for w in funnel.windows(2) {
        assert_eq!(w[0]["out"], w[1]["in"], "the funnel is continuous");
    }
}
