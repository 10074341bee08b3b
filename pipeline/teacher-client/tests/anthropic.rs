//! The client speaking Anthropic's Messages API (`api = "anthropic"`) to the test server's
//! `/v1/messages`: the same hostile-server checks as the OpenAI client (every fault, 529
//! overloaded, 429 with `retry-after`, a refused key, an empty credit balance), the request
//! mapping, and `n` samples as `n` requests under distinct, stable cache keys.

mod common;

use std::time::Duration;

// Anthropic prompts carry a system message.
use common::{anthropic_config as config, keep_open, python_chat as chat, python_prompts as prompts};

use distill_teacher_client::config::Api;
use distill_teacher_client::{PromptOutcome, SamplingOverrides, TeacherClient, TeacherConfig};
use distill_teacher_testserver::{spawn, Fault, ServerConfig};

#[test]
fn messages_are_answered_once_without_logprobs_and_n_samples_are_n_stable_requests() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server, &dir.path().join("cache"));
    // Clients made one after another share it (no race with sled's lock release).
    let _keep = keep_open(&dir.path().join("cache"));
    let client = TeacherClient::new(&cfg).unwrap();
    let mut ps = prompts(10, "a");
    // A completion prompt becomes one user message.
    ps.push(serde_json::from_value(serde_json::json!({"id": "z-completion", "prompt": "def add(a, b):"})).unwrap());
    let stop = SamplingOverrides { stop: Some(vec!["(".into()]), ..Default::default() };
    let out = client.run_batch(&ps, &stop, false).unwrap();
    assert_eq!((out.stats.completed, out.stats.requested, out.stats.failed), (11, 11, 0), "{:?}", out.stats.failed_by_reason);
    assert_eq!(server.counters().requests(), 11);
    for r in out.records() {
        assert_eq!((r.endpoint.as_str(), r.model.as_str(), r.samples.len()), ("messages", "claude-test", 1));
        let s = &r.samples[0];
        assert!(s.tokens.is_none(), "Anthropic gives no log-probabilities");
        assert!(matches!(s.finish_reason.as_deref(), Some("stop") | Some("length")), "{:?}", s.finish_reason);
        assert!(!s.text.contains('('));
        assert!(r.usage.prompt_tokens > 0);
    }
    assert!(out.records().any(|r| r.samples[0].finish_reason.as_deref() == Some("stop")));

    // Again from a new client: nothing is sent.
    drop(client);
    let client = TeacherClient::new(&cfg).unwrap();
    let again = client.run_batch(&ps, &stop, false).unwrap();
    assert_eq!(server.counters().requests(), 11);
    assert_eq!((again.stats.from_cache, again.stats.requested), (11, 0));
    assert_eq!(again.results, out.results);

    // n = 2: one more request per prompt (sample 0 is cached under the same key); n = 3: one more.
    let two = client.run_batch(&ps, &SamplingOverrides { n: Some(2), ..stop.clone() }, false).unwrap();
    assert_eq!((two.stats.requested, server.counters().requests()), (11, 22));
    assert!(two.records().all(|r| r.samples.len() == 2));
    assert_eq!(two.records().next().unwrap().samples[0], out.records().next().unwrap().samples[0]);
    let three = client.run_batch(&ps, &SamplingOverrides { n: Some(3), ..stop.clone() }, false).unwrap();
    assert_eq!((three.stats.requested, server.counters().requests()), (11, 33));
    // Usage is summed over the samples' requests.
    let (r1, r3) = (out.records().next().unwrap(), three.records().next().unwrap());
    assert_eq!(r3.usage.prompt_tokens, 3 * r1.usage.prompt_tokens);
    let cached = client.run_batch(&ps, &SamplingOverrides { n: Some(3), ..stop }, false).unwrap();
    assert_eq!((cached.stats.requested, cached.stats.from_cache, server.counters().requests()), (0, 11, 33));
    // The plan sees the same: with n = 4, one request of each prompt is missing.
    let plan = client.plan(&ps, &SamplingOverrides { n: Some(4), stop: Some(vec!["(".into()]), ..Default::default() }, false).unwrap();
    assert_eq!((plan.to_request, plan.cached, plan.projected_completion_tokens_max), (11, 0, 11 * 24));
}

#[test]
fn every_kind_of_fault_and_529_overloaded_are_retried_until_the_answer_arrives() {
    let server = spawn(ServerConfig { fault_rate: 0.4, slow_delay: Duration::from_millis(1500), seed: 5, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { timeout_secs: 0.4, max_retries: 12, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let mut ps = prompts(60, "f");
    ps.push(chat("overloaded", "[[fail-first:3]] busy"));
    let out = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.stats.completed, 61, "{:?}", out.stats.failed_by_reason);
    let kinds = server.counters().faults_by_kind.lock().unwrap().clone();
    for f in Fault::ALL {
        assert!(kinds.get(&format!("{f:?}")).copied().unwrap_or(0) > 0, "fault {f:?} never injected: {kinds:?}");
    }
    let statuses = server.counters().by_status.lock().unwrap().clone();
    assert!(statuses.get(&529).copied().unwrap_or(0) >= 3, "{statuses:?}");
    assert_eq!(out.stats.retries, server.counters().faults() + 3, "one retry per fault and per 529");
    // The answers equal those of a fault-free server.
    let clean = spawn(ServerConfig::default()).unwrap();
    let reference = TeacherClient::new(&config(&clean, &dir.path().join("cache-ref"))).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.results, reference.results);
}

#[test]
fn rate_limited_requests_wait_for_retry_after_and_get_every_answer() {
    // 2 at once and 120 a minute; the client thinks it may send 6,000 a minute. Anthropic
    // sends retry-after in whole seconds (here 1) and no retry-after-ms.
    let server = spawn(ServerConfig { quota_rpm: 120, quota_burst: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { requests_per_minute: 6000, max_retries: 20, backoff_max_secs: 0.2, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let t0 = std::time::Instant::now();
    let out = client.run_batch(&prompts(5, "r"), &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.stats.completed, 5);
    assert!(out.stats.rate_limited > 0);
    assert_eq!(out.stats.rate_limited, server.counters().rate_limited());
    // 5 requests at 2/s with 2 free: at least 1.5 s whatever the client does.
    assert!(t0.elapsed() >= Duration::from_millis(1450), "{:?}", t0.elapsed());
    // The pauses were honoured: far fewer 429s than a client ignoring retry-after would get.
    assert!(out.stats.rate_limited <= 12, "{}", out.stats.rate_limited);
}

#[test]
fn a_refused_key_or_an_empty_credit_balance_stops_the_batch_at_once() {
    let server = spawn(ServerConfig { require_key: Some("right-key".into()), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = TeacherClient::new(&config(&server, &dir.path().join("cache"))).unwrap();
    let err = client.run_batch(&prompts(200, "k"), &SamplingOverrides::default(), false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("401") && text.contains("api_key_env"), "{text}");
    assert!(server.counters().requests() <= 8 * 2, "{}", server.counters().requests());

    let broke = spawn(ServerConfig::default()).unwrap();
    let client = TeacherClient::new(&config(&broke, &dir.path().join("cache2"))).unwrap();
    let err = client.run_batch(&[chat("q", "[[insufficient_quota]]")], &SamplingOverrides::default(), false).unwrap_err();
    assert!(err.to_string().contains("credit balance"), "{err}");
    assert_eq!(broke.counters().requests(), 1);

    // A 400 fails its prompt only and is not retried (a new client: a fatal stop is final).
    let client = TeacherClient::new(&config(&broke, &dir.path().join("cache3"))).unwrap();
    let out = client.run_batch(&[chat("bad", "[[status:400]]"), chat("good", "fine")], &SamplingOverrides::default(), false).unwrap();
    assert!(matches!(&out.results[0], PromptOutcome::Failed(f) if f.reason == "bad_request" && f.message.contains("injected status 400")), "{:?}", out.results[0]);
    assert_eq!(out.stats.completed, 1);
    assert_eq!(broke.counters().requests(), 3);
}

#[test]
fn anthropic_temperatures_above_1_are_a_config_error() {
    let cfg = TeacherConfig { api: Api::Anthropic, temperature: 1.5, ..Default::default() };
    let err = cfg.settings("run.toml").unwrap_err().to_string();
    assert!(err.contains("temperature") && err.contains("Anthropic"), "{err}");
    // The default key variable becomes Anthropic's.
    let s = TeacherConfig { api: Api::Anthropic, ..Default::default() }.settings("x").unwrap();
    assert_eq!(s.api_key_env, "ANTHROPIC_API_KEY");
}
