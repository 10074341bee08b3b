//! The stage end to end against the test server: outputs, stats, shards, dry runs, stops.

mod common;

use common::*;
use distill_core::records::{FailedPrompt, TeacherRecord};
use distill_core::ShardSpec;
use distill_teacher::{dry_run, run, RunOptions};
use distill_teacher_testserver::{spawn, ServerConfig};

#[test]
fn outputs_are_sorted_complete_and_identical_on_a_cached_rerun() {
    let server = spawn(ServerConfig::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), 40, &["{\"id\": \"broken\"", "{\"id\":\"bad\",\"prompt\":\"[[status:400]] please\"}"]);
    let cfg = config(&server, &work.path().join("cache"));
    let out1 = work.path().join("out1");
    let stats = run(&context(work.path(), &out1), &cfg, &RunOptions::default()).unwrap();
    for key in ["prompts", "completed", "from_cache", "requested", "failed", "failed_by_reason", "prompt_tokens", "completion_tokens", "cost_usd", "elapsed_secs", "rate_limited"] {
        assert!(stats.get(key).is_some(), "stats lack {key}: {stats}");
    }
    assert_eq!((stats["prompts"].as_u64(), stats["completed"].as_u64(), stats["failed"].as_u64()), (Some(41), Some(40), Some(1)));
    assert_eq!(stats["bad_lines"], 1);
    assert_eq!(stats["failed_by_reason"]["bad_request"], 1);
    let ids = ids(&out1.join("responses.jsonl"));
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 40);
    let text = std::fs::read_to_string(out1.join("responses.jsonl")).unwrap();
    let recs: Vec<TeacherRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.iter().filter(|r| r.endpoint == "completions").count(), 8);
    assert!(recs.iter().all(|r| r.usage.completion_tokens > 0 && r.samples.iter().all(|s| s.tokens.is_none())), "responses.jsonl carries no per-token log-probs");
    // They are in logprobs.frames, one frame per answered prompt in the same order, and spell
    // the answers.
    let frames: Vec<distill_core::frames::Frame> = distill_core::frames::FrameReader::open(&out1.join("logprobs.frames")).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(frames.iter().map(|f| f.id.clone()).collect::<Vec<_>>(), ids);
    for (r, f) in recs.iter().zip(&frames) {
        let tokens = distill_core::logprobs::unpack_sample(&f.payload, 0).unwrap().expect("logprobs were asked for");
        assert_eq!(tokens.iter().map(|t| t.token.as_str()).collect::<String>(), r.samples[0].text);
        assert!(tokens.iter().all(|t| t.top.len() == 5 && t.logprob <= 0.0));
    }
    assert!(stats["logprobs_bytes_per_token"].as_f64().unwrap() < 200.0, "{stats}");
    let failed: Vec<FailedPrompt> = std::fs::read_to_string(out1.join("failed.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(failed[0].id, "bad");

    // The time series: published beside the outputs, counters monotone, the last line = stats.
    let series: Vec<serde_json::Value> = std::fs::read_to_string(out1.join("series.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!series.is_empty());
    for key in [
        "t",
        "prompts_done",
        "completed",
        "failed",
        "from_cache",
        "requested",
        "http_requests",
        "rate_limited",
        "retries",
        "new_prompt_tokens",
        "new_completion_tokens",
        "cost_usd",
    ] {
        let values: Vec<f64> = series.iter().map(|p| p[key].as_f64().unwrap_or_else(|| panic!("series line lacks {key}: {p}"))).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{key} is not monotone: {values:?}");
    }
    let last = series.last().unwrap();
    for key in ["completed", "failed", "requested", "http_requests", "rate_limited", "retries"] {
        assert_eq!(last[key], stats[key], "{key}: {last} vs {stats}");
    }
    assert_eq!(last["prompts_done"], 41);
    assert!((last["cost_usd"].as_f64().unwrap() - stats["cost_usd"].as_f64().unwrap()).abs() < 1e-9);

    let sent = server.counters().requests();
    let out2 = work.path().join("out2");
    let stats2 = run(&context(work.path(), &out2), &cfg, &RunOptions::default()).unwrap();
    assert_eq!(server.counters().requests(), sent, "a re-run sends nothing");
    assert_eq!(stats2["from_cache"], 41);
    let last2: serde_json::Value = serde_json::from_str(std::fs::read_to_string(out2.join("series.jsonl")).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!((last2["from_cache"].as_u64(), last2["requested"].as_u64()), (Some(41), Some(0)), "the re-run's series counts cache hits: {last2}");
    for f in ["responses.jsonl", "logprobs.frames", "failed.jsonl"] {
        assert_eq!(std::fs::read(out1.join(f)).unwrap(), std::fs::read(out2.join(f)).unwrap(), "{f} differs");
    }
    // --strict makes the broken line fatal, naming it.
    let err = run(&context(work.path(), &work.path().join("out3")), &cfg, &RunOptions { strict: true, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("prompts.jsonl:41:"), "{err}");
}

#[test]
fn shards_split_the_work_and_together_equal_one_run() {
    let server = spawn(ServerConfig::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), 30, &[]);
    let cfg = config(&server, &work.path().join("cache"));
    let mut union = Vec::new();
    for index in 0..2 {
        let out = work.path().join(format!("part{index}"));
        let mut ctx = context(work.path(), &out);
        ctx.shard = Some(ShardSpec { index, count: 2 });
        let stats = run(&ctx, &cfg, &RunOptions::default()).unwrap();
        assert!(stats["other_shards"].as_u64().unwrap() > 0);
        // Each shard's series under its own name (they share the scratch folder).
        let series = std::fs::read_to_string(out.join(format!("series-{index}-of-2.jsonl"))).unwrap();
        let last: serde_json::Value = serde_json::from_str(series.lines().last().unwrap()).unwrap();
        assert_eq!(last["completed"], stats["completed"]);
        assert!(!out.join("series.jsonl").exists());
        union.extend(std::fs::read_to_string(out.join("responses.jsonl")).unwrap().lines().map(str::to_string));
    }
    assert_eq!(server.counters().requests(), 30);
    union.sort();
    let whole = work.path().join("whole");
    run(&context(work.path(), &whole), &cfg, &RunOptions::default()).unwrap();
    assert_eq!(server.counters().requests(), 30, "the whole run is answered from the shards' cache");
    let mut all: Vec<String> = std::fs::read_to_string(whole.join("responses.jsonl")).unwrap().lines().map(str::to_string).collect();
    all.sort();
    assert_eq!(union, all);
}

#[test]
fn a_dry_run_counts_and_prices_without_sending() {
    let server = spawn(ServerConfig::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), 20, &[]);
    let cache = work.path().join("cache");
    let cfg = distill_teacher::TeacherConfig { price_input_per_mtok: 2.0, price_output_per_mtok: 8.0, ..config(&server, &cache) };
    let plan = dry_run(work.path(), &cfg, &RunOptions::default(), None).unwrap();
    assert_eq!((plan.plan.cached, plan.plan.to_request), (0, 20));
    assert!(!cache.exists(), "a dry run creates no cache");
    assert_eq!(plan.plan.projected_completion_tokens_max, 20 * 24);
    let expected_max = (plan.plan.projected_prompt_tokens as f64 * 2.0 + 480.0 * 8.0) / 1e6;
    assert!((plan.plan.projected_cost_usd_max - expected_max).abs() < 1e-12);
    // Half the prompts answered, then the plan sees them.
    let half = work.path().join("half.jsonl");
    let text = std::fs::read_to_string(work.path().join("prompts/prompts.jsonl")).unwrap();
    std::fs::write(&half, text.lines().take(10).collect::<Vec<_>>().join("\n")).unwrap();
    run(&context(work.path(), &work.path().join("o")), &cfg, &RunOptions { prompts: Some(half), ..Default::default() }).unwrap();
    let sent = server.counters().requests();
    let plan = dry_run(work.path(), &cfg, &RunOptions::default(), None).unwrap();
    assert_eq!((plan.plan.cached, plan.plan.to_request), (10, 10));
    assert!(plan.plan.projected_cost_usd_expected.unwrap() <= plan.plan.projected_cost_usd_max);
    assert!(plan.to_string().contains("to request        10"), "{plan}");
    assert_eq!(server.counters().requests(), sent, "a dry run sends nothing");
}

#[test]
fn a_refused_key_fails_the_stage_with_exit_code_1_and_a_clear_message() {
    let server = spawn(ServerConfig { require_key: Some("k".into()), ..Default::default() }).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), 50, &[]);
    let cfg = config(&server, &work.path().join("cache"));
    let err = run(&context(work.path(), &work.path().join("out")), &cfg, &RunOptions::default()).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let text = err.to_string();
    assert!(text.contains("401") && text.contains("Incorrect API key"), "{text}");
    assert!(server.counters().requests() <= 16);
}

#[test]
fn a_missing_prompts_file_says_what_to_do() {
    let server = spawn(ServerConfig::default()).unwrap();
    let work = tempfile::tempdir().unwrap();
    let err = run(&context(work.path(), &work.path().join("out")), &config(&server, &work.path().join("c")), &RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--prompts FILE"), "{err}");
    assert_eq!(err.exit_code(), 2);
}
