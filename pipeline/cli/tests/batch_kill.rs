//! `transport = "batch"`, and `kill -9` while batches are in flight, twice, then a run to the
//! end: the real `distill` binary against the test server's `/v1/files` and `/v1/batches`.
//! No request is ever submitted twice (the journal re-attaches the restarted run to the
//! batches already paid for), and every prompt is answered. A second prompt set, half of it
//! cached online first, shows a mixed run submitting only what the cache lacks.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use distill_teacher_testserver::{spawn, ServerConfig, TestServer};

const PROMPTS: usize = 40;

fn write_prompts(path: &Path, n: usize, tag: &str) {
    let text: String = (0..n)
        .map(|i| format!("{}\n", serde_json::json!({"id": format!("{tag}{i:03}"), "messages": [{"role": "user", "content": format!("Write function {i} ({tag}).")}]})))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn write_config(path: &Path, server: &TestServer, cache: &Path, transport: &str) {
    write_config_api(path, server, cache, transport, "openai")
}

fn write_config_api(path: &Path, server: &TestServer, cache: &Path, transport: &str, api: &str) {
    let text = format!(
        "[teacher]\napi = \"{api}\"\nbase_url = \"{}\"\nmodel = \"test-teacher\"\napi_key_env = \"DISTILL_TEST_UNSET_KEY\"\nrequests_per_minute = 0\n\
         max_tokens = 24\ncache_dir = \"{}\"\ntransport = \"{transport}\"\nbatch_max_requests = 10\nbatch_poll_secs = 0.02\n",
        server.base_url,
        cache.display()
    );
    std::fs::write(path, text).unwrap();
}

fn teacher(dir: &Path, config: &Path, prompts: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.args(["teacher", "--quiet", "--config", config.to_str().unwrap(), "--prompts", prompts.to_str().unwrap()]);
    c.current_dir(dir).env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Waits until `ready` holds, then kills the child with SIGKILL.
fn kill_when(mut child: Child, what: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !ready() {
        assert!(t0.elapsed() < Duration::from_secs(60), "{what}: the child made no progress");
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("{what}: the run finished ({status}) before the kill; make the batches slower\n{err}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    // Child::kill is SIGKILL on Unix.
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success(), "{what}: killed");
}

fn stats(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(format!("datasets/{name}/teacher/stats.json"))).unwrap()).unwrap()
}

#[test]
fn kill_9_while_openai_batches_are_in_flight_submits_nothing_twice_and_loses_no_answer() {
    kill_twice_then_finish("openai");
}

/// Anthropic's batches are created with their requests inline: a batch created an instant
/// before the kill is found by its time and size instead of an input file.
#[test]
fn kill_9_while_anthropic_batches_are_in_flight_submits_nothing_twice_and_loses_no_answer() {
    kill_twice_then_finish("anthropic");
}

fn kill_twice_then_finish(api: &str) {
    // Each look at a batch runs one of its 10 requests: 4 batches stay in flight for ~10 polls.
    let server = spawn(ServerConfig { batch_step: 1, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    write_prompts(&prompts, PROMPTS, "k");
    let config = dir.path().join("kill.toml");
    write_config_api(&config, &server, &dir.path().join("cache"), "batch", api);

    // Kill 1: as the batches are being created (the second one may not be journaled yet).
    let child = teacher(dir.path(), &config, &prompts).spawn().unwrap();
    kill_when(child, "kill 1", || server.counters().batches_created() >= 2);
    // Kill 2: while the batches run, some answers already made.
    let child = teacher(dir.path(), &config, &prompts).spawn().unwrap();
    let answered = server.counters().answered();
    kill_when(child, "kill 2", || server.counters().answered() >= answered + 5);

    let out = teacher(dir.path(), &config, &prompts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subs = server.counters().batch_submissions();
    let twice: Vec<_> = subs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "submitted more than once: {twice:?}");
    assert_eq!(subs.len(), PROMPTS, "every request submitted once");
    assert_eq!(server.counters().requests(), 0, "nothing was sent online");
    let s = stats(dir.path(), "kill");
    assert_eq!((s["completed"].as_u64(), s["failed"].as_u64(), s["transport"].as_str()), (Some(PROMPTS as u64), Some(0), Some("batch")), "{s}");
    let responses = std::fs::read_to_string(dir.path().join("datasets/kill/teacher/responses.jsonl")).unwrap();
    assert_eq!(responses.lines().count(), PROMPTS);
    eprintln!("after two kills: {} batches created; final run: {}", server.counters().batches_created(), s["batch"]);

    // The output equals an online run's, byte for byte.
    let online = dir.path().join("online.toml");
    write_config_api(&online, &server, &dir.path().join("cache-online"), "online", api);
    let out = teacher(dir.path(), &online, &prompts).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["responses.jsonl", "logprobs.frames", "failed.jsonl"] {
        let (a, b) = (dir.path().join("datasets/kill/teacher").join(f), dir.path().join("datasets/online/teacher").join(f));
        assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap(), "{f} differs from an online run");
    }
}

#[test]
fn a_mixed_run_half_cached_online_submits_only_the_other_half() {
    // A batch runs 5 requests a look: in flight at the first.
    let server = spawn(ServerConfig { batch_step: 5, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (half, all) = (dir.path().join("half.jsonl"), dir.path().join("all.jsonl"));
    write_prompts(&half, 10, "m");
    write_prompts(&all, 20, "m");
    let online = dir.path().join("online.toml");
    write_config(&online, &server, &cache, "online");
    let out = teacher(dir.path(), &online, &half).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.counters().requests(), 10);

    let batch = dir.path().join("batch.toml");
    write_config(&batch, &server, &cache, "batch");
    // Without --quiet: the progress of the batches is logged while the run waits.
    let out = common::distill(dir.path(), &["teacher", "--config", batch.to_str().unwrap(), "--prompts", all.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("batches: 1 submitted, 0 re-attached, 1 in flight"), "{err}");
    assert!(err.contains("completed (10 of 10 requests answered)"), "{err}");
    assert_eq!(server.counters().requests(), 10, "nothing more online");
    assert_eq!(server.counters().batch_submissions().len(), 10, "only the 10 not cached");
    let s = stats(dir.path(), "batch");
    assert_eq!((s["completed"].as_u64(), s["batch"]["requests_submitted"].as_u64(), s["batch"]["batches_submitted"].as_u64()), (Some(20), Some(10), Some(1)), "{s}");
    // The report's numbers: 10 answered from the cache, 10 requested (in a batch).
    assert_eq!((s["from_cache"].as_u64(), s["requested"].as_u64()), (Some(10), Some(10)), "{s}");

    // The dry run knows the batch price and the budget: nothing left to request now; with a
    // cap and prices, the projection of a fresh cache is over it.
    let out = common::distill(dir.path(), &["teacher", "--dry-run", "--config", batch.to_str().unwrap(), "--prompts", all.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("transport         batch: prices x0.5"), "{text}");
    let priced = dir.path().join("priced.toml");
    write_config(&priced, &server, &dir.path().join("fresh-cache"), "batch");
    let mut cfg = std::fs::read_to_string(&priced).unwrap();
    cfg.push_str("price_input_per_mtok = 1000\nprice_output_per_mtok = 1000\nmax_cost_usd = 0.05\n");
    std::fs::write(&priced, cfg).unwrap();
    let out = common::distill(dir.path(), &["teacher", "--dry-run", "--config", priced.to_str().unwrap(), "--prompts", all.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("over max_cost_usd $0.05: the run refuses to submit its batches"), "{text}");
    let out = teacher(dir.path(), &priced, &all).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to submit"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.counters().batches_created(), 1, "nothing submitted over the budget");
}
