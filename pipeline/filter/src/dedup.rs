//! Exact and MinHash near-duplicate removal over answers, and decontamination against the
//! benchmarks, through `distill-textdedup` (the code the prompts stage uses). Candidates are in
//! id order, so of a duplicate group the smallest id is kept.

use distill_textdedup::{exact_duplicates, Decontaminator, MinHashDedup, Reference};

use crate::candidate::Candidate;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::funnel::{Decision, Filter};

pub struct ExactDedup;

impl Filter for ExactDedup {
    fn name(&self) -> &'static str {
        "exact_dedup"
    }
    fn decide(&mut self, cands: &mut [Candidate]) -> Result<Vec<Decision>> {
        let texts: Vec<&str> = cands.iter().map(Candidate::text).collect();
        let mut d = vec![Decision::Keep; cands.len()];
        for cl in exact_duplicates(&texts) {
            for (i, _) in cl.duplicates {
                d[i] = Decision::drop("exact_duplicate", format!("same as {}", cands[cl.keep].id));
            }
        }
        Ok(d)
    }
}

pub struct NearDedup(pub MinHashDedup);

impl Filter for NearDedup {
    fn name(&self) -> &'static str {
        "near_dedup"
    }
    fn decide(&mut self, cands: &mut [Candidate]) -> Result<Vec<Decision>> {
        let texts: Vec<&str> = cands.iter().map(Candidate::text).collect();
        let mut d = vec![Decision::Keep; cands.len()];
        for cl in self.0.find_duplicates(&texts) {
            for (i, sim) in cl.duplicates {
                d[i] = Decision::drop("near_duplicate", format!("~{} (estimated Jaccard {sim:.2})", cands[cl.keep].id));
            }
        }
        Ok(d)
    }
}

pub struct Decontam(pub Decontaminator);

/// (benchmark name, sha256 of its data file).
pub type BenchmarkDigest = (String, String);

/// The benchmark texts of the configured benchmarks (the same references the prompts stage
/// uses), and each file's sha256 (for the stage's fingerprint).
pub fn load_references(s: &Settings) -> Result<(Vec<Reference>, Vec<BenchmarkDigest>)> {
    let d = &s.cfg.decontamination;
    distill_textdedup::benchmark_refs::load(&distill_benchmarks::DataSource::from_config(&d.data_dir), &d.benchmarks).map_err(|e| Error::Decontamination(e.to_string()))
}

impl Filter for Decontam {
    fn name(&self) -> &'static str {
        "decontamination"
    }
    fn decide(&mut self, cands: &mut [Candidate]) -> Result<Vec<Decision>> {
        let texts: Vec<&str> = cands.iter().map(Candidate::text).collect();
        Ok(self
            .0
            .check_many(&texts)
            .into_iter()
            .map(|m| match m {
                None => Decision::Keep,
                Some(m) => {
                    let span: String = m.span.text.chars().take(120).collect();
                    Decision::drop("contaminated", format!("{} {} ({:?}, {:?}): {span:?}", m.benchmark, m.task_id, m.kind, m.method))
                }
            })
            .collect())
    }
}
