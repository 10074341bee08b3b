//! Runs the test server standalone (for benchmarks against a separate process):
//!
//! ```text
//! distill-teacher-testserver [--rpm N] [--burst B] [--fault-rate F] [--latency-ms L] [--threads T]
//!     [--seed S] [--code-tokenizer tokenizer.json] [--batch-step K] [--batch-expire-after K]
//! ```
//! Prints `listening on http://127.0.0.1:P/v1` on stdout, then serves until killed.

use std::time::Duration;

use distill_teacher_testserver::{spawn_with_threads, ServerConfig};

fn main() {
    let mut cfg = ServerConfig::default();
    let mut threads = 1;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.chunks(2);
    for pair in &mut it {
        let (flag, value) = match pair {
            [f, v] => (f.as_str(), v.as_str()),
            _ => usage(&format!("{} needs a value", pair[0])),
        };
        let num = |v: &str| v.parse::<f64>().unwrap_or_else(|_| usage(&format!("{flag}: '{v}' is not a number")));
        match flag {
            "--rpm" => cfg.quota_rpm = num(value) as u32,
            "--burst" => cfg.quota_burst = num(value) as u32,
            "--fault-rate" => cfg.fault_rate = num(value),
            "--latency-ms" => cfg.latency = Duration::from_secs_f64(num(value) / 1000.0),
            "--threads" => threads = num(value) as usize,
            "--seed" => cfg.seed = num(value) as u64,
            "--batch-step" => cfg.batch_step = num(value) as u64,
            "--batch-expire-after" => cfg.batch_expire_after = Some(num(value) as u64),
            "--code-tokenizer" => {
                let answers = distill_teacher_testserver::code::CodeAnswers::load(std::path::Path::new(value)).unwrap_or_else(|e| usage(&format!("--code-tokenizer {value}: {e}")));
                cfg.code = Some(std::sync::Arc::new(answers));
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let server = spawn_with_threads(cfg, threads).unwrap_or_else(|e| {
        eprintln!("cannot bind 127.0.0.1:0: {e}");
        std::process::exit(1)
    });
    println!("listening on {}", server.base_url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("{msg}\nusage: distill-teacher-testserver [--rpm N] [--burst B] [--fault-rate F] [--latency-ms L] [--threads T] [--seed S] [--code-tokenizer tokenizer.json] [--batch-step K] [--batch-expire-after K]");
    std::process::exit(2)
}
