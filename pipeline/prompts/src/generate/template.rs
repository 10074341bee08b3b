//! The `template` generator: every template filled from specs or corpus seeds, chosen at
//! random without repetition (a stream per template, so adding a template or a spec does not
//! change the other templates' picks more than it must).

use std::collections::BTreeMap;

use distill_core::records::PromptRecord;
use serde_json::Value;

use crate::corpus::Seed;
use crate::data::Spec;
use crate::record::{chat, Provenance};
use crate::rng::Rng;
use crate::templates::{Source, Template};

/// How a language is written in prose.
pub fn display_language(lang: &str) -> String {
    match lang {
        "python" => "Python".into(),
        "javascript" => "JavaScript".into(),
        "typescript" => "TypeScript".into(),
        "cpp" => "C++".into(),
        "csharp" => "C#".into(),
        other => {
            let mut c = other.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        }
    }
}

/// All template prompts, in template order then fill order.
pub fn generate(templates: &[Template], specs: &[Spec], seeds: &[Seed], per_template: usize, seed: u64, system: &str) -> Vec<PromptRecord> {
    let mut out = Vec::new();
    for t in templates {
        let mut rng = Rng::derive(seed, &format!("template:{}", t.id));
        let wants = |d: &str| t.difficulty == "any" || t.difficulty == d;
        let lang = display_language(&t.language);
        match t.source {
            Source::Spec => {
                let eligible: Vec<&Spec> = specs.iter().filter(|s| wants(&s.difficulty)).collect();
                for s in rng.sample(&eligible, per_template) {
                    let values = BTreeMap::from([
                        ("language", lang.clone()),
                        ("spec", s.description.clone()),
                        ("function_name", s.name.clone()),
                        ("signature", s.signature.clone()),
                        ("stub", s.stub()),
                        ("difficulty", s.difficulty.clone()),
                    ]);
                    let extra = BTreeMap::from([("template".to_string(), Value::from(t.id.as_str())), ("spec".to_string(), Value::from(s.name.as_str()))]);
                    out.push(record(t, &values, &s.difficulty, extra, system));
                }
            }
            Source::Corpus => {
                let needs_stub = t.placeholders.contains("stub");
                let needs_bug = t.placeholders.contains("buggy_code");
                let eligible: Vec<&Seed> = seeds
                    .iter()
                    .filter(|s| wants(s.difficulty()) && (!needs_stub || !s.stub.is_empty()) && (!needs_bug || !s.mutations.is_empty()))
                    .filter(|s| t.seed_kinds.is_empty() || t.seed_kinds.contains(&s.kind))
                    .collect();
                for s in rng.sample(&eligible, per_template) {
                    let mut values = BTreeMap::from([
                        ("language", lang.clone()),
                        ("code", s.code.trim_end().to_string()),
                        ("stub", s.stub.trim_end().to_string()),
                        ("name", s.name.clone()),
                        ("kind", s.kind.clone()),
                        ("difficulty", s.difficulty().to_string()),
                    ]);
                    let mut extra = BTreeMap::from([("template".to_string(), Value::from(t.id.as_str())), ("seed".to_string(), Value::from(s.origin()))]);
                    if needs_bug {
                        let mut bug_rng = Rng::derive(seed, &format!("bug:{}:{}", t.id, s.origin()));
                        let Some((code, what)) = s.buggy(&mut bug_rng) else { continue };
                        values.insert("buggy_code", code.trim_end().to_string());
                        extra.insert("mutation".into(), what.into());
                    }
                    out.push(record(t, &values, s.difficulty(), extra, system));
                }
            }
        }
    }
    out
}

fn record(t: &Template, values: &BTreeMap<&str, String>, difficulty: &str, extra: BTreeMap<String, Value>, system: &str) -> PromptRecord {
    let p = Provenance { generator: "template", task_type: &t.task_type, language: &t.language, difficulty, asks_for_tests: t.asks_for_tests };
    chat(system, t.render(values), &p, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_prompts_and_every_placeholder_is_filled() {
        let root = distill_core::testing::repo_root();
        let templates = crate::templates::load_dir(&root.join("prompts/templates")).unwrap();
        let specs = crate::data::load_specs(&crate::builtin::DataText::read(&root.join("prompts/specs.jsonl")).unwrap()).unwrap();
        let seed = Seed {
            file: "m.py".into(),
            line: 3,
            end_line: 6,
            kind: "function".into(),
            name: "f".into(),
            code: "def f(a):\n    \"\"\"Doc.\"\"\"\n    x = a + 1\n    return x\n".into(),
            stub: "def f(a):\n    \"\"\"Doc.\"\"\"\n".into(),
            mutations: vec![(3, 10, "+".into(), "-".into())],
        };
        let a = generate(&templates, &specs, std::slice::from_ref(&seed), 3, 7, "");
        let b = generate(&templates, &specs, std::slice::from_ref(&seed), 3, 7, "");
        let c = generate(&templates, &specs, std::slice::from_ref(&seed), 3, 8, "");
        assert_eq!(a, b);
        assert_ne!(a, c);
        for r in &a {
            let text = r.text();
            assert!(!text.contains("{{"), "{text}");
        }
        let bug = a.iter().find(|r| r.meta["template"] == "py-fix-bug").unwrap();
        assert!(bug.text().contains("x = a - 1"), "{}", bug.text());
        assert_eq!(bug.meta["seed"], "m.py:3");
        assert_eq!(bug.meta["tests_runnable"], true);
    }
}
