//! The client against the real test server on loopback: what is sent, what is cached, what
//! is retried, what stops everything.

mod common;

use std::time::Duration;

use common::{chat, config, prompts};

use distill_teacher_client::{BatchOptions, PromptOutcome, SamplingOverrides, TeacherClient, TeacherConfig};
use distill_teacher_testserver::{spawn, Fault, ServerConfig};

#[test]
fn cached_prompts_send_nothing_new_ones_send_exactly_one_each_and_temperature_resends_all() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server, &dir.path().join("cache"));
    let client = TeacherClient::new(&cfg).unwrap();
    let first = prompts(30, "a");
    let out = client.run_batch(&first, &SamplingOverrides::default(), false).unwrap();
    assert_eq!((out.stats.completed, out.stats.requested, out.stats.from_cache), (30, 30, 0));
    assert_eq!(server.counters().requests(), 30);
    let record = out.records().next().unwrap();
    assert_eq!((record.endpoint.as_str(), record.model.as_str(), record.samples.len()), ("chat", "test-teacher", 1));
    let tokens = record.samples[0].tokens.as_ref().expect("logprobs were asked for");
    assert!(tokens.iter().all(|t| t.top.len() == 5 && t.bytes.as_deref() == Some(t.token.as_bytes())));

    // Same prompts again, from a new client (a new run): nothing is sent, same records.
    drop(client);
    let client = TeacherClient::new(&cfg).unwrap();
    let again = client.run_batch(&first, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), 30);
    assert_eq!((again.stats.from_cache, again.stats.requested), (30, 0));
    assert_eq!(again.results, out.results);

    // K new prompts: exactly K requests.
    let mut more = first.clone();
    more.extend(prompts(7, "b"));
    let grown = client.run_batch(&more, &SamplingOverrides::default(), false).unwrap();
    assert_eq!((grown.stats.requested, grown.stats.from_cache), (7, 30));
    assert_eq!(server.counters().requests(), 37);

    // A new temperature is a new request for every prompt.
    let hot = SamplingOverrides { temperature: Some(1.1), ..Default::default() };
    let hotter = client.run_batch(&more, &hot, false).unwrap();
    assert_eq!(hotter.stats.requested, 37);
    assert_eq!(server.counters().requests(), 74);
    assert!(hotter.records().all(|r| (r.temperature - 1.1).abs() < 1e-6));
}

#[test]
fn identical_prompts_share_one_request_and_overrides_reach_the_server() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = TeacherClient::new(&config(&server, &dir.path().join("cache"))).unwrap();
    let ps = vec![chat("x", "same text"), chat("y", "same text"), serde_json::from_value(serde_json::json!({"id": "z", "prompt": "def add(a, b):"})).unwrap()];
    let o = SamplingOverrides { n: Some(3), temperature: Some(0.0), stop: Some(vec!["\n".into()]), logprobs: Some(false), ..Default::default() };
    let out = client.run_batch(&ps, &o, false).unwrap();
    assert_eq!((out.stats.requested, out.stats.duplicates), (2, 1));
    assert_eq!(server.counters().requests(), 2);
    let recs: Vec<_> = out.records().collect();
    assert_eq!(recs[0].samples, recs[1].samples);
    assert_eq!(recs[2].endpoint, "completions");
    for r in &recs {
        assert_eq!(r.samples.len(), 3);
        assert!(r.samples.iter().all(|s| s.tokens.is_none() && !s.text.contains('\n')));
    }
}

#[test]
fn a_400_is_not_retried_is_remembered_and_is_resent_only_with_retry_failed() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = TeacherClient::new(&config(&server, &dir.path().join("cache"))).unwrap();
    let ps = vec![chat("good", "fine"), chat("bad", "too long [[status:400]]")];
    let out = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), 2, "the 400 was sent once, never retried");
    assert_eq!(out.stats.retries, 0);
    match &out.results[1] {
        PromptOutcome::Failed(f) => {
            assert_eq!((f.id.as_str(), f.reason.as_str()), ("bad", "bad_request"));
            assert!(f.message.contains("injected status 400"), "{}", f.message);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let again = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), 2, "the failure is cached");
    assert_eq!(again.stats.failed_by_reason["bad_request"], 1);
    let retried = client.run_batch_with(&ps, &SamplingOverrides::default(), &BatchOptions { progress: false, retry_failed: true }).unwrap();
    assert_eq!(server.counters().requests(), 3, "--retry-failed re-sends only the failure");
    assert_eq!(retried.stats.requested, 1);
}

#[test]
fn a_refused_key_stops_the_batch_at_once() {
    let server = spawn(ServerConfig { require_key: Some("right-key".into()), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = TeacherClient::new(&config(&server, &dir.path().join("cache"))).unwrap();
    let err = client.run_batch(&prompts(200, "k"), &SamplingOverrides::default(), false).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("401") && text.contains("api_key_env"), "{text}");
    assert_eq!(err.exit_code(), 1);
    // Stopped at once: only the requests already in flight were sent, no retries.
    assert!(server.counters().requests() <= 8 * 2, "{}", server.counters().requests());

    let quota = spawn(ServerConfig::default()).unwrap();
    let client = TeacherClient::new(&config(&quota, &dir.path().join("cache2"))).unwrap();
    let err = client.run_batch(&[chat("q", "[[insufficient_quota]]")], &SamplingOverrides::default(), false).unwrap_err();
    assert!(err.to_string().contains("insufficient_quota"), "{err}");
    assert_eq!(quota.counters().requests(), 1);
}

#[test]
fn every_kind_of_fault_is_retried_until_the_answer_arrives() {
    let server = spawn(ServerConfig { fault_rate: 0.4, slow_delay: Duration::from_millis(1500), seed: 3, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { timeout_secs: 0.4, max_retries: 12, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let ps = prompts(60, "f");
    let out = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.stats.completed, 60, "{:?}", out.stats.failed_by_reason);
    let kinds = server.counters().faults_by_kind.lock().unwrap().clone();
    for f in Fault::ALL {
        assert!(kinds.get(&format!("{f:?}")).copied().unwrap_or(0) > 0, "fault {f:?} never injected: {kinds:?}");
    }
    assert_eq!(out.stats.retries, server.counters().faults(), "one retry per fault");
    // The answers equal those of a fault-free server.
    let clean = spawn(ServerConfig::default()).unwrap();
    let ref_client = TeacherClient::new(&config(&clean, &dir.path().join("cache-ref"))).unwrap();
    let reference = ref_client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.results, reference.results);
}

#[test]
fn retries_give_up_after_max_retries_and_the_run_goes_on() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { max_retries: 2, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let ps = vec![chat("a", "[[fail-first:10]] overloaded"), chat("b", "[[fail-first:2]] flaky"), chat("c", "fine")];
    let out = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.stats.failed_by_reason.get("retries_exhausted"), Some(&1));
    assert_eq!(out.stats.completed, 2);
    assert_eq!(server.counters().requests(), 3 + 3 + 1);
    // Transient failures are not remembered: the next run tries again.
    let again = client.run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(again.stats.requested, 1);
}

#[test]
fn the_request_budget_is_never_exceeded() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { max_requests: 5, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let out = client.run_batch(&prompts(12, "b"), &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), 5);
    assert_eq!((out.stats.completed, out.stats.failed_by_reason.get("budget_exhausted").copied()), (5, Some(7)));

    let priced = TeacherConfig { max_cost_usd: 0.01, price_input_per_mtok: 1000.0, price_output_per_mtok: 1000.0, ..config(&server, &dir.path().join("cache2")) };
    let client = TeacherClient::new(&priced).unwrap();
    let before = server.counters().requests();
    let out = client.run_batch(&prompts(12, "c"), &SamplingOverrides::default(), false).unwrap();
    // Each request may cost up to (~10 + 24 tokens) * $0.001 = $0.034 > $0.01: none may start.
    assert_eq!(server.counters().requests(), before);
    assert_eq!(out.stats.failed_by_reason.get("budget_exhausted"), Some(&12));
}

#[test]
fn rate_limited_requests_wait_as_told_and_concurrency_backs_off() {
    // The server allows 2 requests at once and 600 a minute; the client believes it may send
    // 6000 a minute, so it meets 429s, honours retry-after-ms, and still gets every answer.
    let server = spawn(ServerConfig { quota_rpm: 600, quota_burst: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { requests_per_minute: 6000, max_retries: 20, backoff_max_secs: 0.2, ..config(&server, &dir.path().join("cache")) };
    let client = TeacherClient::new(&cfg).unwrap();
    let t0 = std::time::Instant::now();
    let out = client.run_batch(&prompts(12, "r"), &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out.stats.completed, 12);
    assert!(out.stats.rate_limited > 0);
    assert_eq!(out.stats.rate_limited, server.counters().rate_limited());
    // 12 requests at 10/s with 2 free: at least 1 s whatever the client does.
    assert!(t0.elapsed() >= Duration::from_millis(950), "{:?}", t0.elapsed());
}

/// Issue #15: a cache written by the first release (sled tree `teacher-responses-v1`, values
/// `R ‖ meta JSON ‖ \n ‖ the server's JSON body`) is read by this version without a request,
/// and its answers equal fresh ones up to the log-prob rounding of the compact format.
#[test]
fn a_v1_cache_of_json_bodies_is_read_without_sending_anything() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (old_cache, new_cache) = (dir.path().join("v1"), dir.path().join("v2"));
    let ps = prompts(12, "v1");
    // Build the old cache as the first release did: the body exactly as the server sent it.
    let cfg = config(&server, &old_cache);
    let settings = cfg.settings("test").unwrap();
    {
        let db = sled::open(&old_cache).unwrap();
        let tree = db.open_tree("teacher-responses-v1").unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for p in &ps {
            let req = distill_teacher_client::request::build(p, &settings.model, &settings.sampling, &settings.extra_body);
            let url = format!("{}/{}", settings.base_url, req.endpoint.path());
            let body = rt.block_on(async { http.post(url).header("content-type", "application/json").body(req.body.to_vec()).send().await.unwrap().bytes().await.unwrap() });
            let mut value = b"R{\"unix\":1700000000,\"latency_ms\":3,\"usage\":null,\"status\":200}\n".to_vec();
            value.extend_from_slice(&body);
            tree.insert(req.key, value).unwrap();
        }
        db.flush().unwrap();
        drop(tree);
        drop(db);
    }
    // sled releases its folder lock from its flusher thread, a moment after the last handle.
    let t0 = std::time::Instant::now();
    while sled::Config::new().path(&old_cache).open().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "sled kept its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent_before = server.counters().requests();
    assert_eq!(sent_before, 12);

    let from_v1 = TeacherClient::new(&cfg).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), sent_before, "a v1 entry was requested again");
    assert_eq!((from_v1.stats.from_cache, from_v1.stats.requested, from_v1.stats.completed), (12, 0, 12));

    // The same prompts answered fresh (the test server is deterministic) into a new cache.
    let fresh = TeacherClient::new(&config(&server, &new_cache)).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(server.counters().requests(), sent_before + 12);
    assert_eq!(from_v1.results, fresh.results);
    let tokens = fresh.records().next().unwrap().samples[0].tokens.as_ref().unwrap();
    assert!(!tokens.is_empty() && tokens.iter().all(|t| t.top.len() == 5));
}
