//! OSS-Instruct (Magicoder, Wei et al., 2024): the teacher writes a self-contained problem
//! inspired by a real code snippet from the corpus, so the problems inherit the variety of
//! real code instead of the teacher's favourite topics.
//!
//! Snippets are drawn with the stream `oss_instruct`; the answer's `[Problem Description]`
//! section (up to `[Solution]`) becomes the prompt, followed by a fixed request for a Python
//! solution and `assert` tests so the filter can run them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::teacher::{request, Answer, Teacher};
use super::{excerpt, Generated};
use crate::config::OssInstructConfig;
use crate::corpus::Seed;
use crate::error::Result;
use crate::record::{chat, Provenance};
use crate::rng::Rng;

pub const GENERATOR: &str = "oss_instruct";

pub const ANSWER_FORMAT: &str = "Give your solution in a ```python code block, then `assert` tests for it in a second ```python code block.";

fn request_text(code: &str) -> String {
    format!(
        "You are exceptionally skilled at crafting high-quality programming problems.\n\
         Gain inspiration from the following random code snippet to create a high-quality programming problem. \
         Present your output in two distinct sections: [Problem Description] and [Solution].\n\n\
         Code snippet for inspiration:\n```python\n{}\n```\n\n\
         Guidelines for each section:\n\
         1. [Problem Description]: This should be **completely self-contained**, providing all the contextual information one needs to understand and solve the problem. \
         Assume common programming knowledge but ensure that any specific context, variables, or code snippets pertinent to this problem are explicitly included. \
         The problem must be solvable in Python with a function whose behaviour can be checked by tests.\n\
         2. [Solution]: Offer a comprehensive, **correct** solution that accurately addresses the [Problem Description] you provided.",
        code.trim_end()
    )
}

/// The text between `[Problem Description]` and `[Solution]` (or the end), trimmed.
pub fn parse_problem(answer: &str) -> Option<String> {
    let start = answer.find("[Problem Description]")? + "[Problem Description]".len();
    let rest = &answer[start..];
    let end = rest.find("[Solution]").unwrap_or(rest.len());
    let problem = rest[..end].trim_start_matches([':', '*']).trim().trim_end_matches(['#', '*']).trim();
    (problem.chars().count() >= 30).then(|| problem.to_string())
}

pub fn generate(cfg: &OssInstructConfig, seeds: &[Seed], seed: u64, system: &str, teacher: &mut Teacher) -> Result<Generated> {
    let mut out = Generated::default();
    let mut rng = Rng::derive(seed, GENERATOR);
    let chosen = rng.sample(seeds, cfg.seeds);
    let requests: Vec<_> = chosen.iter().map(|s| request(GENERATOR, request_text(&s.code), BTreeMap::from([("seed".to_string(), Value::from(s.origin()))]))).collect();
    let answers = teacher.ask(GENERATOR, &requests, cfg.temperature, cfg.max_tokens)?;
    for ((req, s), answer) in requests.into_iter().zip(&chosen).zip(answers) {
        match answer {
            Answer::Failed { reason, message } => out.drop(req, GENERATOR, &format!("teacher_{reason}"), message),
            Answer::Text(text) => match parse_problem(&text) {
                None => out.drop(req, GENERATOR, "unparseable_answer", format!("no [Problem Description] section in: {}", excerpt(&text, 200))),
                Some(problem) => {
                    let p = Provenance { generator: GENERATOR, task_type: "implement_from_spec", language: "python", difficulty: s.difficulty(), asks_for_tests: true };
                    let extra = BTreeMap::from([
                        ("seed".to_string(), Value::from(s.origin())),
                        ("seed_name".to_string(), Value::from(s.name.as_str())),
                        ("request".to_string(), Value::from(req.id.as_str())),
                    ]);
                    out.prompts.push(chat(system, format!("{problem}\n\n{ANSWER_FORMAT}"), &p, extra));
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_section_is_extracted() {
        let a = "Sure!\n\n[Problem Description]\nYou are given a list of log lines ... write a function that counts errors per hour.\n\n[Solution]\n```python\n...```";
        assert_eq!(parse_problem(a).unwrap(), "You are given a list of log lines ... write a function that counts errors per hour.");
        assert_eq!(parse_problem("[Problem Description]: too short [Solution]"), None);
        assert_eq!(parse_problem("no sections"), None);
    }
}
