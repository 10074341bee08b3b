//! The teacher-driven generators over real HTTP on loopback, through the teacher stage's own
//! client and sled cache:
//! - against `distill-teacher-testserver` (the project's OpenAI-compatible test server): every
//!   generator sends its requests, and a re-run sends none and writes the same bytes;
//! - against a small loopback server written here that answers in the formats the generators
//!   ask for ("Task k:" lists, [Problem Description] sections, rewritten prompts), so the
//!   parsing, provenance and decontamination of teacher-made prompts are checked end to end.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::post;
use axum::{Json, Router};
use common::{config, context, output_bytes, read_jsonl};
use distill_prompts::PromptsConfig;
use distill_teacher_client::TeacherConfig;
use serde_json::{json, Value};

fn teacher_config(base_url: &str, cache: &std::path::Path) -> TeacherConfig {
    TeacherConfig {
        base_url: base_url.to_string(),
        cache_dir: cache.display().to_string(),
        requests_per_minute: 0,
        max_retries: 2,
        backoff_base_ms: 10,
        timeout_secs: 20.0,
        ..Default::default()
    }
}

fn with_generators(mut cfg: PromptsConfig) -> PromptsConfig {
    cfg.template.per_template = 1;
    cfg.self_instruct.enabled = true;
    cfg.self_instruct.rounds = 2;
    cfg.self_instruct.requests_per_round = 2;
    cfg.self_instruct.tasks_per_request = 3;
    cfg.self_instruct.max_tokens = 200;
    cfg.oss_instruct.enabled = true;
    cfg.oss_instruct.seeds = 3;
    cfg.oss_instruct.max_tokens = 200;
    cfg.evol_instruct.enabled = true;
    cfg.evol_instruct.rounds = 2;
    cfg.evol_instruct.base_prompts = 3;
    cfg.evol_instruct.max_tokens = 200;
    cfg
}

#[test]
fn generators_call_the_test_server_and_a_rerun_sends_no_requests() {
    let server = distill_teacher_testserver::spawn(Default::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = with_generators(config());
    cfg.decontamination.enabled = false;
    let tcfg = teacher_config(&server.base_url, &tmp.path().join("cache"));

    let first = context(tmp.path(), "first");
    let stats = distill_prompts::run(&first, &cfg, Some(&tcfg)).unwrap();
    let sent = server.counters().requests();
    // 2 rounds x 2 self-instruct requests, 3 OSS-Instruct seeds, 3 evolutions in round 1.
    assert!(sent >= 10, "requests sent: {sent}");
    for g in ["self_instruct", "oss_instruct", "evol_instruct"] {
        let c = &stats["by_generator"][g];
        assert!(c["kept"].as_u64().unwrap_or(0) + c["dropped"].as_u64().unwrap_or(0) > 0, "{g}: {stats:#}");
        assert!(stats["teacher"][g]["requested"].as_u64().unwrap() > 0, "{stats:#}");
    }

    let second = context(tmp.path(), "second");
    let stats2 = distill_prompts::run(&second, &cfg, Some(&tcfg)).unwrap();
    assert_eq!(server.counters().requests(), sent, "a re-run must answer everything from the cache");
    for g in ["self_instruct", "oss_instruct", "evol_instruct"] {
        assert_eq!(stats2["teacher"][g]["requested"], 0, "{stats2:#}");
    }
    assert_eq!(output_bytes(&first.out_dir), output_bytes(&second.out_dir));
}

/// Answers each generator's request in the format it asks for, derived from the request text
/// (so the same request always gets the same answer).
async fn scripted(Json(body): Json<Value>) -> Json<Value> {
    let text = body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or_default().to_string();
    let h = distill_core::digest::sha256_hex(text.as_bytes());
    let topics = ["sparse matrices", "CSV dialects", "cron expressions", "Huffman codes", "bloom filters", "unicode normalisation"];
    let topic = |k: usize| topics[(usize::from_str_radix(&h[k..k + 2], 16).unwrap()) % topics.len()];
    let answer = if text.contains("Number them \"Task 1:\"") {
        format!(
            "Task 1: Write a Python function that works with {} and returns a summary dictionary (request {}).\n\
             Task 2: Write a function to check if the given number is woodball or not.\n\
             Task 3: Explain how {} are represented in memory, with a small Python example ({}).",
            topic(0),
            &h[..8],
            topic(2),
            &h[8..16]
        )
    } else if text.contains("[Problem Description]") {
        format!(
            "[Problem Description]\nYou are given a list of records about {}. Write a function `summarise(records)` that groups them \
             and returns counts per group (variant {}).\n\n[Solution]\n```python\ndef summarise(records):\n    return {{}}\n```",
            topic(4),
            &h[..8]
        )
    } else if let Some(given) = text.split("#The Given Prompt#:\n").nth(1) {
        let given = given.split("\n#Rewritten Prompt#:").next().unwrap_or_default();
        format!("{given}\nAdditionally, the solution must handle inputs with up to a million items in O(n log n) time.")
    } else if let Some(given) = text.split("#Given Prompt#:\n").nth(1) {
        let given = given.split("\n#Created Prompt#:").next().unwrap_or_default();
        format!("Write a Python function about {} inspired by: {}", topic(6), given.chars().take(80).collect::<String>())
    } else {
        "I do not know this request.".to_string()
    };
    Json(json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": text.len() / 4, "completion_tokens": answer.len() / 4},
    }))
}

struct Scripted {
    base_url: String,
    requests: Arc<AtomicU64>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn spawn_scripted() -> Scripted {
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let app = Router::new().route(
                "/v1/chat/completions",
                post(move |body: Json<Value>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    scripted(body)
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    });
    Scripted { base_url: format!("http://{addr}/v1"), requests, _shutdown: tx }
}

#[test]
fn teacher_made_prompts_are_parsed_traced_and_decontaminated() {
    let server = spawn_scripted();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = with_generators(config());
    let tcfg = teacher_config(&server.base_url, &tmp.path().join("cache"));
    let ctx = context(tmp.path(), "p");
    let stats = distill_prompts::run(&ctx, &cfg, Some(&tcfg)).unwrap();
    let sent = server.requests.load(Ordering::SeqCst);
    // Self-Instruct 2 x 2, OSS-Instruct 3, Evol-Instruct 3 + 3.
    assert_eq!(sent, 13, "{stats:#}");

    let kept = read_jsonl(&ctx.out_dir.join("prompts.jsonl"));
    let by = |g: &str| kept.iter().filter(|r| r["meta"]["generator"] == g).collect::<Vec<_>>();

    let si = by("self_instruct");
    assert!(si.len() >= 6, "{}", si.len());
    assert!(si.iter().any(|r| r["meta"]["round"] == 2));
    assert!(si.iter().any(|r| r["meta"]["task_type"] == "explain"));
    // Every self-instruct answer carried the MBPP/20 task: it is caught as contamination.
    let report = read_jsonl(&ctx.out_dir.join("decontamination.jsonl"));
    assert!(report.iter().any(|r| r["generator"] == "self_instruct" && r["task_id"] == "Mbpp/20"), "{report:#?}");
    assert!(stats["by_generator"]["self_instruct"]["dropped_by_reason"]["contaminated"].as_u64().unwrap() >= 1);

    let oss = by("oss_instruct");
    assert_eq!(oss.len(), 3);
    for r in &oss {
        let text = r["messages"][0]["content"].as_str().unwrap();
        assert!(text.starts_with("You are given a list of records about") && text.ends_with(distill_prompts::generate::oss_instruct::ANSWER_FORMAT), "{text}");
        assert!(r["meta"]["seed"].as_str().unwrap().contains(".py:"));
    }

    let evol = by("evol_instruct");
    let round2: Vec<_> = evol.iter().filter(|r| r["meta"]["round"] == 2).collect();
    assert!(!round2.is_empty(), "{stats:#}");
    for r in &round2 {
        // The parent of a round-2 prompt is a round-1 evolution with the same root.
        let parent = evol.iter().find(|p| p["id"] == r["meta"]["parent"]).expect("parent kept");
        assert_eq!(parent["meta"]["round"], 1);
        assert_eq!(parent["meta"]["evol_root"], r["meta"]["evol_root"]);
    }

    // The same run again: nothing sent, same bytes.
    let again = context(tmp.path(), "again");
    distill_prompts::run(&again, &cfg, Some(&tcfg)).unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), sent);
    assert_eq!(output_bytes(&ctx.out_dir), output_bytes(&again.out_dir));
}
