//! With `api = "anthropic"` the API key reaches the server in `x-api-key` and nowhere else:
//! not the cache, not a log line (captured at TRACE for every crate, reqwest and hyper
//! included), not a failure message. Its own test binary: it installs the global subscriber
//! and sets an environment variable.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use distill_teacher_client::cache::{Entry, TREE};
use distill_teacher_client::{SamplingOverrides, TeacherClient, TeacherConfig};
use distill_teacher_testserver::{spawn, ServerConfig};

const KEY: &str = "sk-ant-PLANTED-secret-4c2e8d0a9b";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_anthropic_key_appears_in_no_file_and_no_log() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    // This test binary runs this one test: no other thread reads the environment.
    std::env::set_var("DISTILL_TEST_PLANTED_ANTHROPIC_KEY", KEY);
    let server = spawn(ServerConfig { require_key: Some(KEY.into()), fault_rate: 0.2, quota_rpm: 600, quota_burst: 4, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cfg = TeacherConfig {
        api_key_env: "DISTILL_TEST_PLANTED_ANTHROPIC_KEY".into(),
        max_concurrency: 4,
        timeout_secs: 0.5,
        max_retries: 30,
        max_tokens: 16,
        ..common::anthropic_config(&server, &cache)
    };
    let mut ps: Vec<distill_core::records::PromptRecord> =
        (0..12).map(|i| serde_json::from_value(serde_json::json!({"id": format!("p{i}"), "messages": [{"role": "user", "content": format!("task {i}")}]})).unwrap()).collect();
    ps.push(serde_json::from_value(serde_json::json!({"id": "bad", "messages": [{"role": "user", "content": "[[status:400]]"}]})).unwrap());
    // The two clients below share the cache (no race with sled's lock release between them).
    let keep = common::keep_open(&cache);
    let client = TeacherClient::new(&cfg).unwrap();
    let out = client.run_batch(&ps, &SamplingOverrides { n: Some(2), ..Default::default() }, false).unwrap();
    assert_eq!(out.stats.completed, 12, "{:?}", out.stats.failed_by_reason);
    assert!(server.counters().rate_limited() > 0 && server.counters().faults() > 0);
    let failure = format!("{:?}", out.failures().collect::<Vec<_>>());
    assert!(!failure.contains(KEY));
    drop(client);

    // Message batches with the same key: the journal and keys files beside the cache, the
    // batch calls' logs and errors (a 400 in the results) must not hold it either.
    server.configure(|c| {
        c.fault_rate = 0.0;
        c.quota_rpm = 0;
        c.batch_step = 3;
    });
    let batch_cfg = TeacherConfig { transport: distill_teacher_client::config::Transport::Batch, batch_poll_secs: 0.01, ..cfg.clone() };
    let more: Vec<distill_core::records::PromptRecord> = (0..6)
        .map(|i| {
            serde_json::from_value(
                serde_json::json!({"id": format!("b{i}"), "messages": [{"role": "user", "content": format!("batch task {i}{}", if i == 0 { " [[status:400]]" } else { "" })}]}),
            )
            .unwrap()
        })
        .collect();
    let client = TeacherClient::new(&batch_cfg).unwrap();
    let (stats, job) = client.run_stream_by_transport(|| Ok(more.clone()), None, &SamplingOverrides::default(), &Default::default(), |_| Ok(())).unwrap();
    assert_eq!((stats.completed, job.unwrap().batches_submitted), (5, 1));
    assert!(server.counters().batches_created() == 1);
    drop(client);
    drop(keep);

    let auth = server.counters().auth_headers.lock().unwrap().clone();
    assert!(!auth.is_empty() && auth.iter().all(|a| a == KEY), "sent only as x-api-key");
    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in {}", f.display());
    }
    // Decode every entry (values may be compressed).
    let t0 = std::time::Instant::now();
    let db = loop {
        match sled::Config::new().path(&cache).open() {
            Ok(db) => break db,
            Err(e) => {
                assert!(t0.elapsed().as_secs() < 10, "the cache stays locked: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    let tree = db.open_tree(TREE).unwrap();
    assert!(tree.len() >= 25 + 6, "{} entries: 12 prompts x 2 samples, one failure, and 6 batch answers", tree.len());
    let values = distill_teacher_client::valuelog::ValueLog::open(&cache.join("values")).unwrap();
    for kv in tree.iter() {
        let (_, v) = kv.unwrap();
        let v = match v.strip_prefix(b"P") {
            Some(p) => values.read(&distill_teacher_client::valuelog::Pointer::decode(p).unwrap()).unwrap().unwrap(),
            None => v.to_vec(),
        };
        let entry = Entry::decode(&v).expect("every entry decodes");
        assert!(!format!("{entry:?}").contains(KEY), "the key is in a cache entry");
    }
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(logs.len() > 1000, "the logs were captured ({} bytes)", logs.len());
    assert!(!logs.contains(KEY) && !logs.contains("4c2e8d0a9b"), "the key is in the logs");
}
