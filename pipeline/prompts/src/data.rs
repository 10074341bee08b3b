//! The JSONL inputs: problem specs, Self-Instruct seed tasks and user files. Every malformed
//! line is an error naming the file and the line and saying what the line should look like.

use std::collections::BTreeMap;
use std::path::Path;

use distill_core::records::{ChatMessage, PromptRecord};
use serde::Deserialize;

use crate::builtin::DataText;
use crate::error::{PromptsError, Result};

/// A problem for `source = "spec"` templates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Function (or class) name.
    pub name: String,
    /// Python signature (`def f(x: int) -> int`) or `class Name`.
    pub signature: String,
    pub description: String,
    /// easy | medium | hard.
    pub difficulty: String,
}

impl Spec {
    /// HumanEval-style header: the signature and the description as a docstring.
    pub fn stub(&self) -> String {
        let doc: Vec<String> = wrap(&self.description, 88).into_iter().map(|l| format!("    {l}")).collect();
        format!("{}:\n    \"\"\"\n{}\n    \"\"\"\n", self.signature, doc.join("\n"))
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in text.split_whitespace() {
        let last = lines.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + 1 + w.len() > width {
            lines.push(w.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(w);
        }
    }
    lines
}

/// A task description that seeds the teacher-driven generators.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedTask {
    pub instruction: String,
    /// `file:line` it came from.
    pub origin: String,
}

/// What a user file holds.
#[derive(Debug, Clone, Default)]
pub struct UserInput {
    /// Prompts, with `meta.source = "file:line"` added; ids as given, else the content digest.
    pub prompts: Vec<PromptRecord>,
    pub seed_tasks: Vec<SeedTask>,
}

/// Non-blank lines with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i + 1, l))
}

fn bad(path: &Path, line: usize, message: String) -> PromptsError {
    PromptsError::DataLine { path: path.to_path_buf(), line, message }
}

pub fn load_specs(file: &DataText) -> Result<Vec<Spec>> {
    let path = file.path.as_path();
    let mut out = Vec::new();
    for (n, l) in lines(&file.text) {
        let s: Spec = serde_json::from_str(l).map_err(|e| bad(path, n, format!("{e}; a spec line is {{\"name\", \"signature\", \"description\", \"difficulty\"}}")))?;
        if !["easy", "medium", "hard"].contains(&s.difficulty.as_str()) {
            return Err(bad(path, n, format!("difficulty '{}' must be easy, medium or hard", s.difficulty)));
        }
        out.push(s);
    }
    Ok(out)
}

pub fn load_seed_tasks(file: &DataText) -> Result<Vec<SeedTask>> {
    let path = file.path.as_path();
    let mut out = Vec::new();
    for (n, l) in lines(&file.text) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Line {
            instruction: String,
        }
        let t: Line = serde_json::from_str(l).map_err(|e| bad(path, n, format!("{e}; a seed task line is {{\"instruction\": \"...\"}}")))?;
        out.push(SeedTask { instruction: t.instruction, origin: format!("{}:{n}", path.display()) });
    }
    Ok(out)
}

/// Reads a user file: prompts and seed tasks (see `PromptsConfig::user_files`).
pub fn load_user_file(path: &Path) -> Result<UserInput> {
    let mut out = UserInput::default();
    const SHAPE: &str = "a line is {\"prompt\": \"...\"} or {\"messages\": [{\"role\", \"content\"}, ...]} (optional \"id\", \"meta\"), or a seed task {\"instruction\": \"...\"}";
    let file = DataText::read(path)?;
    for (n, l) in lines(&file.text) {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| bad(path, n, format!("not JSON: {e}; {SHAPE}")))?;
        let Some(obj) = v.as_object() else { return Err(bad(path, n, format!("not a JSON object; {SHAPE}"))) };
        if let Some(k) = obj.keys().find(|k| !["id", "prompt", "messages", "meta", "instruction"].contains(&k.as_str())) {
            return Err(bad(path, n, format!("unknown key '{k}'; {SHAPE}")));
        }
        let origin = format!("{}:{n}", path.display());
        if let Some(instr) = obj.get("instruction") {
            let (Some(text), false) = (instr.as_str(), obj.contains_key("prompt") || obj.contains_key("messages")) else {
                return Err(bad(path, n, format!("\"instruction\" must be a string and comes alone; {SHAPE}")));
            };
            out.seed_tasks.push(SeedTask { instruction: text.to_string(), origin });
            continue;
        }
        let messages: Option<Vec<ChatMessage>> = match obj.get("messages") {
            Some(m) => Some(serde_json::from_value(m.clone()).map_err(|e| bad(path, n, format!("\"messages\": {e}; {SHAPE}")))?),
            None => None,
        };
        let prompt = match obj.get("prompt") {
            Some(p) => Some(p.as_str().ok_or_else(|| bad(path, n, format!("\"prompt\" must be a string; {SHAPE}")))?.to_string()),
            None => None,
        };
        let mut meta: BTreeMap<String, serde_json::Value> = match obj.get("meta") {
            Some(m) => serde_json::from_value(m.clone()).map_err(|e| bad(path, n, format!("\"meta\" must be an object: {e}")))?,
            None => BTreeMap::new(),
        };
        meta.insert("source".into(), origin.clone().into());
        let mut rec = PromptRecord { id: String::new(), messages, prompt, meta };
        rec.id = match obj.get("id") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(other) if !other.is_null() => return Err(bad(path, n, "\"id\" must be a non-empty string".into())),
            _ => crate::record::content_id(&rec),
        };
        rec.validate().map_err(|e| bad(path, n, format!("{e}; {SHAPE}")))?;
        out.prompts.push(rec);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_files_hold_prompts_and_seed_tasks_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"def f():\"}\n\n{\"id\": \"mine\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"meta\": {\"team\": \"a\"}}\n{\"instruction\": \"Write a parser.\"}\n",
        )
        .unwrap();
        let u = load_user_file(&p).unwrap();
        assert_eq!(u.prompts.len(), 2);
        assert_eq!(u.prompts[0].id.len(), 16);
        assert_eq!(u.prompts[1].id, "mine");
        assert_eq!(u.prompts[1].meta["team"], "a");
        assert_eq!(u.prompts[1].meta["source"], format!("{}:3", p.display()));
        assert_eq!(u.seed_tasks[0].instruction, "Write a parser.");

        for (body, line, what) in [
            ("{\"prompt\": \"ok\"}\n{\"prompt\": 3}\n", 2, "\"prompt\" must be a string"),
            ("{\"prompt\": \"ok\"}\nnot json\n", 2, "not JSON"),
            ("{\"promt\": \"x\"}\n", 1, "unknown key 'promt'"),
            ("{\"messages\": []}\n", 1, "non-empty"),
        ] {
            std::fs::write(&p, body).unwrap();
            let e = load_user_file(&p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{}:{line}:", p.display())) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn the_shipped_specs_and_seed_tasks_load() {
        let root = distill_core::testing::repo_root();
        let specs = load_specs(&DataText::read(&root.join("prompts/specs.jsonl")).unwrap()).unwrap();
        assert!(specs.len() >= 20);
        assert!(specs[0].stub().starts_with("def run_length_encode(text: str) -> list[tuple[str, int]]:\n    \"\"\"\n    Compress"));
        assert!(load_seed_tasks(&DataText::read(&root.join("prompts/seed_tasks.jsonl")).unwrap()).unwrap().len() >= 10);
    }
}
