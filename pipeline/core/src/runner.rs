//! The stage runner: a DAG of [`StageDef`]s, each with a fingerprint (see [`crate::manifest`]).
//!
//! - `status` says, per stage, up to date / stale (and why) / never run.
//! - `run(targets)` runs each target and whatever it depends on, in order, skipping stages that
//!   are up to date (`force` reruns the targets themselves).
//! - A stage writes into a fresh temporary folder; the runner then writes `stats.json` (what
//!   the stage returned, plus `elapsed_secs`) and `manifest.json`, and renames the folder into
//!   place. A killed stage leaves no output that looks complete.
//! - With `--shard i/N` a stage that allows it processes only the records [`ShardSpec::owns`]
//!   and publishes `<stage>.parts/<i>-of-<N>/`; once all N parts exist for the current
//!   fingerprint, an unsharded run merges them (JSONL and frame files, each sorted by `id`, by a
//!   streaming k-way merge; numbers in `stats.json` added) instead of redoing the work.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::atomic;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, config_changes, FingerprintInputs, Manifest};
use crate::shard::ShardSpec;

/// The work of one stage: reads inputs, writes into `ctx.out_dir`, returns its stats.
pub type RunFn = Box<dyn Fn(&StageContext) -> Result<serde_json::Value> + Send + Sync>;

/// One node of the DAG.
pub struct StageDef {
    pub name: &'static str,
    /// Stages whose outputs this one reads (must come earlier in the list).
    pub deps: Vec<&'static str>,
    /// Version of this stage's output format; bump it when the output changes shape.
    pub schema_version: u32,
    /// The config that determines the output (usually the stage's own section).
    pub config: serde_json::Value,
    /// Digests of inputs from outside the work dir, by name.
    pub external: BTreeMap<String, String>,
    /// Whether `--shard i/N` is meaningful for this stage.
    pub shardable: bool,
    pub run: RunFn,
}

/// What a running stage gets to see.
pub struct StageContext<'a> {
    pub stage: &'a str,
    pub work_dir: &'a Path,
    /// Fresh, empty folder for this run's outputs; renamed into place on success.
    pub out_dir: PathBuf,
    /// `<work-dir>/.scratch/<stage>/`: kept across failed runs (checkpoints to resume from).
    pub scratch_dir: PathBuf,
    pub shard: Option<ShardSpec>,
    pub quiet: bool,
}

impl StageContext<'_> {
    /// The published output folder of an upstream stage.
    pub fn input_dir(&self, stage: &str) -> PathBuf {
        self.work_dir.join(stage)
    }

    /// Whether this run handles the record with this id (always, unless sharded).
    pub fn owns(&self, id: &str) -> bool {
        self.shard.map(|s| s.owns(id)).unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum StageState {
    UpToDate,
    /// Reasons, for a person: `config temperature: 0.7 -> 0.2`, `input 'prompts' changed`.
    Stale(Vec<String>),
    NeverRun,
}

#[derive(Debug, Clone)]
pub struct StageStatus {
    pub name: &'static str,
    pub state: StageState,
    pub fingerprint: String,
    /// From the manifest of the last run, when there is one.
    pub last_elapsed_secs: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    UpToDate,
    Ran { elapsed_secs: f64 },
    MergedParts { parts: u32 },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub force: bool,
    /// Run only the named stages, taking their inputs as they are in the work dir (for a
    /// machine that did not produce them, e.g. training on a GPU host).
    pub only: bool,
    pub shard: Option<ShardSpec>,
    pub quiet: bool,
}

/// Per stage: its fingerprint now, and the keys of its inputs it was computed from.
pub type Plan = BTreeMap<&'static str, (String, BTreeMap<String, String>)>;

pub struct Runner {
    work_dir: PathBuf,
    defs: Vec<StageDef>,
}

impl Runner {
    /// Checks that every dependency names an earlier stage.
    pub fn new(work_dir: impl Into<PathBuf>, defs: Vec<StageDef>) -> Result<Self> {
        for (i, d) in defs.iter().enumerate() {
            for dep in &d.deps {
                if !defs[..i].iter().any(|e| e.name == *dep) {
                    return Err(Error::Other(format!("stage '{}' depends on '{dep}', which is not an earlier stage", d.name)));
                }
            }
        }
        Ok(Runner { work_dir: work_dir.into(), defs })
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    pub fn stage_names(&self) -> Vec<&'static str> {
        self.defs.iter().map(|d| d.name).collect()
    }

    /// The DAG's nodes, in order (names, dependencies, config sections), for views of the
    /// graph such as the dashboard's.
    pub fn defs(&self) -> &[StageDef] {
        &self.defs
    }

    fn def(&self, name: &str) -> Result<&StageDef> {
        self.defs.iter().find(|d| d.name == name).ok_or_else(|| Error::Usage(format!("unknown stage '{name}' (stages: {})", self.stage_names().join(", "))))
    }

    /// Fingerprints of every stage as the config and inputs stand now, with the input keys
    /// each was computed from (see [`Runner::input_key`]).
    pub fn fingerprints(&self) -> Result<Plan> {
        let mut plan = Plan::new();
        for d in &self.defs {
            let mut inputs = BTreeMap::new();
            for dep in &d.deps {
                inputs.insert(dep.to_string(), self.input_key(dep, &plan[dep].0)?);
            }
            let fp = FingerprintInputs { stage: d.name, schema_version: d.schema_version, config: &d.config, inputs: &inputs, external: &d.external }.fingerprint();
            plan.insert(d.name, (fp, inputs));
        }
        Ok(plan)
    }

    /// What a stage's output looks like to the stages that read it: the digest of its
    /// published files (paths and sha256, `stats.json` left out: timings are not data) when it
    /// is up to date, else `pending:<the fingerprint it will have>`. Keying inputs on outputs
    /// means a rerun that changes the data (`--force` after a code change) makes dependents
    /// stale, while one that reproduces the same bytes does not.
    fn input_key(&self, dep: &str, dep_fingerprint: &str) -> Result<String> {
        let dir = self.work_dir.join(dep);
        Ok(match Manifest::read(&dir)? {
            Some(m) if m.fingerprint == dep_fingerprint && m.missing_outputs(&dir).is_empty() => {
                let files: Vec<(&str, &str)> = m.outputs.iter().filter(|o| o.path != "stats.json").map(|o| (o.path.as_str(), o.sha256.as_str())).collect();
                format!("out:{}", crate::digest::digest_json(&files))
            }
            _ => format!("pending:{dep_fingerprint}"),
        })
    }

    /// Each stage's state, in DAG order.
    pub fn status(&self) -> Result<Vec<StageStatus>> {
        let plan = self.fingerprints()?;
        self.defs
            .iter()
            .map(|d| {
                let manifest = Manifest::read(&self.work_dir.join(d.name))?;
                Ok(StageStatus {
                    name: d.name,
                    state: self.state_of(d, &plan, manifest.as_ref()),
                    fingerprint: plan[d.name].0.clone(),
                    last_elapsed_secs: manifest.map(|m| m.elapsed_secs),
                })
            })
            .collect()
    }

    fn state_of(&self, d: &StageDef, plan: &Plan, manifest: Option<&Manifest>) -> StageState {
        let Some(m) = manifest else { return StageState::NeverRun };
        let missing = m.missing_outputs(&self.work_dir.join(d.name));
        if m.fingerprint == plan[d.name].0 && missing.is_empty() {
            return StageState::UpToDate;
        }
        let mut why = Vec::new();
        if m.schema_version != d.schema_version {
            why.push(format!("output format v{} -> v{}", m.schema_version, d.schema_version));
        }
        why.extend(config_changes(&m.config, &d.config).into_iter().map(|c| format!("config {c}")));
        for (dep, key) in &plan[d.name].1 {
            if m.inputs.get(dep) != Some(key) {
                let how = if key.starts_with("pending:") { "is not up to date" } else { "changed" };
                why.push(format!("input '{dep}' {how}"));
            }
        }
        for (name, digest) in &d.external {
            if m.external.get(name) != Some(digest) {
                why.push(format!("external input '{name}' changed"));
            }
        }
        why.extend(missing.into_iter().map(|p| format!("output {p} missing or modified")));
        if why.is_empty() {
            why.push("fingerprint changed".into());
        }
        StageState::Stale(why)
    }

    /// Runs `targets` and everything upstream of them that is not up to date, in DAG order.
    pub fn run(&self, targets: &[&str], opts: RunOptions) -> Result<Vec<(&'static str, Outcome)>> {
        let mut wanted: HashMap<&str, bool> = HashMap::new(); // name -> is an explicit target
        for t in targets {
            self.def(t)?;
            wanted.insert(t, true);
        }
        for d in self.defs.iter().rev().filter(|_| !opts.only) {
            if wanted.contains_key(d.name) {
                for dep in &d.deps {
                    wanted.entry(dep).or_insert(false);
                }
            }
        }
        if let Some(shard) = opts.shard {
            for t in targets {
                if !self.def(t)?.shardable {
                    return Err(Error::Usage(format!("stage '{t}' cannot be sharded (--shard {shard})")));
                }
            }
        }
        let mut outcomes = Vec::new();
        for d in &self.defs {
            let Some(&is_target) = wanted.get(d.name) else { continue };
            // Recomputed per stage: what ran before may have changed this stage's inputs.
            let plan = self.fingerprints()?;
            let shard = if is_target { opts.shard } else { None };
            let outcome = match shard {
                Some(shard) => self.run_shard(d, &plan, shard, opts)?,
                None => self.run_whole(d, &plan, is_target && opts.force, opts)?,
            };
            outcomes.push((d.name, outcome));
        }
        Ok(outcomes)
    }

    fn run_whole(&self, d: &StageDef, plan: &Plan, force: bool, opts: RunOptions) -> Result<Outcome> {
        let dest = self.work_dir.join(d.name);
        let manifest = Manifest::read(&dest)?;
        let state = self.state_of(d, plan, manifest.as_ref());
        if state == StageState::UpToDate && !force {
            tracing::info!(stage = d.name, "up to date, skipped");
            return Ok(Outcome::UpToDate);
        }
        if let StageState::Stale(why) = &state {
            tracing::info!(stage = d.name, "stale: {}", why.join("; "));
        }
        if !force {
            if let Some(parts) = self.complete_parts(d, &plan[d.name].0)? {
                return self.merge_parts(d, plan, &parts, &dest);
            }
        }
        let elapsed_secs = self.execute(d, plan, None, &dest, opts)?;
        Ok(Outcome::Ran { elapsed_secs })
    }

    fn run_shard(&self, d: &StageDef, plan: &Plan, shard: ShardSpec, opts: RunOptions) -> Result<Outcome> {
        let dest = self.parts_dir(d).join(shard.part_name());
        let manifest = Manifest::read(&dest)?;
        if !opts.force && manifest.as_ref().is_some_and(|m| m.fingerprint == plan[d.name].0 && m.missing_outputs(&dest).is_empty()) {
            return Ok(Outcome::UpToDate);
        }
        let elapsed_secs = self.execute(d, plan, Some(shard), &dest, opts)?;
        Ok(Outcome::Ran { elapsed_secs })
    }

    fn parts_dir(&self, d: &StageDef) -> PathBuf {
        self.work_dir.join(format!("{}.parts", d.name))
    }

    /// Runs the stage into a temporary folder and publishes it with stats and manifest.
    fn execute(&self, d: &StageDef, plan: &Plan, shard: Option<ShardSpec>, dest: &Path, opts: RunOptions) -> Result<f64> {
        atomic::remove_leftovers(dest)?;
        let staged = atomic::temp_sibling(dest);
        std::fs::create_dir_all(&staged).at(&staged)?;
        let scratch_dir = self.work_dir.join(".scratch").join(d.name);
        let ctx = StageContext { stage: d.name, work_dir: &self.work_dir, out_dir: staged.clone(), scratch_dir, shard, quiet: opts.quiet };
        let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs()).unwrap_or(0);
        let t0 = Instant::now();
        tracing::info!(stage = d.name, shard = shard.map(|s| s.to_string()), "running");
        let stats = (d.run)(&ctx).map_err(|e| match e {
            e @ (Error::Config { .. } | Error::Usage(_)) => e,
            e => Error::Stage { stage: d.name.to_string(), source: Box::new(e) },
        });
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(e);
            }
        };
        let elapsed_secs = t0.elapsed().as_secs_f64();
        self.publish(d, plan, shard, &staged, dest, stats, started_unix, elapsed_secs)?;
        tracing::info!(stage = d.name, elapsed_secs, "done");
        Ok(elapsed_secs)
    }

    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        d: &StageDef,
        plan: &Plan,
        shard: Option<ShardSpec>,
        staged: &Path,
        dest: &Path,
        mut stats: serde_json::Value,
        started_unix: u64,
        elapsed_secs: f64,
    ) -> Result<()> {
        if let serde_json::Value::Object(map) = &mut stats {
            map.entry("elapsed_secs").or_insert(serde_json::json!(elapsed_secs));
        }
        atomic::write_json(&staged.join("stats.json"), &stats)?;
        let manifest = Manifest {
            stage: d.name.to_string(),
            schema_version: d.schema_version,
            fingerprint: plan[d.name].0.clone(),
            config: d.config.clone(),
            inputs: plan[d.name].1.clone(),
            external: d.external.clone(),
            shard,
            outputs: manifest::list_outputs(staged)?,
            started_unix,
            elapsed_secs,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        // The manifest is written last: a folder without one is never taken as complete.
        atomic::write_json(&staged.join(manifest::FILE_NAME), &manifest)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).at(parent)?;
        }
        atomic::publish_dir(staged, dest)
    }

    /// The part folders, if all N parts exist with the current fingerprint.
    fn complete_parts(&self, d: &StageDef, fingerprint: &str) -> Result<Option<Vec<PathBuf>>> {
        let dir = self.parts_dir(d);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
        let mut parts: Vec<(ShardSpec, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if let Some(m) = Manifest::read(&path)? {
                if let (Some(s), true) = (m.shard, m.fingerprint == fingerprint && m.missing_outputs(&path).is_empty()) {
                    parts.push((s, path));
                }
            }
        }
        let Some(count) = parts.first().map(|(s, _)| s.count) else { return Ok(None) };
        parts.retain(|(s, _)| s.count == count);
        parts.sort_by_key(|(s, _)| s.index);
        parts.dedup_by_key(|(s, _)| s.index);
        if parts.len() as u32 != count {
            return Ok(None);
        }
        Ok(Some(parts.into_iter().map(|(_, p)| p).collect()))
    }

    fn merge_parts(&self, d: &StageDef, plan: &Plan, parts: &[PathBuf], dest: &Path) -> Result<Outcome> {
        tracing::info!(stage = d.name, parts = parts.len(), "merging shard parts");
        atomic::remove_leftovers(dest)?;
        let staged = atomic::temp_sibling(dest);
        std::fs::create_dir_all(&staged).at(&staged)?;
        let t0 = Instant::now();
        let mut stats = serde_json::Value::Null;
        let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for part in parts {
            for f in manifest::list_outputs(part)? {
                if f.path == "stats.json" {
                    let path = part.join(&f.path);
                    let text = std::fs::read_to_string(&path).at(&path)?;
                    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
                    stats = add_stats(stats, v);
                } else {
                    let source = part.join(&f.path);
                    files.entry(f.path).or_default().push(source);
                }
            }
        }
        for (name, sources) in files {
            let dest = staged.join(&name);
            let merged = if name.ends_with(".jsonl") {
                merge_jsonl(&sources, &dest)
            } else if name.ends_with(".frames") {
                crate::frames::merge(&sources, &dest)
            } else {
                Err(Error::Other(format!("stage '{}': cannot merge shard output '{name}' (only .jsonl and .frames files merge)", d.name)))
            };
            if let Err(e) = merged {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(e);
            }
        }
        if let serde_json::Value::Object(map) = &mut stats {
            map.remove("elapsed_secs");
        }
        let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs()).unwrap_or(0);
        self.publish(d, plan, None, &staged, dest, stats, started, t0.elapsed().as_secs_f64())?;
        Ok(Outcome::MergedParts { parts: parts.len() as u32 })
    }
}

/// Merges JSONL files, each sorted by its lines' `id` field, into one sorted file (equal ids:
/// earlier source first): a streaming k-way merge, one line per source in memory.
fn merge_jsonl(sources: &[PathBuf], dest: &Path) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Id {
        #[serde(default)]
        id: String,
    }
    struct Source {
        lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
        path: PathBuf,
        number: usize,
    }
    fn next_line(s: &mut Source) -> Result<Option<(String, String)>> {
        for line in s.lines.by_ref() {
            let line = line.at(&s.path)?;
            s.number += 1;
            if line.trim().is_empty() {
                continue;
            }
            let id: Id = serde_json::from_str(&line).map_err(|e| Error::Input { path: s.path.clone(), line: s.number, message: e.to_string() })?;
            return Ok(Some((id.id, line)));
        }
        Ok(None)
    }
    use std::io::BufRead;
    let mut open: Vec<Source> =
        sources.iter().map(|p| Ok(Source { lines: std::io::BufReader::new(std::fs::File::open(p).at(p)?).lines(), path: p.clone(), number: 0 })).collect::<Result<_>>()?;
    let mut heads: Vec<Option<(String, String)>> = open.iter_mut().map(next_line).collect::<Result<_>>()?;
    let mut out = crate::jsonl::Writer::create(dest)?;
    while let Some(i) = (0..heads.len()).filter(|&i| heads[i].is_some()).min_by(|&a, &b| heads[a].as_ref().map(|h| &h.0).cmp(&heads[b].as_ref().map(|h| &h.0))) {
        let (_, line) = heads[i].take().expect("chosen head exists");
        out.write_raw(&line)?;
        heads[i] = next_line(&mut open[i])?;
    }
    out.finish()
}

/// Adds numbers found at the same place in two stats objects; anything else keeps `a`'s value.
fn add_stats(a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (a, b) {
        (Value::Null, b) => b,
        (Value::Object(mut x), Value::Object(y)) => {
            for (k, vb) in y {
                let va = x.remove(&k).unwrap_or(Value::Null);
                x.insert(k, add_stats(va, vb));
            }
            Value::Object(x)
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(p), Some(q)) => Value::from(p + q),
            _ => Value::from(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0)),
        },
        (a, _) => a,
    }
}
