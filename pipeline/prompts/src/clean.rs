//! Cleaning: every candidate prompt is kept or dropped with a reason, in this order:
//!
//! 0. drops the generators already decided (a teacher failure `teacher_<reason>`, an
//!    `unparseable_answer`, a failed evolution `evol_<why>`) arrive as such and are counted;
//! 1. `invalid`: not exactly one of non-empty `messages` / `prompt`;
//! 2. `language`: tagged with a language not in `[prompts] languages` (when that list is set;
//!    untagged user prompts pass);
//! 3. `exact_duplicate` (same id): identical content reached twice (ids are content digests);
//! 4. `contaminated`: too close to a benchmark task ([`Decontaminator`]); also reported in
//!    `decontamination.jsonl` with the task and the overlapping span;
//! 5. `exact_duplicate`: equal after normalisation to an earlier prompt;
//! 6. `near_duplicate`: in a MinHash LSH cluster with an earlier prompt.
//!
//! "Earlier" is id order: candidates are sorted by id first, so which member of a duplicate
//! group survives does not depend on generation order. Like datatrove's filters, the steps
//! decide and this one function does the counting and writes the reasons.

use std::collections::BTreeMap;

use distill_core::records::{Exclusion, PromptRecord};
use distill_textdedup::{exact_duplicates, Decontaminator, Match, MinHashDedup};
use serde::Serialize;

use crate::config::DedupConfig;
use crate::generate::excerpt;
use crate::record::meta_str;

/// Why a record was dropped: the step, the short reason counted in the stats, details.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub filter: String,
    pub reason: String,
    pub detail: String,
}

fn drop(filter: &str, reason: &str, detail: String) -> Option<Drop> {
    Some(Drop { filter: filter.into(), reason: reason.into(), detail })
}

/// One line of `decontamination.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecontamRecord {
    pub id: String,
    pub generator: String,
    #[serde(flatten)]
    pub found: Match,
}

/// The outcome of cleaning.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Sorted by id.
    pub kept: Vec<PromptRecord>,
    /// Sorted by id (a duplicate id appears once per dropped copy).
    pub exclusions: Vec<Exclusion>,
    pub decontaminated: Vec<DecontamRecord>,
    /// Kept and dropped counts, overall and per generator, task type, language and reason.
    pub stats: serde_json::Value,
}

pub struct Cleaner<'a> {
    pub languages: &'a [String],
    pub decontaminator: Option<&'a Decontaminator>,
    pub dedup: &'a DedupConfig,
}

impl Cleaner<'_> {
    /// Cleans `candidates`; `predropped` are records a generator already dropped (counted and
    /// reported with the rest).
    pub fn clean(&self, candidates: Vec<PromptRecord>, predropped: Vec<(PromptRecord, Drop)>) -> distill_core::Result<Cleaned> {
        let mut all: Vec<(PromptRecord, Option<Drop>)> = candidates.into_iter().map(|c| (c, None)).chain(predropped.into_iter().map(|(r, d)| (r, Some(d)))).collect();
        // Stable: of two records with one id, the one generated first comes first.
        all.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let (candidates, mut dropped): (Vec<PromptRecord>, Vec<Option<Drop>>) = all.into_iter().unzip();
        let total = candidates.len();
        let mut decontaminated = Vec::new();

        let mut last_alive: Option<usize> = None;
        for (i, rec) in candidates.iter().enumerate() {
            if dropped[i].is_some() {
                continue;
            }
            if let Err(e) = rec.validate() {
                dropped[i] = drop("validate", "invalid", e);
            } else if !self.languages.is_empty() && rec.meta.contains_key("language") && !self.languages.iter().any(|l| l == meta_str(rec, "language", "")) {
                dropped[i] = drop("language", "language", format!("language '{}' is not in [prompts] languages", meta_str(rec, "language", "")));
            } else if let Some(prev) = last_alive.filter(|&p| candidates[p].id == rec.id) {
                dropped[i] = drop("exact_dedup", "exact_duplicate", format!("same content as {} ({})", rec.id, meta_str(&candidates[prev], "generator", "?")));
            } else {
                last_alive = Some(i);
            }
        }

        let alive = |dropped: &[Option<Drop>]| -> Vec<usize> { (0..total).filter(|&i| dropped[i].is_none()).collect() };

        if let Some(d) = self.decontaminator {
            let idx = alive(&dropped);
            let texts: Vec<String> = idx.iter().map(|&i| candidates[i].text()).collect();
            for (&i, m) in idx.iter().zip(d.check_many(&texts)) {
                if let Some(m) = m {
                    let detail = format!("{} {} ({:?}, {:?}): \"{}\"", m.benchmark, m.task_id, m.kind, m.method, excerpt(&m.span.text, 160));
                    dropped[i] = drop("decontamination", "contaminated", detail);
                    decontaminated.push(DecontamRecord { id: candidates[i].id.clone(), generator: meta_str(&candidates[i], "generator", "?").into(), found: m });
                }
            }
        }

        if self.dedup.exact {
            let idx = alive(&dropped);
            let texts: Vec<String> = idx.iter().map(|&i| candidates[i].text()).collect();
            for c in exact_duplicates(&texts) {
                for (d, _) in c.duplicates {
                    dropped[idx[d]] = drop("exact_dedup", "exact_duplicate", format!("equal after normalisation to {}", candidates[idx[c.keep]].id));
                }
            }
        }

        if self.dedup.near {
            let idx = alive(&dropped);
            let texts: Vec<String> = idx.iter().map(|&i| candidates[i].text()).collect();
            let lsh = MinHashDedup::new(&self.dedup.minhash).map_err(|e| distill_core::Error::config_value("config", None, "prompts.dedup.minhash", e.to_string()))?;
            for c in lsh.find_duplicates(&texts) {
                for (d, sim) in c.duplicates {
                    dropped[idx[d]] = drop("near_dedup", "near_duplicate", format!("near duplicate of {} (estimated Jaccard {sim:.2})", candidates[idx[c.keep]].id));
                }
            }
        }

        let stats = stats(&candidates, &dropped);
        let mut out = Cleaned { stats, decontaminated, ..Default::default() };
        for (rec, d) in candidates.into_iter().zip(dropped) {
            match d {
                None => out.kept.push(rec),
                Some(d) => out.exclusions.push(Exclusion { id: rec.id, filter: d.filter, reason: d.reason, detail: d.detail }),
            }
        }
        out.decontaminated.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// `{candidates, kept, dropped, dropped_by_reason, by_generator, by_task_type, by_language}`,
/// each breakdown `{name: {kept, dropped, dropped_by_reason}}`.
fn stats(candidates: &[PromptRecord], dropped: &[Option<Drop>]) -> serde_json::Value {
    #[derive(Default, Serialize)]
    struct Count {
        kept: u64,
        dropped: u64,
        dropped_by_reason: BTreeMap<String, u64>,
    }
    impl Count {
        fn add(&mut self, reason: Option<&str>) {
            match reason {
                None => self.kept += 1,
                Some(r) => {
                    self.dropped += 1;
                    *self.dropped_by_reason.entry(r.to_string()).or_default() += 1;
                }
            }
        }
    }
    let mut all = Count::default();
    let mut by: [BTreeMap<String, Count>; 3] = Default::default();
    for (rec, d) in candidates.iter().zip(dropped) {
        let reason = d.as_ref().map(|x| x.reason.as_str());
        all.add(reason);
        for (map, key) in by.iter_mut().zip(["generator", "task_type", "language"]) {
            map.entry(meta_str(rec, key, "unknown").to_string()).or_default().add(reason);
        }
    }
    let [g, t, l] = by;
    serde_json::json!({
        "candidates": candidates.len(),
        "kept": all.kept,
        "dropped": all.dropped,
        "dropped_by_reason": all.dropped_by_reason,
        "by_generator": g,
        "by_task_type": t,
        "by_language": l,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{chat, Provenance};

    fn rec(generator: &str, language: &str, text: &str) -> PromptRecord {
        let p = Provenance { generator, task_type: "implement_from_spec", language, difficulty: "easy", asks_for_tests: false };
        chat("", text.to_string(), &p, BTreeMap::new())
    }

    #[test]
    fn every_drop_has_its_reason_and_is_counted() {
        let base = "Write a Python function that merges overlapping calendar intervals given as pairs of minutes and returns them sorted by start time.";
        let other = "Implement a function that parses a crontab line into its five time fields and validates every range, raising ValueError with the field name.";
        let near = other.replace("with the field name", "with the field's name");
        let mut invalid = rec("user", "python", "x");
        invalid.messages = Some(Vec::new());
        invalid.id = "0000invalid".into();
        let candidates = vec![
            rec("template", "python", base),
            rec("user", "python", base),                          // same content, same id
            rec("self_instruct", "python", &base.to_uppercase()), // equal after normalisation
            rec("evol_instruct", "python", &near),
            rec("template", "python", other),
            rec("template", "rust", "Implement a lock-free queue in Rust with tests."),
            rec("template", "python", "Explain how Python's garbage collector finds reference cycles."),
            invalid,
        ];
        let failed = rec("oss_instruct", "n/a", "request text");
        let pre = vec![(failed.clone(), Drop { filter: "oss_instruct".into(), reason: "unparseable_answer".into(), detail: "no section".into() })];
        let dedup = DedupConfig { minhash: distill_textdedup::MinHashConfig { threshold: 0.7, ..Default::default() }, ..Default::default() };
        let languages = vec!["python".to_string()];
        let cleaner = Cleaner { languages: &languages, decontaminator: None, dedup: &dedup };
        let out = cleaner.clean(candidates.clone(), pre).unwrap();

        let reason = |id: &str| out.exclusions.iter().filter(|x| x.id == id).map(|x| x.reason.as_str()).collect::<Vec<_>>();
        // Of the base text, its same-id copy and its upper-case variant, one stays (the
        // smallest id) and two go as exact duplicates.
        let group: Vec<&str> = [reason(&candidates[0].id), reason(&candidates[2].id)].concat();
        assert_eq!(group, vec!["exact_duplicate", "exact_duplicate"]);
        let mut pair = vec![reason(&candidates[3].id), reason(&candidates[4].id)];
        pair.sort();
        assert_eq!(pair, vec![vec![], vec!["near_duplicate"]]);
        assert_eq!(reason(&candidates[5].id), vec!["language"]);
        assert_eq!(reason("0000invalid"), vec!["invalid"]);
        assert_eq!(reason(&failed.id), vec!["unparseable_answer"]);
        let kept: Vec<&str> = out.kept.iter().map(|r| r.id.as_str()).collect();
        let near_survivor = candidates[3].id.as_str().min(candidates[4].id.as_str());
        assert_eq!(kept.len(), 3);
        assert!(kept.contains(&candidates[0].id.as_str()) != kept.contains(&candidates[2].id.as_str()));
        assert!(kept.contains(&near_survivor) && kept.contains(&candidates[6].id.as_str()));
        assert!(out.exclusions.windows(2).all(|w| w[0].id <= w[1].id));

        let s = &out.stats;
        assert_eq!((s["candidates"].as_u64(), s["kept"].as_u64(), s["dropped"].as_u64()), (Some(9), Some(3), Some(6)));
        assert_eq!(s["dropped_by_reason"]["exact_duplicate"], 2);
        assert_eq!(s["dropped_by_reason"]["near_duplicate"], 1);
        assert_eq!(s["by_language"]["rust"]["dropped"], 1);
        assert_eq!(s["by_task_type"]["implement_from_spec"]["kept"], 3);
    }
}
