//! The run's funnel: how many records each step let through and, for each step that dropped
//! some, how many for which reason. One model for both views of a run: the static report
//! renders it as a table of bars, the dashboard serves it as JSON (`/api/v1/funnel`) and draws
//! the same bars live.
//!
//! It is read from the stages' `stats.json` as they write them:
//!
//! - prompts: `candidates` -> `kept`, drops in `dropped_by_reason` (`{reason: n}`);
//! - teacher: `prompts` -> `completed`, failures in `failed_by_reason`;
//! - filter: `samples` (the teacher's answers) through each entry of `funnel`
//!   (`{filter, in, out, dropped}`, in the order the filters ran), drops in
//!   `dropped_by_reason` (`{filter: {reason: n}}`), ending at `kept`;
//! - shards: `kept` -> `total_rows` (`rows.train`, `rows.validation`), skips in `skipped`.
//!
//! A stage that has not run contributes no step; a count missing from a stats file is a step
//! left out rather than a zero that was never measured.

use serde::Serialize;
use serde_json::Value;

/// One step of the funnel: `input` records came in, `output` went on, and the difference is
/// broken down by reason (largest first). Reasons may not add up to the difference when a stage
/// counts its drops coarser than per record (then `unexplained` holds the rest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The stage whose `stats.json` this step is read from.
    pub stage: String,
    /// What the step does, for a person: `prompts generated`, `filter: parse`.
    pub label: String,
    pub input: u64,
    pub output: u64,
    pub reasons: Vec<Reason>,
    /// Drops not attributed to any reason (`input - output - sum(reasons)`, at least 0).
    pub unexplained: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub reason: String,
    pub count: u64,
}

/// The steps in pipeline order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Funnel {
    pub steps: Vec<Step>,
}

impl Step {
    fn new(stage: &str, label: impl Into<String>, input: u64, output: u64, mut reasons: Vec<Reason>) -> Step {
        reasons.retain(|r| r.count > 0);
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        let explained: u64 = reasons.iter().map(|r| r.count).sum();
        let unexplained = input.saturating_sub(output).saturating_sub(explained);
        Step { stage: stage.to_string(), label: label.into(), input, output, reasons, unexplained }
    }

    pub fn dropped(&self) -> u64 {
        self.input.saturating_sub(self.output)
    }
}

/// `{reason: n}` as reasons; nested objects (`{group: {reason: n}}`) become `group/reason`.
fn reasons_of(v: Option<&Value>) -> Vec<Reason> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<Reason>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}/{k}") };
                    walk(&name, v, out);
                }
            }
            v => {
                if let Some(n) = v.as_u64() {
                    out.push(Reason { reason: prefix.to_string(), count: n });
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Some(v) = v {
        walk("", v, &mut out);
    }
    out
}

fn count(stats: &Value, key: &str) -> Option<u64> {
    stats.get(key)?.as_u64()
}

impl Funnel {
    /// Builds the funnel from the stats of the stages that ran; `stats(stage)` gives a stage's
    /// parsed `stats.json`, or `None` when it has none.
    pub fn from_stats<'a>(stats: impl Fn(&str) -> Option<&'a Value>) -> Funnel {
        let mut steps = Vec::new();
        if let Some(p) = stats("prompts") {
            if let (Some(candidates), Some(kept)) = (count(p, "candidates"), count(p, "kept")) {
                steps.push(Step::new("prompts", "prompts generated", candidates, kept, reasons_of(p.get("dropped_by_reason"))));
            }
        }
        if let Some(t) = stats("teacher") {
            if let (Some(prompts), Some(completed)) = (count(t, "prompts"), count(t, "completed")) {
                steps.push(Step::new("teacher", "prompts answered by the teacher", prompts, completed, reasons_of(t.get("failed_by_reason"))));
            }
        }
        if let Some(f) = stats("filter") {
            let by_filter = f.get("dropped_by_reason");
            for entry in f.get("funnel").and_then(Value::as_array).into_iter().flatten() {
                let (Some(name), Some(input), Some(output)) = (entry.get("filter").and_then(Value::as_str), count(entry, "in"), count(entry, "out")) else { continue };
                let reasons = reasons_of(by_filter.and_then(|b| b.get(name)));
                steps.push(Step::new("filter", format!("filter: {name}"), input, output, reasons));
            }
        }
        if let Some(s) = stats("shards") {
            if let Some(rows) = count(s, "total_rows") {
                let kept = stats("filter").and_then(|f| count(f, "kept")).unwrap_or(rows);
                steps.push(Step::new("shards", "shard rows (train + validation)", kept, rows, reasons_of(s.get("skipped"))));
            }
        }
        Funnel { steps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_filter_is_a_step_with_its_reasons_largest_first() {
        let prompts = json!({"candidates": 60, "kept": 56, "dropped_by_reason": {"exact_duplicate": 3, "near_duplicate": 1}});
        let teacher = json!({"prompts": 56, "completed": 55, "failed": 1, "failed_by_reason": {"bad_request": 1}});
        let filter = json!({
            "samples": 110, "kept": 40,
            "funnel": [
                {"filter": "length", "in": 110, "out": 100, "dropped": 10},
                {"filter": "parse", "in": 100, "out": 40, "dropped": 60},
            ],
            "dropped_by_reason": {"length": {"too_long": 10}, "parse": {"no_code": 52, "syntax_error": 8}},
        });
        let shards = json!({"total_rows": 39, "skipped": {"empty_completion": 1}});
        let all = [("prompts", prompts), ("teacher", teacher), ("filter", filter), ("shards", shards)];
        let f = Funnel::from_stats(|s| all.iter().find(|(n, _)| *n == s).map(|(_, v)| v));
        let labels: Vec<&str> = f.steps.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["prompts generated", "prompts answered by the teacher", "filter: length", "filter: parse", "shard rows (train + validation)"]);
        let parse = &f.steps[3];
        assert_eq!((parse.input, parse.output, parse.dropped(), parse.unexplained), (100, 40, 60, 0));
        assert_eq!(parse.reasons, vec![Reason { reason: "no_code".into(), count: 52 }, Reason { reason: "syntax_error".into(), count: 8 }]);
        assert_eq!(f.steps[0].reasons[0], Reason { reason: "exact_duplicate".into(), count: 3 });
        assert_eq!((f.steps[4].input, f.steps[4].output, f.steps[4].reasons.len()), (40, 39, 1));
    }

    #[test]
    fn drops_without_a_reason_are_counted_as_unexplained_and_missing_stages_leave_no_step() {
        let filter = json!({"funnel": [{"filter": "consistency", "in": 10, "out": 4}], "dropped_by_reason": {"consistency": {"failed_tests": 5}}});
        let f = Funnel::from_stats(|s| (s == "filter").then_some(&filter));
        assert_eq!(f.steps.len(), 1);
        assert_eq!(f.steps[0].unexplained, 1);
    }
}
