//! Benchmark texts to decontaminate against, from `distill-benchmarks` (which checks each
//! vendored file's sha256), turned into plain [`Reference`]s. The prompts stage (on prompts)
//! and the filter stage (on teacher answers) both load their references here, so the two
//! decontaminate against exactly the same texts.
//!
//! Per task: the prompt, the natural-language text (matched as an exact substring too), the
//! canonical solution and the tests. For HumanEval-style docstrings the description before the
//! first `>>>` example is added as a second docstring, so a prompt that pastes the description
//! without the doctests is still caught by the substring test.

use crate::decontam::{RefKind, Reference};
use distill_benchmarks::{Benchmark, DataSource, TextKind};

/// `(benchmark name, sha256 of its data file)`.
pub type FileDigest = (String, String);

/// The references of `benchmarks`, loaded from `data`, and each file's sha256.
pub fn load(data: &DataSource, benchmarks: &[Benchmark]) -> Result<(Vec<Reference>, Vec<FileDigest>), distill_benchmarks::Error> {
    let mut refs = Vec::new();
    let mut digests = Vec::new();
    for &b in benchmarks {
        let ds = data.load(b)?;
        digests.push((b.name().to_string(), ds.sha256.clone()));
        for task in &ds.tasks {
            for (kind, text) in task.contamination_texts() {
                let kind = match kind {
                    TextKind::Prompt => RefKind::Prompt,
                    TextKind::Text => RefKind::Docstring,
                    TextKind::Solution => RefKind::Solution,
                    TextKind::Tests => RefKind::Test,
                };
                refs.push(Reference { benchmark: b.name().into(), task_id: task.task_id.clone(), kind, text: text.to_string() });
                if kind == RefKind::Docstring {
                    if let Some(head) = description_head(text) {
                        refs.push(Reference { benchmark: b.name().into(), task_id: task.task_id.clone(), kind, text: head });
                    }
                }
            }
        }
    }
    Ok((refs, digests))
}

/// The description before the first example marker, when there is one and it is not the whole.
fn description_head(text: &str) -> Option<String> {
    let cut = [">>>", "Example", "For example", "for example"].iter().filter_map(|m| text.find(m)).min()?;
    let head = text[..cut].trim();
    (!head.is_empty() && head.len() < text.trim().len()).then(|| head.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_heads_drop_the_examples() {
        assert_eq!(description_head("Add two numbers.\n>>> add(1, 2)\n3").as_deref(), Some("Add two numbers."));
        assert_eq!(description_head("No examples here."), None);
    }
}
