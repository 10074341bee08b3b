//! Runs the teacher stage alone, outside the DAG runner: the kill-and-resume test and the
//! benchmark use it as a child process (a `kill -9` needs a process of its own).
//!
//! ```text
//! distill-teacher-stage --config FILE --work-dir DIR --out DIR [--prompts FILE] [--strict]
//!                       [--retry-failed] [--dry-run]
//! ```
//! The config file holds a `[teacher]` section. Exit codes: 0 done, 1 failed, 2 bad usage.

use std::path::PathBuf;

use serde::Deserialize;

use distill_teacher::{RunOptions, TeacherConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct File {
    teacher: TeacherConfig,
}

fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

fn real_main() -> distill_core::Result<()> {
    let usage = |m: &str| {
        distill_core::Error::Usage(format!("{m}\nusage: distill-teacher-stage --config FILE --work-dir DIR --out DIR [--prompts FILE] [--strict] [--retry-failed] [--dry-run]"))
    };
    let (mut config, mut work_dir, mut out) = (None, None, None);
    let mut opts = RunOptions::default();
    let mut dry = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().map(PathBuf::from).ok_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--config" => config = Some(value()?),
            "--work-dir" => work_dir = Some(value()?),
            "--out" => out = Some(value()?),
            "--prompts" => opts.prompts = Some(value()?),
            "--strict" => opts.strict = true,
            "--retry-failed" => opts.retry_failed = true,
            "--dry-run" => dry = true,
            other => return Err(usage(&format!("unknown argument {other}"))),
        }
    }
    let config = config.ok_or_else(|| usage("--config is required"))?;
    let work_dir = work_dir.ok_or_else(|| usage("--work-dir is required"))?;
    let file: File = distill_core::config::load(&config)?;
    if dry {
        println!("{}", distill_teacher::dry_run(&work_dir, &file.teacher, &opts, None)?);
        return Ok(());
    }
    let out = out.ok_or_else(|| usage("--out is required"))?;
    std::fs::create_dir_all(&out).map_err(|e| distill_core::Error::io(&out, e))?;
    let ctx = distill_core::StageContext { stage: "teacher", work_dir: &work_dir, out_dir: out.clone(), scratch_dir: work_dir.join(".scratch/teacher"), shard: None, quiet: true };
    let stats = distill_teacher::run(&ctx, &file.teacher, &opts)?;
    distill_core::atomic::write_json(&out.join("stats.json"), &stats)?;
    Ok(())
}
