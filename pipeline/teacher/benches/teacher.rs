//! The benchmark, in one run:
//!
//! 1. 10,000 chat prompts, n=1, concurrency 64, against the test server with zero latency
//!    running in a separate process (so `getrusage` counts the client only): cold (every
//!    prompt requested) and warm (every prompt cached), wall and CPU seconds, CPU ms per
//!    request; then 100 new prompts added (exactly 100 must be sent).
//! 2. The reference: a bare aiohttp loop (`benches/teacher_aiohttp.py`) sending the same
//!    requests at the same concurrency, and the ratio of CPU per request.
//! 3. The quota run: the server enforces `requests_per_minute` (its bucket = the configured
//!    burst), the client is configured with the same limit, for at least 20 s: achieved rate /
//!    limit and the number of 429s.
//!
//! `cargo bench -p distill-teacher` runs it with the sizes. Environment knobs:
//! `BENCH_PROMPTS` (10000), `BENCH_QUOTA_RPM` (3000), `BENCH_QUOTA_SECS` (20),
//! `BENCH_TOP_LOGPROBS` (0: like the reference figures, text only; 5 adds logprobs).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use distill_core::StageContext;
use distill_teacher::{run, RunOptions, TeacherConfig};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User + system CPU seconds of this process (every thread).
#[allow(unsafe_code)]
fn cpu_secs() -> f64 {
    // SAFETY: rusage is plain integers (all-zero is valid) and getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The server runs in a child process: this same executable with `DISTILL_BENCH_SERVER=rpm,burst`.
struct Server {
    child: Child,
    base_url: String,
}

impl Server {
    fn start(rpm: u32, burst: u32) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("DISTILL_BENCH_SERVER", format!("{rpm},{burst}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Server { child, base_url: line.trim().to_string() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(spec: &str) -> ! {
    let (rpm, burst) = spec.split_once(',').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap();
    let cfg = distill_teacher_testserver::ServerConfig { quota_rpm: rpm, quota_burst: burst, ..Default::default() };
    let server = distill_teacher_testserver::spawn(cfg).unwrap();
    println!("{}", server.base_url);
    std::io::stdout().flush().unwrap();
    // Serve until the parent closes our stdin (or dies).
    let _ = std::io::stdin().read_line(&mut String::new());
    std::process::exit(0);
}

fn write_prompts(path: &Path, n: usize, tag: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for i in 0..n {
        let rec =
            serde_json::json!({"id": format!("{tag}{i:06}"), "messages": [{"role": "user", "content": format!("Write a Python function that returns the {i}-th {tag} number.")}]});
        text.push_str(&rec.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

struct Measure {
    wall: f64,
    cpu: f64,
    stats: serde_json::Value,
}

fn measure(work: &Path, cfg: &TeacherConfig, prompts: Option<PathBuf>) -> Measure {
    let out = work.join(format!("out-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
    std::fs::create_dir_all(&out).unwrap();
    let ctx = StageContext { stage: "teacher", work_dir: work, out_dir: out, scratch_dir: work.join(".scratch"), shard: None, quiet: true };
    let (t0, c0) = (Instant::now(), cpu_secs());
    let stats = run(&ctx, cfg, &RunOptions { prompts, ..Default::default() }).expect("the stage runs");
    Measure { wall: t0.elapsed().as_secs_f64(), cpu: cpu_secs() - c0, stats }
}

fn main() {
    if let Ok(spec) = std::env::var("DISTILL_BENCH_SERVER") {
        serve(&spec);
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks.
    }
    let n = env_num("BENCH_PROMPTS", 10_000) as usize;
    let quota_rpm = env_num("BENCH_QUOTA_RPM", 3000) as u32;
    let quota_secs = env_num("BENCH_QUOTA_SECS", 20);
    let top_logprobs = env_num("BENCH_TOP_LOGPROBS", 0) as u32;
    let work = tempfile::tempdir().unwrap();
    let server = Server::start(0, 0);
    let cfg = TeacherConfig {
        base_url: server.base_url.clone(),
        model: "test-teacher".into(),
        api_key_env: "DISTILL_BENCH_NO_KEY".into(),
        requests_per_minute: 0,
        max_concurrency: 64,
        max_tokens: 16,
        logprobs: top_logprobs > 0,
        top_logprobs,
        cache_dir: work.path().join("cache").display().to_string(),
        ..Default::default()
    };
    write_prompts(&work.path().join("prompts/prompts.jsonl"), n, "fib");
    println!("teacher benchmark: {n} chat prompts, n=1, max_tokens 16, top_logprobs {top_logprobs}, concurrency 64, server in another process, zero latency");

    let cold = measure(work.path(), &cfg, None);
    assert_eq!(cold.stats["requested"], n as u64, "{}", cold.stats);
    let warm = measure(work.path(), &cfg, None);
    assert_eq!(warm.stats["requested"], 0);
    let grown = work.path().join("grown.jsonl");
    write_prompts(&grown, 100, "new");
    let mut text = std::fs::read_to_string(work.path().join("prompts/prompts.jsonl")).unwrap();
    text.push_str(&std::fs::read_to_string(&grown).unwrap());
    std::fs::write(&grown, text).unwrap();
    let plus = measure(work.path(), &cfg, Some(grown));
    assert_eq!(plus.stats["requested"], 100);

    println!("\n| run | wall s | CPU s | CPU ms/request | requested | from cache |");
    println!("|---|---|---|---|---|---|");
    for (name, m, per) in [("cold", &cold, n as f64), ("warm", &warm, n as f64), ("cached + 100 new", &plus, (n + 100) as f64)] {
        println!("| {name} | {:.2} | {:.2} | {:.3} | {} | {} |", m.wall, m.cpu, 1000.0 * m.cpu / per, m.stats["requested"], m.stats["from_cache"]);
    }

    // The reference, same server, same requests, same concurrency.
    let python = distill_core::testing::reference_python();
    let script = distill_core::testing::repo_root().join("benches/teacher_aiohttp.py");
    let prompts = work.path().join("prompts/prompts.jsonl");
    let out = Command::new(python)
        .args([script.to_str().unwrap(), &server.base_url, prompts.to_str().unwrap(), "64", "16", &top_logprobs.to_string()])
        .output()
        .expect("run the Python reference");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ref_ms = reference["cpu_ms_per_request"].as_f64().unwrap();
    let ours_ms = 1000.0 * cold.cpu / n as f64;
    println!(
        "| bare aiohttp loop (no cache, no limiter) | {:.2} | {:.2} | {:.3} | {} | - |",
        reference["wall_secs"].as_f64().unwrap(),
        reference["cpu_secs"].as_f64().unwrap(),
        ref_ms,
        n
    );
    println!("\nCPU per request, cold: ours / aiohttp = {:.2}  (target <= 0.2 ms: {:.3} ms)", ours_ms / ref_ms, ours_ms);
    println!("wall, cold: ours / aiohttp = {:.2}", cold.wall / reference["wall_secs"].as_f64().unwrap());
    println!("warm re-run of {n} cached prompts: {:.2} s wall (target < 1 s)", warm.wall);
    drop(server);

    // The quota run.
    let burst = (quota_rpm / 60).max(1);
    let limited = Server::start(quota_rpm, burst);
    let count = (u64::from(quota_rpm) * quota_secs / 60) as usize + burst as usize;
    let qwork = tempfile::tempdir().unwrap();
    write_prompts(&qwork.path().join("prompts/prompts.jsonl"), count, "quota");
    let qcfg =
        TeacherConfig { base_url: limited.base_url.clone(), requests_per_minute: quota_rpm, burst, cache_dir: qwork.path().join("cache").display().to_string(), ..cfg.clone() };
    let q = measure(qwork.path(), &qcfg, None);
    assert_eq!(q.stats["completed"], count as u64, "{}", q.stats);
    // The burst is free at t = 0; the limit governs what follows it.
    let achieved = (count as f64 - f64::from(burst)) / q.wall * 60.0;
    println!(
        "\nquota run: limit {quota_rpm}/min (burst {burst}) on server and client, {count} requests in {:.1} s: \
         achieved {:.0}/min after the burst = {:.1}% of the limit; {:.0}/min overall; 429s: {}; CPU {:.2} s",
        q.wall,
        achieved,
        100.0 * achieved / f64::from(quota_rpm),
        count as f64 / q.wall * 60.0,
        q.stats["rate_limited"],
        q.cpu
    );
}
