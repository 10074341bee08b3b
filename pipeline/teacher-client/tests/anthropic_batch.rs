//! `api = "anthropic"`, `transport = "batch"`: Message Batches (`/v1/messages/batches`, poll,
//! results) against the test server, with the same journal and cache as OpenAI's batches.
//! Each of a prompt's `n` samples is a request of its own, under its own key.

mod common;

use std::collections::HashMap;

// Anthropic prompts carry a system message.
use common::{keep_open, python_chat as chat, python_prompts as prompts};

use distill_core::records::PromptRecord;
use distill_teacher_client::config::{Api, Transport};
use distill_teacher_client::{BatchOptions, JobStats, PromptOutcome, SamplingOverrides, TeacherClient, TeacherConfig};
use distill_teacher_testserver::{spawn, ServerConfig, TestServer};

fn config(server: &TestServer, cache: &std::path::Path, transport: Transport) -> TeacherConfig {
    TeacherConfig { transport, n: 2, ..common::anthropic_config(server, cache) }
}

fn run(client: &TeacherClient, ps: &[PromptRecord]) -> (Vec<PromptOutcome>, distill_teacher_client::BatchStats, JobStats) {
    let mut out = Vec::new();
    let (stats, job) = client
        .run_stream_by_transport(
            || Ok(ps.to_vec()),
            None,
            &SamplingOverrides::default(),
            &BatchOptions::default(),
            |o| {
                out.push(o);
                Ok(())
            },
        )
        .unwrap();
    (out, stats, job.expect("batch transport"))
}

#[test]
fn message_batches_answer_each_sample_under_its_online_key_and_skip_what_is_cached() {
    let server = spawn(ServerConfig { batch_step: 3, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Clients made one after another share it (no race with sled's lock release).
    let _keep = keep_open(&cache);
    let ps = prompts(12, "a");
    // Half the prompts online first, with n = 1: their sample 0 is cached, sample 1 is not.
    let online = config(&server, &cache, Transport::Online);
    let one = SamplingOverrides { n: Some(1), ..Default::default() };
    TeacherClient::new(&online).unwrap().run_batch(&ps[..6], &one, false).unwrap();
    assert_eq!(server.counters().requests(), 6);

    // n = 2 in batches of at most 5: 6 + 12 = 18 requests missing, 4 batches.
    let cfg = TeacherConfig { batch_max_requests: 5, ..config(&server, &cache, Transport::Batch) };
    let (out, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps);
    assert_eq!((job.batches_submitted, job.batches_completed, job.requests_submitted, job.requests_succeeded), (4, 4, 18, 18), "{job:?}");
    assert_eq!((stats.completed, stats.failed), (12, 0));
    assert_eq!(server.counters().requests(), 6, "nothing more online");
    let subs = server.counters().batch_submissions();
    assert_eq!(subs.len(), 18);
    assert!(subs.values().all(|n| *n == 1));
    let s = cfg.settings("t").unwrap();
    for p in &ps {
        let r = distill_teacher_client::request::build_for(Api::Anthropic, p, &s.model, &s.sampling, &s.extra_body);
        let submitted = r.parts.iter().filter(|k| subs.contains_key(&hex::encode(k))).count();
        assert_eq!(submitted, if p.id.as_str() < "a-0006" { 1 } else { 2 }, "{}", p.id);
    }
    assert!(out.iter().all(|o| matches!(o, PromptOutcome::Answered(r) if r.samples.len() == 2 && r.samples.iter().all(|s| s.tokens.is_none()))));

    // The same answers as online, and an online run over this cache sends nothing.
    let reference = TeacherClient::new(&config(&server, &dir.path().join("ref"), Transport::Online)).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out, reference.results);
    let sent = server.counters().requests();
    let again = TeacherClient::new(&online).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!((server.counters().requests(), again.stats.from_cache), (sent, 12));
}

#[test]
fn an_expired_message_batch_and_errored_results_resubmit_only_what_has_no_answer() {
    let server = spawn(ServerConfig { batch_step: 2, batch_expire_after: Some(6), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { n: 1, ..config(&server, &dir.path().join("cache"), Transport::Batch) };
    let _keep = keep_open(&dir.path().join("cache"));
    let mut ps = prompts(10, "e");
    ps[1] = chat("e-0001", "too long [[status:400]]");
    ps[2] = chat("e-0002", "flaky [[status:529]]");
    let (out, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps);
    assert_eq!((job.batches_submitted, job.batches_expired, job.requests_succeeded, job.requests_failed, job.requests_expired), (1, 1, 4, 2, 4), "{job:?}");
    let reasons: HashMap<String, u64> = stats.failed_by_reason.clone().into_iter().collect();
    assert_eq!((reasons.get("batch_expired"), reasons.get("bad_request"), reasons.get("batch_server_error")), (Some(&4), Some(&1), Some(&1)), "{reasons:?}");
    assert!(matches!(&out[1], PromptOutcome::Failed(f) if f.message.contains("injected status 400")));

    server.configure(|c| c.batch_expire_after = None);
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps);
    assert_eq!((job.requests_submitted, job.requests_succeeded), (5, 4), "{job:?}");
    assert_eq!((stats.completed, stats.failed), (8, 2));
    let twice = server.counters().batch_submissions().values().filter(|n| **n == 2).count();
    assert_eq!(twice, 5, "the expired and the overloaded, once more each");
}

/// Killed after a message batch was created and before its id was journaled: the `creating`
/// line written before the creation makes the next run look for it (created since, as large,
/// not in the journal) and wait for it instead of submitting its requests again.
#[test]
fn a_message_batch_created_but_not_journaled_is_found_by_its_time_and_size() {
    let server = spawn(ServerConfig { batch_step: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { n: 1, ..config(&server, &dir.path().join("cache"), Transport::Batch) };
    let settings = cfg.settings("t").unwrap();
    let ps = prompts(5, "w");
    let requests: Vec<serde_json::Value> = ps
        .iter()
        .map(|p| {
            let r = distill_teacher_client::request::build_for(Api::Anthropic, p, &settings.model, &settings.sampling, &settings.extra_body);
            serde_json::json!({"custom_id": hex::encode(r.parts[0]), "params": serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()})
        })
        .collect();
    let journal = dir.path().join("cache/batches");
    std::fs::create_dir_all(&journal).unwrap();
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    std::fs::write(journal.join("journal.jsonl"), format!("{{\"event\":\"creating\",\"api\":\"anthropic\",\"requests\":5,\"bytes\":0,\"unix\":{unix}}}\n")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/messages/batches", server.base_url))
            .header("anthropic-version", "2023-06-01")
            .json(&serde_json::json!({"requests": requests}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    });

    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps);
    assert_eq!((job.batches_reattached, job.batches_submitted, job.requests_succeeded), (1, 0, 5), "{job:?}");
    assert_eq!(stats.completed, 5);
    assert_eq!(server.counters().batches_created(), 1);
}

/// The same for a message batch: found by its time and size after a lost answer.
#[test]
fn a_lost_answer_to_a_message_batch_creation_does_not_create_a_second_batch() {
    let server = spawn(ServerConfig { batch_create_faults: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { n: 1, batch_max_requests: 3, ..config(&server, &dir.path().join("cache"), Transport::Batch) };
    let ps = prompts(6, "l");
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps);
    assert_eq!((job.batches_submitted, stats.completed), (2, 6));
    assert_eq!(server.counters().batches_created(), 2);
    assert!(server.counters().batch_submissions().values().all(|n| *n == 1));
}
