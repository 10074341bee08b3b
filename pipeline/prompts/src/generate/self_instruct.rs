//! Self-Instruct (Wang et al., 2023): the teacher writes new tasks after a few examples drawn
//! from a pool that starts as the seed tasks and grows with every round's output, so later
//! rounds move further from the seeds.
//!
//! Per round `r` and request `j`: examples are drawn with the stream `self_instruct:r:j`; the
//! answer is split into tasks at lines starting `Task <k>:` (also `<k>.` / `<k>)`); each task
//! of 20-2000 characters becomes a prompt. The duplicates it will produce are left to the
//! stage's dedup.

use std::collections::BTreeMap;

use serde_json::Value;

use super::teacher::{classify, request, Answer, Teacher};
use super::{excerpt, Generated};
use crate::config::SelfInstructConfig;
use crate::data::SeedTask;
use crate::error::Result;
use crate::record::{chat, Provenance};
use crate::rng::Rng;

pub const GENERATOR: &str = "self_instruct";

fn request_text(examples: &[String], k: usize) -> String {
    let mut s = String::from("You are helping build a dataset of programming tasks for training a code model.\nHere are some example tasks:\n\n");
    for (i, e) in examples.iter().enumerate() {
        s.push_str(&format!("Task {}: {}\n\n", i + 1, e.trim()));
    }
    s.push_str(&format!(
        "Write {k} new tasks that differ from the examples and from each other: vary the topic, the data structures and the difficulty. \
         Each task must be self-contained (state every input it needs) and answerable with code. \
         When the answer is a Python function, ask for `assert` tests in a separate code block.\n\
         Number them \"Task 1:\", \"Task 2:\", ... and write nothing else."
    ));
    s
}

/// The tasks of an answer (see the module docs).
pub fn parse_tasks(answer: &str) -> Vec<String> {
    let mut tasks: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in answer.lines() {
        if let Some(rest) = task_start(line) {
            if let Some(t) = current.take() {
                tasks.push(t);
            }
            current = Some(rest.to_string());
        } else if let Some(t) = current.as_mut() {
            t.push('\n');
            t.push_str(line);
        }
    }
    tasks.extend(current);
    tasks.into_iter().map(|t| t.trim().to_string()).filter(|t| (20..=2000).contains(&t.chars().count())).collect()
}

/// `Task 3: text`, `**Task 3:** text`, `3. text`, `3) text` -> `text`.
fn task_start(line: &str) -> Option<&str> {
    let l = line.trim_start().trim_start_matches(['*', '#', ' ']);
    let l = l.strip_prefix("Task").map_or(l, str::trim_start);
    let digits = l.len() - l.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return None;
    }
    let rest = &l[digits..];
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('.')).or_else(|| rest.strip_prefix(')'))?;
    Some(rest.trim_start_matches('*').trim())
}

pub fn generate(cfg: &SelfInstructConfig, seeds: &[SeedTask], seed: u64, system: &str, teacher: &mut Teacher) -> Result<Generated> {
    let mut out = Generated::default();
    let mut pool: Vec<String> = seeds.iter().map(|s| s.instruction.clone()).collect();
    if pool.is_empty() {
        tracing::warn!("self_instruct: no seed tasks (prompts/seed_tasks.jsonl or user files); nothing to do");
        return Ok(out);
    }
    for round in 1..=cfg.rounds {
        let mut requests = Vec::new();
        for j in 0..cfg.requests_per_round {
            let mut rng = Rng::derive(seed, &format!("{GENERATOR}:{round}:{j}"));
            let examples = rng.sample(&pool, cfg.examples_per_request);
            let extra = BTreeMap::from([("round".to_string(), Value::from(round))]);
            requests.push(request(GENERATOR, request_text(&examples, cfg.tasks_per_request), extra));
        }
        let answers = teacher.ask(GENERATOR, &requests, cfg.temperature, cfg.max_tokens)?;
        let mut new_tasks = Vec::new();
        for (req, answer) in requests.into_iter().zip(answers) {
            match answer {
                Answer::Failed { reason, message } => out.drop(req, GENERATOR, &format!("teacher_{reason}"), message),
                Answer::Text(text) => {
                    let tasks = parse_tasks(&text);
                    if tasks.is_empty() {
                        out.drop(req, GENERATOR, "unparseable_answer", format!("no \"Task k:\" lines in: {}", excerpt(&text, 200)));
                        continue;
                    }
                    for task in tasks {
                        let (task_type, language) = classify(&task);
                        let p = Provenance { generator: GENERATOR, task_type, language, difficulty: "unrated", asks_for_tests: task.contains("test") };
                        let extra = BTreeMap::from([("round".to_string(), Value::from(round)), ("request".to_string(), Value::from(req.id.as_str()))]);
                        new_tasks.push(task.clone());
                        out.prompts.push(chat(system, task, &p, extra));
                    }
                }
            }
        }
        pool.extend(new_tasks);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_split_at_numbered_lines() {
        let answer = "Task 1: Write a function that merges two sorted lists.\nKeep it linear.\n**Task 2:** Explain how Python dictionaries resolve hash collisions.\n3. Short.\n4) Implement a ring buffer class with push and pop methods.";
        assert_eq!(
            parse_tasks(answer),
            vec![
                "Write a function that merges two sorted lists.\nKeep it linear.",
                "Explain how Python dictionaries resolve hash collisions.",
                "Implement a ring buffer class with push and pop methods."
            ]
        );
        assert!(parse_tasks("I cannot help with that.").is_empty());
    }
}
