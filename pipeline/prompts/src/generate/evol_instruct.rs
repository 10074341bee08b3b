//! Evol-Instruct (WizardLM, Xu et al., 2023; WizardCoder's code operators): prompts rewritten
//! by the teacher, k rounds deep. Depth operators make a prompt harder (add a constraint,
//! deepen, concretise, ask for multi-step reasoning, a complexity requirement, a misleading
//! erroneous reference); the breadth operator writes a new, rarer prompt of the same domain.
//!
//! Round 1 evolves `base_prompts` prompts drawn from the other generators' (decontaminated)
//! output; round i evolves what round i-1 produced. Each prompt's operator is drawn with the
//! stream `evol_instruct:<round>:<prompt id>`. WizardLM's elimination step drops an evolution
//! that is empty or short, unchanged, leaks the rewriting instructions, or is a refusal; each
//! such drop is recorded with its reason and the chain stops there.

use std::collections::BTreeMap;

use distill_core::records::PromptRecord;
use distill_textdedup::normalize::normalize;
use serde_json::Value;

use super::teacher::{request, Answer, Teacher};
use super::{excerpt, Generated};
use crate::config::{EvolInstructConfig, EvolOp};
use crate::error::Result;
use crate::record::{chat, meta_str, user_text, Provenance};
use crate::rng::Rng;

pub const GENERATOR: &str = "evol_instruct";

fn method(op: EvolOp) -> &'static str {
    match op {
        EvolOp::AddConstraints => "Add one more constraint or requirement to #The Given Prompt#.",
        EvolOp::Deepen => "If #The Given Prompt# contains inquiries about certain issues, increase the depth and breadth of the inquiry.",
        EvolOp::Concretize => "Replace general concepts with more specific concepts.",
        EvolOp::IncreaseReasoning => "If #The Given Prompt# can be solved with just a few simple thinking processes, rewrite it to explicitly request multiple-step reasoning.",
        EvolOp::ComplexityRequirement => "Propose a higher time or space complexity requirement (but not an unreasonable one).",
        EvolOp::Misdirection => "Provide a piece of erroneous code as a reference to increase misdirection.",
        EvolOp::Breadth => "",
    }
}

fn request_text(op: EvolOp, prompt: &str) -> String {
    if op == EvolOp::Breadth {
        return format!(
            "I want you to act as a Prompt Creator.\n\
             Your goal is to draw inspiration from the #Given Prompt# to create a brand new programming prompt.\n\
             This new prompt should belong to the same domain as the #Given Prompt# but be even more rare.\n\
             The length and complexity of the #Created Prompt# should be similar to that of the #Given Prompt#.\n\
             The #Created Prompt# must be reasonable and must be understood and responded to by humans.\n\
             '#Given Prompt#', '#Created Prompt#', 'given prompt' and 'created prompt' are not allowed to appear in #Created Prompt#.\n\
             #Given Prompt#:\n{prompt}\n#Created Prompt#:\n"
        );
    }
    format!(
        "I want you to act as a Prompt Rewriter.\n\
         Your objective is to rewrite a given programming prompt into a more complex version, to make it a bit harder for famous AI systems to handle.\n\
         But the rewritten prompt must be reasonable and must be understood and responded to by humans.\n\
         Your rewriting cannot omit the non-text parts such as tables and code in #The Given Prompt#, nor the input it gives.\n\
         You SHOULD complicate the given prompt using the following method:\n{}\n\
         Try not to make the #Rewritten Prompt# verbose: it can only add 10 to 20 words to #The Given Prompt#.\n\
         '#The Given Prompt#', '#Rewritten Prompt#', 'given prompt' and 'rewritten prompt' are not allowed to appear in #Rewritten Prompt#.\n\
         #The Given Prompt#:\n{prompt}\n#Rewritten Prompt#:\n",
        method(op)
    )
}

/// WizardLM's elimination: `Err(reason)` when an evolution is unusable.
pub fn eliminate(parent: &str, evolved: &str) -> std::result::Result<String, &'static str> {
    let text = evolved.trim();
    let text = ["#Rewritten Prompt#:", "#Created Prompt#:", "Rewritten Prompt:", "Created Prompt:"].iter().find_map(|p| text.strip_prefix(p)).unwrap_or(text).trim();
    let lower = text.to_lowercase();
    if text.chars().count() < 20 {
        return Err("too_short");
    }
    if normalize(text) == normalize(parent) {
        return Err("unchanged");
    }
    if ["#the given prompt#", "#rewritten prompt#", "#given prompt#", "#created prompt#", "given prompt", "rewritten prompt", "created prompt"].iter().any(|w| lower.contains(w)) {
        return Err("leaked_instructions");
    }
    if ["sorry", "as an ai", "i cannot", "i can't"].iter().any(|w| lower.starts_with(w)) {
        return Err("refusal");
    }
    Ok(text.to_string())
}

pub fn generate(cfg: &EvolInstructConfig, ops: &[EvolOp], bases: &[PromptRecord], seed: u64, system: &str, teacher: &mut Teacher) -> Result<Generated> {
    let mut out = Generated::default();
    let mut rng = Rng::derive(seed, GENERATOR);
    let mut current: Vec<PromptRecord> = rng.sample(bases, cfg.base_prompts);
    current.sort_by(|a, b| a.id.cmp(&b.id));
    for round in 1..=cfg.rounds {
        if current.is_empty() {
            break;
        }
        let mut chosen = Vec::new();
        let mut requests = Vec::new();
        for p in &current {
            let op = ops[Rng::derive(seed, &format!("{GENERATOR}:{round}:{}", p.id)).below(ops.len())];
            let extra = BTreeMap::from([("round".to_string(), Value::from(round)), ("operator".to_string(), Value::from(op.name()))]);
            requests.push(request(GENERATOR, request_text(op, &user_text(p)), extra));
            chosen.push(op);
        }
        let answers = teacher.ask(GENERATOR, &requests, cfg.temperature, cfg.max_tokens)?;
        let mut next = Vec::new();
        for (((parent, op), req), answer) in current.iter().zip(chosen).zip(requests).zip(answers) {
            let text = match answer {
                Answer::Failed { reason, message } => {
                    out.drop(req, GENERATOR, &format!("teacher_{reason}"), message);
                    continue;
                }
                Answer::Text(t) => t,
            };
            let root = parent.meta.get("evol_root").cloned().unwrap_or_else(|| Value::from(parent.id.as_str()));
            let difficulty = meta_str(parent, "difficulty", "unrated").to_string();
            let task_type = meta_str(parent, "task_type", "implement_from_spec").to_string();
            let language = meta_str(parent, "language", "python").to_string();
            let asks_for_tests = parent.meta.get("asks_for_tests").and_then(Value::as_bool).unwrap_or(false);
            let p = Provenance { generator: GENERATOR, task_type: &task_type, language: &language, difficulty: &difficulty, asks_for_tests };
            let extra = BTreeMap::from([
                ("round".to_string(), Value::from(round)),
                ("operator".to_string(), Value::from(op.name())),
                ("parent".to_string(), Value::from(parent.id.as_str())),
                ("evol_root".to_string(), root),
            ]);
            match eliminate(&user_text(parent), &text) {
                Ok(evolved) => {
                    let rec = chat(system, evolved, &p, extra);
                    next.push(rec.clone());
                    out.prompts.push(rec);
                }
                Err(why) => {
                    let rec = chat(system, text.clone(), &p, extra);
                    out.drop(rec, GENERATOR, &format!("evol_{why}"), format!("{} of {}: {}", op.name(), parent.id, excerpt(&text, 200)));
                }
            }
        }
        current = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elimination_follows_wizardlm() {
        let parent = "Write a function that reverses a string.";
        assert_eq!(
            eliminate(parent, "#Rewritten Prompt#: Write a function that reverses a string in place without slicing.").unwrap(),
            "Write a function that reverses a string in place without slicing."
        );
        assert_eq!(eliminate(parent, "write a function that  reverses a string."), Err("unchanged"));
        assert_eq!(eliminate(parent, "Short."), Err("too_short"));
        assert_eq!(eliminate(parent, "Here is the rewritten prompt: reverse a string, but faster."), Err("leaked_instructions"));
        assert_eq!(eliminate(parent, "Sorry, I can not rewrite this prompt for you today."), Err("refusal"));
    }
}
