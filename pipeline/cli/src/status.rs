//! `distill status`: one line per stage, and why a stale stage is stale.

use std::fmt::Write;

use distill_core::{StageState, StageStatus};

/// The status table as text (stdout).
pub fn table(statuses: &[StageStatus]) -> String {
    let width = statuses.iter().map(|s| s.name.len()).max().unwrap_or(5).max(5);
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {:<11}  details", "stage", "state");
    for s in statuses {
        let (state, details) = match &s.state {
            StageState::UpToDate => ("up to date", s.last_elapsed_secs.map(|t| format!("last run took {t:.1} s")).unwrap_or_default()),
            StageState::NeverRun => ("never run", String::new()),
            StageState::Stale(why) => ("stale", why.join("; ")),
        };
        let _ = writeln!(out, "{:<width$}  {:<11}  {}", s.name, state, details);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_why_a_stage_is_stale() {
        let rows = vec![
            StageStatus { name: "prompts", state: StageState::UpToDate, fingerprint: "a".into(), last_elapsed_secs: Some(1.25) },
            StageStatus { name: "teacher", state: StageState::Stale(vec!["config temperature: 0.7 -> 0.2".into()]), fingerprint: "b".into(), last_elapsed_secs: Some(3.0) },
            StageStatus { name: "filter", state: StageState::NeverRun, fingerprint: "c".into(), last_elapsed_secs: None },
        ];
        assert_eq!(
            table(&rows),
            "stage    state        details\n\
             prompts  up to date   last run took 1.2 s\n\
             teacher  stale        config temperature: 0.7 -> 0.2\n\
             filter   never run    \n"
        );
    }
}
