//! `kill -9` in the middle of a run, twice, then a full run: nothing answered before a kill is
//! requested again (beyond what was in flight at that instant), and the final output equals
//! an uninterrupted run's, byte for byte. The stage runs in a child process
//! (`distill-teacher-stage`) so that SIGKILL hits it and not the test.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use distill_teacher_testserver::{spawn, ServerConfig, TestServer};

const PROMPTS: usize = 400;
const CONCURRENCY: usize = 8;

fn write_config(path: &Path, server: &TestServer, cache: &Path) {
    let text = format!(
        "[teacher]\nbase_url = \"{}\"\nmodel = \"test-teacher\"\napi_key_env = \"DISTILL_TEST_UNSET_KEY\"\nrequests_per_minute = 0\n\
         max_concurrency = {CONCURRENCY}\ntimeout_secs = 5\nmax_tokens = 24\ncache_dir = \"{}\"\n",
        server.base_url,
        cache.display()
    );
    std::fs::write(path, text).unwrap();
}

fn stage(config: &Path, work: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill-teacher-stage"));
    c.args(["--config", config.to_str().unwrap(), "--work-dir", work.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Requests (by body digest) that arrived after `before` was taken.
fn arrived_since(before: &HashMap<String, u64>, now: &HashMap<String, u64>) -> Vec<String> {
    now.iter().filter(|(k, n)| before.get(*k).copied().unwrap_or(0) < **n).map(|(k, _)| k.clone()).collect()
}

#[test]
fn kill_9_loses_nothing_that_was_paid_for() {
    // 5 ms per answer: 400 prompts at 8 in flight take about 0.25 s plus the client's own time.
    let server = spawn(ServerConfig { latency: Duration::from_millis(5), ..Default::default() }).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), PROMPTS, &[]);
    let config = work.path().join("teacher.toml");
    write_config(&config, &server, &work.path().join("cache"));
    let out = work.path().join("out");

    let mut paid_before_kills: HashMap<String, u64> = HashMap::new();
    let mut resent_total = 0;
    for (round, kill_at) in [(0, PROMPTS as u64 / 4), (1, PROMPTS as u64 * 2 / 3)].into_iter() {
        let before = server.counters().arrivals();
        let mut child = stage(&config, work.path(), &out).spawn().unwrap();
        let t0 = Instant::now();
        while server.counters().answered() < kill_at {
            assert!(t0.elapsed() < Duration::from_secs(60), "the child made no progress");
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("round {round}: the stage finished ({status}) before the kill; make it slower\n{err}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was killed");
        // Let the server finish the handlers of requests that were in flight.
        std::thread::sleep(Duration::from_millis(50));
        let sent_this_round = arrived_since(&before, &server.counters().arrivals());
        let resent = sent_this_round.iter().filter(|d| paid_before_kills.contains_key(*d)).count();
        assert!(resent <= CONCURRENCY, "round {round}: {resent} answers received before the previous kill were requested again");
        resent_total += resent;
        for (d, n) in server.counters().answered_bodies() {
            paid_before_kills.insert(d, n);
        }
        assert!(!out.join("responses.jsonl").exists(), "round {round}: a killed run published no output");
    }

    let before = server.counters().arrivals();
    let finish = stage(&config, work.path(), &out).output().unwrap();
    assert!(finish.status.success(), "{}", String::from_utf8_lossy(&finish.stderr));
    let resent = arrived_since(&before, &server.counters().arrivals()).iter().filter(|d| paid_before_kills.contains_key(*d)).count();
    assert!(resent <= CONCURRENCY, "the final run requested {resent} answers already received again");
    resent_total += resent;
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["completed"], PROMPTS as u64);
    assert!(stats["from_cache"].as_u64().unwrap() >= PROMPTS as u64 * 2 / 3 - 2 * CONCURRENCY as u64, "{stats}");
    eprintln!("answers requested again after kills (in flight at the kill): {resent_total}; final run: {stats}");

    // An uninterrupted run with a fresh cache gives the same bytes.
    let clean = work.path().join("clean.toml");
    write_config(&clean, &server, &work.path().join("cache-clean"));
    let ref_out = work.path().join("ref");
    let reference = stage(&clean, work.path(), &ref_out).output().unwrap();
    assert!(reference.status.success());
    for f in ["responses.jsonl", "logprobs.frames", "failed.jsonl"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(ref_out.join(f)).unwrap(), "{f} differs from an uninterrupted run");
    }
}
