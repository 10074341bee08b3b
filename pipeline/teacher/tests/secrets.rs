//! The API key reaches the server in the Authorization header and nowhere else: not the
//! cache, not the outputs, not the stats, not a log line (captured at TRACE for every crate,
//! reqwest and hyper included).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use distill_teacher::{run, RunOptions};
use distill_teacher_testserver::{spawn, ServerConfig};

const KEY: &str = "sk-PLANTED-secret-7f3a9c1e5b";

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
fn the_key_appears_in_no_file_and_no_log() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // This test binary runs this one test: no other thread reads the environment.
    std::env::set_var("DISTILL_TEST_PLANTED_KEY", KEY);
    let server = spawn(ServerConfig { require_key: Some(KEY.into()), fault_rate: 0.2, ..Default::default() }).unwrap();
    let work = tempfile::tempdir().unwrap();
    write_prompts(work.path(), 25, &["{\"id\":\"z-bad\",\"prompt\":\"[[status:400]]\"}"]);
    let cfg = distill_teacher::TeacherConfig { api_key_env: "DISTILL_TEST_PLANTED_KEY".into(), timeout_secs: 0.5, max_retries: 10, ..config(&server, &work.path().join("cache")) };
    let out = work.path().join("out");
    let stats = run(&context(work.path(), &out), &cfg, &RunOptions::default()).unwrap();
    assert_eq!(stats["completed"], 25, "{stats}");
    distill_core::atomic::write_json(&out.join("stats.json"), &stats).unwrap();

    // It was sent, and only as a bearer token.
    let auth = server.counters().auth_headers.lock().unwrap().clone();
    assert!(!auth.is_empty() && auth.iter().all(|a| a == &format!("Bearer {KEY}")));

    let mut files = Vec::new();
    files_under(work.path(), &mut files);
    assert!(files.iter().any(|f| f.starts_with(work.path().join("cache"))), "the cache was written");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()), "the key is in {}", f.display());
    }
    // Cache values are compressed, so a key inside one would not show in the file bytes:
    // decode every entry and look at what it holds.
    let db = open_when_released(&work.path().join("cache"));
    let tree = db.open_tree(distill_teacher_client::cache::TREE).unwrap();
    assert!(tree.len() >= 25);
    let values = distill_teacher_client::valuelog::ValueLog::open(&work.path().join("cache/values")).unwrap();
    for kv in tree.iter() {
        let (_, v) = kv.unwrap();
        // Answers live in the value log; sled holds `P` and a pointer to them.
        let v = match v.strip_prefix(b"P") {
            Some(p) => values.read(&distill_teacher_client::valuelog::Pointer::decode(p).unwrap()).unwrap().unwrap(),
            None => v.to_vec(),
        };
        let entry = distill_teacher_client::cache::Entry::decode(&v).expect("every entry decodes");
        assert!(!format!("{entry:?}").contains(KEY), "the key is in a cache entry");
    }
    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.len() > 1000, "the logs were captured ({} bytes)", logs.len());
    let logs = String::from_utf8_lossy(&logs);
    assert!(!logs.contains(KEY), "the key is in the logs");
    assert!(!logs.contains("7f3a9c1e5b"), "part of the key is in the logs");
}

/// sled releases its folder lock from a background thread shortly after the last handle.
fn open_when_released(path: &std::path::Path) -> sled::Db {
    let t0 = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).open() {
            Ok(db) => return db,
            Err(e) => {
                assert!(t0.elapsed().as_secs() < 10, "the cache stays locked: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
