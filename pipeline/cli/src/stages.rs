//! The DAG: which stages exist, what each depends on, what it is fingerprinted by, and the
//! call into its crate. Stages meet through the files in the work dir, and this file is the
//! only place that knows the whole graph. (teacher-bootstrap uses distill-train's trainer as a
//! library to train its teacher; no stage runs another.)
//!
//!     tokenizer ─> teacher-bootstrap (only with the local teacher)
//!     prompts ─> teacher ─> filter ─> shards ─> train ─> eval ─> report
//!                   └─────────────────┘ (log-probs: logprobs.frames)
//!                                                  └──> train-baseline (CE only, optional)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use distill_core::{StageContext, StageDef};
use serde_json::{json, Value};

use crate::config::Config;
use crate::{local_teacher, student};

/// Options from the command line that change what a stage reads or does.
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// The config file's name, for messages.
    pub config_file: String,
    pub teacher: distill_teacher::RunOptions,
    /// `distill train --resume`.
    pub resume: bool,
}

fn section<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("config sections serialise")
}

fn external(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

/// Every stage, in an order where each comes after the stages it reads.
pub fn all(cfg: &Config, opts: &StageOptions) -> distill_core::Result<Vec<StageDef>> {
    let mut stages = vec![tokenizer(cfg, opts)?];
    if cfg.local_teacher() {
        stages.push(teacher_bootstrap(cfg, opts));
    }
    stages.push(prompts(cfg)?);
    stages.push(teacher(cfg, opts)?);
    stages.push(filter(cfg)?);
    stages.push(shards(cfg)?);
    stages.push(train(cfg, opts)?);
    if cfg.train_baseline.enabled {
        stages.push(train_baseline(cfg, opts));
    }
    stages.push(eval(cfg, opts));
    let upstream: Vec<&'static str> = stages.iter().map(|s| s.name).collect();
    stages.push(report(cfg, upstream));
    Ok(stages)
}

fn tokenizer(cfg: &Config, opts: &StageOptions) -> distill_core::Result<StageDef> {
    let c = cfg.tokenizer.clone();
    Ok(StageDef {
        name: "tokenizer",
        deps: vec![],
        schema_version: distill_tokenizer::SCHEMA_VERSION,
        config: section(&c),
        external: external([("corpus".to_string(), distill_tokenizer::corpus_digest(&c, &opts.config_file)?)]),
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_tokenizer::run(ctx, &c)),
    })
}

fn teacher_bootstrap(cfg: &Config, opts: &StageOptions) -> StageDef {
    let c = cfg.teacher_bootstrap.clone();
    let file = opts.config_file.clone();
    StageDef {
        name: "teacher-bootstrap",
        deps: vec!["tokenizer"],
        schema_version: distill_teacher_bootstrap::SCHEMA_VERSION,
        config: section(&c),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_teacher_bootstrap::run(ctx, &c, &file)),
    }
}

/// Dependencies of a stage that talks to the teacher: the local teacher's model when local.
fn teacher_deps(cfg: &Config) -> Vec<&'static str> {
    if cfg.local_teacher() {
        vec!["teacher-bootstrap"]
    } else {
        vec![]
    }
}

/// Prompts depend on the teacher's settings only when a teacher-driven generator is on.
fn prompts(cfg: &Config) -> distill_core::Result<StageDef> {
    let c = cfg.prompts.clone();
    let uses_teacher = c.self_instruct.enabled || c.evol_instruct.enabled || c.oss_instruct.enabled;
    let (config, deps) = if uses_teacher { (json!({"prompts": section(&c), "teacher": cfg.teacher.fingerprint_section()}), teacher_deps(cfg)) } else { (section(&c), vec![]) };
    let whole = cfg.clone();
    Ok(StageDef {
        name: "prompts",
        deps,
        schema_version: distill_prompts::SCHEMA_VERSION,
        config,
        external: distill_prompts::external_inputs(&c)?,
        shardable: false,
        run: Box::new(move |ctx: &StageContext| {
            if uses_teacher {
                let teacher = local_teacher::start(&whole, ctx.work_dir)?;
                distill_prompts::run(ctx, &whole.prompts, Some(&teacher.config))
            } else {
                distill_prompts::run(ctx, &whole.prompts, None)
            }
        }),
    })
}

fn teacher(cfg: &Config, opts: &StageOptions) -> distill_core::Result<StageDef> {
    let run_opts = opts.teacher.clone();
    let mut deps = teacher_deps(cfg);
    let external = match &run_opts.prompts {
        Some(file) => external([("prompts_file".to_string(), file_digest(file)?)]),
        None => {
            deps.push("prompts");
            BTreeMap::new()
        }
    };
    let whole = cfg.clone();
    Ok(StageDef {
        name: "teacher",
        deps,
        schema_version: distill_teacher::SCHEMA_VERSION,
        config: cfg.teacher.fingerprint_section(),
        external,
        shardable: true,
        run: Box::new(move |ctx: &StageContext| {
            let teacher = local_teacher::start(&whole, ctx.work_dir)?;
            distill_teacher::run(ctx, &teacher.config, &run_opts)
        }),
    })
}

fn filter(cfg: &Config) -> distill_core::Result<StageDef> {
    let c = cfg.filter.clone();
    Ok(StageDef {
        name: "filter",
        deps: vec!["teacher"],
        schema_version: distill_filter::SCHEMA_VERSION,
        config: section(&c),
        external: external(distill_filter::benchmark_digests(&c)?),
        // Dedup and self-consistency look across all answers, so filter runs whole.
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_filter::run(ctx, &c)),
    })
}

/// Shards read the student tokenizer: the tokenizer stage's unless `[shards] tokenizer` names one.
fn shards(cfg: &Config) -> distill_core::Result<StageDef> {
    let c = cfg.shards.clone();
    // The kept samples, and the teacher's log-probs they are joined with.
    let (deps, external) = if c.tokenizer.is_empty() {
        (vec!["filter", "teacher", "tokenizer"], BTreeMap::new())
    } else {
        (vec!["filter", "teacher"], external([("tokenizer".to_string(), file_digest(Path::new(&c.tokenizer))?)]))
    };
    Ok(StageDef {
        name: "shards",
        deps,
        schema_version: distill_core::records::shard_columns::SCHEMA_VERSION,
        config: section(&c),
        external,
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_shards::run(ctx, &c)),
    })
}

fn train(cfg: &Config, opts: &StageOptions) -> distill_core::Result<StageDef> {
    let c = cfg.train.clone();
    let mut external = BTreeMap::new();
    if !c.init_checkpoint.is_empty() {
        // Every weight file of the folder: model.safetensors, or an index and its shards.
        let files = distill_model::weights::hf_weight_files(Path::new(&c.init_checkpoint)).map_err(|e| distill_core::Error::Other(e.to_string()))?;
        for (i, f) in files.iter().enumerate() {
            let key = if i == 0 { "init_checkpoint".to_string() } else { format!("init_checkpoint:{}", f.file_name().unwrap_or_default().to_string_lossy()) };
            external.insert(key, file_digest(f)?);
        }
    }
    let run_opts = distill_train::RunOptions { resume: opts.resume, stop_after: None, config_file: opts.config_file.clone() };
    Ok(StageDef {
        name: "train",
        deps: vec!["shards"],
        schema_version: distill_train::SCHEMA_VERSION,
        config: section(&c),
        external,
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_train::run(ctx, &c, &run_opts)),
    })
}

/// The `[train]` run again with cross-entropy only, for the report's KD-vs-CE comparison.
fn train_baseline(cfg: &Config, opts: &StageOptions) -> StageDef {
    let mut c = cfg.train.clone();
    c.loss.kd = 0.0;
    c.loss.reverse_kl = 0.0;
    c.loss.jsd = 0.0;
    c.loss.ce = 1.0;
    let run_opts = distill_train::RunOptions { resume: false, stop_after: None, config_file: opts.config_file.clone() };
    StageDef {
        name: "train-baseline",
        deps: vec!["shards"],
        schema_version: distill_train::SCHEMA_VERSION,
        config: section(&c),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_train::run(ctx, &c, &run_opts)),
    }
}

/// Scores the student (`[eval] model = "student"`, the `train` stage's model) or the teacher
/// (`"teacher"`, through the teacher client and its cache).
fn eval(cfg: &Config, _opts: &StageOptions) -> StageDef {
    let c = cfg.eval.clone();
    let scores_teacher = c.model == "teacher";
    let deps = if scores_teacher { teacher_deps(cfg) } else { vec!["train"] };
    let mut config = section(&c);
    if scores_teacher {
        config = json!({"eval": config, "teacher": cfg.teacher.fingerprint_section()});
    }
    let whole = cfg.clone();
    StageDef {
        name: "eval",
        deps,
        schema_version: distill_eval::SCHEMA_VERSION,
        config,
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(move |ctx: &StageContext| {
            if scores_teacher {
                let teacher = local_teacher::start(&whole, ctx.work_dir)?;
                let client = distill_teacher_client::TeacherClient::new(&teacher.config)?;
                let generator = distill_eval::EndpointGenerator::new(client, !ctx.quiet);
                distill_eval::run(ctx, &whole.eval, &generator)
            } else {
                let generator = student::StudentGenerator::load(&ctx.input_dir("train"), whole.eval.generation_batch, &whole.eval.quantize)?;
                distill_eval::run(ctx, &whole.eval, &generator)
            }
        }),
    }
}

fn report(cfg: &Config, upstream: Vec<&'static str>) -> StageDef {
    let c = cfg.report.clone();
    let stages = upstream.clone();
    StageDef {
        name: "report",
        deps: upstream,
        schema_version: distill_report::SCHEMA_VERSION,
        config: section(&c),
        external: BTreeMap::new(),
        shardable: false,
        run: Box::new(move |ctx: &StageContext| distill_report::run(ctx, &c, &stages)),
    }
}

fn file_digest(path: &Path) -> distill_core::Result<String> {
    distill_core::digest::sha256_file(path)
}

/// The student model folder `serve` and `eval` use by default.
pub fn student_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("train")
}
