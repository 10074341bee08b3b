//! One benchmark problem, in a shape common to HumanEval and MBPP.
//!
//! Prompts follow the bigcode-evaluation-harness:
//! - HumanEval(+): the dataset's `prompt` as given (signature + docstring); stripping it is an
//!   option of the evaluator, not of the data.
//! - MBPP (full, test split, sanitized): `"""\n{text}\n{first test}\n"""\n`.
//! - MBPP+: the dataset's `prompt`, which EvalPlus already wrote in that same form.

use crate::source::Benchmark;

/// What a text of a task is, for decontamination reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// The prompt the model sees.
    Prompt,
    /// The natural-language description alone (HumanEval docstring, MBPP `text`).
    Text,
    /// The reference solution.
    Solution,
    /// The test code.
    Tests,
}

/// EvalPlus's extra tests of a "+" task: argument lists whose expected outputs come from the
/// canonical solution. The inputs are the exact JSON text of the file (see `rawjson`), to be
/// read by Python's `json.loads`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlusTests {
    /// JSON array of argument lists (the original tests' inputs).
    pub base_input_json: String,
    /// JSON array of argument lists (EvalPlus's generated inputs).
    pub plus_input_json: String,
    pub base_inputs: usize,
    pub plus_inputs: usize,
    /// Absolute tolerance for float outputs (0 means exact, with EvalPlus's 1e-6 fallback).
    pub atol: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub benchmark: Benchmark,
    /// `HumanEval/0` for the HumanEval family; `Mbpp/11` for every MBPP variant.
    pub task_id: String,
    /// The model prompt (bigcode convention, see the module docs).
    pub prompt: String,
    /// The natural-language problem statement.
    pub text: String,
    /// HumanEval: the body that follows the prompt; MBPP: the whole reference program;
    /// infilling: the masked lines (the middle).
    pub canonical_solution: String,
    /// Infilling: the code after the middle (the program is `prompt + middle + suffix`);
    /// empty elsewhere.
    pub suffix: String,
    /// The test code as the dataset gives it: HumanEval `test` (defines `check`), MBPP the
    /// `test_list` asserts one a line, sanitized MBPP the same, MBPP+ its `assertion` field.
    pub tests: String,
    /// MBPP's asserts one by one (empty for HumanEval).
    pub test_list: Vec<String>,
    /// Code that must run before the tests: MBPP `test_setup_code`, sanitized MBPP's
    /// `test_imports` (one a line). Empty elsewhere.
    pub test_setup: String,
    /// Name of the function under test.
    pub entry_point: String,
    /// Base and plus inputs of HumanEval+ / MBPP+ tasks.
    pub plus: Option<PlusTests>,
}

impl Task {
    /// The texts a decontaminator should compare training data with, each with its kind.
    /// Empty texts are left out.
    pub fn contamination_texts(&self) -> Vec<(TextKind, &str)> {
        [
            (TextKind::Prompt, self.prompt.as_str()),
            (TextKind::Text, self.text.as_str()),
            (TextKind::Solution, self.canonical_solution.as_str()),
            (TextKind::Tests, self.tests.as_str()),
        ]
        .into_iter()
        .filter(|(_, t)| !t.trim().is_empty())
        .collect()
    }

    /// The numeric part of the task id (`HumanEval/7` -> 7, `Mbpp/11` -> 11).
    pub fn number(&self) -> u32 {
        self.task_id.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

/// The bigcode harness's MBPP prompt: the description and the first test in a docstring.
pub(crate) fn mbpp_prompt(text: &str, first_test: &str) -> String {
    format!("\"\"\"\n{text}\n{first_test}\n\"\"\"\n")
}

/// The last triple-quoted docstring of a prompt, trimmed and dedented: the description of
/// the function to write (earlier docstrings belong to helper functions given in the prompt).
pub(crate) fn last_docstring(prompt: &str) -> String {
    let best = ["\"\"\"", "'''"]
        .into_iter()
        .filter_map(|q| {
            let end = prompt.rfind(q)?;
            let start = prompt[..end].rfind(q)?;
            Some((end, &prompt[start + 3..end]))
        })
        .max_by_key(|(end, _)| *end);
    match best {
        Some((_, body)) => dedent(body),
        None => String::new(),
    }
}

/// Like Python's `inspect.cleandoc`: the first line is trimmed on its own (it follows the
/// quotes), the common indentation of the others is removed.
fn dedent(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").trim();
    let rest: Vec<&str> = lines.collect();
    let indent = rest.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let mut out = vec![first];
    out.extend(rest.iter().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }));
    out.join("\n").trim().to_string()
}

/// The description in an MBPP+ prompt: the docstring without its trailing `assert` line(s).
pub(crate) fn mbpp_plus_text(prompt: &str) -> String {
    let doc = last_docstring(prompt);
    let lines: Vec<&str> = doc.lines().collect();
    let keep = lines.iter().rposition(|l| !l.trim_start().starts_with("assert") && !l.trim().is_empty()).map_or(0, |i| i + 1);
    lines[..keep].join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_docstring_is_the_description() {
        let prompt = "def helper():\n    \"\"\"not this\"\"\"\n\ndef f(x):\n    \"\"\" Add one.\n    >>> f(1)\n    2\n    \"\"\"\n";
        assert_eq!(last_docstring(prompt), "Add one.\n>>> f(1)\n2");
        assert_eq!(last_docstring("def g():\n    '''Single quotes.'''\n"), "Single quotes.");
        assert_eq!(last_docstring("def g(): pass\n"), "");
    }

    #[test]
    fn mbpp_prompt_follows_the_bigcode_template() {
        assert_eq!(mbpp_prompt("Add.", "assert add(1, 2) == 3"), "\"\"\"\nAdd.\nassert add(1, 2) == 3\n\"\"\"\n");
        assert_eq!(mbpp_plus_text("\"\"\"\nWrite a function.\nassert f(1) == 2\n\"\"\"\n"), "Write a function.");
    }
}
