//! `transport = "batch"` against the test server's `/v1/files` and `/v1/batches`: what is
//! submitted (only what the cache lacks, split by the limits), where the answers go (the same
//! cache under the same keys as online), and what happens to a batch that expires with part
//! of its requests done or returns an error file.

mod common;

use std::collections::HashMap;

use common::{chat, config, keep_open, prompts};

use distill_core::records::PromptRecord;
use distill_teacher_client::config::Transport;
use distill_teacher_client::{BatchOptions, JobStats, PromptOutcome, SamplingOverrides, Settings, TeacherClient, TeacherConfig};
use distill_teacher_testserver::{spawn, ServerConfig, TestServer};

fn batched(cfg: &TeacherConfig) -> TeacherConfig {
    TeacherConfig { transport: Transport::Batch, ..cfg.clone() }
}

/// Runs the prompts through the configured transport: outcomes in order and the batch stats.
fn run(client: &TeacherClient, ps: &[PromptRecord], retry_failed: bool) -> (Vec<PromptOutcome>, distill_teacher_client::BatchStats, Option<JobStats>) {
    let mut out = Vec::new();
    let opts = BatchOptions { progress: false, retry_failed };
    let (stats, job) = client
        .run_stream_by_transport(
            || Ok(ps.to_vec()),
            Some(ps.len() as u64),
            &SamplingOverrides::default(),
            &opts,
            |o| {
                out.push(o);
                Ok(())
            },
        )
        .unwrap();
    (out, stats, job)
}

/// What a killed run did before journaling its batch: uploads `ps` (chat completions under
/// their cache keys, as the client writes them) as a batch input file and creates the batch.
/// Returns the input file's id and the batch's.
fn upload_and_create(server: &TestServer, settings: &Settings, ps: &[PromptRecord]) -> (String, String) {
    let lines: String = ps
        .iter()
        .map(|p| {
            let r = distill_teacher_client::request::build(p, &settings.model, &settings.sampling, &settings.extra_body);
            format!("{{\"custom_id\":\"{}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}}\n", hex::encode(r.key), String::from_utf8_lossy(&r.body))
        })
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let body = format!("--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\r\n{lines}\r\n--b--\r\n");
        let v: serde_json::Value =
            http.post(format!("{}/files", server.base_url)).header("content-type", "multipart/form-data; boundary=b").body(body).send().await.unwrap().json().await.unwrap();
        let file = v["id"].as_str().unwrap().to_string();
        let create = serde_json::json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"});
        let b: serde_json::Value = http.post(format!("{}/batches", server.base_url)).json(&create).send().await.unwrap().error_for_status().unwrap().json().await.unwrap();
        (file, b["id"].as_str().unwrap().to_string())
    })
}

fn submitted_more_than_once(server: &TestServer) -> Vec<(String, u64)> {
    server.counters().batch_submissions().into_iter().filter(|(_, n)| *n > 1).collect()
}

#[test]
fn a_mixed_run_batches_only_what_the_online_cache_lacks_and_online_finds_the_batch_answers() {
    let server = spawn(ServerConfig { batch_step: 3, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let online = config(&server, &dir.path().join("cache"));
    let _keep = keep_open(&dir.path().join("cache"));
    let ps = prompts(20, "m");
    // Half the prompts answered online first.
    let first = TeacherClient::new(&online).unwrap().run_batch(&ps[..10], &SamplingOverrides::default(), false).unwrap();
    assert_eq!((first.stats.requested, server.counters().requests()), (10, 10));

    // The batch run: 10 left, 4 a batch by count and ~2 KB by bytes.
    let cfg = TeacherConfig { batch_max_requests: 4, ..batched(&online) };
    let client = TeacherClient::new(&cfg).unwrap();
    let (out, stats, job) = run(&client, &ps, false);
    let job = job.expect("batch transport");
    assert_eq!(server.counters().requests(), 10, "nothing was sent online");
    assert_eq!((job.batches_submitted, job.batches_completed, job.requests_submitted, job.requests_succeeded), (3, 3, 10, 10), "{job:?}");
    assert_eq!(server.counters().batches_created(), 3);
    let subs = server.counters().batch_submissions();
    assert_eq!(subs.len(), 10);
    assert!(submitted_more_than_once(&server).is_empty());
    assert_eq!((stats.completed, stats.failed, stats.from_cache, stats.requested), (20, 0, 10, 10));
    assert!(job.cost_usd == 0.0 && job.completion_tokens > 0);

    // The custom ids are the online cache keys of the 10 prompts not cached.
    let settings = online.settings("t").unwrap();
    for p in &ps[10..] {
        let key = distill_teacher_client::request::build(p, &settings.model, &settings.sampling, &settings.extra_body).key;
        assert!(subs.contains_key(&hex::encode(key)), "{} was not submitted under its online key", p.id);
    }

    // The answers equal online ones: a fresh online run of all 20 into another cache.
    let reference = TeacherClient::new(&config(&server, &dir.path().join("ref"))).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out, reference.results);

    // An online run over the batch cache sends nothing; a batch run submits nothing.
    drop(client);
    let sent = server.counters().requests();
    let again = TeacherClient::new(&online).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!((server.counters().requests(), again.stats.from_cache), (sent, 20));
    let (_, _, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    assert_eq!((job.unwrap().batches_submitted, server.counters().batches_created()), (0, 3));

    // The byte limit splits too: every line is ~310 bytes, so 700 bytes hold two.
    let bytes = TeacherConfig { batch_max_bytes: 700, ..batched(&config(&server, &dir.path().join("bytes"))) };
    let (_, _, job) = run(&TeacherClient::new(&bytes).unwrap(), &ps[..6], false);
    assert_eq!(job.unwrap().batches_submitted, 3);
}

#[test]
fn an_expired_batch_and_an_error_file_resubmit_only_what_has_no_answer() {
    // The batch expires after 6 requests ran; one prompt is a 400 (remembered), one a 500
    // (transient): both come back in the error file.
    let server = spawn(ServerConfig { batch_step: 2, batch_expire_after: Some(6), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = batched(&config(&server, &dir.path().join("cache")));
    let _keep = keep_open(&dir.path().join("cache"));
    let mut ps = prompts(10, "e");
    ps[1] = chat("e-0001", "too long [[status:400]]");
    ps[2] = chat("e-0002", "flaky [[status:500]]");
    let (out, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    let job = job.unwrap();
    assert_eq!((job.batches_submitted, job.batches_expired, job.requests_submitted), (1, 1, 10), "{job:?}");
    assert_eq!((job.requests_succeeded, job.requests_failed, job.requests_expired), (4, 2, 4), "{job:?}");
    assert_eq!((stats.completed, stats.failed), (4, 6));
    let reasons: HashMap<String, u64> = stats.failed_by_reason.clone().into_iter().collect();
    assert_eq!(reasons.get("batch_expired"), Some(&4), "{reasons:?}");
    assert_eq!(reasons.get("bad_request"), Some(&1), "{reasons:?}");
    assert_eq!(reasons.get("batch_server_error"), Some(&1), "{reasons:?}");
    assert!(matches!(&out[1], PromptOutcome::Failed(f) if f.message.contains("injected status 400")));

    // The next run (the batch no longer expires) submits the 4 expired and the 500 only.
    server.configure(|c| c.batch_expire_after = None);
    let before = server.counters().batch_submissions();
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    let job = job.unwrap();
    assert_eq!((job.batches_submitted, job.requests_submitted, job.requests_succeeded), (1, 5, 4), "{job:?}");
    let after = server.counters().batch_submissions();
    let resubmitted: Vec<_> = after.iter().filter(|(k, n)| before.get(*k).copied().unwrap_or(0) < **n).collect();
    assert_eq!(resubmitted.len(), 5);
    assert_eq!((stats.completed, stats.failed), (8, 2));
    // --retry-failed submits the remembered 400 again as well.
    let (_, _, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, true);
    assert_eq!(job.unwrap().requests_submitted, 2);
}

#[test]
fn a_batch_that_could_pass_max_cost_usd_is_refused_before_it_is_submitted_and_dry_runs_know_the_discount() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let priced = TeacherConfig { price_input_per_mtok: 1000.0, price_output_per_mtok: 1000.0, ..config(&server, &dir.path().join("cache")) };
    let _keep = keep_open(&dir.path().join("cache"));
    let ps = prompts(10, "b");
    // Worst case ~(10 + 24) tokens x $0.001 = $0.034 a request online, $0.017 in a batch.
    let online_plan = TeacherClient::new(&priced).unwrap().plan(&ps, &SamplingOverrides::default(), false).unwrap();
    let batch_plan = distill_teacher_client::dry_run(&batched(&priced), ps.clone(), &SamplingOverrides::default(), false).unwrap();
    assert!((batch_plan.projected_cost_usd_max - online_plan.projected_cost_usd_max / 2.0).abs() < 1e-9, "{batch_plan:?} {online_plan:?}");
    let custom = TeacherConfig { batch_discount: 0.25, ..batched(&priced) };
    let quarter = distill_teacher_client::dry_run(&custom, ps.clone(), &SamplingOverrides::default(), false).unwrap();
    assert!((quarter.projected_cost_usd_max - online_plan.projected_cost_usd_max / 4.0).abs() < 1e-9);

    // $0.10 allows ~5 of the 10 at the batch price: the whole submission is refused.
    let capped = TeacherConfig { max_cost_usd: 0.10, ..batched(&priced) };
    let client = TeacherClient::new(&capped).unwrap();
    let err = client.run_stream_by_transport(|| Ok(ps.clone()), None, &SamplingOverrides::default(), &BatchOptions::default(), |_| Ok(())).unwrap_err().to_string();
    assert!(err.contains("refusing to submit") && err.contains("max_cost_usd"), "{err}");
    assert_eq!(server.counters().batches_created(), 0);
    // $1 is enough: submitted, and the cost is counted at the batch price.
    let (_, stats, job) = run(&TeacherClient::new(&TeacherConfig { max_cost_usd: 1.0, ..capped }).unwrap(), &ps, false);
    let job = job.unwrap();
    let tokens = job.prompt_tokens + job.completion_tokens;
    assert!((job.cost_usd - tokens as f64 * 1000.0 * 0.5 / 1e6).abs() < 1e-9, "{job:?}");
    assert!((stats.cost_usd - job.cost_usd).abs() < 1e-12);
}

/// The one instant the journal cannot cover by itself: killed after the batch was created and
/// before its id was written. The input file was journaled (`uploaded`) before the creation,
/// so the next run finds the batch by it and waits for it instead of submitting again.
#[test]
fn a_batch_created_but_not_journaled_is_found_by_its_input_file() {
    let server = spawn(ServerConfig { batch_step: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = batched(&config(&server, &dir.path().join("cache")));
    let settings = cfg.settings("t").unwrap();
    let ps = prompts(6, "w");
    // What the killed run had done: the input uploaded and journaled, the batch created.
    let (file_id, _) = upload_and_create(&server, &settings, &ps);
    let journal = dir.path().join("cache/batches");
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(journal.join("journal.jsonl"), format!("{{\"event\":\"uploaded\",\"api\":\"openai\",\"input_file_id\":\"{file_id}\",\"requests\":6,\"bytes\":0,\"unix\":0}}\n"))
        .unwrap();

    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    let job = job.unwrap();
    assert_eq!((job.batches_reattached, job.batches_submitted, job.requests_succeeded), (1, 0, 6), "{job:?}");
    assert_eq!(stats.completed, 6);
    assert_eq!(server.counters().batches_created(), 1);
    assert!(submitted_more_than_once(&server).is_empty());
}

/// A restarted run that knows what the open batches hold (their keys files) submits the rest
/// at once and waits for old and new batches together, instead of waiting up to a day for the
/// old ones first; it never submits what they hold.
#[test]
fn a_restart_submits_what_no_open_batch_holds_without_waiting_for_them() {
    let server = spawn(ServerConfig { batch_step: 1, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = batched(&config(&server, &dir.path().join("cache")));
    let settings = cfg.settings("t").unwrap();
    let ps = prompts(10, "r");
    let keys: Vec<[u8; 32]> = ps.iter().map(|p| distill_teacher_client::request::build(p, &settings.model, &settings.sampling, &settings.extra_body).key).collect();
    // What the killed run had done: a batch of the first 5, journaled with its keys file.
    let (file_id, batch_id) = upload_and_create(&server, &settings, &ps[..5]);
    let journal = dir.path().join("cache/batches");
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(journal.join("keys-old.bin"), keys[..5].concat()).unwrap();
    std::fs::write(
        journal.join("journal.jsonl"),
        format!("{{\"event\":\"submitted\",\"api\":\"openai\",\"batch_id\":\"{batch_id}\",\"input_file_id\":\"{file_id}\",\"requests\":5,\"bytes\":0,\"unix\":0,\"keys\":\"keys-old.bin\"}}\n"),
    )
    .unwrap();

    // A dry run now: 5 to request, 5 in the open batch.
    let _keep = keep_open(&dir.path().join("cache"));
    let plan = distill_teacher_client::dry_run(&cfg, ps.clone(), &SamplingOverrides::default(), false).unwrap();
    assert_eq!((plan.to_request, plan.in_open_batches, plan.cached), (5, 5, 0), "{plan:?}");
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    let job = job.unwrap();
    assert_eq!((job.batches_reattached, job.batches_submitted, job.requests_submitted, job.requests_succeeded), (1, 1, 5, 10), "{job:?}");
    assert_eq!(stats.completed, 10);
    assert!(submitted_more_than_once(&server).is_empty());
    // The new batch was created while the old one ran: no wait first.
    assert_eq!(server.counters().most_batches_in_progress.load(std::sync::atomic::Ordering::Relaxed), 2);
    // Done batches' keys files are removed.
    assert!(!journal.join("keys-old.bin").exists());
    assert_eq!(std::fs::read_dir(&journal).unwrap().count(), 1, "only the journal is left");
}

/// One batch has one endpoint: chat and legacy completions prompts go to batches of their own,
/// and both come back equal to their online answers (log-probs included).
#[test]
fn chat_and_completions_prompts_go_to_batches_of_their_own_endpoint() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ps = prompts(4, "c");
    ps.push(serde_json::from_value(serde_json::json!({"id": "d-1", "prompt": "def add(a, b):"})).unwrap());
    ps.push(serde_json::from_value(serde_json::json!({"id": "d-2", "prompt": "def sub(a, b):"})).unwrap());
    let (out, stats, job) = run(&TeacherClient::new(&batched(&config(&server, &dir.path().join("cache")))).unwrap(), &ps, false);
    assert_eq!((job.unwrap().batches_submitted, stats.completed), (2, 6));
    let reference = TeacherClient::new(&config(&server, &dir.path().join("ref"))).unwrap().run_batch(&ps, &SamplingOverrides::default(), false).unwrap();
    assert_eq!(out, reference.results);
    assert!(reference.records().all(|r| r.samples[0].tokens.as_ref().is_some_and(|t| !t.is_empty())));
}

/// A creation whose answer is lost (the batch exists, the client saw a 500) is not simply
/// sent again: the client looks for the batch by its input file first, and pays once.
#[test]
fn a_lost_answer_to_a_batch_creation_does_not_create_a_second_batch() {
    let server = spawn(ServerConfig { batch_create_faults: 2, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TeacherConfig { batch_max_requests: 3, ..batched(&config(&server, &dir.path().join("cache"))) };
    let ps = prompts(6, "l");
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    assert_eq!((job.unwrap().batches_submitted, stats.completed), (2, 6));
    assert_eq!(server.counters().batches_created(), 2);
    assert!(submitted_more_than_once(&server).is_empty());
}

/// A journaled batch the API does not know (another account, past its retention) is given up
/// with a warning instead of stopping every later run; its requests are submitted anew.
#[test]
fn a_journaled_batch_unknown_to_the_api_is_given_up_and_its_requests_submitted_again() {
    let server = spawn(ServerConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = batched(&config(&server, &dir.path().join("cache")));
    let journal = dir.path().join("cache/batches");
    std::fs::create_dir_all(&journal).unwrap();
    std::fs::write(journal.join("journal.jsonl"), "{\"event\":\"submitted\",\"api\":\"openai\",\"batch_id\":\"batch_gone\",\"requests\":3,\"bytes\":0,\"unix\":0}\n").unwrap();
    let ps = prompts(3, "g");
    let (_, stats, job) = run(&TeacherClient::new(&cfg).unwrap(), &ps, false);
    let job = job.unwrap();
    assert_eq!((job.batches_reattached, job.batches_failed, job.batches_submitted, stats.completed), (1, 1, 1, 3), "{job:?}");
    let text = std::fs::read_to_string(journal.join("journal.jsonl")).unwrap();
    assert!(text.contains("\"batch_id\":\"batch_gone\",\"status\":\"lost\""), "{text}");
}
