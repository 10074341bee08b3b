//! `distill dashboard` against a real work dir: the pipeline's own stages on a tiny config
//! (tokenizer, prompts, a loopback teacher with real code answers and log-probs, filter,
//! shards), then the server started as a user starts it, on loopback, and every endpoint asked
//! over real HTTP: pages, filters, tokens, shard rows, the funnel against filter/stats.json,
//! jobs (401 without the key, a training run started through the API whose metrics stream
//! gains points while it runs, its log streamed to the end), bad input (400), path traversal,
//! the rate limit (429) and the bind rule (a key beyond loopback).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use distill_teacher_testserver::{code::CodeAnswers, ServerConfig};
use serde_json::Value;

#[path = "common/cdp.rs"]
mod cdp;

const KEY: &str = "test-dashboard-key";

/// Tests that train take turns: they share the fixture's `.scratch/train`.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The metric events after the last `reset` (a new training run starts the file over).
fn current_run(events: &[(String, String)]) -> Vec<Value> {
    let start = events.iter().rposition(|(t, _)| t == "reset").map(|i| i + 1).unwrap_or(0);
    events[start..].iter().filter(|(t, _)| t == "metric").filter_map(|(_, d)| serde_json::from_str(d).ok()).collect()
}

/// The tiny run's folder, built once for every test of this file.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
}

fn distill(root: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_distill")).args(["--quiet", "--config", "dash.toml"]).args(args).current_dir(root).env_remove("RUST_LOG").output().unwrap();
    assert!(out.status.success(), "distill {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// The training run lasts several seconds (600 steps of the nano model), so that the page's
/// two-second status polls see the stage running; metrics are logged every 10 steps (60 lines).
fn write_config(root: &Path, base_url: &str) {
    std::fs::write(
        root.join("dash.toml"),
        format!(
            "name = \"dash\"\n[tokenizer]\nvocab_size = 512\nmax_corpus_bytes = 400000\n\
             [teacher]\nbase_url = \"{base_url}\"\nmodel = \"test-teacher\"\nn = 2\ntop_logprobs = 5\n\
             [filter.consistency]\nenabled = false\n\
             [train]\nmodel = \"nano\"\nsteps = 600\nbatch_size = 2\nseq_len = 96\nlog_every = 10\neval_every = 200\ncheckpoint_every = 0\n\
             [train_baseline]\nenabled = false\n"
        ),
    )
    .unwrap();
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        write_config(&root, "http://127.0.0.1:9/v1");
        distill(&root, &["tokenizer"]);
        let work = root.join("datasets/dash");
        let answers = CodeAnswers::load(&work.join("tokenizer/tokenizer.json")).unwrap();
        let server = distill_teacher_testserver::spawn(ServerConfig { code: Some(Arc::new(answers)), ..Default::default() }).unwrap();
        write_config(&root, &server.base_url);
        for stage in ["prompts", "teacher", "filter", "shards"] {
            distill(&root, &[stage]);
        }
        std::mem::forget(server); // the teacher is not needed again, but stays answerable
        Fixture { _dir: dir, root, work }
    })
}

/// A `distill dashboard` process; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    /// SIGTERM, so that the server stops a job it started (a panicking test must not leave a
    /// training run behind to disturb the next test), then SIGKILL if it is still there.
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(f: &Fixture, extra: &[&str], key: Option<&str>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.args(["--config", "dash.toml", "dashboard", "--bind", "127.0.0.1:0"])
        .args(extra)
        .current_dir(&f.root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("DISTILL_DASHBOARD_KEY");
    if let Some(k) = key {
        cmd.env("DISTILL_DASHBOARD_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("dashboard: http://").and_then(|a| a.strip_suffix('/')).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    Server { child, addr }
}

/// One HTTP/1.1 request: (status, headers, body).
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    req += body;
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    let (status, _, body) = request(addr, "GET", path, &[], "");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}")))
}

fn ok(addr: &str, path: &str) -> Value {
    let (status, v) = get(addr, path);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Lines of a JSONL file.
fn series_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).lines().count()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Reads server-sent events from `path` until `enough(events so far)` or `limit` passes.
fn events(addr: &str, path: &str, limit: Duration, enough: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let (mut out, mut event, t0) = (Vec::new(), String::from("message"), Instant::now());
    let mut line = String::new();
    while t0.elapsed() < limit && !enough(&out) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event: ").or_else(|| l.strip_prefix("event:")) {
                    event = e.trim().to_string();
                } else if let Some(d) = l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")) {
                    out.push((event.clone(), d.to_string()));
                }
            }
            Err(_) => continue,
        }
    }
    out
}

#[test]
fn the_api_serves_the_dag_stats_funnel_and_records_of_a_real_run_with_pages_that_read_only_the_page() {
    let f = fixture();
    let srv = start(f, &[], None);
    let a = srv.addr.as_str();

    let status = ok(a, "/api/v1/status");
    let stages = status["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["tokenizer", "prompts", "teacher", "filter", "shards", "train", "eval", "report"], "{status}");
    let by = |n: &str| stages.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by("filter")["state"], "up_to_date");
    // (The jobs test may be training it right now.)
    assert!(["never_run", "running", "up_to_date"].contains(&by("train")["state"].as_str().unwrap()), "{status}");
    assert_eq!(by("shards")["deps"], serde_json::json!(["filter", "teacher", "tokenizer"]));
    assert_eq!(ok(a, "/api/v1")["endpoints"].as_array().unwrap().len(), 16);

    let stats = ok(a, "/api/v1/stages/filter/stats");
    assert_eq!(stats, read_json(&f.work.join("filter/stats.json")));
    assert_eq!(ok(a, "/api/v1/stages/teacher/manifest")["stage"], "teacher");

    // The funnel: every filter of filter/stats.json, its in/out and reasons with their counts.
    let funnel = ok(a, "/api/v1/funnel");
    let steps = funnel["steps"].as_array().unwrap();
    for entry in stats["funnel"].as_array().unwrap() {
        let label = format!("filter: {}", entry["filter"].as_str().unwrap());
        let step = steps.iter().find(|s| s["label"] == label.as_str()).unwrap_or_else(|| panic!("{label} missing: {funnel}"));
        assert_eq!((step["input"].clone(), step["output"].clone()), (entry["in"].clone(), entry["out"].clone()));
        let reasons = stats["dropped_by_reason"].get(entry["filter"].as_str().unwrap());
        for r in step["reasons"].as_array().unwrap() {
            assert_eq!(reasons.unwrap()[r["reason"].as_str().unwrap()], r["count"], "{label}");
        }
    }
    let dropped: u64 = stats["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "the tiny run drops something, so the reasons are tested: {stats}");

    // Exclusions by filter and reason: the counts are the filter's.
    let all = ok(a, "/api/v1/records/exclusions?limit=5");
    assert_eq!(all["total"].as_u64(), Some(dropped));
    assert_eq!(all["records"].as_array().unwrap().len(), 5.min(dropped as usize));
    for (filter, reasons) in stats["dropped_by_reason"].as_object().unwrap() {
        for (reason, n) in reasons.as_object().unwrap() {
            let page = ok(a, &format!("/api/v1/records/exclusions?filter={filter}&reason={reason}&limit=500"));
            assert_eq!(page["matching"], *n, "{filter}/{reason}");
            assert!(page["records"].as_array().unwrap().iter().all(|r| r["record"]["filter"] == filter.as_str() && r["record"]["reason"] == reason.as_str()));
        }
    }

    // Pages of kept samples are disjoint and in file order; an id finds its record.
    let kept_lines: Vec<Value> = std::fs::read_to_string(f.work.join("filter/kept.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(kept_lines.len() >= 2, "the tiny run keeps samples: {}", kept_lines.len());
    let p1 = ok(a, "/api/v1/records/kept?offset=0&limit=1");
    let p2 = ok(a, "/api/v1/records/kept?offset=1&limit=1");
    assert_eq!(p1["total"].as_u64(), Some(kept_lines.len() as u64));
    assert_eq!((p1["records"][0]["record"].clone(), p1["records"][0]["line"].clone()), (kept_lines[0].clone(), Value::from(1)));
    assert_eq!(p2["records"][0]["record"], kept_lines[1]);
    assert_eq!(p2["records"].as_array().unwrap().len(), 1);
    let last = kept_lines.last().unwrap();
    let found = ok(a, &format!("/api/v1/records/kept?id={}", last["id"].as_str().unwrap().replace('#', "%23")));
    assert_eq!(found["records"][0]["record"], *last);
    let prompts = ok(a, "/api/v1/records/prompts?limit=2");
    assert!(prompts["facets"]["task_type"].as_object().unwrap().len() > 1, "{prompts}");
    assert_eq!(ok(a, "/api/v1/records/answers?limit=1")["records"][0]["record"]["samples"].as_array().unwrap().len(), 2);

    // A teacher answer's tokens, with log-probs and the top-k, from logprobs.frames.
    let (pid, sample) = last["id"].as_str().unwrap().split_once('#').unwrap();
    let tokens = ok(a, &format!("/api/v1/records/answers/{pid}/tokens?sample={sample}"));
    let toks = tokens["tokens"].as_array().unwrap();
    assert!(!toks.is_empty());
    let spelled: String = toks.iter().map(|t| t["token"].as_str().unwrap()).collect();
    assert_eq!(spelled, last["completion"].as_str().unwrap(), "the tokens spell the kept answer");
    assert!(toks.iter().all(|t| t["logprob"].as_f64().unwrap() <= 0.0 && !t["top"].as_array().unwrap().is_empty()));
    assert_eq!(get(a, "/api/v1/records/answers/nope/tokens").0, 404);

    // Shard rows: pages by row group, one row in full with the teacher's top-k as text.
    let manifest = read_json(&f.work.join("shards/shard_manifest.json"));
    let train_rows = manifest["rows"]["train"].as_u64().unwrap();
    assert!(train_rows >= 1, "{manifest}");
    let rows = ok(a, &format!("/api/v1/shard-rows?split=train&offset={}&limit=2", train_rows - 1));
    assert_eq!(rows["total"].as_u64(), Some(train_rows), "{manifest}");
    assert_eq!(rows["rows"].as_array().unwrap().len(), 1, "the page ends with the split");
    let row = ok(a, &format!("/api/v1/shard-rows/{}?split=train", train_rows - 1));
    assert_eq!(row["row_id"], rows["rows"][0]["row_id"]);
    assert_eq!(row["tokens"], Value::Null);
    assert_eq!(rows["rows"][0]["tokens"].as_u64(), Some(row["input_ids"].as_array().unwrap().len() as u64));
    assert_eq!(row["token_text"].as_array().unwrap().len(), row["input_ids"].as_array().unwrap().len());
    assert_eq!(row["teacher_topk_text"].as_array().unwrap().len(), row["teacher_topk_ids"].as_array().unwrap().len());
    assert_eq!(get(a, "/api/v1/shard-rows/100000?split=train").0, 404);

    // The teacher's time series: cumulative counters, monotone, ending at its stats.json.
    let teacher_stats = read_json(&f.work.join("teacher/stats.json"));
    let series = ok(a, "/api/v1/teacher/series");
    let points = series["points"].as_array().unwrap();
    assert!(!points.is_empty() && series["lines"].as_u64() == Some(points.len() as u64), "{series}");
    for key in ["t", "prompts_done", "from_cache", "requested", "http_requests", "rate_limited", "retries", "new_completion_tokens", "cost_usd"] {
        let v: Vec<f64> = points.iter().map(|p| p[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {p}"))).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{key} is not monotone: {v:?}");
    }
    let end = points.last().unwrap();
    for key in ["completed", "failed", "from_cache", "requested", "http_requests", "rate_limited", "retries"] {
        assert_eq!(end[key], teacher_stats[key], "{key}: {end} vs {teacher_stats}");
    }
    let thinned = ok(a, "/api/v1/teacher/series?max_points=2");
    assert!(thinned["points"].as_array().unwrap().len() <= 2 && thinned["points"].as_array().unwrap().last() == Some(end), "{thinned}");
    assert_eq!(get(a, "/api/v1/teacher/series?stage=..%2Fsecret").0, 404);

    // Files of published stage folders only.
    let (code, head, body) = request(a, "GET", "/api/v1/files/filter/stats.json", &[], "");
    assert_eq!(code, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"));
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), stats);
    std::fs::write(f.root.join("secret.txt"), "secret").unwrap();
    for (path, want) in [
        ("/api/v1/files/filter/../../secret.txt", [400, 404]),
        ("/api/v1/files/filter/%2e%2e/%2e%2e/secret.txt", [400, 400]),
        ("/api/v1/files/..%2F..%2Fsecret.txt", [400, 400]),
        ("/api/v1/files/%2Fetc%2Fpasswd", [400, 400]),
        ("/api/v1/files/.scratch/filter", [400, 400]),
        ("/api/v1/files/secret.txt", [404, 404]),
        ("/api/v1/stages/..%2F..%2Fsecret/stats", [404, 404]),
        ("/api/v1/evals/..%2F..%2Fsecret/results", [404, 404]),
        ("/api/v1/train/..%2Fsecret/metrics", [404, 404]),
    ] {
        let (code, _, body) = request(a, "GET", path, &[], "");
        assert!(want.contains(&code), "{path}: {code} {body}");
        assert!(!body.contains("secret\""), "{path} leaked: {body}");
        assert!(body.contains("\"error\""), "{path}: errors are JSON: {body}");
    }

    // Bad input: 400s that name the parameter.
    for (path, needle) in [
        ("/api/v1/records/kept?limit=0", "limit: 0 is outside 1..=500"),
        ("/api/v1/records/kept?offset=x", "offset: 'x'"),
        ("/api/v1/records/exclusions?colour=red", "unknown parameter 'colour'"),
        ("/api/v1/shard-rows?split=test", "split: 'test'"),
        ("/api/v1/shard-rows/x", "row index 'x'"),
        ("/api/v1/records/answers/a/tokens?sample=-1", "sample: '-1'"),
        ("/api/v1/jobs/abc", "job id 'abc'"),
        ("/api/v1/teacher/series?max_points=1", "max_points: '1'"),
    ] {
        let (code, v) = get(a, path);
        assert_eq!(code, 400, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    assert_eq!(get(a, "/api/v1/records/nothing").0, 404);
    assert_eq!(get(a, "/api/v1/evals").1["benchmarks"], serde_json::json!({}));
}

#[test]
fn jobs_need_the_key_and_a_training_run_started_through_the_api_streams_metrics_and_its_log() {
    let f = fixture();
    let srv = start(f, &[], Some(KEY));
    let a = srv.addr.as_str();
    let json = ("Content-Type", "application/json");
    let auth = format!("Bearer {KEY}");
    let with_key = [json, ("Authorization", auth.as_str())];

    let (code, _, body) = request(a, "POST", "/api/v1/jobs", &[json], r#"{"target": "train"}"#);
    assert_eq!(code, 401, "{body}");
    let (code, _, _) = request(a, "POST", "/api/v1/jobs", &[json, ("Authorization", "Bearer wrong")], r#"{"target": "train"}"#);
    assert_eq!(code, 401);
    for (body, needle) in [
        (r#"{"target": "train", "colour": 1}"#, "unknown field `colour`"),
        (r#"{"force": true}"#, "missing field `target`"),
        (r#"{"target": "../../etc"}"#, "target: '../../etc' is not a stage"),
        ("not json", "body:"),
    ] {
        let (code, _, resp) = request(a, "POST", "/api/v1/jobs", &with_key, body);
        assert_eq!(code, 400, "{body}: {resp}");
        assert!(resp.contains(needle), "{body}: {resp}");
    }

    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let (code, _, resp) = request(a, "POST", "/api/v1/jobs", &with_key, r#"{"target": "train", "force": true}"#);
    assert_eq!(code, 202, "{resp}");
    let job: Value = serde_json::from_str(&resp).unwrap();
    let id = job["id"].as_u64().unwrap();
    // A second job waits in the queue, and is cancelled before it starts.
    let (_, _, second) = request(a, "POST", "/api/v1/jobs", &with_key, r#"{"target": "report"}"#);
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(second["state"], "queued");
    let sid = second["id"].as_u64().unwrap();
    assert_eq!(request(a, "POST", &format!("/api/v1/jobs/{sid}/cancel"), &[], "").0, 401);
    let (code, _, cancelled) = request(a, "POST", &format!("/api/v1/jobs/{sid}/cancel"), &[("Authorization", auth.as_str())], "");
    assert_eq!(code, 200, "{cancelled}");
    assert_eq!(ok(a, &format!("/api/v1/jobs/{sid}"))["state"], "cancelled");

    // The metrics stream gains points while the job trains.
    let metrics = events(a, "/api/v1/train/train/metrics/stream", Duration::from_secs(120), |e| current_run(e).len() >= 20);
    let steps: Vec<u64> = current_run(&metrics).iter().filter_map(|m| m.get("step")?.as_u64()).collect();
    assert!(steps.len() >= 20, "{metrics:?}");
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");

    // The log streams to the end of the job.
    let log = events(a, &format!("/api/v1/jobs/{id}/log"), Duration::from_secs(180), |e| e.iter().any(|(t, _)| t == "end"));
    let end = log.iter().find(|(t, _)| t == "end").unwrap_or_else(|| panic!("no end: {log:?}"));
    let end: Value = serde_json::from_str(&end.1).unwrap();
    assert_eq!(end["state"], "succeeded", "{log:?}");
    assert!(log.iter().any(|(_, l)| l == "$ distill --force train"), "{log:?}");
    let all = ok(a, "/api/v1/train/train/metrics");
    assert_eq!(all["metrics"].as_array().unwrap().iter().filter(|m| m["kind"] == "train").count(), 60);
    assert_eq!(ok(a, "/api/v1/jobs")["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(request(a, "POST", &format!("/api/v1/jobs/{id}/cancel"), &[("Authorization", auth.as_str())], "").0, 409);
}

#[test]
fn a_client_over_its_rate_gets_429_and_binding_beyond_loopback_needs_a_key() {
    let f = fixture();
    let srv = start(f, &["--rate-limit", "1"], None);
    let codes: Vec<u16> = (0..6).map(|_| request(&srv.addr, "GET", "/api/v1/records/kept?limit=1", &[], "").0).collect();
    assert_eq!(&codes[..2], [200, 200], "a burst of two is allowed: {codes:?}");
    assert!(codes[2..].contains(&429), "{codes:?}");
    let (_, head, body) = request(&srv.addr, "GET", "/api/v1/status", &[], "");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    assert!(body.contains("rate_limited"), "{body}");

    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(["--config", "dash.toml", "dashboard", "--bind", "0.0.0.0:0"])
        .current_dir(&f.root)
        .env_remove("DISTILL_DASHBOARD_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set DISTILL_DASHBOARD_KEY"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn headless_chromium_sees_the_loss_chart_grow_during_training_and_the_funnel_of_filter_stats() {
    let f = fixture();
    let profile = tempfile::tempdir().unwrap();
    let Some(mut browser) = cdp::Browser::launch_or_skip(profile.path(), "the test") else { return };
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let srv = start(f, &[], Some(KEY));
    let a = srv.addr.as_str();
    let auth = format!("Bearer {KEY}");
    let (code, _, resp) = request(a, "POST", "/api/v1/jobs", &[("Content-Type", "application/json"), ("Authorization", auth.as_str())], r#"{"target": "train", "force": true}"#);
    assert_eq!(code, 202, "{resp}");
    let id = serde_json::from_str::<Value>(&resp).unwrap()["id"].as_u64().unwrap();
    browser.open(&format!("http://{a}/"));
    // A mark on the page's window: still there at the end means the page was never reloaded.
    browser.wait_for("document.readyState === 'complete'", "the page loaded");
    browser.eval("window.__mark = 42");

    let points = |b: &mut cdp::Browser| b.eval("+(document.getElementById('loss').dataset.points || 0)").as_u64().unwrap_or(0);
    let mut seen_states = std::collections::BTreeSet::new();
    let (mut first, mut later) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Some(s) = browser.eval("(document.querySelector('[data-stage=\"train\"]') || {dataset: {}}).dataset.state").as_str() {
            seen_states.insert(s.to_string());
        }
        let n = points(&mut browser);
        let running = ok(a, &format!("/api/v1/jobs/{id}"))["state"] == "running";
        // (The chart may first show an earlier run's curves: the new run's reset lowers the
        // count, and growth is counted from the lowest count seen.)
        if running && n > 0 && (first == 0 || n < first) {
            first = n;
            later = 0;
        } else if running && first > 0 && n > first {
            later = n;
        }
        if later > 0 && seen_states.contains("running") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(first > 0 && later > first, "the loss chart gained points while training ran: {first} -> {later}");
    assert!(seen_states.contains("running"), "the DAG showed train running: {seen_states:?}");
    assert_eq!(browser.eval("window.__mark"), 42, "the page was not reloaded");

    // The funnel: each filter's drop reasons with the counts of filter/stats.json.
    let stats = read_json(&f.work.join("filter/stats.json"));
    let shown = browser.eval(
        "JSON.stringify(Object.fromEntries([...document.querySelectorAll('#funnel tr[data-step]')].map(tr => [tr.dataset.step, \
         Object.fromEntries([...tr.querySelectorAll('.reason[data-reason]')].map(r => [r.dataset.reason, +r.querySelector('b').textContent]))])))",
    );
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    let mut reasons_checked = 0;
    for entry in stats["funnel"].as_array().unwrap() {
        let filter = entry["filter"].as_str().unwrap();
        let want = stats["dropped_by_reason"].get(filter).cloned().unwrap_or(serde_json::json!({}));
        assert_eq!(shown[format!("filter: {filter}")], want, "{filter}: {shown}");
        reasons_checked += want.as_object().unwrap().len();
    }
    assert!(reasons_checked > 0, "{stats}");

    // The teacher over time: a cumulative line per counter of teacher/series.jsonl.
    let lines = series_lines(&f.work.join("teacher/series.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let drawn = |b: &mut cdp::Browser| {
        let v = b
            .eval("JSON.stringify(Object.fromEntries([...document.querySelectorAll('#teacher-counts polyline, #teacher-cost polyline')].map(p => [p.dataset.key, +p.dataset.n])))");
        serde_json::from_str::<Value>(v.as_str().unwrap_or("{}")).unwrap_or_default()
    };
    let mut shown = drawn(&mut browser);
    while shown.as_object().is_none_or(|o| o.len() < 7) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        shown = drawn(&mut browser);
    }
    for key in ["prompts_done", "from_cache", "requested", "http_requests", "retries", "rate_limited", "cost_usd"] {
        assert_eq!(shown[key].as_u64(), Some(lines as u64), "the teacher chart draws {key} from every line of series.jsonl: {shown}");
    }

    // The sample browser: a kept sample's tokens coloured by the teacher's probability, its
    // top-k shown on hover.
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.eval("document.querySelectorAll('#sample-list li[data-id]').length").as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the sample list filled");
        std::thread::sleep(Duration::from_millis(200));
    }
    browser.eval("document.querySelector('#sample-list li[data-id]').click()");
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.eval("document.querySelectorAll('#tokens .tok').length").as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the sample's tokens were drawn");
        std::thread::sleep(Duration::from_millis(200));
    }
    let coloured = browser.eval("[...document.querySelectorAll('#tokens .tok')].every(t => t.style.background.startsWith('rgb'))");
    assert_eq!(coloured, true, "every token has a colour");
    let tip = browser.eval(
        "(() => { const t = document.querySelector('#tokens .tok'); const r = t.getBoundingClientRect(); \
         t.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + 1, clientY: r.top + 1, bubbles: true})); \
         const tip = document.getElementById('tip'); return tip.hidden ? '' : tip.innerText; })()",
    );
    let tip = tip.as_str().unwrap_or_default().to_string();
    assert!(tip.contains("p=") && tip.lines().count() >= 2, "hovering a token shows its probability and top-k: {tip:?}");

    // The screenshot: the page is drawn, with the loss chart's lines, the funnel's drop bars and
    // the DAG's running stage in their colours.
    let png = browser.screenshot();
    if let Ok(path) = std::env::var("DISTILL_DASHBOARD_SCREENSHOT") {
        std::fs::write(path, &png).unwrap();
    }
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(img.width(), 1200, "{}x{}", img.width(), img.height());
    assert!(img.height() >= 1000, "{}x{}", img.width(), img.height());
    let count = |rgb: [u8; 3]| img.pixels().filter(|p| p.0 == rgb).count();
    let total = (img.width() * img.height()) as usize;
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255] && p.0 != [250, 251, 252]).count();
    assert!(ink * 20 > total, "the screenshot is nearly blank: {ink} of {total} pixels");
    assert!(count([31, 119, 180]) > 300, "the KD curve and kept bars are drawn: {}", count([31, 119, 180]));
    assert!(count([214, 39, 40]) > 20, "the funnel's drop bars are drawn: {}", count([214, 39, 40]));

    let (code, _, _) = request(a, "POST", &format!("/api/v1/jobs/{id}/cancel"), &[("Authorization", auth.as_str())], "");
    assert!(code == 200 || code == 409);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !["cancelled", "succeeded", "failed"].contains(&ok(a, &format!("/api/v1/jobs/{id}"))["state"].as_str().unwrap()) {
        assert!(Instant::now() < deadline, "the job stopped after cancel");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_shard_row_with_student_1_has_the_trained_models_log_prob_of_each_token_as_the_training_loss_scores_it() {
    use candle_core::{Device, Tensor};
    let f = fixture();
    let _training = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let srv = start(f, &[], None);
    let a = srv.addr.as_str();
    // No model for a run that never trained (the CE-only run is off in this config): a 404
    // that says what to run; a bad value: a 400.
    let (code, v) = get(a, "/api/v1/shard-rows/0?split=train&student=train-baseline");
    assert_eq!(code, 404, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("no trained student") && msg.contains("run the train-baseline stage"), "{msg}");
    let (code, v) = get(a, "/api/v1/shard-rows/0?split=train&student=yes");
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("student: 'yes'"), "{v}");

    distill(&f.root, &["train"]);
    let plain = ok(a, "/api/v1/shard-rows/1?split=train");
    assert!(plain.get("student").is_none(), "no student unless asked");
    let row = ok(a, "/api/v1/shard-rows/1?split=train&student=1");
    let st = &row["student"];
    let ids: Vec<u32> = row["input_ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
    let n = st["scored"].as_u64().unwrap() as usize;
    assert!(n >= 2 && n <= ids.len(), "{n} of {}", ids.len());
    let lp = st["token_logprob"].as_array().unwrap();
    assert_eq!(lp.len(), ids.len());
    assert!(lp[0].is_null() && lp[n..].iter().all(Value::is_null), "the first token has no prediction; past the model's positions none");

    // The same tokens through the model crate's loader, forward pass and the training loss's
    // cross-entropy (a different code path from the dashboard's log-softmax).
    let model = distill_model::load_hf_dir(&f.work.join("train"), &Device::Cpu).unwrap();
    let x = Tensor::new(&ids[..n], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = distill_model::loss::align(&model.forward(&x).unwrap()).unwrap().squeeze(0).unwrap(); // (n - 1, V)
    let targets = Tensor::new(&ids[1..n], &Device::Cpu).unwrap();
    let ce: Vec<f32> = distill_model::loss::cross_entropy(&logits, &targets).unwrap().to_vec1().unwrap();
    for j in 1..n {
        let got = lp[j].as_f64().unwrap();
        assert!((got + ce[j - 1] as f64).abs() < 1e-4, "position {j}: student log-prob {got} vs -CE {}", -ce[j - 1]);
    }
    // The student's top-k: sorted, k at least 5, and holding the token when it ranks there.
    let (topk_ids, topk_lp) = (st["topk_ids"].as_array().unwrap(), st["topk_logprobs"].as_array().unwrap());
    let k = st["k"].as_u64().unwrap() as usize;
    assert!(k >= 5, "{k}");
    assert_eq!(st["topk_text"].as_array().unwrap()[1].as_array().unwrap().len(), k, "spelled with the tokenizer");
    for j in 1..n {
        let l: Vec<f64> = topk_lp[j].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(l.len(), k);
        assert!(l.windows(2).all(|w| w[0] >= w[1]), "position {j}: {l:?}");
        assert!(l[0] >= lp[j].as_f64().unwrap() - 1e-6, "position {j}: the top entry is the most likely");
        if let Some(at) = topk_ids[j].as_array().unwrap().iter().position(|i| i.as_u64() == Some(ids[j] as u64)) {
            assert!((l[at] - lp[j].as_f64().unwrap()).abs() < 1e-6, "position {j}");
        }
    }

    // The page: a shard row coloured by the student's probabilities, both on hover.
    let profile = tempfile::tempdir().unwrap();
    let Some(mut browser) = cdp::Browser::launch_or_skip(profile.path(), "the browser part") else { return };
    browser.open(&format!("http://{a}/"));
    // (The kept samples listed at start first, then the shard rows.)
    browser.wait_for("document.readyState === 'complete' && document.querySelectorAll('#sample-list li[data-id]').length > 0", "the page loaded");
    browser.eval("const k = document.getElementById('sample-kind'); k.value = 'shard-rows'; k.dispatchEvent(new Event('change'))");
    browser.wait_for("[...document.querySelectorAll('#sample-list li[data-id]')].filter(li => li.textContent.endsWith(' tokens')).length > 1", "the shard rows are listed");
    browser.eval("document.querySelectorAll('#sample-list li[data-id]')[1].click()");
    browser.wait_for("!!document.getElementById('row-colour') && document.querySelectorAll('#tokens .tok').length > 0", "the row's tokens are drawn");
    browser.eval("const c = document.getElementById('row-colour'); c.value = 'student'; c.dispatchEvent(new Event('change'))");
    browser.wait_for(
        "document.getElementById('sample-view').textContent.includes(\"student's probability\") && document.querySelectorAll('#tokens .tok').length > 0",
        "coloured by the student",
    );
    let tip = browser.eval(
        "(() => { const t = [...document.querySelectorAll('#tokens .tok')].find(t => t.style.background); const r = t.getBoundingClientRect(); \
         t.dispatchEvent(new MouseEvent('mousemove', {clientX: r.left + 1, clientY: r.top + 1, bubbles: true})); \
         return document.getElementById('tip').innerText; })()",
    );
    let tip = tip.as_str().unwrap_or_default().to_string();
    assert!(tip.contains("teacher p=") && tip.contains("student p=") && tip.contains("student top-k"), "{tip:?}");
    // The shown student p is the API's for that token.
    let i: usize = browser.eval("+[...document.querySelectorAll('#tokens .tok')].find(t => t.style.background).dataset.i").as_u64().unwrap() as usize;
    let p = lp[i].as_f64().unwrap().exp();
    assert!(tip.contains(&format!("student p={p:.3}")), "{tip:?} vs {p}");
}

#[test]
fn the_teacher_series_of_a_sharded_run_is_one_line_per_shard() {
    let f = fixture();
    // A copy of the run (its own work dir and cache), so the other tests' teacher series stay.
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(format!("{}/.", f.root.display())).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let root = dir.path().to_path_buf();
    for shard in ["0/2", "1/2"] {
        distill(&root, &["teacher", "--shard", shard]);
    }
    let copy = Fixture { _dir: dir, root: root.clone(), work: root.join("datasets/dash") };
    let check = |want_dir: &str| {
        // (`want_dir`: where each shard's newest copy is, `{}` standing for the part folder.)
        let srv = start(&copy, &[], None);
        let v = ok(&srv.addr, "/api/v1/teacher/series");
        assert_eq!(v["points"], serde_json::json!([]), "the plain series is older than the shards': {v}");
        let shards = v["shards"].as_array().unwrap();
        let names: Vec<&str> = shards.iter().map(|s| s["shard"].as_str().unwrap()).collect();
        assert_eq!(names, ["0-of-2", "1-of-2"], "{v}");
        let mut completed = 0;
        for s in shards {
            let name = s["shard"].as_str().unwrap();
            let part = if name == "0-of-2" { "00000-of-00002" } else { "00001-of-00002" };
            let file = copy.work.join(want_dir.replace("{}", part)).join(format!("series-{name}.jsonl"));
            assert_eq!(s["lines"].as_u64(), Some(series_lines(&file) as u64), "{name}: {}", file.display());
            let last = s["points"].as_array().unwrap().last().unwrap();
            assert_eq!(last, &serde_json::from_str::<Value>(std::fs::read_to_string(&file).unwrap().lines().last().unwrap()).unwrap());
            completed += last["completed"].as_u64().unwrap();
        }
        let parts: u64 =
            ["00000-of-00002", "00001-of-00002"].iter().map(|p| read_json(&copy.work.join("teacher.parts").join(p).join("stats.json"))["completed"].as_u64().unwrap()).sum();
        assert_eq!(completed, parts, "each shard's series ends at its part's count");
    };
    check("teacher.parts/{}");
    // A plain run afterwards writes the plain series, which is then the one shown.
    distill(&root, &["--force", "teacher"]);
    let srv = start(&copy, &[], None);
    let v = ok(&srv.addr, "/api/v1/teacher/series");
    assert_eq!(v["shards"], serde_json::json!([]), "{v}");
    assert_eq!(v["lines"].as_u64(), Some(series_lines(&copy.work.join("teacher/series.jsonl")) as u64), "{v}");
}

#[test]
fn the_static_report_is_a_snapshot_of_the_dashboards_views_with_the_runs_numbers() {
    let f = fixture();
    // A copy of the run, reported on its own (`--only`: without training or evaluation).
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new("cp").arg("-r").arg(format!("{}/.", f.root.display())).arg(dir.path()).status().unwrap().success());
    let root = dir.path().to_path_buf();
    distill(&root, &["--only", "report"]);
    let copy = Fixture { _dir: dir, root: root.clone(), work: root.join("datasets/dash") };
    let html = std::fs::read_to_string(copy.work.join("report/index.html")).unwrap();

    // One file: the dashboard's drawing code and the snapshot inlined, nothing fetched.
    assert!(html.contains(distill_report::VIEWS_JS) && html.contains(distill_report::VIEWS_CSS));
    assert!(!html.contains("<script src") && !html.contains("http://") && !html.contains("https://"), "the report fetches nothing");
    let snap = html.split_once("const SNAPSHOT = ").and_then(|(_, r)| r.split_once(";</script>")).map(|(j, _)| j).expect("the snapshot is inlined");
    let snap: Value = serde_json::from_str(snap).unwrap();

    // The snapshot is what the dashboard API answers over the same work dir.
    let srv = start(&copy, &[], None);
    let a = srv.addr.as_str();
    assert_eq!(snap["funnel"], ok(a, "/api/v1/funnel"));
    let series = ok(a, "/api/v1/teacher/series");
    assert_eq!(snap["teacher_series"]["points"], series["points"]);
    assert_eq!(snap["teacher_series"]["lines"], series["lines"]);
    let status = ok(a, "/api/v1/status");
    for s in status["stages"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let mine = snap["status"]["stages"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap_or_else(|| panic!("{name} missing: {snap}"));
        if name != "report" {
            assert_eq!(mine["state"], s["state"], "{name}");
            let set = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<std::collections::BTreeSet<_>>();
            if s["state"] == "up_to_date" {
                assert_eq!(set(&mine["deps"]), set(&s["deps"]), "{name}");
            }
        }
    }
    let samples = snap["samples"].as_array().unwrap();
    assert!(!samples.is_empty(), "{snap}");
    let mut total_tokens = 0;
    for s in samples {
        let api = ok(a, &format!("/api/v1/records/answers/{}/tokens?sample={}", s["id"].as_str().unwrap(), s["sample"]));
        let (mine, theirs) = (s["tokens"].as_array().unwrap(), api["tokens"].as_array().unwrap());
        assert_eq!(mine.len(), theirs.len());
        for (m, t) in mine.iter().zip(theirs) {
            assert_eq!(m["token"], t["token"]);
            assert!((m["logprob"].as_f64().unwrap() - t["logprob"].as_f64().unwrap()).abs() < 1e-6);
            assert_eq!(m["top"].as_array().unwrap().len(), t["top"].as_array().unwrap().len());
        }
        total_tokens += mine.len();
    }

    // Drawn in a browser from the file alone: the DAG, the funnel with filter/stats.json's
    // reasons, a line per teacher counter with every line of series.jsonl, the samples' tokens.
    let profile = tempfile::tempdir().unwrap();
    let Some(mut browser) = cdp::Browser::launch_or_skip(profile.path(), "the browser part") else { return };
    drop(srv);
    browser.open(&format!("file://{}", copy.work.join("report/index.html").display()));
    browser.wait_for("location.protocol === 'file:' && document.readyState === 'complete'", "the report loaded");
    let nodes = browser.eval("JSON.stringify(Object.fromEntries([...document.querySelectorAll('#dag .node')].map(g => [g.dataset.stage, g.dataset.state])))");
    let nodes: Value = serde_json::from_str(nodes.as_str().unwrap()).unwrap();
    assert_eq!(nodes["filter"], "up_to_date", "{nodes}");
    for st in snap["status"]["stages"].as_array().unwrap() {
        assert_eq!(nodes[st["name"].as_str().unwrap()], st["state"], "{nodes}");
    }
    let stats = read_json(&copy.work.join("filter/stats.json"));
    let shown = browser.eval(
        "JSON.stringify(Object.fromEntries([...document.querySelectorAll('#funnel tr[data-step]')].map(tr => [tr.dataset.step, \
         Object.fromEntries([...tr.querySelectorAll('.reason[data-reason]')].map(r => [r.dataset.reason, +r.querySelector('b').textContent]))])))",
    );
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    for entry in stats["funnel"].as_array().unwrap() {
        let filter = entry["filter"].as_str().unwrap();
        assert_eq!(shown[format!("filter: {filter}")], stats["dropped_by_reason"].get(filter).cloned().unwrap_or(serde_json::json!({})), "{filter}: {shown}");
    }
    let lines = series_lines(&copy.work.join("teacher/series.jsonl"));
    let drawn = browser
        .eval("JSON.stringify(Object.fromEntries([...document.querySelectorAll('#teacher-counts polyline, #teacher-cost polyline')].map(p => [p.dataset.key, +p.dataset.n])))");
    let drawn: Value = serde_json::from_str(drawn.as_str().unwrap()).unwrap();
    for key in ["prompts_done", "from_cache", "requested", "http_requests", "retries", "rate_limited", "cost_usd"] {
        assert_eq!(drawn[key].as_u64(), Some(lines as u64), "{key}: {drawn}");
    }
    let toks = browser.eval("[...document.querySelectorAll('#samples .tok')].filter(t => t.style.background.startsWith('rgb')).length");
    assert_eq!(toks.as_u64(), Some(total_tokens as u64), "every sample token is coloured by the teacher's probability");
}
