//! The stage: load sources, generate, clean, write.
//!
//! Outputs (in `ctx.out_dir`, every file sorted by id):
//! - `prompts.jsonl`: the kept [`PromptRecord`]s, read by the teacher stage;
//! - `exclusions.jsonl`: every dropped prompt or generator request with its reason;
//! - `decontamination.jsonl`: each prompt removed as contaminated, with the benchmark task it
//!   matched and the overlapping span.
//!
//! Same config, seed, data files and teacher cache: byte-identical files.

use std::collections::BTreeMap;
use std::path::Path;

use distill_core::records::PromptRecord;
use distill_core::{Error, StageContext};
use distill_teacher_client::TeacherConfig;
use distill_textdedup::Decontaminator;
use serde_json::json;

use crate::builtin::{self, DataText};
use crate::clean::Cleaner;
use crate::config::PromptsConfig;
use crate::corpus::{self, Corpus};
use crate::data::{self, UserInput};
use crate::generate::teacher::Teacher;
use crate::generate::{evol_instruct, oss_instruct, self_instruct, template, Generated};
use crate::templates::{self, Source};

/// Runs the prompts stage. `teacher` is the `[teacher]` section; it is needed only when
/// `self_instruct`, `evol_instruct` or `oss_instruct` is enabled.
pub fn run(ctx: &StageContext, cfg: &PromptsConfig, teacher: Option<&TeacherConfig>) -> distill_core::Result<serde_json::Value> {
    let s = cfg.settings()?;
    if cfg.needs_teacher() && teacher.is_none() {
        return Err(Error::config_value("config", None, "teacher", "[prompts] self_instruct, evol_instruct or oss_instruct is enabled, which needs a [teacher] section"));
    }

    // Sources. Everything is read (and checked) before the first teacher request.
    let templates = if cfg.template.enabled { templates::load(&builtin::template_files(s.templates_dir.as_deref())?)? } else { Vec::new() };
    let templates: Vec<_> = templates.into_iter().filter(|t| cfg.languages.is_empty() || cfg.languages.contains(&t.language)).collect();
    let specs = if templates.iter().any(|t| t.source == Source::Spec) { data::load_specs(&DataText::configured(s.specs_file.as_deref(), &builtin::SPECS)?)? } else { Vec::new() };
    let needs_corpus = templates.iter().any(|t| t.source == Source::Corpus) || cfg.oss_instruct.enabled;
    let corpus = if needs_corpus { corpus::load(&cfg.corpus)? } else { Corpus::default() };
    let mut user = UserInput::default();
    for f in &s.user_files {
        let u = data::load_user_file(f)?;
        user.prompts.extend(u.prompts);
        user.seed_tasks.extend(u.seed_tasks);
    }
    let mut seed_tasks = if cfg.self_instruct.enabled { data::load_seed_tasks(&DataText::configured(s.seed_tasks_file.as_deref(), &builtin::SEED_TASKS)?)? } else { Vec::new() };
    seed_tasks.extend(user.seed_tasks.iter().cloned());

    let (decontaminator, benchmark_digests) = if cfg.decontamination.enabled {
        let (refs, digests) = distill_textdedup::benchmark_refs::load(&distill_benchmarks::DataSource::from_config(&cfg.decontamination.data_dir), &s.benchmarks)
            .map_err(|e| distill_core::Error::Other(format!("decontamination: {e}")))?;
        let d = Decontaminator::new(refs, &cfg.decontamination.matching).map_err(|e| Error::config_value("config", None, "prompts.decontamination.matching", e.to_string()))?;
        (Some(d), digests)
    } else {
        (None, Vec::new())
    };

    // Generation.
    let system = cfg.system_prompt.as_str();
    let mut candidates: Vec<PromptRecord> =
        if cfg.template.enabled { template::generate(&templates, &specs, &corpus.seeds, cfg.template.per_template, cfg.seed, system) } else { Vec::new() };
    let template_count = candidates.len();
    let user_count = user.prompts.len();
    for p in &mut user.prompts {
        p.meta.entry("generator".into()).or_insert_with(|| "user".into());
    }
    candidates.extend(user.prompts);
    let mut predropped = Vec::new();
    let mut teacher_stats = serde_json::Value::Null;
    if let Some(tcfg) = teacher.filter(|_| cfg.needs_teacher()) {
        let mut t = Teacher::new(tcfg, !ctx.quiet)?;
        let mut take = |g: Generated, candidates: &mut Vec<PromptRecord>| {
            candidates.extend(g.prompts);
            predropped.extend(g.drops);
        };
        if cfg.self_instruct.enabled {
            let g = self_instruct::generate(&cfg.self_instruct, &seed_tasks, cfg.seed, system, &mut t)?;
            take(g, &mut candidates);
        }
        if cfg.oss_instruct.enabled {
            let g = oss_instruct::generate(&cfg.oss_instruct, &corpus.seeds, cfg.seed, system, &mut t)?;
            take(g, &mut candidates);
        }
        if cfg.evol_instruct.enabled {
            let bases = evolution_bases(&candidates, decontaminator.as_ref());
            let g = evol_instruct::generate(&cfg.evol_instruct, &s.evol_ops, &bases, cfg.seed, system, &mut t)?;
            take(g, &mut candidates);
        }
        teacher_stats = serde_json::to_value(&t.stats).unwrap_or_default();
    }

    // Cleaning and output.
    let cleaner = Cleaner { languages: &cfg.languages, decontaminator: decontaminator.as_ref(), dedup: &cfg.dedup };
    let cleaned = cleaner.clean(candidates, predropped)?;
    distill_core::jsonl::write(&ctx.out_dir.join("prompts.jsonl"), &cleaned.kept)?;
    distill_core::jsonl::write(&ctx.out_dir.join("exclusions.jsonl"), &cleaned.exclusions)?;
    distill_core::jsonl::write(&ctx.out_dir.join("decontamination.jsonl"), &cleaned.decontaminated)?;
    tracing::info!(kept = cleaned.kept.len(), dropped = cleaned.exclusions.len(), contaminated = cleaned.decontaminated.len(), "prompts written");

    let mut stats = cleaned.stats;
    stats["sources"] = json!({
        "templates": templates.len(),
        "template_prompts": template_count,
        "specs": specs.len(),
        "corpus_root": corpus.root.display().to_string(),
        "corpus_files": corpus.files,
        "corpus_files_unparsed": corpus.skipped_files,
        "corpus_seeds": corpus.seeds.len(),
        "user_prompts": user_count,
        "seed_tasks": seed_tasks.len(),
    });
    stats["decontamination"] = json!({
        "references": decontaminator.as_ref().map_or(0, Decontaminator::reference_count),
        "benchmark_sha256": benchmark_digests.into_iter().collect::<BTreeMap<_, _>>(),
        "removed": cleaned.decontaminated.len(),
    });
    stats["teacher"] = teacher_stats;
    Ok(stats)
}

/// Evolution starts from prompts that are not contaminated, one per id.
fn evolution_bases(candidates: &[PromptRecord], d: Option<&Decontaminator>) -> Vec<PromptRecord> {
    let mut bases: Vec<PromptRecord> = candidates.iter().filter(|c| c.validate().is_ok()).cloned().collect();
    bases.sort_by(|a, b| a.id.cmp(&b.id));
    bases.dedup_by(|a, b| a.id == b.id);
    if let Some(d) = d {
        let texts: Vec<String> = bases.iter().map(PromptRecord::text).collect();
        let clean = d.check_many(&texts);
        bases = bases.into_iter().zip(clean).filter(|(_, m)| m.is_none()).map(|(b, _)| b).collect();
    }
    bases
}

/// Digests of everything outside the work dir the stage reads, for the runner's fingerprint
/// (`StageDef::external`): template files, specs, seed tasks, user files and the corpus
/// (the benchmark files are pinned by their sha256 in `distill-benchmarks`).
pub fn external_inputs(cfg: &PromptsConfig) -> distill_core::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let s = cfg.settings()?;
    let digest = |f: &DataText| distill_core::digest::sha256_hex(f.text.as_bytes());
    if cfg.template.enabled {
        for f in builtin::template_files(s.templates_dir.as_deref())? {
            out.insert(format!("template:{}", f.path.display()), digest(&f));
        }
        let specs = DataText::configured(s.specs_file.as_deref(), &builtin::SPECS)?;
        out.insert(format!("specs:{}", specs.path.display()), digest(&specs));
    }
    if cfg.self_instruct.enabled {
        let seeds = DataText::configured(s.seed_tasks_file.as_deref(), &builtin::SEED_TASKS)?;
        out.insert(format!("seed_tasks:{}", seeds.path.display()), digest(&seeds));
    }
    for u in &cfg.user_files {
        out.insert(format!("user:{u}"), distill_core::digest::sha256_file(Path::new(u))?);
    }
    if cfg.template.enabled || cfg.oss_instruct.enabled {
        let root = corpus::root(&cfg.corpus)?;
        out.insert(format!("corpus:{}", root.display()), corpus_digest(&root, &cfg.corpus.exclude)?);
    }
    Ok(out)
}

fn corpus_digest(root: &Path, exclude: &[String]) -> distill_core::Result<String> {
    fn walk(dir: &Path, root: &Path, exclude: &[String], acc: &mut Vec<(String, String)>) -> distill_core::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if exclude.contains(&name) || name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, exclude, acc)?;
            } else if name.ends_with(".py") {
                let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
                acc.push((rel, distill_core::digest::sha256_file(&p)?));
            }
        }
        Ok(())
    }
    let mut acc = Vec::new();
    walk(root, root, exclude, &mut acc)?;
    Ok(distill_core::digest::digest_json(&acc))
}
