//! The report's snapshot of the dashboard's views: the same JSON the dashboard API answers
//! (`/api/v1/status`'s stages, `/funnel`, `/teacher/series`, `/records/answers/{id}/tokens`),
//! read from the published stage folders when the report is built, inlined into the page and
//! drawn by the same `views.js` as the live page. No server is involved.

use std::path::Path;

use distill_core::error::IoContext;
use serde_json::{json, Value};

/// Points of the teacher's series kept (the dashboard's default).
const SERIES_POINTS: usize = 2000;

/// Samples shown with their tokens.
const SAMPLES: usize = 3;

/// At most `max` evenly spaced items of `items`, the first and last included.
pub fn thin<T>(items: Vec<T>, max: usize) -> Vec<T> {
    let n = items.len();
    if n <= max || max < 2 {
        return if max == 0 {
            Vec::new()
        } else if max == 1 {
            items.into_iter().last().into_iter().collect()
        } else {
            items
        };
    }
    let keep: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    let mut next = 0;
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            (next < keep.len() && keep[next] == i).then(|| {
                next += 1;
                item
            })
        })
        .collect()
}

/// `series-<i>-of-<N>.jsonl` -> `<i>-of-<N>`.
pub fn shard_of(name: &str) -> Option<String> {
    let part = name.strip_prefix("series-")?.strip_suffix(".jsonl")?;
    let (i, n) = part.split_once("-of-")?;
    (i.parse::<u32>().is_ok() && n.parse::<u32>().is_ok()).then(|| part.to_string())
}

/// The DAG as `/api/v1/status` shows it, as of this report: each stage upstream of the report
/// (and the report), its dependencies from its manifest's inputs, `up_to_date` when it has
/// published (the runner ran it before the report), else `never_run`.
pub fn status(work_dir: &Path, stages: &[&str]) -> Value {
    let mut out: Vec<Value> = stages
        .iter()
        .map(|&stage| {
            let manifest = distill_core::manifest::Manifest::read(&work_dir.join(stage)).ok().flatten();
            let deps: Vec<&str> = manifest.as_ref().map(|m| stages.iter().copied().filter(|s| m.inputs.contains_key(*s)).collect()).unwrap_or_default();
            json!({
                "name": stage,
                "deps": deps,
                "state": if manifest.is_some() { "up_to_date" } else { "never_run" },
                "reasons": [],
                "last_elapsed_secs": manifest.as_ref().map(|m| m.elapsed_secs),
                "has_stats": work_dir.join(stage).join("stats.json").is_file(),
            })
        })
        .collect();
    out.push(json!({"name": "report", "deps": stages, "state": "up_to_date", "reasons": [], "has_stats": false}));
    json!({ "stages": out })
}

fn read_series(path: &Path) -> distill_core::Result<(usize, Vec<Value>)> {
    let (lines, _) = distill_core::jsonl::read_lenient(path)?;
    Ok((lines.len(), thin(lines, SERIES_POINTS)))
}

/// `/api/v1/teacher/series` of the published teacher: its `series.jsonl`, or one series per
/// shard (`series-<i>-of-<N>.jsonl`, in the stage folder or its part folders).
pub fn teacher_series(work_dir: &Path) -> distill_core::Result<Value> {
    let dir = work_dir.join("teacher");
    let plain = dir.join("series.jsonl");
    if plain.is_file() {
        let (lines, points) = read_series(&plain)?;
        return Ok(json!({"stage": "teacher", "running": false, "lines": lines, "points": points, "shards": []}));
    }
    let mut found = std::collections::BTreeMap::new();
    let mut dirs = vec![dir];
    if let Ok(parts) = std::fs::read_dir(work_dir.join("teacher.parts")) {
        dirs.extend(parts.flatten().map(|e| e.path()));
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Some(shard) = shard_of(&e.file_name().to_string_lossy()) {
                found.entry(shard).or_insert(e.path());
            }
        }
    }
    let mut shards = Vec::new();
    for (shard, path) in found {
        let (lines, points) = read_series(&path)?;
        shards.push(json!({"shard": shard, "lines": lines, "points": points}));
    }
    Ok(json!({"stage": "teacher", "running": false, "lines": 0, "points": [], "shards": shards}))
}

/// The first few kept samples (`filter/kept.jsonl`, ids `<prompt id>#<sample>`) with their
/// tokens, log-probs and top-k from `teacher/logprobs.frames`, each as
/// `/api/v1/records/answers/{id}/tokens` answers it.
pub fn samples(work_dir: &Path) -> distill_core::Result<Vec<Value>> {
    let kept = work_dir.join("filter/kept.jsonl");
    let frames = work_dir.join("teacher/logprobs.frames");
    if !kept.is_file() || !frames.is_file() {
        return Ok(Vec::new());
    }
    let mut wanted: Vec<(String, usize)> = Vec::new();
    let text = std::fs::read_to_string(&kept).at(&kept)?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let Some(id) = v.get("id").and_then(Value::as_str) else { continue };
        let (pid, sample) = id.rsplit_once('#').map(|(p, s)| (p, s.parse().unwrap_or(0))).unwrap_or((id, 0));
        wanted.push((pid.to_string(), sample));
        if wanted.len() == SAMPLES {
            break;
        }
    }
    // Frames are in id order, like kept.jsonl: one pass over the file.
    let mut out = Vec::new();
    let mut reader = distill_core::frames::FrameReader::open(&frames)?;
    while out.len() < wanted.len() {
        let Some(frame) = reader.next_frame()? else { break };
        for (pid, sample) in wanted.iter().filter(|(p, _)| *p == frame.id) {
            let tokens = distill_core::logprobs::unpack_sample(&frame.payload, *sample)
                .map_err(|e| distill_core::Error::Other(format!("{}: record '{pid}': {e}; re-run the teacher stage (--force)", frames.display())))?;
            let Some(tokens) = tokens else { continue };
            let tokens: Vec<Value> = tokens
                .into_iter()
                .map(|t| json!({"token": t.token, "logprob": t.logprob, "top": t.top.into_iter().map(|a| json!({"token": a.token, "logprob": a.logprob})).collect::<Vec<_>>()}))
                .collect();
            out.push(json!({"id": pid, "sample": sample, "tokens": tokens}));
        }
    }
    Ok(out)
}

/// The snapshot inlined into the page: `{status, funnel, teacher_series, samples}`.
pub fn gather(work_dir: &Path, stages: &[&str], funnel: &crate::funnel::Funnel) -> distill_core::Result<Value> {
    Ok(json!({
        "status": status(work_dir, stages),
        "funnel": funnel,
        "teacher_series": teacher_series(work_dir)?,
        "samples": samples(work_dir)?,
    }))
}

/// JSON safe inside a `<script>` element (no `</script>`, no `<!--`).
pub fn script_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

#[cfg(test)]
mod tests {
    use super::{script_json, shard_of, thin};

    #[test]
    fn thinning_keeps_the_ends_and_spaces_the_rest() {
        assert_eq!(thin((0..10).collect(), 20), (0..10).collect::<Vec<_>>());
        assert_eq!(thin((0..10).collect(), 4), vec![0, 3, 6, 9]);
        assert_eq!(thin((0..5).collect(), 1), vec![4]);
    }

    #[test]
    fn shard_series_names_and_script_safe_json() {
        assert_eq!(shard_of("series-0-of-2.jsonl").as_deref(), Some("0-of-2"));
        assert_eq!(shard_of("series.jsonl"), None);
        assert_eq!(script_json(&serde_json::json!({"t": "</script><!--"})), r#"{"t":"\u003c/script>\u003c!--"}"#);
    }
}
