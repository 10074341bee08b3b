//! Filters decide, the funnel counts (STYLE.md habit 4).
//!
//! A [`Filter`] looks at the candidates still alive and returns one [`Decision`] per candidate
//! (keep, or drop with a short reason and a detail for a person); it may annotate the ones it
//! keeps (scores). The [`Funnel`] owns the counters and the exclusion records: it applies
//! filters in order, removes what they drop, and reports in/out per filter and drops per reason,
//! summed over the batches of a streaming run.

use std::collections::BTreeMap;

use distill_core::records::Exclusion;

use crate::candidate::Candidate;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep,
    Drop { reason: &'static str, detail: String },
}

impl Decision {
    pub fn drop(reason: &'static str, detail: impl Into<String>) -> Self {
        Decision::Drop { reason, detail: detail.into() }
    }
}

pub trait Filter {
    fn name(&self) -> &'static str;
    /// One decision per candidate, in order.
    fn decide(&mut self, candidates: &mut [Candidate]) -> Result<Vec<Decision>>;
}

/// A filter that judges each candidate on its own.
pub struct PerRecord<F: Fn(&Candidate) -> Decision> {
    pub name: &'static str,
    pub rule: F,
}

impl<F: Fn(&Candidate) -> Decision> Filter for PerRecord<F> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn decide(&mut self, candidates: &mut [Candidate]) -> Result<Vec<Decision>> {
        Ok(candidates.iter().map(|c| (self.rule)(c)).collect())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    pub filter: &'static str,
    #[serde(rename = "in")]
    pub input: usize,
    pub dropped: usize,
    pub out: usize,
}

/// Counts over every batch of candidates the funnel saw; exclusions until [`Funnel::take_exclusions`].
#[derive(Default)]
pub struct Funnel {
    /// One step per filter, in the order the filters first ran, summed over batches.
    pub steps: Vec<Step>,
    /// filter -> reason -> count.
    pub dropped: BTreeMap<&'static str, BTreeMap<&'static str, usize>>,
    /// (candidate ordinal, why it was dropped), in the order decided.
    exclusions: Vec<(u64, Exclusion)>,
}

impl Funnel {
    /// Applies `filter` to `alive`, keeping what it keeps.
    pub fn apply(&mut self, filter: &mut dyn Filter, alive: &mut Vec<Candidate>) -> Result<()> {
        let input = alive.len();
        let decisions = filter.decide(alive)?;
        assert_eq!(decisions.len(), alive.len(), "filter {} returned a decision per candidate", filter.name());
        let mut kept = Vec::with_capacity(alive.len());
        for (c, d) in std::mem::take(alive).into_iter().zip(decisions) {
            match d {
                Decision::Keep => kept.push(c),
                Decision::Drop { reason, detail } => {
                    *self.dropped.entry(filter.name()).or_default().entry(reason).or_default() += 1;
                    self.exclusions.push((c.ordinal, Exclusion { id: c.id.clone(), filter: filter.name().into(), reason: reason.into(), detail }));
                }
            }
        }
        *alive = kept;
        let (name, out) = (filter.name(), alive.len());
        match self.steps.iter_mut().find(|s| s.filter == name) {
            Some(s) => {
                s.input += input;
                s.dropped += input - out;
                s.out += out;
            }
            None => self.steps.push(Step { filter: name, input, dropped: input - out, out }),
        }
        Ok(())
    }

    /// The exclusions decided since the last call, in candidate order.
    pub fn take_exclusions(&mut self) -> Vec<(u64, Exclusion)> {
        let mut e = std::mem::take(&mut self.exclusions);
        e.sort_by_key(|(ordinal, _)| *ordinal);
        e
    }
}
