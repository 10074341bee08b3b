//! Self-consistency by dual execution agreement (CodeT, Chen et al. 2022).
//!
//! For a prompt with at least `min_samples` Python samples and teacher-written tests (the test
//! cases of all its samples pooled, exact duplicates removed, at most `max_tests`), every sample
//! runs against every test case in the sandbox: one program per (sample, test), the sample's
//! code then the test's setup then the case; it passes when it exits 0 (a sample that times out
//! on the first test is not run against the others: it fails them all). That gives each sample
//! `x` a pass vector over the tests and its passed set `S_x`.
//!
//! Samples with the same passed set form a consensus cluster `C`; its score is
//! `f(C) = |C| * |S_C|` (how many samples agree, times how many tests they agree on). Stored per
//! sample: `pass_rate = |S_x| / T`, `codet_score = f(C_x)`, `agreement = f(C_x) / (n * T)` (in
//! [0, 1]: 1 when all `n` samples pass all `T` tests), `cluster_size`, `in_best_cluster`, `tests`.
//! Keep rules: `best_cluster` keeps the cluster with the highest `f` (ties: more tests passed,
//! then the earliest sample), provided it passes at least one test; `pass_rate` keeps samples
//! with `pass_rate >= min_pass_rate`.

use std::collections::BTreeMap;

use distill_sandbox::{Limits, Program, Sandbox, Status};

use crate::candidate::Candidate;
use crate::config::{KeepRule, Settings};
use crate::error::{Error, Result};
use crate::funnel::{Decision, Filter};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ConsistencyStats {
    pub prompts_scored: usize,
    pub prompts_too_few_samples: usize,
    pub prompts_without_tests: usize,
    pub programs: usize,
    pub programs_passed: usize,
    pub programs_timed_out: usize,
    pub sandbox_secs: f64,
}

/// A test case: (setup, the assert or test call).
pub type TestCase = (String, String);

pub struct Consistency<'a> {
    pub settings: &'a Settings,
    pub stats: ConsistencyStats,
}

/// The cluster scores of one prompt: per sample (in group order) its scores, and the
/// keep decision under `rule`.
pub fn score(vectors: &[Vec<bool>], rule: KeepRule) -> Vec<(BTreeMap<String, f64>, bool)> {
    let n = vectors.len();
    let t = vectors.first().map_or(0, Vec::len);
    let mut clusters: BTreeMap<&[bool], Vec<usize>> = BTreeMap::new();
    for (i, v) in vectors.iter().enumerate() {
        clusters.entry(v.as_slice()).or_default().push(i);
    }
    let passed = |v: &[bool]| v.iter().filter(|&&b| b).count();
    let f = |v: &[bool], members: &Vec<usize>| members.len() * passed(v);
    let best = clusters.iter().max_by(|a, b| (f(a.0, a.1), passed(a.0), std::cmp::Reverse(a.1[0])).cmp(&(f(b.0, b.1), passed(b.0), std::cmp::Reverse(b.1[0])))).map(|(v, _)| *v);
    vectors
        .iter()
        .map(|v| {
            let members = &clusters[v.as_slice()];
            let score = f(v, members) as f64;
            let rate = if t == 0 { 0.0 } else { passed(v) as f64 / t as f64 };
            let in_best = Some(v.as_slice()) == best;
            let keep = match rule {
                KeepRule::BestCluster => in_best && passed(v) > 0,
                KeepRule::PassRate(min) => rate >= min && passed(v) > 0,
            };
            let scores = BTreeMap::from([
                ("pass_rate".to_string(), rate),
                ("codet_score".to_string(), score),
                ("agreement".to_string(), if n * t == 0 { 0.0 } else { score / (n * t) as f64 }),
                ("cluster_size".to_string(), members.len() as f64),
                ("in_best_cluster".to_string(), f64::from(u8::from(in_best))),
                ("tests".to_string(), t as f64),
            ]);
            (scores, keep)
        })
        .collect()
}

impl Filter for Consistency<'_> {
    fn name(&self) -> &'static str {
        "consistency"
    }

    fn decide(&mut self, cands: &mut [Candidate]) -> Result<Vec<Decision>> {
        let cfg = &self.settings.cfg.consistency;
        let mut decisions = vec![Decision::Keep; cands.len()];
        if !cfg.enabled {
            return Ok(decisions);
        }
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in cands.iter().enumerate() {
            if c.is_python() && !c.runnable.trim().is_empty() {
                groups.entry(c.prompt_id().to_string()).or_default().push(i);
            }
        }
        // (group members, tests) for the prompts that get scored.
        let mut scored: Vec<(Vec<usize>, Vec<TestCase>)> = Vec::new();
        for members in groups.into_values() {
            if members.len() < cfg.min_samples {
                self.stats.prompts_too_few_samples += 1;
                continue;
            }
            let mut tests: Vec<TestCase> = Vec::new();
            for &i in &members {
                for t in &cands[i].tests {
                    if !tests.contains(t) && tests.len() < cfg.max_tests {
                        tests.push(t.clone());
                    }
                }
            }
            if tests.is_empty() {
                self.stats.prompts_without_tests += 1;
                continue;
            }
            scored.push((members, tests));
        }
        if scored.is_empty() {
            return Ok(decisions);
        }
        let limits = Limits {
            wall_timeout: self.settings.timeout,
            cpu_secs: self.settings.timeout.as_secs_f64().ceil() as u64 + 1,
            memory_bytes: cfg.memory_mib << 20,
            ..Limits::default()
        };
        let sandbox = Sandbox::new(self.settings.cfg.sandbox.clone()).map_err(|e| Error::Sandbox(e.to_string()))?;
        // passed[g][m][t]: group g, member m, test t. Two rounds: every sample against its
        // prompt's first test, then the other tests only for samples that did not time out.
        // A sample that hangs usually hangs on every test; this costs one timeout, not T.
        let mut passed: Vec<Vec<Vec<bool>>> = scored.iter().map(|(m, t)| vec![vec![false; t.len()]; m.len()]).collect();
        let mut timed_out: Vec<Vec<bool>> = scored.iter().map(|(m, _)| vec![false; m.len()]).collect();
        for round in 0..2 {
            let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
            for (g, ((_, tests), hung)) in scored.iter().zip(&timed_out).enumerate() {
                for (m, &hung) in hung.iter().enumerate() {
                    let range = if round == 0 { 0..1 } else { 1..tests.len() };
                    if round == 1 && hung {
                        continue;
                    }
                    jobs.extend(range.map(|t| (g, m, t)));
                }
            }
            let programs: Vec<Program> = jobs
                .iter()
                .map(|&(g, m, t)| {
                    let (setup, case) = &scored[g].1[t];
                    Program::with_limits(format!("{}\n\n{setup}\n\n{case}\n", cands[scored[g].0[m]].runnable), limits.clone())
                })
                .collect();
            let t0 = std::time::Instant::now();
            let outcomes = sandbox.run_all(&programs);
            self.stats.sandbox_secs += t0.elapsed().as_secs_f64();
            self.stats.programs += outcomes.len();
            self.stats.programs_passed += outcomes.iter().filter(|o| o.passed()).count();
            self.stats.programs_timed_out += outcomes.iter().filter(|o| o.status == Status::Timeout).count();
            if let Some(o) = outcomes.iter().find(|o| o.status == Status::Error) {
                // The sandbox itself failed (not the program): a result built on it would be wrong.
                return Err(Error::Sandbox(o.message.clone().unwrap_or_else(|| "could not run a program".into())));
            }
            for (&(g, m, t), o) in jobs.iter().zip(&outcomes) {
                passed[g][m][t] = o.passed();
                if o.status == Status::Timeout {
                    timed_out[g][m] = true;
                }
            }
        }
        for ((members, tests), vectors) in scored.iter().zip(passed) {
            self.stats.prompts_scored += 1;
            for ((&i, (scores, keep)), v) in members.iter().zip(score(&vectors, self.settings.rule)).zip(vectors) {
                let passed = v.iter().filter(|&&b| b).count();
                let c = &mut cands[i];
                c.scores.extend(scores);
                c.pass_vector = v;
                if !keep {
                    let reason = match (passed, self.settings.rule) {
                        (0, _) => "no_test_passed",
                        (_, KeepRule::BestCluster) => "not_in_best_cluster",
                        (_, KeepRule::PassRate(_)) => "low_pass_rate",
                    };
                    decisions[i] = Decision::drop(reason, format!("passed {passed}/{} tests, agreement {:.3}", tests.len(), c.scores["agreement"]));
                }
            }
        }
        Ok(decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_agreeing_cluster_wins() {
        // Samples 0 and 2 agree on passing tests 0 and 1 (f = 2 * 2 = 4); sample 1 passes all
        // three alone (f = 3); sample 3 passes nothing.
        let v = vec![vec![true, true, false], vec![true, true, true], vec![true, true, false], vec![false, false, false]];
        let s = score(&v, KeepRule::BestCluster);
        let keep: Vec<bool> = s.iter().map(|x| x.1).collect();
        assert_eq!(keep, vec![true, false, true, false]);
        assert_eq!(s[0].0["codet_score"], 4.0);
        assert_eq!(s[0].0["agreement"], 4.0 / 12.0);
        assert_eq!(s[1].0["pass_rate"], 1.0);
        assert_eq!(s[1].0["in_best_cluster"], 0.0);
        let by_rate: Vec<bool> = score(&v, KeepRule::PassRate(0.9)).iter().map(|x| x.1).collect();
        assert_eq!(by_rate, vec![false, true, false, false]);
    }

    #[test]
    fn a_cluster_passing_nothing_is_never_kept() {
        let v = vec![vec![false, false], vec![false, false], vec![true, false]];
        let keep: Vec<bool> = score(&v, KeepRule::BestCluster).iter().map(|x| x.1).collect();
        // f = 2 * 0 = 0 for the failing pair, 1 * 1 = 1 for the third: the third wins.
        assert_eq!(keep, vec![false, false, true]);
    }
}
